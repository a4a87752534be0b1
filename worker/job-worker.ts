// The BullMQ worker: takes jobs from the one queue, keeps jobs of one stack in order through the
// stack lanes, runs the job's handler with a cancellation signal, and maps typed errors to the
// job's fate (retry with backoff, fail at once, or wait without spending a try).
import { DelayedError, ErrorCode, UnrecoverableError, WaitingChildrenError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import { Counter } from "prom-client";
import { CancelledError, JobLostError, OperationTimeoutError, StackLockedError, StackrailError, TransientError, fateOf } from "../core/errors.ts";
import type { z } from "zod";
import { JOB_KINDS, JOBS_QUEUE, jobDataSchema, type JobData, type JobKind } from "../core/jobs.ts";
import type { Logger, SecretScrubber } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import { JobIndex } from "../jobs/job-index.ts";
import type { BlobStore } from "../core/blob-store.ts";
import { archiveJobLog } from "../jobs/job-log-archive.ts";
import { jobLogWriter, RedisJobLogStore, runWithJobLog, type JobLogStore } from "../jobs/job-logs.ts";
import type { LaneAcquire } from "../jobs/stack-lanes.ts";
import { LeaseLostError, runInJobScope } from "./job-scope.ts";
import { jobFlow, type JobFlow } from "./job-flow.ts";

/** What a handler gets: the validated data, a way to report progress, and a signal to stop. */
export interface JobContext<K extends JobKind = JobKind> {
  readonly jobId: string;
  readonly data: Extract<JobData, { kind: K }>;
  readonly attempt: number;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /**
   * One progress line: into the job's log (visible through the API) and the service log. Never
   * rejects: a line that cannot be written is logged and counted, and a job whose record is gone
   * is cancelled through its signal.
   */
  progress(line: string): Promise<void>;
  /** The job's child jobs (a release rollout's tenant steps), and a way to wait for them without holding a slot. */
  readonly flow?: JobFlow;
}

/** What the steps shared by several handlers need: everything but the kind-specific data. */
export type StepContext = Omit<JobContext, "data">;

export type JobHandler<K extends JobKind = JobKind> = (ctx: JobContext<K>) => Promise<Record<string, unknown>>;
export type JobHandlers = { [K in JobKind]?: JobHandler<K> };

/** A job of an extra kind that passed that kind's schema: its lane and how to run it. */
export interface AcceptedJob {
  readonly stack: string | undefined;
  run(ctx: StepContext): Promise<Record<string, unknown>>;
}

/**
 * A job kind outside the job model of core/jobs.ts, handed to one worker by dependency injection:
 * the tests and the benchmarks register a plain stack operation this way. Production registers
 * none, so the only kinds a production worker runs are the lifecycle kinds, each of whose
 * handlers checks its own guards.
 */
export interface ExtraJobKind {
  /** The job, or null when its data does not match this kind's schema. */
  accept(data: unknown): AcceptedJob | null;
  readonly timeoutMs?: number;
}
export type ExtraJobKinds = Readonly<Record<string, ExtraJobKind>>;

/** An extra job kind from a zod schema, a handler and the lane its jobs run in. */
export function extraJobKind<T>(
  schema: z.ZodType<T>,
  handler: (ctx: StepContext & { readonly data: T }) => Promise<Record<string, unknown>>,
  options: { stackOf?: (data: T) => string | undefined; timeoutMs?: number } = {},
): ExtraJobKind {
  return {
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    accept(raw) {
      const parsed = schema.safeParse(raw);
      if (!parsed.success) return null;
      const data = parsed.data;
      return { stack: options.stackOf?.(data), run: (ctx) => handler({ ...ctx, data }) };
    },
  };
}

const DEFAULT_EXTRA_TIMEOUT_MS = 30 * 60_000;

/** The per-stack FIFO the HTTP edge registers jobs in (jobs/stack-lanes.ts). */
export interface LaneControl {
  tryAcquire(stack: string, jobId: string, leaseMs: number): Promise<boolean>;
  /** tryAcquire() for a job that parks when it cannot acquire: its place, or who waits right behind it. */
  acquire(stack: string, jobId: string, leaseMs: number): Promise<LaneAcquire>;
  /** How long a waiter at this place parks (a safety poll: the lane's release wakes it). */
  parkDelayMs(position: number): number;
  /** Once parked: whether the lane became free meanwhile, and the waiter's place now. */
  parked(stack: string, jobId: string, parkUntil: number): Promise<{ free: boolean; position: number }>;
  /** Shortens a parked waiter's next look to the safety poll (the one right behind a job that acquired). */
  arm(jobId: string): Promise<void>;
  renew(stack: string, jobId: string, leaseMs: number): Promise<void>;
  release(stack: string, jobId: string): Promise<void>;
  isSuperseded(jobId: string): Promise<string | null>;
  isCancelled(jobId: string): Promise<boolean>;
  markCancelled(jobId: string): Promise<void>;
  /** Counts one more wait of the job for a busy stack (kept beside the job, not in its attempts); returns the count. */
  noteWait(jobId: string): Promise<number>;
}

/** How a job waits for a stack whose lock a live process holds: doubling delays, bounded. */
export interface BusyBackoff {
  readonly baseMs: number;
  readonly maxMs: number;
}
export const BUSY_BACKOFF: BusyBackoff = { baseMs: 2_000, maxMs: 60_000 };

/** The delay before a job's n-th look (n ≥ 1) at a busy stack; a holder's own deadline can shorten it. */
export function busyDelayMs(waits: number, backoff: BusyBackoff, hintMs?: number): number {
  const exponential = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(30, Math.max(0, waits - 1)));
  return hintMs !== undefined && hintMs > 0 ? Math.max(250, Math.min(exponential, hintMs)) : exponential;
}

