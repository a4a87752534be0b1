// Move clean-up timers against a real Redis (issue 15 §2): BullMQ delayed jobs with a fixed id per
// tenant and tier. Two workers and repeated schedules enqueue one clean-up job; a timer outlives the
// process that set it; cancel, re-scheduling and the former sorted set's entries behave.
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../core/logger.ts";
import { workerConnection } from "../core/redis.ts";
import { JobQueue } from "../jobs/queue.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { deleteKeys } from "../webhooks/edge-fixture.ts";
import { CleanupScheduler, cleanupJobId, pendingMoveCleanups } from "./cleanup-scheduler.ts";

const logger = createLogger({ level: "silent" });
const REGION = "eu-west-1";

/** One "worker process": its connection, its job queue and its scheduler. */
interface Proc {
  redis: Redis;
  jobs: JobQueue;
  cleanups: CleanupScheduler;
}

let opened: Proc[] = [];
let prefixes: string[] = [];

function proc(prefix: string): Proc {
  const redis = workerConnection(TEST_REDIS_URL);
  const p = { redis, jobs: new JobQueue({ connection: redis, prefix }), cleanups: new CleanupScheduler(redis, prefix) };
  opened.push(p);
  return p;
}

async function stop(p: Proc): Promise<void> {
  opened = opened.filter((o) => o !== p);
  await p.cleanups.close();
  await p.jobs.close();
  p.redis.disconnect();
}

function newPrefix(): string {
  const prefix = uniqueName("cleanups");
  prefixes.push(prefix);
  return prefix;
}

afterEach(async () => {
  for (const p of [...opened]) await stop(p);
  for (const prefix of prefixes) await deleteKeys(prefix);
  prefixes = [];
});

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every tenant.move-cleanup job of `tenantId` in the jobs queue, whatever its state. */
async function cleanupJobs(jobs: JobQueue, tenantId: string): Promise<string[]> {
  const all = await jobs.queue.getJobs(["waiting", "active", "delayed", "prioritized", "completed", "failed"]);
  return all.filter((j) => j?.name === "tenant.move-cleanup" && (j.data as { tenantId?: string }).tenantId === tenantId).map((j) => j.id ?? "");
}

async function timersLeft(p: Proc): Promise<number> {
  return (await p.cleanups.pending()).length;
}

