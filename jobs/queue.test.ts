// JobQueue against a real Redis: validation, job options, the API's job view in every state,
// coalescing of preview.up jobs, cancellation, idempotent re-adds with a deterministic id.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { UnrecoverableError, Worker, type Job } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TransientError, ValidationError } from "../core/errors.ts";
import { JOBS_QUEUE, type JobData } from "../core/jobs.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { deleteKeys } from "../webhooks/edge-fixture.ts";
import { JobQueue, RELEASES_LANE, stackFor } from "./queue.ts";
import { rolloutHandoverKey } from "./rollout-control.ts";

let prefix: string;
let redis: Redis;
let queue: JobQueue;

const now = () => new Date().toISOString();
const previewUp = (sha: string, pr = 5): JobData => ({
  kind: "preview.up",
  trigger: { type: "webhook", deliveryId: `d-${sha.slice(0, 6)}`, event: "pull_request", sender: "octocat" },
  requestedAt: now(),
  repo: { owner: "acme", name: "shop.web" },
  pr,
  headSha: sha,
  title: "Add checkout",
});

beforeAll(() => {
  prefix = uniqueName("queue");
  redis = new Redis(TEST_REDIS_URL);
  queue = new JobQueue({ connection: redis, prefix });
});

afterAll(async () => {
  await queue.close();
  await deleteKeys(prefix);
  redis.disconnect();
});

