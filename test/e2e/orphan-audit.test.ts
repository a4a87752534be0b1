// The orphan audit end to end (issue 12): a clean installation after a provision and a deprovision
// audits clean; then one leftover of each kind is made by hand and each is reported with the
// command or route that repairs it; a tenant record whose database was dropped by hand is reported
// as missing; the repairs the audit offers itself (a lane's dead entries, a stack without a record)
// work. Other tests use the same MariaDB and Redis at the same time: assertions name the objects
// this test made, and the installation scope must stay clean whatever the others do.
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation, PROJECT_ROOT } from "../../core/engine.ts";
import { ACL_OWNERS_KEY } from "../../programs/local/redis-ops.ts";
import { REPAIR_OFF_REASON } from "../../worker/handlers/tenant-drift.ts";
import { createGitOpsWriter } from "../../worker/gitops/writer-factory.ts";
import { renderTenantFiles } from "../../worker/gitops/manifests.ts";
import { gitopsSettings } from "../../worker/handlers/tenant-support.ts";
import type { OrphanFinding, OrphanReport } from "../../jobs/orphan-report.ts";
import { repairOrphan } from "../../worker/orphans/repair.ts";
import { JobQueue, type JobView } from "../../jobs/queue.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";
import { enqueueStackOperation, stackOperationJob, stackOperationKinds } from "../support/stack-operation.ts";

const run = Math.random().toString(36).slice(2, 7);
/** Provisioned, then deprovisioned: must leave nothing the audit reports. */
const gone = `oa-${run}`;
/** Active; its database is dropped by hand. */
const active = `ob-${run}`;
/** One leftover each, named so that no other test can make them. */
const stray = {
  database: `zz-${run}`,
  cache: `zy-${run}`,
  directory: `zx-${run}`,
  stack: `zw-${run}`,
  gitops: `zv-${run}`,
  lane: `zu-${run}`,
  lease: `zt-${run}`,
};
const sql = (id: string, letter = "t"): string => `${letter}_${id.replace(/-/g, "_")}`;

let h: Harness;
let db: mysql.Connection;
let redis: Redis;
let cache: Redis;
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

