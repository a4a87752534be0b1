// Moving a tenant between tiers end to end: data copied and verified, one cut-over commit, the
// tenant id unchanged, the source cleaned up; and a failure mid-way rolled back with nothing lost.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";

let h: Harness;
let db: mysql.Connection;
let redis: Redis;
const tag = Math.random().toString(36).slice(2, 7);
const ok = `mv-ok-${tag}`;
const bad = `mv-bad-${tag}`;
const sql = (id: string, letter: "t" | "s"): string => `${letter}_${id.replace(/-/g, "_")}`;

async function provisionWithData(id: string): Promise<void> {
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  const job = await h.waitForJob(res.body.jobId);
  expect(job.state, String(job.error)).toBe("succeeded");
  await db.query(`CREATE TABLE \`${sql(id, "t")}\`.orders (id INT PRIMARY KEY, total DECIMAL(10,2), note VARCHAR(100))`);
  await db.query(`INSERT INTO \`${sql(id, "t")}\`.orders VALUES (1, 10.50, 'first'), (2, 99.99, 'second'), (3, 0.01, 'third')`);
  const dir = path.join(h.dataDir, "attachments", "tenants", id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "invoice.pdf"), "%PDF-1.4 pretend invoice");
  await redis.set(`t:${id}:session`, "alive");
}

async function databaseExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [name]);
  return rows.length === 1;
}

beforeAll(async () => {
  h = await startHarness({ env: { STACKRAIL_MOVE_ROLLBACK_WINDOW_S: "0" } });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  for (const id of [ok, bad]) {
    const res = await h.request("DELETE", `/v1/tenants/${id}`);
    if (res.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
    for (const letter of ["t", "s"] as const) await db.query(`DROP DATABASE IF EXISTS \`${sql(id, letter)}\``);
    await redis.del(`t:${id}:session`);
  }
  redis?.disconnect();
  await db?.end();
  await h?.close();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers([ok, bad]);
});

describe("tenant move between tiers", () => {
  it("moves pool -> silo: copies and verifies the data, cuts over in one commit, keeps the id, removes the source", async () => {
    await provisionWithData(ok);
    const res = await h.request("POST", `/v1/tenants/${ok}/move`, { tier: "silo" });
    expect(res.status).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, String(job.error)).toBe("succeeded");

    const [rows] = await db.query<mysql.RowDataPacket[]>(`SELECT id, total, note FROM \`${sql(ok, "s")}\`.orders ORDER BY id`);
    expect(rows.map((r) => [r.id, String(r.total), r.note])).toEqual([
      [1, "10.50", "first"],
      [2, "99.99", "second"],
      [3, "0.01", "third"],
    ]);
    expect(await databaseExists(sql(ok, "t"))).toBe(false);
    expect(readFileSync(path.join(h.dataDir, "attachments", "silo", ok, "invoice.pdf"), "utf8")).toBe("%PDF-1.4 pretend invoice");
    expect(existsSync(path.join(h.dataDir, "attachments", "tenants", ok))).toBe(false);
    expect(await redis.get(`t:${ok}:session`)).toBe("alive");

    expect(h.gitLog()[0]).toContain(`move tenant-${ok}: pool -> silo`);
    expect(h.gitShow(`tenants/${ok}/tenant.yaml`)).toContain("tier: silo");
    expect(h.gitShow(`tenants/${ok}/application.yaml`)).toContain(sql(ok, "s"));
    const tenant = await h.request("GET", `/v1/tenants/${ok}`);
    expect(tenant.body).toMatchObject({ id: ok, tier: "silo" });
    expect(job.result).toMatchObject({ moved: true, from: "pool", to: "silo", sourceRemoved: true });
    expect(job.progress.some((l) => l.startsWith("verified 1 table(s): orders=3 rows"))).toBe(true);
  });

  it("rolls back to the source with nothing lost when a step fails", async () => {
    await provisionWithData(bad);
    // A named pipe among the attachments cannot be copied: the copy step fails after the freeze.
    execFileSync("mkfifo", [path.join(h.dataDir, "attachments", "tenants", bad, "stuck.fifo")]);
    const commitsBefore = h.gitLog().length;
    const res = await h.request("POST", `/v1/tenants/${bad}/move`, { tier: "silo" });
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state).toBe("failed");
    expect(job.error).toContain('failed at "copy the data"');
    expect(job.error).toContain("rolled back to pool");

    // Source intact and writable again; target gone; no cut-over commit; the tenant still pool.
    const [rows] = await db.query<mysql.RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${sql(bad, "t")}\`.orders`);
    expect(Number(rows[0]?.n)).toBe(3);
    const [grants] = await db.query<mysql.RowDataPacket[]>(`SHOW GRANTS FOR '${sql(bad, "t")}'@'%'`);
    expect(grants.map((g) => String(Object.values(g)[0])).join("\n")).toMatch(/INSERT/);
    expect(await databaseExists(sql(bad, "s"))).toBe(false);
    expect(h.gitLog().length).toBe(commitsBefore);
    expect((await h.request("GET", `/v1/tenants/${bad}`)).body).toMatchObject({ tier: "pool" });
  });
});