/** What a round trip to Redis that took too long resolves to. */
const NO_ANSWER: unique symbol = Symbol("no answer");

/** BullMQ's answer for a job whose record is gone (removed, or lost with Redis's data). */
function recordMissing(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === ErrorCode.JobNotExist;
}

/** A counter on the worker's registry, shared by every job worker of the process. */
function counter(metrics: Metrics, name: string, help: string, labelNames: string[] = []): Counter {
  const existing = metrics.registry.getSingleMetric(name);
  return existing instanceof Counter ? existing : new Counter({ name, help, labelNames, registers: [metrics.registry] });
}

export interface JobWorkerDeps {
  readonly connection: Redis;
  readonly prefix: string;
  readonly concurrency: number;
  readonly lanes: LaneControl;
  readonly handlers: JobHandlers;
  /** Kinds beyond the job model (tests, benchmarks); a production worker has none. */
  readonly extraKinds?: ExtraJobKinds;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly scrubber: SecretScrubber;
  /** The stack a job changes, as registered at enqueue; undefined for jobs without a stack. */
  readonly stackOf: (job: Job) => string | undefined;
  /** Per-kind time limit; the operation is cancelled when it expires. */
  readonly timeoutMs: (kind: JobKind) => number;
  readonly laneLeaseMs?: number;
  /** BullMQ lock duration and stalled-job check interval (crash recovery speed). */
  readonly lockDurationMs?: number;
  readonly stalledIntervalMs?: number;
  /**
   * Fencing: a running job whose lock this worker has not been able to extend for longer than the
   * lock duration less this margin (cut off from the queue's Redis, frozen) is cancelled the
   * engine's way and writes nothing more (default a quarter of the lock duration): its lock runs
   * out, and another worker takes the job over, only after the margin.
   */
  readonly leaseMarginMs?: number;
  /** How often a running job extends and checks its lock itself (default a tenth of the lock duration, 100 ms to 5 s). */
  readonly leaseCheckMs?: number;
  /** Times a job may lose its worker (killed, frozen past its lock) before it fails for good (STACKRAIL_MAX_JOB_CRASHES). */
  readonly maxStalledCount?: number;
  /** How often a job that waits (fate `wait`) looks again; with `laneWait: "poll"`, also a job that waits for its stack. */
  readonly laneRetryMs?: number;
  /**
   * How a job waits for its stack's lane: `park` (default) delays it until the lane's release wakes
   * it, with a slow safety poll; `poll` is the old behaviour (re-delay every laneRetryMs), kept
   * only as the benchmark's baseline.
   */
  readonly laneWait?: "park" | "poll";
  /** Signals used by the cancel API: a running job whose id resolves true is aborted. */
  readonly cancelRequested?: (jobId: string) => Promise<boolean>;
  readonly cancelPollMs?: number;
  readonly deadLetters?: { add(jobId: string, reason: string): Promise<void> };
  /** Waits for a locked stack (default BUSY_BACKOFF). */
  readonly busyBackoff?: BusyBackoff;
  /** How often a running job checks that its record still exists (a Redis restart may lose it). */
  readonly recordCheckMs?: number;
  /** Where each job's full log goes (engine output and progress lines); default Redis, beside the queue. */
  readonly jobLogs?: JobLogStore;
  /**
   * Where a finished job's log is archived (jobs/job-log-archive.ts), its stream then expiring soon;
   * without it (or with a jobLogs that is not the Redis store) the stream lives as long as the job.
   */
  readonly logArchive?: BlobStore;
}

