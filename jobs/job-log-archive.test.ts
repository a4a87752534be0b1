// Finished jobs' logs in the blob store (issue 15 §4), against a real Redis, a real BullMQ worker
// and a file blob store in a temp dir: a job that ends has its whole rendered log archived (without
// the secret it printed) and its stream expiring within the hour; GET /v1/jobs/:id/logs answers the
// same text once the stream is gone; a blob store that fails leaves the stream as it was; the
// retention sweep deletes archives older than the job records' retention and nothing else.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Job } from "bullmq";
import Fastify from "fastify";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createBlobStore, type BlobStore } from "../core/blob-store.ts";
import type { JobData } from "../core/jobs.ts";
import { createLogger, REDACTED, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { registerJobsApi } from "../webhooks/jobs-api.ts";
import { createJobWorker, extraJobKind, type JobWorker } from "../worker/job-worker.ts";
import { ArchivedJobLogStore, JOB_LOG_ARCHIVE_RETENTION_MS, JOB_LOG_ARCHIVED_TTL_SECONDS, jobLogArchiveKey, sweepJobLogArchives } from "./job-log-archive.ts";
import { currentJobLog, JOB_LOG_TTL_SECONDS, RedisJobLogStore } from "./job-logs.ts";
import { JobIndex } from "./job-index.ts";
import { JobQueue, stackFor } from "./queue.ts";
import { StackLanes } from "./stack-lanes.ts";

const CANARY = `canary-archive-${Math.random().toString(36).slice(2, 8)}-Secret`;
const KIND = "log-archive-test";
const prefix = uniqueName("logarchive");
const dir = mkdtempSync(path.join(tmpdir(), "stackrail-log-archive-"));
const blobs = createBlobStore({ kind: "file", root: path.join(dir, "blobs") });
let redis: Redis;
let workerConn: Redis;
let queue: JobQueue;
const workers: JobWorker[] = [];

/** A job that prints engine-like output (the canary included, cut mid-line) and progress, then ends as told. */
const logKind = extraJobKind(z.object({ kind: z.literal(KIND), fail: z.boolean() }), async (ctx) => {
  const log = currentJobLog();
  log?.output(`Updating (test):\npassword: ${CANARY}\n@ updating....`);
  await ctx.progress("halfway");
  log?.output("Resources:\n    + 3 created\n");
  if (ctx.data.fail) throw new Error("told to fail");
  return {};
});

function startWorker(logArchive: BlobStore): JobWorker {
  const scrubber = new SecretScrubber();
  scrubber.add(CANARY);
  const w = createJobWorker({
    connection: workerConn,
    prefix,
    concurrency: 1,
    lanes: new StackLanes(redis, prefix),
    handlers: {},
    extraKinds: { [KIND]: logKind },
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
    scrubber,
    stackOf: (job: Job) => stackFor(job.data as JobData),
    timeoutMs: () => 30_000,
    logArchive,
  });
  workers.push(w);
  return w;
}

async function runJob(jobId: string, fail: boolean): Promise<string> {
  await queue.queue.add(KIND, { kind: KIND, fail }, { jobId, attempts: 1 });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const state = await queue.queue.getJobState(jobId);
    if (state === "completed" || state === "failed") return state;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${state}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function getLogs(jobId: string, archive?: BlobStore): Promise<{ status: number; text: string }> {
  const app = Fastify();
  const logs = new RedisJobLogStore(redis, prefix);
  registerJobsApi(app, { reader: () => ({ queue, logs, index: new JobIndex(redis, prefix) }), ...(archive ? { logArchive: archive } : {}) });
  try {
    const res = await app.inject({ method: "GET", url: `/v1/jobs/${jobId}/logs` });
    return { status: res.statusCode, text: res.body };
  } finally {
    await app.close();
  }
}

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
  workerConn = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  queue = new JobQueue({ connection: redis, prefix });
});

