// Deferred clean-ups: after a tier move the source side is kept for a rollback window, then
// destroyed. Each pending clean-up is a BullMQ delayed job in its own small queue
// (MOVE_CLEANUP_TIMERS), with a fixed id per tenant and tier: BullMQ promotes it at its due time,
// exactly one worker of the installation takes it (whichever is up, after any restart), and
// scheduling the same clean-up twice leaves one timer. Its processor only enqueues the
// `tenant.move-cleanup` job, which runs in the tenant's lane like every other job and checks its own
// guards (never the tier the tenant lives on, protection, a backup first). There is no raw stack
// destroy to enqueue: nothing outside the worker can ask for one.
//
// Why a queue of its own instead of delaying the `tenant.move-cleanup` job itself: a job joins its
// stack's lane when it is enqueued, and a job waiting out a day-long rollback window at the head of
// the tenant's lane would hold every other job of that tenant for the whole window.
import { Queue, UnrecoverableError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import { ValidationError } from "../core/errors.ts";
import { regionSchema, tenantIdSchema, tierSchema, type Tier } from "../core/ids.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "../jobs/queue.ts";

/** The timers' queue, under config.queuePrefix beside the jobs queue. */
export const MOVE_CLEANUP_TIMERS = "move-cleanup-timers";

/** Where releases before issue 15 kept pending clean-ups (a sorted set, score = due time); read once to migrate. */
const legacyKey = (prefix: string) => `${prefix}:move-cleanups`;

const timerSchema = z.object({ tenantId: tenantIdSchema, tier: tierSchema, region: regionSchema, dueAt: z.number().int().nonnegative() });

export type PendingCleanup = z.infer<typeof timerSchema>;

/** One timer per tenant and tier: a second schedule moves it instead of adding another. */
export function cleanupTimerId(tenantId: string, tier: Tier): string {
  return `${tenantId}.${tier}`;
}

/**
 * The `tenant.move-cleanup` job a timer enqueues: derived from the timer, so a timer whose worker died
 * after the enqueue and that runs again adds nothing (the jobs queue keeps one job per id).
 */
export function cleanupJobId(c: PendingCleanup): string {
  return `move-cleanup.${c.tenantId}.${c.tier}.${c.dueAt}`;
}

/** Retry delays of a timer whose enqueue failed (Redis busy or away): soon, then at most once a minute. */
const RETRY_MAX_MS = 60_000;
/** Enough retries to outlast a long outage (more than a week at one a minute); a failed timer stays visible. */
const TIMER_ATTEMPTS = 15_000;

const TIMER_OPTIONS = {
  attempts: TIMER_ATTEMPTS,
  backoff: { type: "custom" },
  removeOnComplete: true,
  removeOnFail: false,
} as const;

export interface CleanupSchedulerOptions {
  readonly now?: () => number;
}

export class CleanupScheduler {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #now: () => number;
  readonly #timers: Queue;
  #worker: Worker | undefined;
  #workerConnection: Redis | undefined;

  /** `redis` is a command connection (maxRetriesPerRequest: null, as core/redis.ts workerConnection makes it). */
  constructor(redis: Redis, prefix: string, options: CleanupSchedulerOptions = {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#now = options.now ?? Date.now;
    this.#timers = new Queue(MOVE_CLEANUP_TIMERS, { connection: redis, prefix });
    // Without a listener an 'error' event (Redis going away) would crash the process.
    this.#timers.on("error", () => undefined);
  }

  /**
   * Keeps the tenant's `tier` resources until `dueAt`, then has them cleaned up. Scheduling a
   * pending clean-up again moves it to the new due time (a retried move keeps the whole window).
   */
  async schedule(tenantId: string, tier: Tier, region: string, dueAt: number): Promise<void> {
    const parsed = timerSchema.safeParse({ tenantId, tier, region, dueAt });
    if (!parsed.success) throw new ValidationError(parsed.error.issues[0]?.path.join(".") || "cleanup", parsed.error.issues[0]?.message ?? "invalid clean-up");
    const data = parsed.data;
    const id = cleanupTimerId(tenantId, tier);
    const delay = Math.max(0, dueAt - this.#now());
    const existing = await this.#timers.getJob(id);
    if (existing) {
      const state = await existing.getState();
      if (state === "delayed") {
        try {
          await existing.changeDelay(delay);
          await existing.updateData(data);
        } catch (err) {
          // Promoted in between: it is due and being enqueued, which serves this request too.
          if ((await existing.getState()) === "delayed") throw err;
        }
        return;
      }
      // Due already: it is being (or about to be) enqueued; that clean-up serves this request too.
      if (state === "waiting" || state === "active" || state === "prioritized") return;
      // A timer that gave up (failed) or a finished one still stored holds the id: make room.
      await existing.remove();
    }
    await this.#timers.add("move-cleanup", data, { ...TIMER_OPTIONS, jobId: id, delay });
  }

  /** Drops the tenant's pending clean-up of `tier` (a move back inside the rollback window). */
  async cancel(tenantId: string, tier: Tier): Promise<void> {
    // A timer being processed right now is locked and stays: its job's own guard then refuses to
    // remove the tier the tenant lives on.
    await this.#timers.remove(cleanupTimerId(tenantId, tier));
  }

  /** Clean-ups that wait for their due time (the orphan audit treats their tier as owned). */
  async pending(): Promise<PendingCleanup[]> {
    // Not a timer that gave up (failed): nothing will remove that tier, and the audit should say so.
    const jobs = await this.#timers.getJobs(["delayed", "waiting", "active", "prioritized"]);
    const out: PendingCleanup[] = [];
    for (const job of jobs) {
      const parsed = timerSchema.safeParse(job?.data);
      if (parsed.success) out.push(parsed.data);
    }
    return out;
  }

  /**
   * Starts this process's timer worker: due timers enqueue their `tenant.move-cleanup` job on
   * `jobs`. Clean-ups a release before issue 15 kept in its sorted set are moved to timers first.
   */
  async start(jobs: JobQueue, logger: Logger): Promise<void> {
    await this.#migrateLegacy(logger);
    // BullMQ blocks on the worker's connection: a connection of its own, closed with the worker.
    this.#workerConnection = this.#redis.duplicate();
    this.#worker = new Worker(MOVE_CLEANUP_TIMERS, (job: Job) => this.#fire(job, jobs, logger), {
      connection: this.#workerConnection,
      prefix: this.#prefix,
      concurrency: 1,
      // A worker that dies while firing a timer leaves it to another one (it enqueues by a fixed id).
      maxStalledCount: 10,
      settings: { backoffStrategy: (attemptsMade: number) => Math.min(RETRY_MAX_MS, 1000 * 2 ** Math.min(attemptsMade, 16)) },
    });
    this.#worker.on("error", (err) => logger.warn({ err }, "move clean-up timer worker error"));
    this.#worker.on("failed", (job, err) => {
      if (job) logger.warn({ err, timer: job.id, attemptsMade: job.attemptsMade }, "move clean-up could not be queued; retried later");
    });
  }

  async #fire(job: Job, jobs: JobQueue, logger: Logger): Promise<void> {
    const parsed = timerSchema.safeParse(job.data);
    if (!parsed.success) {
      logger.warn({ timer: job.id }, "skipping a move clean-up timer that does not parse");
      throw new UnrecoverableError("move clean-up timer data does not parse");
    }
    const c = parsed.data;
    const { jobId } = await jobs.enqueue(
      {
        kind: "tenant.move-cleanup",
        trigger: { type: "schedule", name: "move-cleanup" },
        requestedAt: new Date(this.#now()).toISOString(),
        tenantId: c.tenantId,
        tier: c.tier,
        region: c.region,
      },
      { jobId: cleanupJobId(c) },
    );
    logger.info({ jobId, tenantId: c.tenantId, tier: c.tier }, "rollback window over; source resources scheduled for removal");
  }

  /** Moves pending clean-ups of the former sorted set to timers; removes each only once its timer exists. */
  async #migrateLegacy(logger: Logger): Promise<void> {
    const key = legacyKey(this.#prefix);
    const entries = await this.#redis.zrange(key, 0, -1, "WITHSCORES");
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const member = entries[i] as string;
      let c: PendingCleanup;
      try {
        c = timerSchema.parse({ ...(JSON.parse(member) as Record<string, unknown>), dueAt: Math.round(Number(entries[i + 1])) });
      } catch {
        logger.warn("dropping a move clean-up entry that does not parse");
        await this.#redis.zrem(key, member);
        continue;
      }
      try {
        await this.schedule(c.tenantId, c.tier, c.region, c.dueAt);
      } catch (err) {
        logger.warn({ err, tenantId: c.tenantId, tier: c.tier }, "move clean-up not moved to a timer; kept for the next start");
        continue;
      }
      // Several workers may migrate at once: scheduling is idempotent, so each may remove it.
      await this.#redis.zrem(key, member);
    }
  }

  /** Stops this process's timer worker (a timer it was firing is retried by another worker). */
  async close(): Promise<void> {
    await this.#worker?.close();
    this.#workerConnection?.disconnect();
    await this.#timers.close();
  }
}

/** The pending clean-ups of an installation, read without starting a timer worker (the orphan audit). */
export async function pendingMoveCleanups(redis: Redis, prefix: string): Promise<PendingCleanup[]> {
  const scheduler = new CleanupScheduler(redis, prefix);
  try {
    return await scheduler.pending();
  } finally {
    await scheduler.close();
  }
}
