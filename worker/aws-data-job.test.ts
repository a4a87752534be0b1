// Issue 16, item 4, the worker's side: on aws a tier move copies the data and a deprovision keeps a
// backup, through the `data-job` program run as its own stack (`tenant-<id>` in `stackrail-data`)
// and a bounded wait for the Job's result. The runner records (the aws provider cannot run here)
// and plays the Job: it writes the result object into an in-memory bucket that the injected reader
// reads. Verified: the move cuts over, the deprovision records the backup and destroys. A mismatch
// fails the move before any switch, with the source kept; a failed backup stops the deprovision
// before anything is destroyed. No credential reaches the job's arguments, lines or result.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type Config } from "../core/config.ts";
import { TenantIndex } from "../core/tenant-index.ts";
import { DATA_JOB_PROJECT } from "../core/tenant-resources.ts";
import { deleteRedisPrefix } from "../test/support/cleanup.ts";
import { TEST_REDIS_URL, localServiceEnv, uniqueName } from "../test/support/services.ts";
import { CancelledError } from "../core/errors.ts";
import { DataJobFailedError, DataJobTimeoutError, DataVerificationError, runAwsDataJob, type DataJobSettings, type TableReport } from "./aws-data-job.ts";
import type { DeletionBreaker } from "./deletion-breaker.ts";
import { MemoryWriter, RecordingRunner, jobContext } from "./handlers/handler-doubles.test-support.ts";
import { tenantDeprovisionHandler } from "./handlers/tenant-deprovision.ts";
import { tenantMoveHandler } from "./handlers/tenant-move.ts";
import type { StackOperationRequest } from "./pulumi-protocol.ts";

const prefix = uniqueName("data-job");
const CANARY = "canary-db-pw-51c0ffee";
const trigger = { type: "api", tokenName: "ops" } as const;
const TABLES: TableReport[] = [
  { table: "orders", rows: 12, checksum: "3141592653" },
  { table: "users", rows: 3, checksum: "2718281828" },
];
let dataDir: string;
let redis: Redis;
let config: Config;
let tenants: TenantIndex;

beforeAll(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-data-job-"));
  redis = new Redis(TEST_REDIS_URL);
  config = loadConfig({ ...localServiceEnv({ dataDir, prefix, apiToken: "t".repeat(32), passphrase: "p" }), STACKRAIL_TARGET: "aws" });
  tenants = new TenantIndex(redis, prefix);
});

afterAll(async () => {
  redis?.disconnect();
  await deleteRedisPrefix(prefix);
  rmSync(dataDir, { recursive: true, force: true });
});

type JobBehaviour = "verified" | "mismatch" | "failed" | "silent";

/** The runner plays the tier stacks and the Job: a data-job `up` leaves its result in `bucket`. */
function world(behaviour: JobBehaviour) {
  const bucket = new Map<string, string>();
  const runner = new RecordingRunner((req: StackOperationRequest) => {
    if (req.program === "data-job" && req.operation === "up") {
      const a = req.args as Record<string, string>;
      const runId = String(a.runId);
      const source = a.sourceTier === "silo" ? "s_" : "t_";
      const backupKey = `tenants/${a.tenantId}/backups/${source}${String(a.tenantId).replace(/-/g, "_")}-${a.stamp}.sql.gz`;
      const resultKey = `tenants/${a.tenantId}/data-jobs/${runId}.json`;
      const move = a.mode === "move";
      const target = behaviour === "mismatch" ? TABLES.map((t, i) => (i === 1 ? { ...t, checksum: "1" } : t)) : TABLES;
      const result =
        behaviour === "failed"
          ? { version: 1, runId, status: "failed", reason: "the dump of the source database failed" }
          : {
              version: 1,
              runId,
              tenant: a.tenantId,
              mode: a.mode,
              status: behaviour === "mismatch" ? "mismatch" : "ok",
              reason: behaviour === "mismatch" ? "row counts or CHECKSUM TABLE differ between source and target" : null,
              source: { database: "src", tables: TABLES },
              target: move ? { database: "dst", tables: target } : null,
              backup: { key: backupKey, bytes: 4096, sha256: "a".repeat(64) },
            };
      if (behaviour !== "silent") bucket.set(`bucket-eu/${resultKey}`, JSON.stringify(result));
      return { runId, resultBucket: "bucket-eu", resultKey, backupKey, namespace: `tenant-${a.tenantId}` };
    }
    if (req.program === "tenant") {
      return { databaseHost: "aurora.example", databaseName: "t_x", databasePassword: CANARY, cacheHost: "cache.example", cacheKeyPrefix: "t:x:" };
    }
    return {};
  });
  let clock = Date.parse("2026-11-30T00:00:00Z");
  const reads: string[] = [];
  const settings: DataJobSettings = {
    reader: {
      read: (l) => {
        reads.push(`${l.region}:${l.bucket}/${l.key}`);
        return Promise.resolve(bucket.get(`${l.bucket}/${l.key}`) ?? null);
      },
    },
    pollIntervalMs: 1000,
    timeoutMs: 5000,
    now: () => clock,
    sleep: (ms) => {
      clock += ms;
      return Promise.resolve();
    },
  };
  return { runner, settings, reads, writer: new MemoryWriter() };
}

