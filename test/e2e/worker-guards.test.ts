// Issue 11, finding 3 (b, c): no job that reaches the worker bypasses a guard, whatever put it in
// the queue. Jobs are forged here the way anyone with the queue's Redis could: added straight to
// BullMQ, past the tenant API. The worker refuses a protected tenant's deprovision, a raw stack
// operation and any kind it does not know (at once, without a retry, touching nothing), a
// provision that would take over an existing tenant, a move clean-up of the tier a tenant lives
// on, a drift repair the configuration does not allow, and a preview or comment for a repository
// outside STACKRAIL_REPOSITORIES. A real tier move's clean-up runs as
// its own job kind and backs the source database up before removing it.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logicalNames } from "../../core/naming.ts";
import { TenantIndex } from "../../core/tenant-index.ts";
import type { JobQueue, JobView } from "../../jobs/queue.ts";
import { dropLocalLeftovers, dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";

let h: Harness;
let db: mysql.Connection;
let redis: Redis;
let queue: JobQueue;
const tag = Math.random().toString(36).slice(2, 7);
const ids = { kept: `wg-p-${tag}`, moved: `wg-m-${tag}`, drifted: `wg-d-${tag}` };
const pool = (id: string) => logicalNames("tenant", id);
const silo = (id: string) => logicalNames("silo", id);

async function databaseExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [name]);
  return rows.length === 1;
}

async function provision(id: string): Promise<void> {
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect(res.status).toBe(202);
  const job = await h.waitForJob(res.body.jobId);
  expect(job.state, String(job.error)).toBe("succeeded");
}

/** Straight into BullMQ, with the options a real job has, past the tenant API and its checks. */
async function forge(name: string, data: Record<string, unknown>): Promise<JobView> {
  const jobId = `forged-${randomUUID()}`;
  await queue.queue.add(
    name,
    { trigger: { type: "api", tokenName: "attacker" }, requestedAt: new Date().toISOString(), ...data },
    { jobId, attempts: 3, backoff: { type: "fixed", delay: 200 } },
  );
  return h.waitForJob(jobId);
}

beforeAll(async () => {
  h = await startHarness({
    env: { STACKRAIL_MOVE_ROLLBACK_WINDOW_S: "1", STACKRAIL_SCHEDULER_INTERVAL_MS: "300", STACKRAIL_REPOSITORIES: "acme/shop" },
  });
  if (!h.service.queue) throw new Error("harness has no queue");
  queue = h.service.queue;
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redis = new Redis(TEST_REDIS_URL);
  for (const id of Object.values(ids)) await provision(id);
  await new TenantIndex(redis, h.config.queuePrefix).recordOutputs(ids.kept, {}, { protected: true });
});

afterAll(async () => {
  await h?.close();
  redis?.disconnect();
  await db?.end();
  await dropTenantLeftovers(Object.values(ids));
  await dropLocalLeftovers("preview", [`repo-${tag}-pr-7`]);
});

