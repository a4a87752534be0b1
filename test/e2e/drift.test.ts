// Drift end to end: a tenant is provisioned, then changed behind Pulumi's back (grants revoked, the
// cache ACL user deleted, the database user dropped). A drift check reports it in the job record (the
// stack and what drifted) and counts it in the metric by tier and region, never by stack; a protected
// tenant's drift is reported and left alone; with repair the real world is put back. A restart with
// a short drift interval shows the scheduler enqueueing checks by itself, with the staggered,
// deterministic job ids.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobQueue, type JobView } from "../../jobs/queue.ts";
import { driftJobId, driftSlot } from "../../worker/drift-scheduler.ts";
import { TenantIndex } from "../../core/tenant-index.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL, uniqueName } from "../support/services.ts";
import { enqueueStackOperation, stackOperationJob, stackOperationKinds } from "../support/stack-operation.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-drift-"));
const prefix = uniqueName("drift");
const shared = { dataDir, prefix, token: "drift-token-0123456789abcdef", passphrase: "drift-passphrase" };
const id = `dr-${Math.random().toString(36).slice(2, 7)}`;
const stack = `tenant-${id}`;
const sqlName = `t_${id.replace(/-/g, "_")}`;
/** The database as a grant names it: `_` escaped, so the grant covers exactly one database (issue 11, finding 1). */
const grantDb = sqlName.replace(/_/g, "\\_");
const cacheUser = `t-${id}`;

let h: Harness;
let db: mysql.Connection;
let redis: Redis;
/**
 * The test's own view of the queue, on a connection without the edge's 800 ms command limit: the
 * assertions here are about drift, not about the HTTP edge on a busy machine.
 */
let queue: JobQueue;

const FINAL = new Set(["succeeded", "failed", "superseded", "cancelled"]);

async function waitFor(jobId: string, timeoutMs = 170_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = await queue.getJobView(jobId);
    if (view && FINAL.has(view.state)) return view;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not finish in ${timeoutMs}ms (state ${view?.state ?? "missing"})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface DriftRecord {
  stack: string;
  drift: boolean;
  changes: { update: number; delete: number };
  resources: { urn: string; type: string; op: string; properties: string[] }[];
  repaired: boolean;
  reason?: string;
}

async function driftCheck(repair: boolean): Promise<{ job: JobView; result: DriftRecord }> {
  const { jobId } = await queue.enqueue({
    kind: "tenant.drift",
    trigger: { type: "api", tokenName: "e2e" },
    requestedAt: new Date().toISOString(),
    tenantId: id,
    repair,
  });
  const job = await waitFor(jobId);
  expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
  return { job, result: job.result as DriftRecord };
}

async function privileges(): Promise<string[]> {
  const [rows] = await db.query<mysql.RowDataPacket[]>(
    "SELECT PRIVILEGE_TYPE AS p FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA IN (?, ?)",
    [`'${sqlName}'@'%'`, grantDb, sqlName],
  );
  return rows.map((r) => String(r.p));
}

async function mysqlUser(): Promise<{ maxConn: number } | null> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SELECT max_user_connections AS maxConn FROM mysql.user WHERE User = ? AND Host = '%'", [sqlName]);
  return rows[0] ? { maxConn: Number(rows[0].maxConn) } : null;
}

async function aclUser(): Promise<unknown[] | null> {
  return (await redis.call("ACL", "GETUSER", cacheUser)) as unknown[] | null;
}

/**
 * stackrail_drift_found_total for this tenant's tier and region. Its labels are bounded (stack kind,
 * tier, region): the stack is in the job's result, never a label, so no series exists per tenant.
 */