export interface JobWorker {
  readonly worker: Worker;
  /** Stop taking jobs; let running ones finish within graceMs, then cancel them cleanly. */
  close(graceMs: number): Promise<void>;
}

/** Error codes a failed job carries, read back by the job view (`code: message`). */
export function failureReason(error: unknown, scrubber: SecretScrubber): string {
  const code = error instanceof StackrailError ? error.code : "internal";
  const message = error instanceof Error ? error.message : String(error);
  return scrubber.scrub(`${code}: ${message}`);
}

export function createJobWorker(deps: JobWorkerDeps): JobWorker {
  const leaseMs = deps.laneLeaseMs ?? 60_000;
  const laneRetryMs = deps.laneRetryMs ?? 500;
  const busyBackoff = deps.busyBackoff ?? BUSY_BACKOFF;
  const laneWait = deps.laneWait ?? "park";
  /**
   * Parks a job behind its lane: delayed by the lanes' delay for its place. The release that wakes
   * it may come before it is delayed (it finds nothing to promote), so once delayed it looks once
   * more and promotes itself if the lane is free for it; if it moved up meanwhile, it shortens its
   * delay to its new place's.
   */
  const park = async (job: Job, token: string | undefined, stack: string, position: number): Promise<void> => {
    const jobId = job.id ?? "";
    const delayMs = deps.lanes.parkDelayMs(position);
    const until = Date.now() + delayMs;
    await job.moveToDelayed(until, token);
    try {
      const now = await deps.lanes.parked(stack, jobId, until);
      if (now.free) await job.promote();
      else if (now.position >= 0 && deps.lanes.parkDelayMs(now.position) < delayMs) await job.changeDelay(deps.lanes.parkDelayMs(now.position));
    } catch {
      // Promoted meanwhile by the releaser, or Redis away for a moment: the delay still brings it back.
    }
  };
  const progressFailures = counter(deps.metrics, "stackrail_job_progress_write_failures_total", "Progress lines that could not be written to a job's log", [
    "reason",
  ]);
  const leaseLosses = counter(
    deps.metrics,
    "stackrail_job_lease_lost_total",
    "Running jobs this worker stopped because it could not keep their lock (cut off from Redis, or the job was taken over)",
  );
  const lockMs = deps.lockDurationMs ?? 60_000;
  const leaseMarginMs = deps.leaseMarginMs ?? Math.round(lockMs / 4);
  const leaseCheckMs = deps.leaseCheckMs ?? Math.max(100, Math.min(5_000, Math.round(lockMs / 10)));
  // A round trip that takes longer than this is no answer (a cut connection queues commands forever).
  const leaseAnswerMs = Math.max(leaseCheckMs, Math.min(2_000, Math.round(lockMs / 4)));
  if (leaseMarginMs >= lockMs) throw new TypeError("the lease margin must be shorter than the job lock duration");
  const busyWaits = counter(deps.metrics, "stackrail_stack_busy_waits_total", "Times a job waited for a stack locked by a live process");
  const jobKey = (jobId: string): string => `${deps.prefix}:${JOBS_QUEUE}:${jobId}`;
  const running = new Map<string, AbortController>();
  const jobLogs = deps.jobLogs ?? new RedisJobLogStore(deps.connection, deps.prefix);
  const jobIndex = new JobIndex(deps.connection, deps.prefix);
  /** Archives a finished job's log; a failure is logged and leaves the stream with its normal TTL. */
  const archiveLog = async (jobId: string, log: Logger): Promise<void> => {
    if (!deps.logArchive || !(jobLogs instanceof RedisJobLogStore)) return;
    try {
      await archiveJobLog(jobLogs, deps.logArchive, jobId);
    } catch (err) {
      progressFailures.inc({ reason: "job_log_archive" });
      log.warn({ err, blobStore: deps.logArchive.location }, "could not archive the job's log; it stays in Redis until the job's record expires");
    }
  };
  const extraKinds = deps.extraKinds ?? {};
  for (const name of Object.keys(extraKinds)) {
    if ((JOB_KINDS as readonly string[]).includes(name)) throw new TypeError(`extra job kind ${name} would shadow a lifecycle kind`);
  }

  /**
   * What a job is, decided before it touches anything (its lane included): its validated data,
   * its handler, its lane and time limit. A job of a kind this worker does not know, or whose data
   * does not match its kind, fails at once without a retry: nothing can make it valid later.
   */
  const prepare = (job: Job): { kind: string; stack: string | undefined; limitMs: number; run: (ctx: StepContext) => Promise<Record<string, unknown>> } => {
    const rawKind = (job.data as { kind?: unknown } | null | undefined)?.kind;
    const extra = typeof rawKind === "string" && Object.hasOwn(extraKinds, rawKind) ? extraKinds[rawKind] : undefined;
    if (extra && typeof rawKind === "string") {
      const accepted = extra.accept(job.data);
      if (!accepted) throw new UnrecoverableError(`invalid: job data does not match its schema (kind ${rawKind})`);
      return { kind: rawKind, stack: accepted.stack, limitMs: extra.timeoutMs ?? DEFAULT_EXTRA_TIMEOUT_MS, run: (ctx) => accepted.run(ctx) };
    }
    const parsed = jobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const unknownKind = issue?.path.join(".") === "kind";
      throw new UnrecoverableError(
        unknownKind ? "invalid: not a job kind this worker runs" : `invalid: job data does not match its schema (${issue?.path.join(".") ?? "?"})`,
      );
    }
    const data = parsed.data;
    const handler = deps.handlers[data.kind] as JobHandler | undefined;
    if (!handler) throw new UnrecoverableError(`invalid: no handler for job kind ${data.kind}`);
    return { kind: data.kind, stack: deps.stackOf(job), limitMs: deps.timeoutMs(data.kind), run: (ctx) => handler({ ...ctx, data }) };
  };

  const processor = async (job: Job, token?: string): Promise<Record<string, unknown>> => {
    const jobId = job.id ?? "";
    const trigger = (job.data as { trigger?: { type?: string; deliveryId?: string } }).trigger;
    // Every line of a job carries its id, and the GitHub delivery that caused it when there is one.
    const log = deps.logger.child({
      jobId,
      kind: (job.data as { kind?: string }).kind,
      ...(trigger?.type === "webhook" && trigger.deliveryId ? { deliveryId: trigger.deliveryId } : {}),
    });
    // GET /v1/jobs lists jobs from this index; the edge's sweep adds jobs that have not run yet.
    await jobIndex.add(job).catch((err: unknown) => log.warn({ err }, "could not index the job for the job list"));
    let prepared: ReturnType<typeof prepare>;
    try {
      prepared = prepare(job);
    } catch (err) {
      log.warn({ reason: deps.scrubber.scrub(err instanceof Error ? err.message : String(err)) }, "job refused before it ran");
      throw err;
    }
    const kind = prepared.kind;

    const supersededBy = await deps.lanes.isSuperseded(jobId);
    if (supersededBy) {
      log.info({ supersededBy }, "job superseded before it ran");
      deps.metrics.jobsTotal.inc({ kind, state: "superseded" });
      await archiveLog(jobId, log);
      return { superseded: true, supersededBy };
    }

    if (await deps.lanes.isCancelled(jobId)) {
      log.info("job cancelled before it ran");
      deps.metrics.jobsTotal.inc({ kind, state: "cancelled" });
      await archiveLog(jobId, log);
      return { cancelled: true };
    }

    const stack = prepared.stack;
    if (stack && laneWait === "poll") {
      if (!(await deps.lanes.tryAcquire(stack, jobId, leaseMs))) {
        // Another job of this stack is ahead: look again soon (the benchmark's baseline).
        await job.moveToDelayed(Date.now() + laneRetryMs, token);
        throw new DelayedError();
      }
    } else if (stack) {
      const lane = await deps.lanes.acquire(stack, jobId, leaseMs);
      if (!lane.acquired) {
        // Another job of this stack is ahead: park without spending an attempt, until the lane's
        // release wakes us (or the safety poll, should that wake-up be lost).
        await park(job, token, stack, lane.position);
        throw new DelayedError();
      }
      // The waiter right behind looks again within one safety poll, should our release never wake it.
      if (lane.next) await deps.lanes.arm(lane.next);
    }

    const controller = new AbortController();
    running.set(jobId, controller);
    // The record can vanish under a running job (removed from the dashboard, a Redis restart that
    // lost data). That is a cancel: the operation stops the engine's way, and nothing is retried.
    let lost = false;
    const recordGone = (): void => {
      if (lost) return;
      lost = true;
      log.error({ stack }, "job record is gone; cancelling its operation");
      if (!controller.signal.aborted) controller.abort(new JobLostError("the job's record is gone (removed, or lost in a Redis restart)"));
    };
    const recordCheck = setInterval(() => {
      deps.connection.exists(jobKey(jobId)).then(
        (n) => {
          if (n === 0) recordGone();
        },
        // Redis away is not a lost record: BullMQ's own lock handles an outage.
        () => undefined,
      );
    }, deps.recordCheckMs ?? 1_000);
    // Fencing. BullMQ extends the job's lock in the background; should this worker be cut off from
    // the queue's Redis (or frozen), the lock runs out and another worker takes the job over. This
    // worker then must stop acting: a watchdog extends the lock itself and, once it has not
    // managed to for longer than the lock duration less the margin, cancels the operation the
    // engine's way (the cancel's path) and marks the job fenced: no commit, no record, no report.
    // The side effects themselves check again right before they happen (assertOwned, below).
    let fenced: LeaseLostError | undefined;
    // Set once the handler returned or threw: the job's own moves (delayed, waiting for children)
    // drop its lock on purpose from then on.
    let handlerDone = false;
    let leaseUntil = Date.now() + lockMs;
    let leaseSeen = Date.now();
    const loseLease = (why: string): LeaseLostError => {
      if (fenced) return fenced;
      fenced = new LeaseLostError(`this worker lost the job's lock (${why}); another worker takes the job over`);
      leaseLosses.inc();
      log.error({ stack, why, lastRenewedAgoMs: Date.now() - leaseSeen }, "job lock lost; cancelling its operation, writing nothing more for it");
      if (!controller.signal.aborted) controller.abort(fenced);
      return fenced;
    };
    const answered = <T>(p: Promise<T>): Promise<T | typeof NO_ANSWER> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<typeof NO_ANSWER>((resolve) => {
        timer = setTimeout(() => resolve(NO_ANSWER), leaseAnswerMs);
      });
      return Promise.race([p, late]).finally(() => clearTimeout(timer));
    };
    /** One extension of the job's lock (BullMQ's own script: it checks the token): owned, lost, or no answer. */
    const extendLease = async (): Promise<"owned" | "lost" | "unknown"> => {
      if (fenced || lost) return "lost";
      const sent = Date.now();
      try {
        const extended = await answered(job.extendLock(token ?? "", lockMs));
        if (extended === NO_ANSWER) return "unknown";
        if (handlerDone) return "owned";
        if (extended) {
          leaseUntil = Math.max(leaseUntil, sent + lockMs);
          leaseSeen = Date.now();
          return "owned";
        }
        // Not our lock any more: a record that is gone is a lost job; otherwise the lock ran out
        // or another worker holds it now.
        const exists = await answered(deps.connection.exists(jobKey(jobId)));
        if (exists === 0) recordGone();
        else loseLease("its lock is no longer this worker's");
        return "lost";
      } catch {
        return "unknown";
      }
    };
    let leaseInFlight = false;
    let lastTick = Date.now();
    // This process itself stalled (a loaded machine, SIGSTOP): one round trip decides, not the clock
    // alone (a lock that ran out meanwhile answers "lost" at once).
    let awakeSince = 0;
    const leaseWatch = setInterval(() => {
      const now = Date.now();
      if (now - lastTick > 2 * leaseCheckMs + 100) awakeSince = now;
      lastTick = now;
      if (fenced || lost || handlerDone) return;
      // A stall buys one round trip, never time past the lock's own end (a starved process that
      // stalls again and again must still stop once its lock is gone).
      if (now >= Math.max(leaseUntil - leaseMarginMs, Math.min(awakeSince + leaseAnswerMs, leaseUntil))) {
        loseLease(`not renewed for ${Math.round((Date.now() - leaseSeen) / 1000)}s`);
        return;
      }
      if (leaseInFlight) return;
      leaseInFlight = true;
      void extendLease().finally(() => {
        leaseInFlight = false;
      });
    }, leaseCheckMs);
    /** The fencing check before a side effect: the lock is this worker's, extended just now. */
    const assertOwned = async (): Promise<void> => {
      for (;;) {
        if (fenced) throw fenced;
        if (lost) throw controller.signal.reason instanceof JobLostError ? controller.signal.reason : new JobLostError("the job's record is gone");
        const state = await extendLease();
        if (state === "owned") return;
        if (state === "unknown" && Date.now() >= leaseUntil - leaseMarginMs) throw loseLease("could not confirm its lock before a side effect");
        if (state === "unknown") await new Promise((resolve) => setTimeout(resolve, Math.min(leaseCheckMs, 500)));
      }
    };
    // A fenced job's log gets nothing more (its new owner writes there).
    const ownLog: JobLogStore = {
      append: (id, entries) => (fenced ? Promise.resolve() : jobLogs.append(id, entries)),
      read: (id, options) => jobLogs.read(id, options),
    };
    const jobLog = jobLogWriter(ownLog, jobId, {
      scrubber: deps.scrubber,
      onError: (err) => {
        progressFailures.inc({ reason: "job_log" });
        log.warn({ err }, "could not write to the job's log");
      },
    });
    jobLog.progress(`attempt ${job.attemptsMade + 1} of ${job.opts.attempts ?? 1} started`);
    const progress = async (line: string): Promise<void> => {
      const clean = deps.scrubber.scrub(line);
      log.info({ line: clean }, "progress");
      if (lost || fenced) return;
      jobLog.progress(line);
      try {
        // Bounded: a handler does not hang on a line while Redis does not answer (a partition).
        if ((await answered(job.log(clean))) === NO_ANSWER) progressFailures.inc({ reason: "no_answer" });
      } catch (err) {
        const missing = recordMissing(err);
        progressFailures.inc({ reason: missing ? "record_gone" : "error" });
        if (missing) recordGone();
        else log.warn({ err }, "could not write a progress line to the job's log");
      }
    };
    const timeout = setTimeout(
      () => controller.abort(new OperationTimeoutError(`${kind} exceeded its time limit of ${Math.round(prepared.limitMs / 1000)}s`)),
      prepared.limitMs,
    );
    const renewer = stack
      ? setInterval(
          () => {
            deps.lanes.renew(stack, jobId, leaseMs).catch((err: unknown) => log.warn({ err }, "could not renew stack lease"));
          },
          Math.min(leaseMs / 3, 2000),
        )
      : undefined;
    // A cancel through the API is a flag in Redis; it is looked at often so that a short
    // operation is still stopped rather than finishing first.
    const cancelPoll = deps.cancelRequested
      ? setInterval(() => {
          deps.cancelRequested?.(jobId).then(
            (yes) => {
              if (yes && !controller.signal.aborted) controller.abort(new CancelledError("cancelled through the API"));
            },
            () => undefined,
          );
        }, deps.cancelPollMs ?? 250)
      : undefined;

    let releaseLane = true;
    // Set once the job has reached its final state: its log is then archived.
    let finished = false;
    try {
      log.info({ stack, attempt: job.attemptsMade + 1 }, "job started");
      deps.metrics.jobsTotal.inc({ kind, state: "running" });
      const result = await runInJobScope({ jobId, assertOwned }, () =>
        runWithJobLog(jobLog, () =>
          prepared.run({
            jobId,
            attempt: job.attemptsMade + 1,
            signal: controller.signal,
            logger: log,
            progress,
            flow: jobFlow(job, token),
          }),
        ),
      ).finally(() => {
        handlerDone = true;
      });
      // Finished after the lock was lost: the result is not this worker's to report.
      if (fenced) throw fenced;
      // A job without a record cannot complete (BullMQ would stop its worker over the missing key):
      // a handler that finished regardless ends as lost.
      if (lost || (await deps.connection.exists(jobKey(jobId)).catch(() => 1)) === 0) {
        recordGone();
        throw controller.signal.reason instanceof JobLostError ? controller.signal.reason : new JobLostError("the job's record is gone");
      }
      deps.metrics.jobsTotal.inc({ kind, state: "succeeded" });
      jobLog.progress("job succeeded");
      finished = true;
      log.info("job succeeded");
      return deps.scrubber.scrubValue(result);
    } catch (thrown) {
      handlerDone = true;
      // The handler moved its job itself (waiting for its children, delayed): that move took the
      // lock, which the watchdog may have seen gone before the handler threw.
      if (thrown instanceof WaitingChildrenError || thrown instanceof DelayedError) fenced = undefined;
      if (fenced) {
        // Another worker owns the job (or will, once the lock runs out): nothing is recorded, no
        // lane released, no log written. Should the lock still be this worker's after all (Redis
        // came back in time), the job goes back to the queue without spending an attempt.
        releaseLane = false;
        log.warn({ stack, reason: failureReason(fenced, deps.scrubber) }, "job given up: its lock was lost");
        const back = await answered(job.moveToDelayed(Date.now() + laneRetryMs, token).then(() => true)).catch(() => false);
        if (back === true) throw new DelayedError();
        throw fenced;
      }
      if (thrown instanceof DelayedError || thrown instanceof UnrecoverableError) throw thrown;
      // Parked until its children are done (flow.waitForChildren): it keeps its place in its lane.
      if (thrown instanceof WaitingChildrenError) {
        releaseLane = false;
        throw thrown;
      }
      // A job stopped on purpose (cancel, time limit, lost record) ends for that reason, even if
      // what it ran into meanwhile was a busy stack.
      const stopReason: unknown = controller.signal.reason;
      const error = controller.signal.aborted && fateOf(thrown) === "wait" && stopReason instanceof StackrailError ? stopReason : thrown;
      const fate = fateOf(error);
      const reason = failureReason(error, deps.scrubber);
      if (lost || error instanceof JobLostError) {
        // Nothing to record it in: the service log says what happened, and the lane moves on.
        deps.metrics.jobsTotal.inc({ kind, state: "lost" });
        log.error({ stack, reason, state: "lost" }, "job lost: its record is gone, its operation was cancelled");
        throw new UnrecoverableError(reason);
      }
      if (fate === "wait") {
        releaseLane = false;
        if (error instanceof StackLockedError) {
          // A stack locked by a live process: look again later, each time later (bounded), and say
          // on whom the job waits. Counted beside the job, so no attempt is spent.
          const waits = await deps.lanes.noteWait(jobId);
          const delayMs = busyDelayMs(waits, busyBackoff, error.retryAfterMs);
          busyWaits.inc();
          await progress(`waiting: ${error.message}; looking again in ${Math.ceil(delayMs / 1000)}s (wait ${waits})`);
          log.info({ reason, waits, delayMs, holder: error.holder }, "job waits for a locked stack");
          await job.moveToDelayed(Date.now() + delayMs, token);
          throw new DelayedError();
        }
        log.info({ reason }, "job waits");
        await job.moveToDelayed(Date.now() + laneRetryMs * 4, token);
        throw new DelayedError();
      }
      if (fate === "retry" && job.attemptsMade + 1 < (job.opts.attempts ?? 1)) {
        // Keep our place at the head of the lane so the retry runs before later jobs of the stack.
        releaseLane = false;
        jobLog.progress(`attempt failed, will retry: ${reason}`);
        log.warn({ reason }, "job failed, will retry");
        throw new Error(reason, { cause: thrown });
      }
      const state = error instanceof CancelledError || error instanceof OperationTimeoutError ? "cancelled" : "failed";
      deps.metrics.jobsTotal.inc({ kind, state });
      if (state === "cancelled") await deps.lanes.markCancelled(jobId);
      // Transient failures that used up their retries wait in the dead-letter list for an operator.
      else if (fate === "retry") await deps.deadLetters?.add(jobId, reason);
      jobLog.progress(`job ${state}: ${reason}`);
      finished = true;
      log.error({ reason }, "job failed");
      throw new UnrecoverableError(reason);
    } finally {
      handlerDone = true;
      clearInterval(leaseWatch);
      // Stored before BullMQ records the end: a reader that sees the job final has its whole log.
      if (!fenced) await jobLog.flush();
      clearTimeout(timeout);
      clearInterval(recordCheck);
      if (renewer) clearInterval(renewer);
      if (cancelPoll) clearInterval(cancelPoll);
      running.delete(jobId);
      if (stack && releaseLane && !fenced) await deps.lanes.release(stack, jobId);
      // After the lane's release (the next job of the stack need not wait for the blob store), and
      // before BullMQ records the end: a reader that sees the job final finds its archive.
      if (finished && !fenced) await archiveLog(jobId, log);
    }
  };

  const worker = new Worker(JOBS_QUEUE, processor, {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
    autorun: true,
    // A Pulumi operation keeps the event loop free, but give stalled detection room on busy machines.
    lockDuration: lockMs,
    stalledInterval: deps.stalledIntervalMs ?? 30_000,
    maxStalledCount: deps.maxStalledCount ?? 10,
  });
  worker.on("error", (err) => deps.logger.error({ err }, "worker error"));

  return {
    worker,
    async close(graceMs: number): Promise<void> {
      const closing = worker.close();
      const timer = setTimeout(() => {
        // A job stopped by shutdown is not the user's cancel: it fails with a retryable error and runs again.
        for (const c of running.values()) c.abort(new TransientError("service shutting down"));
      }, graceMs);
      try {
        await closing;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