afterAll(async () => {
  for (const w of workers) await w.close(1_000);
  await queue?.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  workerConn.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

describe("job log archive", () => {
  const tag = prefix.slice(-6).replace(/[^A-Za-z0-9]/g, "x");
  const stream = (jobId: string): string => new RedisJobLogStore(redis, prefix).streamKey(jobId);

  it("archives a finished job's whole rendered log without its secret, shortens the stream's life, and answers it from the archive", async () => {
    const w = startWorker(blobs);
    for (const [jobId, fail] of [
      [`ok-${tag}`, false],
      [`ko-${tag}`, true],
    ] as const) {
      expect(await runJob(jobId, fail)).toBe(fail ? "failed" : "completed");
      // What the API answered from the stream before archiving is what the archive holds.
      const live = await getLogs(jobId);
      expect(live.status).toBe(200);
      expect(live.text).toContain(`password: ${REDACTED}\n@ updating....\n[stackrail] halfway\nResources:`);
      expect(live.text).toContain(fail ? "[stackrail] job failed: " : "[stackrail] job succeeded\n");
      const archived = (await blobs.get(jobLogArchiveKey(jobId)))?.toString("utf8");
      expect(archived).toBe(live.text);
      expect(archived?.includes(CANARY)).toBe(false);
      for (const key of await redis.keys(`${prefix}:joblog*:${jobId}`)) {
        const ttl = await redis.ttl(key);
        expect(ttl, key).toBeGreaterThan(0);
        expect(ttl, key).toBeLessThanOrEqual(JOB_LOG_ARCHIVED_TTL_SECONDS);
      }
      // The stream expires: the whole log still comes back, from the archive.
      await redis.del(stream(jobId));
      expect(await getLogs(jobId)).toEqual({ status: 200, text: "" });
      expect(await getLogs(jobId, blobs)).toEqual({ status: 200, text: live.text });
    }
    await w.close(1_000);
  });

  it("reads a large archive on in chunks from its cursor", async () => {
    const text = `${"x".repeat(100)}\n`.repeat(2000);
    const jobId = `big-${tag}`;
    await blobs.put(jobLogArchiveKey(jobId), text);
    const store = new ArchivedJobLogStore(new RedisJobLogStore(redis, prefix), blobs);
    const first = await store.read(jobId, { count: 1 });
    expect(first).toHaveLength(1);
    const rest = await store.read(jobId, { after: first[0]?.id ?? "" });
    expect(rest.length).toBeGreaterThan(1);
    expect([...first, ...rest].map((e) => e.text).join("")).toBe(text);
    expect(await store.read(jobId, { after: rest.at(-1)?.id ?? "" })).toEqual([]);
  });

  it("leaves the stream with its normal TTL, and the job its result, when the blob store fails", async () => {
    const failing: BlobStore = {
      ...blobs,
      put: () => Promise.reject(new Error("blob store down")),
    };
    const w = startWorker(failing);
    const jobId = `down-${tag}`;
    expect(await runJob(jobId, false)).toBe("completed");
    expect(await blobs.exists(jobLogArchiveKey(jobId))).toBe(false);
    const ttl = await redis.ttl(stream(jobId));
    expect(ttl).toBeGreaterThan(JOB_LOG_TTL_SECONDS - 60);
    const res = await getLogs(jobId, blobs);
    expect(res.text).toContain("[stackrail] job succeeded\n");
    expect(res.text.includes(CANARY)).toBe(false);
    await w.close(1_000);
  });

  it("sweeps archives older than the job records' retention, and nothing else", async () => {
    const sweepBlobs = createBlobStore({ kind: "file", root: path.join(dir, "sweep") });
    await sweepBlobs.put(jobLogArchiveKey("old-job"), "old");
    await sweepBlobs.put(jobLogArchiveKey("new-job"), "new");
    await sweepBlobs.put("jobs/other-thing.txt", "not a log");
    const { utimes } = await import("node:fs/promises");
    const old = new Date(Date.now() - JOB_LOG_ARCHIVE_RETENTION_MS - 60_000);
    await utimes(path.join(dir, "sweep", "jobs", "old-job", "log.txt"), old, old);
    await utimes(path.join(dir, "sweep", "jobs", "other-thing.txt"), old, old);
    expect(JOB_LOG_ARCHIVE_RETENTION_MS).toBe(7 * 24 * 3600 * 1000);
    expect(await sweepJobLogArchives(sweepBlobs)).toBe(1);
    expect(await sweepBlobs.exists(jobLogArchiveKey("old-job"))).toBe(false);
    expect(await sweepBlobs.exists(jobLogArchiveKey("new-job"))).toBe(true);
    expect(await sweepBlobs.exists("jobs/other-thing.txt")).toBe(true);
    expect(await sweepJobLogArchives(sweepBlobs)).toBe(0);
  });

  it("refuses a job id that is not a safe key", () => {
    expect(jobLogArchiveKey("abc-1")).toBe("jobs/abc-1/log.txt");
    for (const bad of ["..", ".", "a/b", "12345", ""]) expect(() => jobLogArchiveKey(bad), bad).toThrow();
  });
});
