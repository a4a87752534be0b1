// Tenant lifecycle end to end: HTTP in; MariaDB, Redis, files and git commits out.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";

let h: Harness;
let db: mysql.Connection;
const id = `e2e-${Math.random().toString(36).slice(2, 8)}`;
const dbName = `t_${id.replace(/-/g, "_")}`;

async function exists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [name]);
  return rows.length === 1;
}

beforeAll(async () => {
  h = await startHarness();
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  await h?.close();
  await db?.query(`DROP DATABASE IF EXISTS \`${dbName}\``);
  await db?.end();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers([id]);
});

describe("tenant lifecycle", () => {
  it("provisions: stack up, one commit with the three files, tenant visible in the API with non-secret outputs", async () => {
    const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect(res.status).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(await exists(dbName)).toBe(true);

    // The repository's first commit (its README) plus exactly one commit for this job.
    const log = h.gitLog();
    expect(log.filter((l) => l.includes(`tenant-${id}`))).toHaveLength(1);
    expect(log[0]).toContain(`provision tenant-${id}`);
    for (const f of ["tenant.yaml", "application.yaml", "appproject.yaml"]) expect(h.gitShow(`tenants/${id}/${f}`)).not.toBeNull();
    expect(h.gitShow(`tenants/${id}/application.yaml`)).toContain("targetRevision: 1.0.0");
    // The region's first tenant brings the regional Argo CD objects in the same commit.
    expect(h.gitShow("regions/eu-west-1/tenants.yaml")).toMatch(/kind: ApplicationSet[\s\S]*repoURL: file:\/\//);
    expect(h.gitShow("regions/eu-west-1/appproject.yaml")).toContain("kind: AppProject");

    const tenant = await h.request("GET", `/v1/tenants/${id}`);
    expect(tenant.status).toBe(200);
    expect(tenant.body).toMatchObject({ id, tier: "pool", region: "eu-west-1" });
    expect(JSON.stringify(tenant.body)).toContain(dbName);
    expect(JSON.stringify(tenant.body)).not.toMatch(/password/i);
    expect(JSON.stringify(job)).not.toMatch(/"[A-Za-z0-9+/]{32}"/); // no generated credential in the job record
  });

  it("upgrades: the application points at the new version in one more commit", async () => {
    const before = h.gitLog().length;
    const res = await h.request("POST", `/v1/tenants/${id}/upgrade`, { version: "1.1.0" });
    expect(res.status).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(h.gitLog().length).toBe(before + 1);
    expect(h.gitShow(`tenants/${id}/application.yaml`)).toContain("targetRevision: 1.1.0");
  });

  it("deprovisions in order: manifests removed, final backup kept, database and cache user gone", async () => {
    const res = await h.request("DELETE", `/v1/tenants/${id}`);
    expect(res.status).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(h.gitShow(`tenants/${id}/tenant.yaml`)).toBeNull();
    expect(await exists(dbName)).toBe(false);
    const backups = path.join(h.dataDir, "blobs", "tenants", id, "backups");
    expect(existsSync(backups) && readdirSync(backups).some((f) => f.endsWith(".sql.gz"))).toBe(true);
    const redis = new Redis(TEST_REDIS_URL);
    const users = (await redis.call("ACL", "USERS")) as string[];
    redis.disconnect();
    expect(users).not.toContain(`t-${id}`);
    // Progress lines show the order of the steps.
    const order = ["removing the tenant's manifests", "final backup", "stack destroy"].map((s) => job.progress.findIndex((l) => l.includes(s)));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect((await h.request("GET", `/v1/tenants/${id}`)).status).toBe(404);
  });
});
