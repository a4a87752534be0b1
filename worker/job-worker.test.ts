// The foundation's promises, through the real engine, real Redis/BullMQ and real MariaDB:
// jobs of one stack never overlap (the later waits, it does not fail), jobs of different stacks
// run in parallel, and a real `up` creates the tenant database that `destroy` removes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { QueueEvents, type Job } from "bullmq";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation } from "../core/engine.ts";
import { JOBS_QUEUE, type JobData } from "../core/jobs.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { STACK_OPERATION, enqueueStackOperation, stackOperationJob, stackOperationKind, type StackOperationJob } from "../test/support/stack-operation.ts";
import { createJobWorker, type JobWorker } from "./job-worker.ts";
import { PulumiRunner } from "./pulumi-runner.ts";
import { JobQueue, stackFor } from "../jobs/queue.ts";
import { StackLanes } from "../jobs/stack-lanes.ts";

const prefix = uniqueName("worker");
const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-worker-"));
const suffix = prefix.slice(-8).replace(/[^a-z0-9]/g, "x");
const tenants = [`fa-${suffix}`, `fb-${suffix}`];

let edge: Redis;
let workerConn: Redis;
let queue: JobQueue;
let events: QueueEvents;
let jobWorker: JobWorker;
let db: mysql.Connection;

function opJob(tenantId: string, operation: "up" | "destroy"): StackOperationJob {
  return stackOperationJob({ stack: `tenant-${tenantId}`, operation, program: "tenant", args: { tenantId, tier: "pool", region: "eu-west-1" } });
}

async function databasesLike(pattern: string): Promise<string[]> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [pattern]);
  return rows.map((r) => String(Object.values(r)[0]));
}

beforeAll(async () => {
  edge = new Redis(TEST_REDIS_URL);
  workerConn = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  queue = new JobQueue({ connection: edge, prefix });
  events = new QueueEvents(JOBS_QUEUE, { connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }), prefix });
  await events.waitUntilReady();
  const runner = new PulumiRunner({
    engine: engineLocation(),
    backendUrl: `file://${path.join(dataDir, "state")}`,
    passphrase: "worker-test-passphrase",
    dataDir,
    target: "local",
    localMysqlUrl: TEST_MYSQL_URL,
    localRedisUrl: TEST_REDIS_URL,
    cancelGraceMs: 5_000,
  });
  jobWorker = createJobWorker({
    connection: workerConn,
    prefix,
    concurrency: 2,
    lanes: new StackLanes(edge, prefix),
    // The plain stack operation is a test-only kind: production has none (issue 11, finding 3).
    handlers: {},
    extraKinds: { [STACK_OPERATION]: stackOperationKind(runner) },
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
    scrubber: new SecretScrubber(),
    stackOf: (job: Job) => stackFor(job.data as JobData),
    timeoutMs: () => 120_000,
    laneRetryMs: 200,
  });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  await jobWorker?.close(5_000);
  await events?.close();
  await queue?.close();
  const keys = await edge.keys(`${prefix}:*`);
  if (keys.length > 0) await edge.del(...keys);
  edge?.disconnect();
  workerConn?.disconnect();
  for (const t of tenants) await db?.query(`DROP DATABASE IF EXISTS \`t_${t.replace(/-/g, "_")}\``).catch(() => undefined);
  await db?.end();
  rmSync(dataDir, { recursive: true, force: true });
});

async function finished(jobId: string): Promise<Job> {
  const job = await queue.queue.getJob(jobId);
  if (!job) throw new Error(`job ${jobId} vanished`);
  await job.waitUntilFinished(events, 170_000);
  const done = await queue.queue.getJob(jobId);
  if (!done) throw new Error(`job ${jobId} vanished`);
  return done;
}

describe("job worker with the real engine", () => {
  it("runs two jobs of one stack one after the other, and jobs of two stacks side by side", async () => {
    const [a, b] = tenants as [string, string];
    // Two jobs for stack A at once, one for stack B.
    const a1 = await enqueueStackOperation(queue, opJob(a, "up"));
    const a2 = await enqueueStackOperation(queue, opJob(a, "up"));
    const b1 = await enqueueStackOperation(queue, opJob(b, "up"));
    const [ja1, ja2, jb1] = await Promise.all([finished(a1.jobId), finished(a2.jobId), finished(b1.jobId)]);

    for (const j of [ja1, ja2, jb1]) {
      expect(await j.getState()).toBe("completed");
      expect(j.returnvalue).toMatchObject({ operation: "up", result: "succeeded" });
    }
    // The Pulumi operations' own times (BullMQ's bookkeeping around them can differ by a few ms).
    const op = (j: Job) => j.returnvalue as { startedAt: number; finishedAt: number };
    // Same stack: the second operation started only after the first finished (no concurrent-update error).
    expect(op(ja2).startedAt).toBeGreaterThanOrEqual(op(ja1).finishedAt);
    // Different stacks: B's operation ran while A's first one was running.
    expect(op(jb1).startedAt).toBeLessThan(op(ja1).finishedAt);
    expect(op(ja1).startedAt).toBeLessThan(op(jb1).finishedAt);
    // The second up of A changed nothing: the first one created everything.
    expect((ja2.returnvalue as { resourceChanges: Record<string, number> }).resourceChanges.create ?? 0).toBe(0);
    // Progress lines streamed from the engine into the job's log.
    const logs = await queue.queue.getJobLogs(a1.jobId);
    expect(logs.logs.some((l) => l.startsWith("create "))).toBe(true);
  });

  it("finds the tenant database in MariaDB after up and not after destroy", async () => {
    const a = tenants[0] as string;
    const dbName = `t_${a.replace(/-/g, "_")}`;
    expect(await databasesLike(dbName)).toEqual([dbName]);
    const d = await enqueueStackOperation(queue, opJob(a, "destroy"));
    const jd = await finished(d.jobId);
    expect(await jd.getState()).toBe("completed");
    expect(await databasesLike(dbName)).toEqual([]);
    const d2 = await enqueueStackOperation(queue, opJob(tenants[1] as string, "destroy"));
    await finished(d2.jobId);
  });
});
