// Redis is the queue, not the system of record: after Redis loses the tenant index, a restart
// rebuilds it from the GitOps repository.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL, uniqueName } from "../support/services.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-rebuild-"));
const prefix = uniqueName("rebuild");
const id = `rb-${Math.random().toString(36).slice(2, 7)}`;
const shared = { dataDir, prefix, token: "rebuild-token-0123456789abcdef", passphrase: "rebuild-passphrase" };
let second: Harness | undefined;

afterAll(async () => {
  if (second) {
    const res = await second.request("DELETE", `/v1/tenants/${id}`);
    if (res.status === 202) await second.waitForJob(res.body.jobId).catch(() => undefined);
    await second.close();
  }
  const db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await db.query(`DROP DATABASE IF EXISTS \`t_${id.replace(/-/g, "_")}\``);
  await db.end();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("tenant index rebuild", () => {
  it("shows the tenants of the GitOps repository again after Redis lost the index", async () => {
    const first = await startHarness(shared);
    const res = await first.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.2.3" });
    expect((await first.waitForJob(res.body.jobId)).state).toBe("succeeded");
    await first.close({ keep: true });

    const redis = new Redis(TEST_REDIS_URL);
    await redis.del(`${prefix}:tenants`, `${prefix}:tenant:${id}`);
    redis.disconnect();

    second = await startHarness(shared);
    const tenant = await second.request("GET", `/v1/tenants/${id}`);
    expect(tenant.status).toBe(200);
    expect(tenant.body).toMatchObject({ id, region: "eu-west-1", tier: "pool", version: "1.2.3", state: "active" });
  });
});
