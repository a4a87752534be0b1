// Issue 12, finding 2: "A retry storm on a busy stack." A job whose stack is locked by a live
// process waits with growing, bounded delays counted beside the job (no attempt spent), never
// starts the engine to find out, says on whom it waits, and runs once the lock is released.
// Real Redis/BullMQ, the real engine behind a CLI wrapper that counts what it is asked to run.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir, userInfo } from "node:os";
import path from "node:path";
import type { Job } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation, type EngineLocation } from "../core/engine.ts";
import type { JobData } from "../core/jobs.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { dropTenantLeftovers } from "../test/support/cleanup.ts";
import { until } from "../test/support/lock-fixtures.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { STACK_OPERATION, enqueueStackOperation, stackOperationJob, stackOperationKind } from "../test/support/stack-operation.ts";
import { createJobWorker, type JobWorker } from "./job-worker.ts";
import { PulumiRunner } from "./pulumi-runner.ts";
import { JobQueue, stackFor } from "../jobs/queue.ts";
import { RedisStackGuard } from "./stack-guard.ts";
import { StackLanes } from "../jobs/stack-lanes.ts";
import { lockStoreFor } from "./stack-locks.ts";
import { newWorkerIdentity, WorkerPresence } from "./worker-identity.ts";

const prefix = uniqueName("busy");
const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-busy-"));
const backendUrl = `file://${path.join(dataDir, "state")}`;
const suffix = prefix.slice(-8).replace(/[^a-z0-9]/g, "x");
const tenants = [`ba-${suffix}`, `bb-${suffix}`];
const engineLog = path.join(dataDir, "engine-runs.log");

let redis: Redis;
let queue: JobQueue;
let presence: WorkerPresence;
let runner: PulumiRunner;
let jobWorker: JobWorker;
const holders: ChildProcess[] = [];

/** The project's engine, with a `pulumi` in front that writes down every command it is asked to run. */
function countingEngine(): EngineLocation {
  const real = engineLocation();
  const dir = path.join(dataDir, "engine");
  const binDir = path.join(dir, "bin");
  mkdirSync(binDir, { recursive: true });
  // Each tool runs from its own folder (the shims find the project's Node relative to themselves).
  for (const f of readdirSync(real.binDir)) {
    const log = f === "pulumi" ? `echo "$*" >> ${JSON.stringify(engineLog)}\n` : "";
    writeFileSync(path.join(binDir, f), `#!/bin/sh\n${log}exec ${JSON.stringify(path.join(real.binDir, f))} "$@"\n`);
    chmodSync(path.join(binDir, f), 0o755);
  }
  return { ...real, dir, binDir, pulumi: path.join(binDir, "pulumi") };
}

/** Pulumi CLI commands run on a stack (selecting it, updating it, ...), and of those the updates. */
function engineRuns(stack: string): { commands: number; ups: number } {
  const text = ((): string => {
    try {
      return readFileSync(engineLog, "utf8");
    } catch {
      return "";
    }
  })();
  const lines = text.split("\n").filter((l) => l.includes(stack));
  return { commands: lines.length, ups: lines.filter((l) => /^up\b/.test(l)).length };
}

function upJob(tenantId: string) {
  return stackOperationJob({ stack: `tenant-${tenantId}`, operation: "up", program: "tenant", args: { tenantId, tier: "pool", region: "eu-west-1" } });
}

/** The job's "waiting:" progress lines with the moment this test first saw each; fails once an engine ran on the stack. */
async function watchWaits(jobId: string, seen: Map<string, number>, stack: string, before: number): Promise<string[]> {
  const runs = engineRuns(stack).commands - before;
  if (runs > 0) throw new Error(`the engine ran ${runs} command(s) on the locked stack ${stack}`);
  const { logs } = await queue.queue.getJobLogs(jobId);
  for (const l of logs) if (l.startsWith("waiting:") && !seen.has(l)) seen.set(l, Date.now());
  return logs.filter((l) => l.startsWith("waiting:"));
}

async function finished(jobId: string): Promise<Job> {
  await until("the job to finish", async () => ["completed", "failed"].includes(await queue.queue.getJobState(jobId)), 170_000);
  const job = await queue.queue.getJob(jobId);
  if (!job) throw new Error(`job ${jobId} vanished`);
  return job;
}

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  queue = new JobQueue({ connection: redis, prefix });
  presence = new WorkerPresence(redis, prefix, newWorkerIdentity());
  await presence.start();
  runner = new PulumiRunner({
    engine: countingEngine(),
    backendUrl,
    passphrase: "busy-test-passphrase",
    dataDir,
    target: "local",
    localMysqlUrl: TEST_MYSQL_URL,
    localRedisUrl: TEST_REDIS_URL,
    cancelGraceMs: 5_000,
    guard: new RedisStackGuard(redis, presence, lockStoreFor(backendUrl)),
  });
  jobWorker = createJobWorker({
    connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }),
    prefix,
    concurrency: 2,
    lanes: new StackLanes(redis, prefix),
    handlers: {},
    extraKinds: { [STACK_OPERATION]: stackOperationKind(runner) },
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
    scrubber: new SecretScrubber(),
    stackOf: (job: Job) => stackFor(job.data as JobData),
    timeoutMs: () => 120_000,
    laneRetryMs: 200,
    // The production curve (2 s doubling to 60 s), started at 1 s to keep the test short.
    busyBackoff: { baseMs: 1_000, maxMs: 60_000 },
  });
});