async function audit(scope: "server" | "installation"): Promise<OrphanReport> {
  // fresh=1: this test changes things between audits; a report of the last 30 s would not show them.
  const res = await h.request("GET", `/v1/audit/orphans?scope=${scope}&fresh=1`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as OrphanReport;
}

function find(report: OrphanReport, kind: string, name: string): OrphanFinding | undefined {
  return report.findings.find((f) => f.kind === kind && f.name === name);
}

/** Findings that concern one of these keys (tenant ids, in any of their spellings). */
function about(report: OrphanReport, ...keys: string[]): OrphanFinding[] {
  const spellings = keys.flatMap((k) => [k, k.replace(/-/g, "_")]);
  return report.findings.filter((f) => spellings.some((s) => f.name.includes(s)));
}

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(engineLocation().node, ["scripts/orphans.ts", ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...h.env, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function provision(id: string): Promise<void> {
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const job = await waitFor(res.body.jobId);
  expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
}

beforeAll(async () => {
  h = await startHarness({ extraKinds: stackOperationKinds });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redis = new Redis(TEST_REDIS_URL);
  cache = new Redis(h.config.localRedisUrl);
  queue = new JobQueue({ connection: redis, prefix: h.config.queuePrefix });
});

afterAll(async () => {
  await queue?.close();
  await h?.close();
  await db?.query(`DROP DATABASE IF EXISTS \`${sql(stray.database)}\``);
  await dropTenantLeftovers([gone, active, ...Object.values(stray)]);
  await db?.end();
  redis?.disconnect();
  cache?.disconnect();
});

describe("orphan audit", () => {
  it("finds nothing in a clean installation after a provision and a deprovision (route and CLI)", async () => {
    await provision(gone);
    const del = await h.request("DELETE", `/v1/tenants/${gone}`);
    expect(del.status).toBe(202);
    expect((await waitFor(del.body.jobId)).state).toBe("succeeded");

    const mine = await audit("installation");
    expect(mine.scope).toBe("installation");
    expect(mine.incomplete).toEqual([]);
    expect(mine.findings).toEqual([]);
    // The final backup outlives the tenant on purpose: retained, not orphaned.
    expect(mine.retained).toContainEqual(expect.objectContaining({ kind: "backup", name: gone }));

    // The whole server: other tests' objects may show up, never this tenant's.
    const server = await audit("server");
    expect(about(server, gone)).toEqual([]);

    const unauthenticated = await fetch(`${h.service.url}/v1/audit/orphans`);
    expect(unauthenticated.status).toBe(401);
    expect((await h.request("GET", "/v1/audit/orphans?scope=everything")).status).toBe(400);

    const clean = await cli(["--scope", "installation"]);
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/no orphans/i);
  });

  it("reports one leftover of each kind, and a record whose database was dropped by hand, each with its repair", async () => {
    await provision(active);
    // Owned but missing: the active tenant's database, dropped behind Stackrail's back.
    await db.query(`DROP DATABASE \`${sql(active)}\``);

    // A database and a cache user with keys that no record owns.
    await db.query(`CREATE DATABASE \`${sql(stray.database)}\``);
    await cache.call("ACL", "SETUSER", `t-${stray.cache}`, "off", "resetkeys");
    await cache.set(`t:${stray.cache}:session`, "1");
    // A directory.
    mkdirSync(path.join(h.dataDir, "attachments", "tenants", stray.directory), { recursive: true });
    // A stack made through the runner (with every object it creates), without a tenant record.
    const { jobId: stackJob } = await enqueueStackOperation(
      queue,
      stackOperationJob({
        stack: `tenant-${stray.stack}`,
        project: "stackrail-pool",
        operation: "up",
        program: "tenant",
        args: { tenantId: stray.stack, tier: "pool", region: "eu-west-1" },
      }),
    );
    expect((await waitFor(stackJob)).state).toBe("succeeded");
    // GitOps files of a tenant nobody recorded.
    const writer = await createGitOpsWriter(h.config);
    await writer.commit({
      jobId: `stray-${run}`,
      message: `stray files (job stray-${run})`,
      files: renderTenantFiles(
        { id: stray.gitops, region: "eu-west-1", tier: "pool", version: "1.0.0" },
        {
          dbHost: "127.0.0.1",
          dbPort: 3306,
          dbName: sql(stray.gitops),
          cacheHost: "127.0.0.1",
          cachePort: 6379,
          cachePrefix: `t:${stray.gitops}:`,
          credentialsSecretName: "x-db",
        },
        gitopsSettings(h.config),
      ),
    });
    // A lane whose head job does not exist (registered long ago), and a lease no live job holds.
    const prefix = h.config.queuePrefix;
    await redis.rpush(`${prefix}:lane:tenant-${stray.lane}`, `ghost-${run}`);
    await redis.hset(`${prefix}:jobmeta:ghost-${run}`, { stack: `tenant-${stray.lane}`, registeredAt: "1" });
    await redis.set(`${prefix}:lane-lease:tenant-${stray.lease}`, `ghost-lease-${run}`, "PX", 600_000);
    // A Pulumi lock left by a process that is gone, on the active tenant's stack.
    const deadPid = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
      child.on("exit", () => resolve(child.pid ?? 999_999));
    });
    const lockDir = path.join(h.dataDir, "state", ".pulumi", "locks", "organization", "stackrail-pool", `tenant-${active}`);
    mkdirSync(lockDir, { recursive: true });
    writeFileSync(
      path.join(lockDir, `00000000-0000-4000-8000-${run.padEnd(12, "0")}.json`),
      JSON.stringify({ pid: deadPid, username: userInfo().username, hostname: hostname(), timestamp: new Date().toISOString() }),
    );

    const server = await audit("server");
    expect(server.incomplete).toEqual([]);
    expect(find(server, "database", sql(stray.database))).toMatchObject({
      problem: "unowned",
      repair: expect.stringContaining(`DROP DATABASE \`${sql(stray.database)}\``),
    });
    expect(find(server, "acl-user", `t-${stray.cache}`)).toMatchObject({ problem: "unowned", repair: expect.stringContaining(`ACL DELUSER t-${stray.cache}`) });
    expect(find(server, "cache-keys", `t:${stray.cache}:*`)).toMatchObject({ problem: "unowned", repair: expect.stringContaining("UNLINK") });
    expect(find(server, "directory", `tenants/${stray.directory}`)).toMatchObject({ problem: "unowned", repair: expect.stringContaining("rm -rf") });
    const stackRepair = `npm run orphans -- --repair stack:stackrail-pool/tenant-${stray.stack}`;
    expect(find(server, "stack", `stackrail-pool/tenant-${stray.stack}`)).toMatchObject({ problem: "unowned", repair: stackRepair });
    // What that stack made is repaired by destroying the stack, not by hand.
    expect(find(server, "database", sql(stray.stack))).toMatchObject({ problem: "unowned", repair: stackRepair });
    expect(find(server, "acl-user", `t-${stray.stack}`)).toMatchObject({ problem: "unowned", repair: stackRepair });
    expect(find(server, "gitops", `tenants/${stray.gitops}/`)).toMatchObject({
      problem: "unowned",
      repair: expect.stringContaining(`git rm -r tenants/${stray.gitops}`),
    });
    expect(find(server, "lane", `tenant-${stray.lane}`)).toMatchObject({
      problem: "dead-entries",
      repair: expect.stringContaining(`npm run orphans -- --repair lane:tenant-${stray.lane}`),
    });
    expect(find(server, "lane-lease", `tenant-${stray.lease}`)).toMatchObject({ problem: "stale-lease" });
    expect(find(server, "stack-lock", `stackrail-pool/tenant-${active}`)).toMatchObject({
      problem: "stale-lock",
      owner: expect.stringContaining(`pid ${deadPid}`),
    });
    expect(find(server, "database", sql(active))).toMatchObject({ problem: "missing", owner: expect.stringContaining(`tenant ${active}`) });
    // Nothing else of the active tenant is out of place.
    expect(
      about(server, active)
        .map((f) => `${f.kind} ${f.problem}`)
        .sort(),
    ).toEqual(["database missing", "stack-lock stale-lock"]);

    // This installation's own view: everything it can tie to itself, not the stray database and
    // cache user, which only the name space ties to any installation (on a shared server, anybody's).
    const mine = await audit("installation");
    expect(find(mine, "database", sql(stray.database))).toBeUndefined();
    expect(find(mine, "acl-user", `t-${stray.cache}`)).toBeUndefined();
    for (const [kind, name] of [
      ["directory", `tenants/${stray.directory}`],
      ["stack", `stackrail-pool/tenant-${stray.stack}`],
      ["database", sql(stray.stack)],
      ["gitops", `tenants/${stray.gitops}/`],
      ["lane", `tenant-${stray.lane}`],
      ["lane-lease", `tenant-${stray.lease}`],
      ["database", sql(active)],
    ] as const) {
      expect(find(mine, kind, name), `${kind} ${name}`).toBeDefined();
    }

    // The gauge, by kind, from the last audit of this installation.
    const metrics = await h.request("GET", "/metrics");
    expect(String(metrics.body)).toMatch(/stackrail_orphans\{kind="database"\} [1-9]/);

    const dirty = await cli(["--scope", "installation", "--json"]);
    expect(dirty.code, dirty.stderr).toBe(1);
    const parsed = JSON.parse(dirty.stdout) as OrphanReport;
    expect(parsed.findings.length).toBeGreaterThan(0);
  });

  it("repairs a lane's dead entries, and removes a stack without a record through the guarded clean-up job", async () => {
    const deps = { config: h.config, redis, reader: await createGitOpsWriter(h.config), engine: engineLocation(), queue };
    const lane = await repairOrphan(deps, `lane:tenant-${stray.lane}`);
    expect(lane.done).toBe(true);
    expect(await redis.llen(`${h.config.queuePrefix}:lane:tenant-${stray.lane}`)).toBe(0);

    const stack = await repairOrphan(deps, `stack:stackrail-pool/tenant-${stray.stack}`);
    expect(stack.jobId).toBeDefined();
    const job = await waitFor(stack.jobId ?? "");
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");

    const after = await audit("installation");
    expect(about(after, stray.stack, stray.lane)).toEqual([]);
    // Its data was backed up before it went.
    expect(after.retained).toContainEqual(expect.objectContaining({ kind: "backup", name: stray.stack }));
    // A finding that no longer exists is not repaired blindly.
    await expect(repairOrphan(deps, `lane:tenant-${stray.lane}`)).rejects.toThrow(/no finding/);
  });

  it("records an owned object's lost ownership entry again from its stack, and queues a drift repair for a missing object", async () => {
    const deps = { config: h.config, redis, reader: await createGitOpsWriter(h.config), engine: engineLocation(), queue };
    const user = `t-${active}`;
    const recorded = await redis.hget(ACL_OWNERS_KEY, user);
    expect(recorded).toMatch(new RegExp(`^${active}/[0-9a-f]{64}$`));
    await redis.hdel(ACL_OWNERS_KEY, user);

    const report = await audit("installation");
    expect(find(report, "acl-user", user)).toMatchObject({ problem: "unregistered", repair: expect.stringContaining(`--repair acl-user:${user}`) });
    expect((await repairOrphan(deps, `acl-user:${user}`)).done).toBe(true);
    expect(await redis.hget(ACL_OWNERS_KEY, user)).toBe(recorded);

    // The database dropped by hand: a drift repair is queued (this installation does not allow repairs: it reports).
    const missing = await repairOrphan(deps, `database:${sql(active)}`);
    expect(missing.jobId).toBeDefined();
    const job = await waitFor(missing.jobId ?? "");
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(job.result).toMatchObject({ drift: true, repaired: false, reason: REPAIR_OFF_REASON });
  });
});
