// Issue 12: fencing of a worker cut off from Redis. Worker A runs a job through a TCP proxy to a
// private redis-server; the test cuts the proxy (a partition: nothing goes through, nothing is
// reset) while the job's operation runs. A must cancel the operation (its signal, the path the
// cancel API takes to the engine) before its lock runs out, and never commit after that; worker B
// (connected directly) takes the job over once the lock is gone and completes it. After the
// partition heals, nothing of A's shows up: one commit, B's, and the job completed with B's result.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Queue, type Job } from "bullmq";
import { Redis } from "ioredis";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOBS_QUEUE } from "../core/jobs.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { startFaultProxy, type FaultProxy } from "../test/support/fault-proxy.ts";
import { startPrivateRedis, waitUntil, type PrivateRedis } from "../test/support/private-services.ts";
import { createJobWorker, extraJobKind, type JobWorker, type LaneControl } from "./job-worker.ts";
import { assertJobOwned, LeaseLostError } from "./job-scope.ts";

const LOCK_MS = 2_000;
const dir = mkdtempSync(path.join(tmpdir(), "stackrail-fence-"));
const prefix = `fence${Math.random().toString(36).slice(2, 8)}`;

let redis: PrivateRedis;
let proxy: FaultProxy;
const connections: Redis[] = [];
const workers: JobWorker[] = [];
let queue: Queue;

/** What each worker's handler did, in order. */
interface Seen {
  startedAt?: number;
  abortedAt?: number;
  abortReason?: unknown;
  commitError?: unknown;
}
const seen: Record<"A" | "B", Seen> = { A: {}, B: {} };
const commits: { worker: string; jobId: string; at: number }[] = [];
/** Lets a handler's operation end by itself (as one that ignores its cancel would). */
let finishA: () => void = () => undefined;
const aFinished = new Promise<void>((resolve) => {
  finishA = resolve;
});

/** A lane control for jobs without a stack: nothing superseded, nothing cancelled. */
const noLanes: LaneControl = {
  tryAcquire: () => Promise.resolve(true),
  acquire: () => Promise.resolve({ acquired: true }) as ReturnType<LaneControl["acquire"]>,
  parkDelayMs: () => 1_000,
  parked: () => Promise.resolve({ free: true, position: 0 }),
  arm: () => Promise.resolve(),
  renew: () => Promise.resolve(),
  release: () => Promise.resolve(),
  isSuperseded: () => Promise.resolve(null),
  isCancelled: () => Promise.resolve(false),
  markCancelled: () => Promise.resolve(),
  noteWait: () => Promise.resolve(1),
};

/** The job's "operation" and its "commit": the commit is behind the fencing check, as the GitOps writers' are. */
function startWorker(tag: "A" | "B", url: string): JobWorker {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  connection.on("error", () => undefined);
  connections.push(connection);
  const kind = extraJobKind(z.object({ kind: z.literal("fence.op") }), async (ctx) => {
    const s = seen[tag];
    s.startedAt = Date.now();
    await ctx.progress(`${tag} started`);
    if (tag === "A") {
      await new Promise<void>((resolve) => {
        ctx.signal.addEventListener(
          "abort",
          () => {
            s.abortedAt = Date.now();
            s.abortReason = ctx.signal.reason;
            resolve();
          },
          { once: true },
        );
        void aFinished.then(resolve);
      });
      // An operation that ends after its cancel (or that was never cancelled) still tries to commit.
      await ctx.progress(`${tag} operation over; committing`);
    }
    try {
      await assertJobOwned();
      commits.push({ worker: tag, jobId: ctx.jobId, at: Date.now() });
    } catch (err) {
      s.commitError = err;
      throw err;
    }
    return { by: tag };
  });
  const worker = createJobWorker({
    connection,
    prefix,
    concurrency: 1,
    lanes: noLanes,
    handlers: {},
    extraKinds: { "fence.op": kind },
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
    scrubber: new SecretScrubber(),
    stackOf: () => undefined,
    timeoutMs: () => 120_000,
    lockDurationMs: LOCK_MS,
    stalledIntervalMs: 500,
  });
  worker.worker.on("error", () => undefined);
  workers.push(worker);
  return worker;
}

beforeAll(async () => {
  redis = await startPrivateRedis(path.join(dir, "redis"));
  proxy = await startFaultProxy({ port: redis.port });
  const direct = new Redis(redis.url, { maxRetriesPerRequest: null });
  connections.push(direct);
  queue = new Queue(JOBS_QUEUE, { connection: direct, prefix });
});