describe("JobQueue", () => {
  it("derives each job's lane from its data", () => {
    expect(stackFor(previewUp("a".repeat(40)))).toBe("preview-shop-web-pr-5");
    expect(stackFor({ kind: "tenant.deprovision", trigger: { type: "api", tokenName: "ci" }, requestedAt: now(), tenantId: "acme" })).toBe("tenant-acme");
    expect(stackFor({ kind: "release.rollout", trigger: { type: "api", tokenName: "ci" }, requestedAt: now(), version: "1.2.3" })).toBe(RELEASES_LANE);
  });

  it("refuses invalid data and enqueues nothing", async () => {
    const bad = { ...previewUp("a".repeat(40)), headSha: "../../x" } as JobData;
    await expect(queue.enqueue(bad)).rejects.toBeInstanceOf(ValidationError);
    await expect(queue.enqueue(previewUp("b".repeat(40)), { jobId: "123" })).rejects.toBeInstanceOf(ValidationError);
    const counts = await queue.queue.getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
  });

  it("adds with retries and long-lived records, and shows a waiting job with its trigger", async () => {
    const { jobId } = await queue.enqueue(previewUp("c".repeat(40), 6));
    const job = await queue.queue.getJob(jobId);
    expect(job?.opts).toMatchObject({ attempts: 3, backoff: { type: "exponential" }, removeOnComplete: { age: 604800 }, removeOnFail: { age: 604800 } });
    const view = await queue.getJobView(jobId);
    expect(view).toMatchObject({
      id: jobId,
      kind: "preview.up",
      stack: "preview-shop-web-pr-6",
      state: "waiting",
      progress: [],
      trigger: { type: "webhook", event: "pull_request", pr: { repo: "acme/shop.web", number: 6 } },
    });
    expect(await queue.getJobView("no-such-job")).toBeNull();
    expect(await queue.getJobView("../etc")).toBeNull();
  });

  it("a re-add with the same deterministic id is a no-op", async () => {
    const data = previewUp("d".repeat(40), 8);
    await queue.enqueue(data, { jobId: "gh-delivery-1-0" });
    await queue.enqueue(data, { jobId: "gh-delivery-1-0" });
    expect(await queue.lanes.entries("preview-shop-web-pr-8")).toEqual(["gh-delivery-1-0"]);
  });

  it("supersedes older waiting preview.up jobs of the same PR, and the view says by which", async () => {
    const first = await queue.enqueue(previewUp("1".repeat(40), 9));
    const second = await queue.enqueue(previewUp("2".repeat(40), 9));
    expect(second.superseded).toEqual([first.jobId]);
    const third = await queue.enqueue(previewUp("3".repeat(40), 9));
    expect(third.superseded).toEqual([second.jobId]);
    // Another PR is not affected.
    const other = await queue.enqueue(previewUp("4".repeat(40), 10));
    expect(other.superseded).toEqual([]);

    expect(await queue.getJobView(first.jobId)).toMatchObject({ state: "superseded", supersededBy: second.jobId });
    expect(await queue.getJobView(second.jobId)).toMatchObject({ state: "superseded", supersededBy: third.jobId });
    expect(await queue.getJobView(third.jobId)).toMatchObject({ state: "waiting" });
    expect(await queue.lanes.entries("preview-shop-web-pr-9")).toEqual([third.jobId]);
  });

  it("a preview.destroy supersedes waiting builds of the same PR", async () => {
    const build = await queue.enqueue(previewUp("a1".repeat(20), 21));
    const destroy = await queue.enqueue({
      kind: "preview.destroy",
      trigger: { type: "webhook", deliveryId: "d-x", event: "pull_request" },
      requestedAt: now(),
      repo: { owner: "acme", name: "shop.web" },
      pr: 21,
    });
    expect(destroy.superseded).toEqual([build.jobId]);
    expect(await queue.lanes.entries("preview-shop-web-pr-21")).toEqual([destroy.jobId]);
  });

  it("never supersedes a preview that is already running", async () => {
    const running = await queue.enqueue(previewUp("5".repeat(40), 11));
    expect(await queue.lanes.tryAcquire("preview-shop-web-pr-11", running.jobId, 10_000)).toBe(true);
    const newer = await queue.enqueue(previewUp("6".repeat(40), 11));
    expect(newer.superseded).toEqual([]);
    expect(await queue.lanes.isSuperseded(running.jobId)).toBeNull();
  });

  it("cancels a waiting job, not a started one", async () => {
    const waiting = await queue.enqueue(previewUp("7".repeat(40), 12));
    expect(await queue.cancelWaiting(waiting.jobId)).toBe(true);
    expect(await queue.getJobView(waiting.jobId)).toMatchObject({ state: "cancelled" });
    expect(await queue.lanes.isCancelled(waiting.jobId)).toBe(true);
    const started = await queue.enqueue(previewUp("8".repeat(40), 13));
    await queue.lanes.tryAcquire("preview-shop-web-pr-13", started.jobId, 10_000);
    expect(await queue.cancelWaiting(started.jobId)).toBe(false);
  });

  it("throws TransientError when Redis cannot take the job", async () => {
    const dead = new Redis("redis://127.0.0.1:1", { enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
    dead.on("error", () => undefined);
    const q = new JobQueue({ connection: dead, prefix: uniqueName("dead") });
    q.queue.on("error", () => undefined);
    await expect(q.enqueue(previewUp("9".repeat(40)))).rejects.toBeInstanceOf(TransientError);
    await q.close().catch(() => undefined);
    dead.disconnect();
  });
});

describe("JobQueue at the edge (issue 19)", () => {
  const release = (version: string): JobData => ({
    kind: "release.rollout",
    trigger: { type: "webhook", deliveryId: `d-${version}`, event: "release" },
    requestedAt: now(),
    version,
  });

  it("prepare + addPrepared + supersedeFor run in any order of two releases: the newest one wins, the started one hands over to it", async () => {
    const lane = `${prefix}:lane:${RELEASES_LANE}`;
    await redis.del(lane);
    const running = await queue.enqueue(release("1.0.0"));
    expect(await queue.lanes.tryAcquire(RELEASES_LANE, running.jobId, 10_000)).toBe(true);
    const older = queue.prepare(release("1.0.1"));
    const newer = queue.prepare(release("1.0.2"));
    for (const job of [older, newer]) {
      await queue.lanes.register(RELEASES_LANE, job.jobId, { kind: job.data.kind });
      await queue.addPrepared(job);
    }
    // The edge supersedes after its answer: the newer delivery's supersede may run first.
    expect(await queue.supersedeFor(newer)).toEqual([older.jobId]);
    expect(await queue.supersedeFor(older)).toEqual([]);
    expect(await queue.lanes.isSuperseded(newer.jobId)).toBeNull();
    expect(await redis.get(rolloutHandoverKey(prefix, running.jobId))).toBe(newer.jobId);
    expect(await queue.lanes.entries(RELEASES_LANE)).toEqual([running.jobId, newer.jobId]);
  });

  it("keeps adding after BullMQ's start-up version check timed out on the edge connection", async () => {
    // A private server, stopped while the queue is built: the INFO BullMQ sends then outlives the
    // edge connection's command timeout. Before, every later add failed with that error.
    const port = await freePort();
    const server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    const edge = new Redis({ port, host: "127.0.0.1", enableOfflineQueue: false, commandTimeout: 500, retryStrategy: () => 50 });
    edge.on("error", () => undefined);
    try {
      await waitReady(edge);
      server.kill("SIGSTOP");
      const q = new JobQueue({ connection: edge, prefix: "stalled" });
      q.queue.on("error", () => undefined);
      await new Promise((r) => setTimeout(r, 900));
      server.kill("SIGCONT");
      await waitReady(edge);
      const { jobId } = await q.enqueue(previewUp("e".repeat(40), 31));
      expect(await q.getJobView(jobId)).toMatchObject({ state: "waiting" });
      await q.close();
    } finally {
      edge.disconnect();
      server.kill("SIGCONT");
      server.kill("SIGKILL");
    }
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Until a PING answers (the server may still be starting, or just woke up). */
async function waitReady(redis: Redis): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (redis.status === "ready" && (await redis.ping().catch(() => "")) === "PONG") return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("Redis did not become ready");
}

describe("job view through a real worker", () => {
  it("reports running, progress lines, result and error", async () => {
    const wprefix = uniqueName("queue-view");
    const conn = new Redis(TEST_REDIS_URL);
    const workerConn = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const q = new JobQueue({ connection: conn, prefix: wprefix });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const worker = new Worker(
      JOBS_QUEUE,
      async (job: Job) => {
        await job.log("create mysql:Database t_acme");
        if ((job.data as { version?: string }).version === "9.9.9") throw new UnrecoverableError("rollout failed: wave dev");
        await gate;
        return { resourceChanges: { create: 3 } };
      },
      { connection: workerConn, prefix: wprefix },
    );
    try {
      const ok = await q.enqueue({ kind: "release.rollout", trigger: { type: "api", tokenName: "ci" }, requestedAt: now(), version: "1.2.3" });
      let view = await q.getJobView(ok.jobId);
      for (let i = 0; i < 100 && (view?.state !== "running" || view.progress.length === 0); i++) {
        await new Promise((r) => setTimeout(r, 30));
        view = await q.getJobView(ok.jobId);
      }
      expect(view).toMatchObject({ state: "running", progress: ["create mysql:Database t_acme"], trigger: { type: "api", tokenName: "ci" } });
      expect(view?.startedAt).toMatch(/^\d{4}-/);
      release();
      for (let i = 0; i < 100 && view?.state !== "succeeded"; i++) {
        await new Promise((r) => setTimeout(r, 30));
        view = await q.getJobView(ok.jobId);
      }
      expect(view).toMatchObject({ state: "succeeded", result: { resourceChanges: { create: 3 } } });
      expect(view?.finishedAt).toMatch(/^\d{4}-/);

      const bad = await q.enqueue(
        { kind: "release.rollout", trigger: { type: "api", tokenName: "ci" }, requestedAt: now(), version: "9.9.9" },
        { jobId: "bad-rollout" },
      );
      let failed = await q.getJobView(bad.jobId);
      for (let i = 0; i < 100 && failed?.state !== "failed"; i++) {
        await new Promise((r) => setTimeout(r, 30));
        failed = await q.getJobView(bad.jobId);
      }
      expect(failed).toMatchObject({ state: "failed", error: "rollout failed: wave dev", attempts: 1 });
      expect(failed).not.toHaveProperty("result");
    } finally {
      release();
      await worker.close();
      await q.close();
      await deleteKeys(wprefix);
      conn.disconnect();
      workerConn.disconnect();
    }
  });
});
