// Deletion guards: a protected tenant is never deprovisioned, and the circuit breaker stops
// deletions when more than the configured number are requested within the window. Refused
// deletions leave the tenant's data where it was.
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantIndex } from "../../core/tenant-index.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";

let h: Harness;
let db: mysql.Connection;
const tag = Math.random().toString(36).slice(2, 7);
const [kept, first, second] = [`gd-p-${tag}`, `gd-a-${tag}`, `gd-b-${tag}`];

async function provision(id: string): Promise<void> {
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect((await h.waitForJob(res.body.jobId)).state).toBe("succeeded");
}

async function exists(id: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [`t_${id.replace(/-/g, "_")}`]);
  return rows.length === 1;
}

beforeAll(async () => {
  h = await startHarness({ env: { STACKRAIL_DELETE_MAX: "1", STACKRAIL_DELETE_WINDOW_S: "3600" } });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  for (const id of [kept, first, second]) await provision(id);
});

afterAll(async () => {
  await h?.close();
  await db?.end();
  await dropTenantLeftovers([kept, first, second]);
});

describe("deletion guards", () => {
  it("refuses to deprovision a protected tenant and leaves it as it was", async () => {
    const redis = new Redis(TEST_REDIS_URL);
    await new TenantIndex(redis, h.config.queuePrefix).recordOutputs(kept, {}, { protected: true });
    redis.disconnect();
    const res = await h.request("DELETE", `/v1/tenants/${kept}`);
    expect(res.status).toBe(409);
    expect(JSON.stringify(res.body)).toContain("protected");
    expect(await exists(kept)).toBe(true);
    expect(h.gitShow(`tenants/${kept}/tenant.yaml`)).not.toBeNull();
  });

  it("stops deletions past the limit within the window, with the data untouched", async () => {
    const ok = await h.request("DELETE", `/v1/tenants/${first}`);
    expect((await h.waitForJob(ok.body.jobId)).state).toBe("succeeded");
    expect(await exists(first)).toBe(false);

    const refused = await h.request("DELETE", `/v1/tenants/${second}`);
    const job = await h.waitForJob(refused.body.jobId);
    expect(job.state).toBe("failed");
    expect(job.error).toContain("deletion circuit breaker open");
    expect(job.attempts).toBe(1); // refused at once, not retried
    expect(await exists(second)).toBe(true);
    expect(h.gitShow(`tenants/${second}/application.yaml`)).not.toBeNull();
    expect((await h.request("GET", `/v1/tenants/${second}`)).body).toMatchObject({ state: "active" });
  });
});