afterAll(async () => {
  for (const h of holders) h.kill("SIGKILL");
  await jobWorker?.close(5_000);
  for (const t of tenants) {
    await runner
      ?.run({
        stack: `tenant-${t}`,
        projectName: "stackrail",
        operation: "destroy",
        program: "tenant",
        args: { tenantId: t, tier: "pool", region: "eu-west-1" },
        policyPacks: [],
      })
      .catch(() => undefined);
  }
  runner?.close();
  await presence?.stop();
  await queue?.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
  await dropTenantLeftovers(tenants);
  rmSync(dataDir, { recursive: true, force: true });
});

describe("a busy stack", () => {
  it("backs off with growing delays while a live process holds its lock, names it, starts no engine, and runs once it is released", async () => {
    const tenantId = tenants[0] as string;
    const stack = `tenant-${tenantId}`;
    // The tenant exists (an upgrade, say, comes next).
    const first = await finished((await enqueueStackOperation(queue, upJob(tenantId))).jobId);
    expect(await first.getState(), String(first.failedReason)).toBe("completed");
    const before = engineRuns(stack);
    // A lock as the CLI of a live process writes it (pkg/backend/diy/lock.go): that process is `sleep`.
    const holder = spawn("sleep", ["600"], { stdio: "ignore" });
    holders.push(holder);
    const since = new Date();
    const lockDir = path.join(dataDir, "state", ".pulumi", "locks", "organization", "stackrail", stack);
    mkdirSync(lockDir, { recursive: true });
    const lockFile = path.join(lockDir, `${randomUUID()}.json`);
    writeFileSync(lockFile, JSON.stringify({ pid: holder.pid, username: userInfo().username, hostname: hostname(), timestamp: since.toISOString() }));

    const { jobId } = await enqueueStackOperation(queue, upJob(tenantId));
    const seen = new Map<string, number>();
    await until("four waits", async () => (await watchWaits(jobId, seen, stack, before.commands)).length >= 4, 60_000);
    const waits = (await watchWaits(jobId, seen, stack, before.commands)).slice(0, 4);

    expect(engineRuns(stack).commands - before.commands, "engine commands while the stack is locked").toBe(0);
    for (const line of waits) {
      expect(line).toContain(`locked by process ${holder.pid} on ${hostname()}`);
      expect(line).toContain(`since ${since.toISOString()}`);
    }
    // Announced delays double (1 s, 2 s, 4 s, 8 s here) and the job really waited that long between looks.
    const announced = waits.map((l) => Number(/looking again in (\d+)s \(wait (\d+)\)/.exec(l)?.[1]));
    expect(announced).toEqual([1, 2, 4, 8]);
    expect(waits.map((l) => Number(/\(wait (\d+)\)/.exec(l)?.[1]))).toEqual([1, 2, 3, 4]);
    const at = waits.map((l) => seen.get(l) as number);
    for (let i = 1; i < at.length; i++) expect((at[i] as number) - (at[i - 1] as number)).toBeGreaterThanOrEqual((announced[i - 1] as number) * 1000 - 400);
    // Counted beside the job, not in its BullMQ attempts.
    expect(Number(await redis.hget(`${prefix}:jobmeta:${jobId}`, "busyWaits"))).toBeGreaterThanOrEqual(4);
    expect((await queue.queue.getJob(jobId))?.attemptsMade).toBe(0);

    // The holder finishes: its lock goes, and the job runs at its next look.
    rmSync(lockFile);
    holder.kill("SIGKILL");
    const job = await finished(jobId);
    expect(await job.getState(), String(job.failedReason)).toBe("completed");
    expect(engineRuns(stack).ups - before.ups).toBe(1);
  });

  it("names the Stackrail worker, job and process holding the stack, and starts no engine until it lets go", async () => {
    const tenantId = tenants[1] as string;
    const stack = `tenant-${tenantId}`;
    // Another worker (another machine) is in the middle of an operation on the stack.
    const other = new WorkerPresence(redis, prefix, newWorkerIdentity({ host: "host-other" }));
    await other.start();
    try {
      const claim = await new RedisStackGuard(redis, other, lockStoreFor(backendUrl)).claim(
        { projectName: "stackrail", stack },
        { jobId: "job-of-the-other-worker", progress: () => undefined },
      );
      claim.started(424242);

      const before = engineRuns(stack);
      const { jobId } = await enqueueStackOperation(queue, upJob(tenantId));
      const seen = new Map<string, number>();
      await until("two waits", async () => (await watchWaits(jobId, seen, stack, before.commands)).length >= 2, 60_000);
      const [first] = await watchWaits(jobId, seen, stack, before.commands);
      expect(first).toContain(`worker ${other.identity.id} on host-other (pid ${process.pid}), job job-of-the-other-worker, Pulumi process 424242 since `);
      expect(engineRuns(stack).commands).toBe(0);

      await claim.release();
      const job = await finished(jobId);
      expect(await job.getState(), String(job.failedReason)).toBe("completed");
      expect(engineRuns(stack).ups).toBe(1);
    } finally {
      await other.stop();
    }
  });
});