async function activeTenant(id: string, tier: "pool" | "silo"): Promise<void> {
  await tenants.claimProvision({ id, region: "eu-west-1", tier, version: "1.0.0" });
  await tenants.recordOutputs(id, { databaseName: tier === "silo" ? `s_${id}` : `t_${id}`, databaseHost: "aurora.example" });
}

const dataJobRequests = (runner: RecordingRunner): StackOperationRequest[] => runner.requests.filter((r) => r.program === "data-job");
const tierRequests = (runner: RecordingRunner, tier: string): StackOperationRequest[] => runner.requests.filter((r) => r.projectName === `stackrail-${tier}`);

function moveHandler(w: ReturnType<typeof world>) {
  return tenantMoveHandler({
    config,
    runner: w.runner,
    writer: w.writer,
    tenants,
    policyPacks: ["/policy"],
    rollbackWindowMs: 60_000,
    scheduleCleanup: () => Promise.resolve(),
    cancelCleanup: () => Promise.resolve(),
    dataJob: w.settings,
  });
}

function deprovisionHandler(w: ReturnType<typeof world>) {
  const breaker = { admit: () => Promise.resolve(true) } as unknown as DeletionBreaker;
  return tenantDeprovisionHandler({ config, runner: w.runner, writer: w.writer, tenants, policyPacks: ["/policy"], breaker, dataJob: w.settings });
}

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

describe("aws tier move: the data job copies and verifies", () => {
  it("aws move copies data: a data-job stack in the region, its verified result read, then the cut-over", async () => {
    const id = `mv-${prefix.slice(-8)}`;
    await activeTenant(id, "pool");
    const w = world("verified");
    const ctx = jobContext<"tenant.move">("move-job-1", {
      kind: "tenant.move",
      tenantId: id,
      tier: "silo",
      trigger,
      requestedAt: new Date().toISOString(),
    });
    const result = await moveHandler(w)(ctx);

    const data = dataJobRequests(w.runner);
    expect(data.map((r) => r.operation)).toEqual(["up", "destroy"]);
    expect(data[0]).toMatchObject({
      stack: `tenant-${id}`,
      projectName: DATA_JOB_PROJECT,
      policyPacks: ["/policy"],
      args: { tenantId: id, region: "eu-west-1", mode: "move", sourceTier: "pool", targetTier: "silo" },
    });
    // The copy runs after the source is frozen and before the cut-over commit.
    const order = w.runner.requests.map((r) => `${r.projectName}:${r.operation}${r.args.readOnly ? ":frozen" : ""}`);
    expect(order.slice(0, 4)).toEqual(["stackrail-silo:up", "stackrail-pool:up:frozen", `${DATA_JOB_PROJECT}:up`, `${DATA_JOB_PROJECT}:destroy`]);
    expect(w.reads.length).toBeGreaterThan(0);
    expect(w.reads[0]).toMatch(new RegExp(`^eu-west-1:bucket-eu/tenants/${id}/data-jobs/move-job-1-\\d+\\.json$`));
    expect(result).toMatchObject({ moved: true, tables: TABLES, backup: { bucket: "bucket-eu", bytes: 4096 } });
    expect(w.writer.commits).toHaveLength(1);
    expect((await tenants.get(id))?.tier).toBe("silo");
    // Canary: the tier stacks' credentials appear nowhere the job keeps.
    expect(JSON.stringify(w.runner.requests.map((r) => r.args))).not.toContain(CANARY);
    expect(JSON.stringify(ctx.lines)).not.toContain(CANARY);
    expect(JSON.stringify(result)).not.toContain(CANARY);
  });

  it("a mismatch fails the move before any switch: no commit, the source unfrozen and kept, the target removed", async () => {
    const id = `mm-${prefix.slice(-8)}`;
    await activeTenant(id, "pool");
    const w = world("mismatch");
    const ctx = jobContext<"tenant.move">("move-job-2", {
      kind: "tenant.move",
      tenantId: id,
      tier: "silo",
      trigger,
      requestedAt: new Date().toISOString(),
    });
    const err = await moveHandler(w)(ctx).catch((e: unknown) => e);
    expect(causes(err).some((e) => e instanceof DataVerificationError)).toBe(true);
    expect((err as Error).message).toContain("users checksum differs");
    expect(w.writer.commits).toHaveLength(0);
    const record = await tenants.get(id);
    expect(record).toMatchObject({ tier: "pool", state: "active" });
    // The source: frozen, then unfrozen; never destroyed. The target: destroyed. The data stack: destroyed.
    expect(tierRequests(w.runner, "pool").map((r) => `${r.operation}${r.args.readOnly ? ":frozen" : ""}`)).toEqual(["up:frozen", "up"]);
    expect(tierRequests(w.runner, "silo").map((r) => r.operation)).toEqual(["up", "destroy"]);
    expect(dataJobRequests(w.runner).map((r) => r.operation)).toEqual(["up", "destroy"]);
  });

  it("a Job that never reports fails the move after the bounded wait, rolled back the same way", async () => {
    const id = `sl-${prefix.slice(-8)}`;
    await activeTenant(id, "pool");
    const w = world("silent");
    const ctx = jobContext<"tenant.move">("move-job-3", {
      kind: "tenant.move",
      tenantId: id,
      tier: "silo",
      trigger,
      requestedAt: new Date().toISOString(),
    });
    const err = await moveHandler(w)(ctx).catch((e: unknown) => e);
    expect(causes(err).some((e) => e instanceof DataJobTimeoutError)).toBe(true);
    // 5 s allowed, a read per second: bounded.
    expect(w.reads.length).toBeGreaterThanOrEqual(5);
    expect(w.reads.length).toBeLessThanOrEqual(7);
    expect(w.writer.commits).toHaveLength(0);
    expect((await tenants.get(id))?.tier).toBe("pool");
    expect(dataJobRequests(w.runner).map((r) => r.operation)).toEqual(["up", "destroy"]);
  });
});