describe("move clean-up timers", () => {
  it("run once: scheduled twice from each of two workers, one clean-up job is enqueued, in one lane entry", async () => {
    const prefix = newPrefix();
    const [a, b] = [proc(prefix), proc(prefix)];
    await a.cleanups.start(a.jobs, logger);
    await b.cleanups.start(b.jobs, logger);
    const due = Date.now() + 300;
    await a.cleanups.schedule("twice", "pool", REGION, due);
    await b.cleanups.schedule("twice", "pool", REGION, due);
    await a.cleanups.schedule("twice", "pool", REGION, due);
    expect(await a.cleanups.pending()).toEqual([{ tenantId: "twice", tier: "pool", region: REGION, dueAt: due }]);
    // A later timer: once its job is there, every earlier timer has fired.
    await b.cleanups.schedule("sentinel", "pool", REGION, due + 300);
    await until("the sentinel's clean-up job", async () => (await cleanupJobs(a.jobs, "sentinel")).length === 1);
    await until("no timer left", async () => (await timersLeft(a)) === 0);
    expect(await cleanupJobs(a.jobs, "twice")).toEqual([cleanupJobId({ tenantId: "twice", tier: "pool", region: REGION, dueAt: due })]);
    expect(await a.redis.lrange(`${prefix}:lane:tenant-twice`, 0, -1)).toHaveLength(1);
    const job = await a.jobs.queue.getJob(cleanupJobId({ tenantId: "twice", tier: "pool", region: REGION, dueAt: due }));
    expect(job?.data).toMatchObject({
      kind: "tenant.move-cleanup",
      tenantId: "twice",
      tier: "pool",
      region: REGION,
      trigger: { type: "schedule", name: "move-cleanup" },
    });

    // The same request once more after it fired (a replayed schedule): still one job.
    await b.cleanups.schedule("twice", "pool", REGION, due);
    await until("the replayed timer to fire", async () => (await timersLeft(a)) === 0);
    expect(await cleanupJobs(a.jobs, "twice")).toHaveLength(1);
    expect(await a.redis.lrange(`${prefix}:lane:tenant-twice`, 0, -1)).toHaveLength(1);
  });

  it("outlive the process that set them: a worker started later enqueues the clean-up", async () => {
    const prefix = newPrefix();
    const first = proc(prefix);
    await first.cleanups.schedule("restart", "silo", REGION, Date.now() - 1);
    await stop(first);
    const later = proc(prefix);
    expect(await cleanupJobs(later.jobs, "restart")).toEqual([]);
    expect(await later.cleanups.pending()).toHaveLength(1);
    await later.cleanups.start(later.jobs, logger);
    await until("the clean-up job", async () => (await cleanupJobs(later.jobs, "restart")).length === 1);
  });

  it("cancel drops a pending clean-up; a second schedule moves the due time", async () => {
    const prefix = newPrefix();
    const p = proc(prefix);
    const now = Date.now();
    await p.cleanups.schedule("moved", "pool", REGION, now + 60_000);
    await p.cleanups.schedule("moved", "pool", REGION, now + 120_000);
    await p.cleanups.schedule("back", "silo", REGION, now + 300);
    expect((await p.cleanups.pending()).sort((x, y) => x.dueAt - y.dueAt)).toEqual([
      { tenantId: "back", tier: "silo", region: REGION, dueAt: now + 300 },
      { tenantId: "moved", tier: "pool", region: REGION, dueAt: now + 120_000 },
    ]);
    expect(await p.redis.zcard(`${prefix}:move-cleanup-timers:delayed`)).toBe(2);
    await p.cleanups.cancel("back", "silo");
    await p.cleanups.schedule("sentinel", "pool", REGION, now + 600);
    await p.cleanups.start(p.jobs, logger);
    await until("the sentinel's clean-up job", async () => (await cleanupJobs(p.jobs, "sentinel")).length === 1);
    expect(await cleanupJobs(p.jobs, "back")).toEqual([]);
    expect(await pendingMoveCleanups(p.redis, prefix)).toEqual([{ tenantId: "moved", tier: "pool", region: REGION, dueAt: now + 120_000 }]);
  });

  it("a clean-up deferred after it ran is scheduled again, as a job of its own", async () => {
    const prefix = newPrefix();
    const p = proc(prefix);
    await p.cleanups.start(p.jobs, logger);
    const first = Date.now();
    await p.cleanups.schedule("deferred", "pool", REGION, first);
    await until("the first clean-up job", async () => (await cleanupJobs(p.jobs, "deferred")).length === 1);
    await until("its timer to finish", async () => (await timersLeft(p)) === 0);
    await p.cleanups.schedule("deferred", "pool", REGION, first + 200);
    await until("the deferred clean-up job", async () => (await cleanupJobs(p.jobs, "deferred")).length === 2);
    expect((await cleanupJobs(p.jobs, "deferred")).sort()).toEqual(
      [first, first + 200].map((dueAt) => cleanupJobId({ tenantId: "deferred", tier: "pool", region: REGION, dueAt })).sort(),
    );
  });

  it("takes over the clean-ups of the former sorted set, dropping entries that do not parse", async () => {
    const prefix = newPrefix();
    const p = proc(prefix);
    const legacy = `${prefix}:move-cleanups`;
    const past = Date.now() - 1000;
    await p.redis.zadd(legacy, past, JSON.stringify({ tenantId: "legacy", tier: "silo", region: REGION }));
    await p.redis.zadd(legacy, past, "not json");
    await p.cleanups.start(p.jobs, logger);
    expect(await p.redis.exists(legacy)).toBe(0);
    await until("the migrated clean-up job", async () => (await cleanupJobs(p.jobs, "legacy")).length === 1);
    expect(await cleanupJobs(p.jobs, "legacy")).toEqual([cleanupJobId({ tenantId: "legacy", tier: "silo", region: REGION, dueAt: past })]);
  });
});