afterAll(async () => {
  finishA();
  proxy?.heal();
  for (const w of workers) await w.close(1_000).catch(() => undefined);
  await queue?.close();
  for (const c of connections) c.disconnect();
  await proxy?.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("a worker cut off from Redis while it runs a job", () => {
  it("cancels its operation before its lock runs out, commits nothing, and another worker completes the job", async () => {
    startWorker("A", proxy.url("redis"));
    const job = await queue.add("fence.op", { kind: "fence.op" }, { attempts: 3, removeOnComplete: false, removeOnFail: false });
    const jobId = job.id ?? "";
    await waitUntil("worker A to start the job", () => seen.A.startedAt !== undefined, 30_000);

    // The partition: A's connections stay open, nothing goes through.
    proxy.sever("blackhole");
    const severedAt = Date.now();
    startWorker("B", redis.url);

    await waitUntil("worker A to cancel its operation", () => seen.A.abortedAt !== undefined, LOCK_MS * 5);
    const cancelMs = (seen.A.abortedAt ?? 0) - severedAt;
    expect(seen.A.abortReason).toBeInstanceOf(LeaseLostError);
    // Before its lock runs out (at the latest LOCK_MS after the last extension, which was before the cut).
    expect(cancelMs).toBeLessThan(LOCK_MS);

    await waitUntil("worker B to complete the job", async () => (await queue.getJob(jobId))?.finishedOn !== undefined, 60_000);
    // A had stopped before B started: the two never ran the job at once.
    expect(seen.B.startedAt).toBeGreaterThan(seen.A.abortedAt ?? Infinity);
    // A's operation, once over, was refused its commit.
    await waitUntil("A's commit to be refused", () => seen.A.commitError !== undefined, 10_000);
    expect(seen.A.commitError).toBeInstanceOf(LeaseLostError);

    // The partition heals: whatever A had queued finds the job no longer its own.
    proxy.heal();
    finishA();
    await new Promise((r) => setTimeout(r, LOCK_MS * 2));
    const done = (await queue.getJob(jobId)) as Job;
    expect(await done.getState()).toBe("completed");
    expect(done.returnvalue).toEqual({ by: "B" });
    expect(commits.map((c) => c.worker)).toEqual(["B"]);
    const { logs } = await queue.getJobLogs(jobId);
    expect(
      logs.filter((l) => l.startsWith("A operation over")),
      "A reported nothing after losing its lock",
    ).toEqual([]);
    process.stdout.write(`lease-fencing: cancelled_ms=${cancelMs} takeover_ms=${(seen.B.startedAt ?? 0) - severedAt}\n`);
  }, 90_000);

  it("is not fenced for a stall of its own shorter than the lock (a loaded machine): one round trip decides", async () => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    connections.push(connection);
    const stallPrefix = `${prefix}s`;
    let reason: unknown;
    const kind = extraJobKind(z.object({ kind: z.literal("fence.stall") }), async (ctx) => {
      await new Promise((r) => setTimeout(r, 300));
      // The event loop is blocked for most of the lock (longer than the lock less its margin).
      const until = Date.now() + LOCK_MS * 0.8;
      while (Date.now() < until) {
        // busy
      }
      await new Promise((r) => setTimeout(r, 1_000));
      reason = ctx.signal.aborted ? ctx.signal.reason : undefined;
      await assertJobOwned();
      return { stalled: true };
    });
    const worker = createJobWorker({
      connection,
      prefix: stallPrefix,
      concurrency: 1,
      lanes: noLanes,
      handlers: {},
      extraKinds: { "fence.stall": kind },
      logger: createLogger({ level: "silent" }),
      metrics: createMetrics({ defaultMetrics: false }),
      scrubber: new SecretScrubber(),
      stackOf: () => undefined,
      timeoutMs: () => 120_000,
      lockDurationMs: LOCK_MS,
      stalledIntervalMs: 500,
    });
    worker.worker.on("error", () => undefined);
    workers.push(worker);
    const stallQueue = new Queue(JOBS_QUEUE, { connection, prefix: stallPrefix });
    try {
      const job = await stallQueue.add("fence.stall", { kind: "fence.stall" }, { attempts: 1, removeOnComplete: false, removeOnFail: false });
      await waitUntil("the stalled job to finish", async () => (await stallQueue.getJob(job.id ?? ""))?.finishedOn !== undefined, 30_000);
      const done = (await stallQueue.getJob(job.id ?? "")) as Job;
      expect(reason).toBeUndefined();
      expect(await done.getState()).toBe("completed");
      expect(done.returnvalue).toEqual({ stalled: true });
    } finally {
      await stallQueue.close();
    }
  }, 60_000);
});