describe("aws deprovision: the data job keeps a backup first", () => {
  it("records the backup's key in the region's bucket, then destroys", async () => {
    const id = `dp-${prefix.slice(-8)}`;
    await activeTenant(id, "silo");
    const w = world("verified");
    const ctx = jobContext<"tenant.deprovision">("dep-job-1", {
      kind: "tenant.deprovision",
      tenantId: id,
      trigger,
      requestedAt: new Date().toISOString(),
    });
    const result = await deprovisionHandler(w)(ctx);
    expect(dataJobRequests(w.runner)[0]).toMatchObject({ operation: "up", args: { mode: "backup", sourceTier: "silo", tenantId: id } });
    expect(result.backup).toMatchObject({ bucket: "bucket-eu", bytes: 4096 });
    expect(String((result.backup as { file: string }).file)).toMatch(new RegExp(`^tenants/${id}/backups/s_`));
    const order = w.runner.requests.map((r) => `${r.projectName}:${r.operation}`);
    expect(order).toEqual([`${DATA_JOB_PROJECT}:up`, `${DATA_JOB_PROJECT}:destroy`, "stackrail-silo:destroy"]);
    expect(await tenants.get(id)).toBeNull();
    expect(JSON.stringify(ctx.lines) + JSON.stringify(result)).not.toContain(CANARY);
  });

  it("a failed backup stops the deprovision before anything is destroyed; the record says failed", async () => {
    const id = `df-${prefix.slice(-8)}`;
    await activeTenant(id, "pool");
    const w = world("failed");
    const ctx = jobContext<"tenant.deprovision">("dep-job-2", {
      kind: "tenant.deprovision",
      tenantId: id,
      trigger,
      requestedAt: new Date().toISOString(),
    });
    const err = await deprovisionHandler(w)(ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataJobFailedError);
    expect(w.runner.requests.filter((r) => r.program === "tenant")).toEqual([]);
    expect(dataJobRequests(w.runner).map((r) => r.operation)).toEqual(["up", "destroy"]);
    expect(await tenants.get(id)).toMatchObject({ state: "failed", failure: { job: "tenant.deprovision" } });
  });
});

describe("runAwsDataJob", () => {
  const request = { mode: "backup", tenantId: "acme", region: "eu-west-1", sourceTier: "pool" } as const;
  const data = { kind: "tenant.deprovision", tenantId: "acme", trigger, requestedAt: "2026-11-30T00:00:00Z" } as const;

  it("a cancelled job stops waiting and still destroys the data stack (it holds the credentials Secret)", async () => {
    const w = world("silent");
    const controller = new AbortController();
    const ctx = { ...jobContext<"tenant.deprovision">("cancel-1", data), signal: controller.signal };
    const settings: DataJobSettings = {
      ...w.settings,
      reader: {
        read: () => {
          controller.abort();
          return Promise.resolve(null);
        },
      },
    };
    const err = await runAwsDataJob({ runner: w.runner, policyPacks: [], settings }, ctx, request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledError);
    expect(dataJobRequests(w.runner).map((r) => r.operation)).toEqual(["up", "destroy"]);
  });

  it("a result left by another run is not taken for this one's", async () => {
    const w = world("verified");
    const ctx = jobContext<"tenant.deprovision">("stale-1", data);
    const settings: DataJobSettings = {
      ...w.settings,
      reader: { read: () => Promise.resolve(JSON.stringify({ version: 1, runId: "stale-1-20260101000000000", status: "failed", reason: "old" })) },
    };
    const err = await runAwsDataJob({ runner: w.runner, policyPacks: [], settings }, ctx, request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataJobFailedError);
    expect((err as Error).message).toContain("another run");
  });
});