describe("finding 3: the worker checks every guard, whatever enqueued the job", () => {
  it("refuses a forged deprovision of a protected tenant at once, with nothing deleted", async () => {
    const job = await forge("tenant.deprovision", { kind: "tenant.deprovision", tenantId: ids.kept });
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/^deletion_refused: .*protected/);
    expect(job.attempts).toBe(1);
    expect(await databaseExists(pool(ids.kept).database)).toBe(true);
    expect(h.gitShow(`tenants/${ids.kept}/application.yaml`)).not.toBeNull();
    expect((await h.request("GET", `/v1/tenants/${ids.kept}`)).body).toMatchObject({ state: "active", protected: true });
  });

  it("runs no raw stack operation: a forged stack.operation destroy fails at once and destroys nothing", async () => {
    const job = await forge("stack.operation", {
      kind: "stack.operation",
      stack: `tenant-${ids.kept}`,
      project: "stackrail-pool",
      operation: "destroy",
      program: "tenant",
      args: { tenantId: ids.kept, tier: "pool", region: "eu-west-1" },
    });
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/^invalid: /);
    expect(job.attempts).toBe(1);
    expect(job.progress).toEqual([]);
    expect(await databaseExists(pool(ids.kept).database)).toBe(true);
  });

  it("fails a job of a kind it does not know at once, not retried, touching nothing", async () => {
    const job = await forge("evil.kind", { kind: "evil.kind", tenantId: ids.kept, operation: "destroy" });
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/^invalid: /);
    expect(job.attempts).toBe(1);
    expect(job.progress).toEqual([]);
    expect(await databaseExists(pool(ids.kept).database)).toBe(true);
  });

  it("refuses a forged provision that would move an existing tenant to another tier", async () => {
    const job = await forge("tenant.provision", { kind: "tenant.provision", tenantId: ids.drifted, region: "eu-west-1", tier: "silo", version: "1.0.0" });
    expect(job.state).toBe("failed");
    expect(job.attempts).toBe(1);
    expect(await databaseExists(silo(ids.drifted).database)).toBe(false);
    expect(h.gitShow(`tenants/${ids.drifted}/tenant.yaml`)).toContain("tier: pool");
    expect((await h.request("GET", `/v1/tenants/${ids.drifted}`)).body).toMatchObject({ state: "active", tier: "pool" });
  });

  it("refuses a move clean-up of the tier the tenant lives on, and of a protected tenant", async () => {
    const current = await forge("tenant.move-cleanup", { kind: "tenant.move-cleanup", tenantId: ids.drifted, tier: "pool", region: "eu-west-1" });
    expect(current.state).toBe("failed");
    expect(current.error).toMatch(/^deletion_refused: .*lives on pool/);
    expect(await databaseExists(pool(ids.drifted).database)).toBe(true);
    const guarded = await forge("tenant.move-cleanup", { kind: "tenant.move-cleanup", tenantId: ids.kept, tier: "silo", region: "eu-west-1" });
    expect(guarded.state).toBe("failed");
    expect(guarded.error).toMatch(/^deletion_refused: .*protected/);
  });

  it("builds no preview and posts no comment for a repository the installation does not act for", async () => {
    const repo = { owner: "evil", name: `repo-${tag}` };
    const up = await forge("preview.up", { kind: "preview.up", repo, pr: 7, headSha: "a".repeat(40) });
    expect(up.state).toBe("failed");
    expect(up.error).toMatch(/^not_allowed: .*STACKRAIL_REPOSITORIES/);
    expect(up.attempts).toBe(1);
    expect(up.progress).toEqual([]);
    expect(await databaseExists(logicalNames("preview", `repo-${tag}-pr-7`).database)).toBe(false);
    const comment = await forge("comment.refusal", { kind: "comment.refusal", repo, pr: 7, reason: "spam" });
    expect(comment.state).toBe("failed");
    expect(comment.error).toMatch(/^not_allowed: /);
  });

  it("does not repair drift when the configuration says not to, whoever asks for it", async () => {
    const user = pool(ids.drifted).cacheUser;
    await redis.call("ACL", "DELUSER", user);
    const job = await forge("tenant.drift", { kind: "tenant.drift", tenantId: ids.drifted, repair: true });
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.result).toMatchObject({ drift: true, repaired: false });
    expect((await redis.call("ACL", "USERS")) as string[]).not.toContain(user);
  });

  it("cleans up a moved tenant's source tier as its own job kind, after a backup of the source database", async () => {
    const id = ids.moved;
    await db.query(`CREATE TABLE \`${pool(id).database}\`.marker (id INT PRIMARY KEY)`);
    const res = await h.request("POST", `/v1/tenants/${id}/move`, { tier: "silo" });
    const move = await h.waitForJob(res.body.jobId);
    expect(move.state, String(move.error)).toBe("succeeded");
    // The rollback window (1 s) ends; the scheduler enqueues the clean-up by itself.
    let cleanup: string | undefined;
    const deadline = Date.now() + 60_000;
    while (!cleanup && Date.now() < deadline) {
      const jobs = await queue.queue.getJobs(["waiting", "active", "delayed", "completed", "failed"]);
      cleanup = jobs.find((j) => j.name === "tenant.move-cleanup" && (j.data as { tenantId?: string }).tenantId === id)?.id;
      if (!cleanup) await new Promise((r) => setTimeout(r, 200));
    }
    expect(cleanup, "a tenant.move-cleanup job").toBeDefined();
    const job = await h.waitForJob(cleanup ?? "");
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.trigger).toMatchObject({ type: "schedule", name: "move-cleanup" });
    expect(await databaseExists(pool(id).database)).toBe(false);
    expect(await databaseExists(silo(id).database)).toBe(true);
    const backups = path.join(h.dataDir, "blobs", "tenants", id, "backups");
    expect(existsSync(backups) && readdirSync(backups).some((f) => f.startsWith(`${pool(id).database}-`) && f.endsWith(".sql.gz"))).toBe(true);
    const order = ["backup", "stack destroy"].map((s) => job.progress.findIndex((l) => l.includes(s)));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect((await h.request("GET", `/v1/tenants/${id}`)).body).toMatchObject({ state: "active", tier: "silo" });
  });
});