async function driftMetric(): Promise<number> {
  let text = "";
  for (let attempt = 0; attempt < 5 && !text.includes("stackrail_drift_found_total"); attempt++) {
    const res = await fetch(`${h.service.url ?? ""}/metrics`, { headers: { authorization: `Bearer ${h.token}` } });
    text = res.ok ? await res.text() : "";
  }
  const series = text.split("\n").filter((l) => l.startsWith("stackrail_drift_found_total"));
  for (const l of series) expect(l).not.toMatch(new RegExp(`stack=|tenant=|${id}`));
  const line = series.find((l) => l.includes('kind="tenant"') && l.includes('tier="pool"') && l.includes('region="eu-west-1"'));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function setProtected(value: boolean): Promise<void> {
  const index = new TenantIndex(redis, h.config.queuePrefix);
  const tenant = await index.get(id);
  if (!tenant) throw new Error("tenant missing from the index");
  await index.recordOutputs(id, tenant.outputs, { protected: value });
}

beforeAll(async () => {
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redis = new Redis(TEST_REDIS_URL);
  queue = new JobQueue({ connection: redis, prefix });
  // Repairs are allowed here (the worker refuses a job's `repair` otherwise), and the worker is given
  // the test-only plain stack operation kind.
  h = await startHarness({ ...shared, env: { STACKRAIL_DRIFT_INTERVAL_S: "0", STACKRAIL_DRIFT_REPAIR: "true" }, extraKinds: stackOperationKinds });
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect(res.status).toBe(202);
  const job = await waitFor(res.body.jobId);
  expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
});

afterAll(async () => {
  if (h) {
    await setProtected(false).catch(() => undefined);
    const res = await h.request("DELETE", `/v1/tenants/${id}`);
    if (res.status === 202) await waitFor(res.body.jobId).catch(() => undefined);
    await h.close();
  }
  await queue?.close();
  await db?.query(`DROP DATABASE IF EXISTS \`${sqlName}\``);
  await db?.query("DROP USER IF EXISTS ?@'%'", [sqlName]).catch(() => undefined);
  await db?.end();
  await redis?.call("ACL", "DELUSER", cacheUser).catch(() => undefined);
  redis?.disconnect();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("drift detection", () => {
  it("reports no drift for a tenant nobody touched", async () => {
    const { result } = await driftCheck(false);
    expect(result).toMatchObject({ stack, tier: "pool", region: "eu-west-1", drift: false, changes: { update: 0, delete: 0 }, resources: [], repaired: false });
    expect(await driftMetric()).toBe(0);
  });

  it("reports grants revoked and a cache user deleted behind Pulumi's back, in the job record and the metric", async () => {
    await db.query(`REVOKE INSERT, DELETE ON \`${grantDb}\`.* FROM ?@'%'`, [sqlName]);
    await redis.call("ACL", "DELUSER", cacheUser);

    const { result, job } = await driftCheck(false);
    // The record says which stack drifted and how; the metric only counts it by tier and region.
    expect(result).toMatchObject({ stack, tier: "pool", region: "eu-west-1" });
    expect(result.drift).toBe(true);
    expect(result.repaired).toBe(false);
    expect(result.changes).toEqual({ update: 1, delete: 1 });
    const grant = result.resources.find((r) => r.type === "pulumi-nodejs:dynamic/stackrail:MysqlGrant");
    expect(grant).toMatchObject({ op: "update", properties: ["privileges"] });
    expect(result.resources.find((r) => r.type === "pulumi-nodejs:dynamic/stackrail:RedisAclUser")).toMatchObject({ op: "delete" });
    expect(job.progress.some((l) => l.includes("drift: update"))).toBe(true);
    expect(await driftMetric()).toBe(1);
    // Reported only: the world is as it was left.
    expect(await privileges()).not.toContain("INSERT");
    expect(await aclUser()).toBeNull();
  });

  it("a protected tenant's drift is reported, never repaired, even when repair is asked for", async () => {
    await setProtected(true);
    const { result } = await driftCheck(true);
    expect(result).toMatchObject({ drift: true, repaired: false, reason: "protected tenant: reported, not repaired" });
    expect(await driftMetric()).toBe(2);
    expect(await privileges()).not.toContain("INSERT");
    expect(await aclUser()).toBeNull();
    await setProtected(false);
  });

  it("repairs: refresh then up restore the grants and the cache user, and the next check finds nothing", async () => {
    const { result } = await driftCheck(true);
    expect(result).toMatchObject({ drift: true, repaired: true });
    const privs = await privileges();
    expect(privs).toEqual(expect.arrayContaining(["SELECT", "INSERT", "DELETE", "UPDATE"]));
    const acl = await aclUser();
    expect(acl).not.toBeNull();
    expect(JSON.stringify(acl)).toContain(`~t:${id}:*`);
    expect((await driftCheck(false)).result.drift).toBe(false);
  });

  it("a dropped database user and a tampered cache user are found and repaired (user and grant recreated)", async () => {
    await db.query("DROP USER ?@'%'", [sqlName]);
    await redis.call("ACL", "SETUSER", cacheUser, "+@all", "~*");
    const { result } = await driftCheck(true);
    expect(result.drift).toBe(true);
    const types = result.resources.map((r) => `${r.op} ${r.type}`).sort();
    expect(types).toEqual([
      "delete pulumi-nodejs:dynamic/stackrail:MysqlGrant",
      "delete pulumi-nodejs:dynamic/stackrail:MysqlUser",
      "update pulumi-nodejs:dynamic/stackrail:RedisAclUser",
    ]);
    // Names of properties only, never a value.
    expect(JSON.stringify(result)).not.toMatch(/"[A-Za-z0-9]{32}"/);
    expect(result.repaired).toBe(true);
    expect(await mysqlUser()).toEqual({ maxConn: 20 });
    expect(await privileges()).toContain("INSERT");
    expect(JSON.stringify(await aclUser())).not.toContain('"~*"');
    expect((await driftCheck(false)).result.drift).toBe(false);
  });

  it("a changed connection limit is drift; a refresh records it with the passwords still secret in the state", async () => {
    await db.query("ALTER USER ?@'%' WITH MAX_USER_CONNECTIONS 3", [sqlName]);
    const { result } = await driftCheck(false);
    expect(result.resources).toEqual([
      expect.objectContaining({ op: "update", type: "pulumi-nodejs:dynamic/stackrail:MysqlUser", properties: ["maxConnections"] }),
    ]);

    // A plain refresh and up: a test-only job kind this harness's worker was given (production has none).
    const op = async (operation: "refresh" | "up"): Promise<void> => {
      const { jobId } = await enqueueStackOperation(
        queue,
        stackOperationJob({
          trigger: { type: "api", tokenName: "e2e" },
          stack,
          project: "stackrail-pool",
          operation,
          program: "tenant",
          args: { tenantId: id, tier: "pool", region: "eu-west-1", version: "1.0.0" },
        }),
      );
      const job = await waitFor(jobId);
      expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    };
    await op("refresh");
    const file = path.join(dataDir, "state", ".pulumi", "stacks", "stackrail-pool", `${stack}.json`);
    const checkpoint = JSON.parse(readFileSync(file, "utf8")) as {
      checkpoint: { latest: { resources: { type: string; outputs?: Record<string, unknown> }[] } };
    };
    const resources = checkpoint.checkpoint.latest.resources;
    const user = resources.find((r) => r.type.endsWith(":MysqlUser"));
    expect(user?.outputs?.maxConnections).toBe(3);
    for (const r of resources.filter((x) => x.type.endsWith(":MysqlUser") || x.type.endsWith(":RedisAclUser"))) {
      // A secret in the checkpoint is an object carrying Pulumi's secret signature, never a string.
      expect(r.outputs?.password).toHaveProperty(["4dabf18193072939515e22adb298388d"]);
    }
    await op("up");
    expect(await mysqlUser()).toEqual({ maxConn: 20 });
  });
});

describe("scheduled drift checks", () => {
  it("enqueue by themselves, staggered, with one deterministic job id per stack and period", async () => {
    await h.close({ keep: true });
    const intervalS = 20;
    h = await startHarness({ ...shared, env: { STACKRAIL_DRIFT_INTERVAL_S: String(intervalS), STACKRAIL_SCHEDULER_INTERVAL_MS: "300" } });
    const intervalMs = intervalS * 1000;
    // Within one interval the stack's slot comes around.
    const deadline = Date.now() + intervalMs + 15_000;
    let found: string | undefined;
    while (!found && Date.now() < deadline) {
      const jobs = await queue.queue.getJobs(["waiting", "active", "completed", "failed", "delayed"]);
      found = jobs.map((j) => j.id ?? "").find((jid) => jid.startsWith(`drift-${stack}-`));
      if (!found) await new Promise((r) => setTimeout(r, 300));
    }
    expect(found).toBeDefined();
    const period = Number(found?.slice(`drift-${stack}-`.length));
    expect(found).toBe(driftJobId(stack, period));
    // Enqueued inside the stack's own slot: the period it was enqueued in is the one its id names,
    // and its due time (the stack's offset inside the interval) had come.
    const enqueuedAt = (await queue.queue.getJob(found ?? ""))?.timestamp ?? 0;
    const slot = driftSlot(stack, intervalMs, enqueuedAt);
    expect(slot.period).toBe(period);
    expect(enqueuedAt).toBeGreaterThanOrEqual(slot.dueAt);
    const job = await waitFor(found ?? "");
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(job.result).toMatchObject({ stack, drift: false, repaired: false });
    expect(job.trigger).toMatchObject({ type: "schedule", name: "drift-check" });
    // Ticks after it enqueue nothing more for the same period.
    await new Promise((r) => setTimeout(r, 1000));
    const again = (await queue.queue.getJobs(["waiting", "active", "completed", "failed", "delayed"])).map((j) => j.id ?? "").filter((jid) => jid === found);
    expect(again).toHaveLength(1);
  });
});
