// The enqueue side of the job queue: one BullMQ queue (JOBS_QUEUE, under config.queuePrefix)
// that every job goes through, with per-stack lanes (stack-lanes.ts) for ordering and
// coalescing, and the read model that `GET /v1/jobs/:id` answers with.
import { randomUUID } from "node:crypto";
import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { TransientError, ValidationError } from "../core/errors.ts";
import { previewStackName, regionStackName, tenantStackName } from "../core/ids.ts";
import { JOBS_QUEUE, jobDataSchema, triggerSchema, type JobData, type JobState, type Trigger } from "../core/jobs.ts";
import type { SecretScrubber } from "../core/logger.ts";
import { ROLLOUT_KEY_TTL_SECONDS, rolloutAwaitingKey, rolloutHandoverKey } from "./rollout-control.ts";
import { StackLanes } from "./stack-lanes.ts";

const SEVEN_DAYS_S = 7 * 24 * 3600;

/** Lane used for release rollouts: one rollout at a time, in order (not a Pulumi stack name). */
export const RELEASES_LANE = "releases";

/** Options every job is added with (the worker relies on `attempts` to know when a failure is final). */
export const JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: "exponential", delay: 5_000 },
  removeOnComplete: { age: SEVEN_DAYS_S },
  removeOnFail: { age: SEVEN_DAYS_S },
} as const;

/**
 * The lane a job runs in: the stack it changes. Tenant functions share the tenant's lane so they never
 * run before the tenant exists; rollouts share one lane; a refusal comment changes no stack.
 */
export function stackFor(data: JobData): string | undefined {
  switch (data.kind) {
    case "tenant.provision":
    case "tenant.deprovision":
    case "tenant.upgrade":
    case "tenant.move":
    case "tenant.function":
    case "tenant.drift":
    case "tenant.move-cleanup":
      return tenantStackName(data.tenantId);
    case "preview.up":
    case "preview.destroy":
      return previewStackName(data.repo.name, data.pr);
    case "release.rollout":
      return RELEASES_LANE;
    case "release.tenant-step":
      // A rollout step changes the tenant's stack: it queues with the tenant's own jobs.
      return tenantStackName(data.tenantId);
    case "region.provision":
      return regionStackName(data.region);
    case "comment.refusal":
      return undefined;
  }
}

export interface JobView {
  id: string;
  /** A JobKind; typed as string because old records may carry kinds this version does not know. */
  kind: string;
  stack: string | null;
  state: JobState;
  supersededBy?: string;
  progress: string[];
  result?: unknown;
  error?: string;
  trigger: (Trigger & { pr?: { repo: string; number: number } }) | null;
  /** The job's own identifiers (tenant id, version, PR, ...): job data never holds a secret. */
  data: Record<string, unknown>;
  attempts: number;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface JobQueueOptions {
  /** A connection for enqueueing; the edge uses one with `enableOfflineQueue: false` and short timeouts. */
  connection: Redis;
  prefix: string;
  /** Upper bound for one add, so that the HTTP edge answers within a second even when Redis hangs. */
  addTimeoutMs?: number;
  scrubber?: SecretScrubber;
}

export interface EnqueueOptions {
  stack?: string;
  /** A deterministic id (e.g. derived from a GitHub delivery id) makes a retried enqueue a no-op. */
  jobId?: string;
  /** Hold the job this long before it may run (debouncing bursts: a newer job supersedes it meanwhile). */
  delayMs?: number;
}

/** A validated job with its id and lane, ready to add (JobQueue.prepare). */
export interface PreparedJob {
  readonly data: JobData;
  readonly jobId: string;
  readonly stack?: string;
  readonly delayMs?: number;
}

const JOB_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** Adds holderJobId at the back of a lane unless it is there already. */
const HOLD = `
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[1]) end
return 1
`;

export class JobQueue {
  readonly queue: Queue;
  readonly lanes: StackLanes;
  readonly #addTimeoutMs: number;
  readonly #scrubber: SecretScrubber | undefined;
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(options: JobQueueOptions) {
    this.#redis = options.connection;
    this.#prefix = options.prefix;
    // No version check on this connection: BullMQ runs it once (an INFO) when the queue is built and
    // keeps its failure for good, so an INFO that outlived the edge connection's short command
    // timeout on a busy machine failed every later add of the process (503 until restarted). The
    // workers' own connections still check the server's version.
    this.queue = new Queue(JOBS_QUEUE, { connection: options.connection, prefix: options.prefix, skipVersionCheck: true });
    // Without a listener an 'error' event (Redis going away) would crash the process.
    this.queue.on("error", () => undefined);
    this.lanes = new StackLanes(options.connection, options.prefix);
    this.#addTimeoutMs = options.addTimeoutMs ?? 800;
    this.#scrubber = options.scrubber;
  }

  /**
   * Validates and durably adds one job; resolves only once Redis has it. Registers the job in its
   * stack's lane before the add (and takes it out again if the add fails); a `preview.up` (or
   * `preview.destroy`) then supersedes older waiting `preview.up` jobs of the same stack.
   * Throws ValidationError for bad data and TransientError when Redis cannot take the job.
   */
  async enqueue(data: JobData, options: EnqueueOptions = {}): Promise<{ jobId: string; superseded: string[] }> {
    const job = this.prepare(data, options);
    try {
      if (job.stack) await this.#bounded(this.lanes.register(job.stack, job.jobId, { kind: job.data.kind }));
    } catch (err) {
      throw new TransientError("the queue cannot take the job now", { cause: err });
    }
    await this.addPrepared(job);
    return { jobId: job.jobId, superseded: await this.supersedeFor(job) };
  }

  /**
   * The validation half of enqueue(): the job as it will be added, with its id and lane. Throws
   * ValidationError for bad data. The edge registers the lane itself (in the round trip of its
   * delivery claim, lanes.registerOn), then calls addPrepared() and supersedeFor().
   */
  prepare(data: JobData, options: EnqueueOptions = {}): PreparedJob {
    const parsed = jobDataSchema.safeParse(data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ValidationError(issue?.path.join(".") || "data", issue?.message ?? "invalid job data");
    }
    const jobId = options.jobId ?? randomUUID();
    if (!JOB_ID_PATTERN.test(jobId) || /^\d+$/.test(jobId)) throw new ValidationError("jobId", "must match [A-Za-z0-9_.-]{1,128} and not be a number");
    let stack: string | undefined;
    try {
      stack = options.stack ?? stackFor(parsed.data);
    } catch {
      throw new ValidationError("repo.name", "has no characters usable in a stack name");
    }
    return { data: parsed.data, jobId, ...(stack ? { stack } : {}), ...(options.delayMs ? { delayMs: options.delayMs } : {}) };
  }

  /**
   * Durably adds a prepared job (a no-op for an id that exists); resolves only once Redis has it.
   * If the add fails, the job's lane entry is taken out again (so a retry with the same id
   * registers again) and TransientError is thrown.
   */
  async addPrepared(job: PreparedJob): Promise<void> {
    try {
      await this.#bounded(this.queue.add(job.data.kind, job.data, { ...JOB_OPTIONS, jobId: job.jobId, ...(job.delayMs ? { delay: job.delayMs } : {}) }));
    } catch (err) {
      if (job.stack) await this.#bounded(this.lanes.unregister(job.stack, job.jobId)).catch(() => undefined);
      throw new TransientError("the queue cannot take the job now", { cause: err });
    }
  }

  /**
   * After the add: a `preview.up` or `preview.destroy` supersedes older waiting `preview.up` jobs
   * of its stack, a `release.rollout` older releases. Best effort, never throws: if it fails, the
   * older jobs simply run first; order is still right. Returns the superseded ids.
   */
  async supersedeFor(job: PreparedJob): Promise<string[]> {
    const { stack, jobId } = job;
    if (stack && (job.data.kind === "preview.up" || job.data.kind === "preview.destroy")) {
      // Only the latest head runs; a destroy makes waiting builds pointless too.
      return this.#bounded(this.lanes.supersedeOlder(stack, jobId, "preview.up")).catch(() => []);
    }
    if (stack && job.data.kind === "release.rollout") {
      // A newer release replaces releases that have not started, and asks a started one to stop at
      // its next wave boundary and hand over (a push storm on the default branch rolls out once).
      return this.#bounded(this.#supersedeReleases(stack, jobId)).catch(() => []);
    }
    return [];
  }

  async #supersedeReleases(stack: string, jobId: string): Promise<string[]> {
    const superseded = await this.lanes.supersedeOlder(stack, jobId, "release.rollout");
    const older = await this.lanes.entries(stack);
    // A release no longer in the lane (itself superseded meanwhile) hands nothing over: every
    // entry would be newer than it.
    if (!older.includes(jobId)) return superseded;
    const tx = this.#redis.multi();
    for (const id of older) {
      if (id === jobId) break;
      tx.set(rolloutHandoverKey(this.#prefix, id), jobId, "EX", ROLLOUT_KEY_TTL_SECONDS);
    }
    await tx.exec();
    return superseded;
  }

  /**
   * Adds a child job of `parent` (a rollout's tenant step) in its stack's lane, like enqueue();
   * its failure does not fail the parent, which reads it among its children's failures. With
   * `holdFor`, that job's place (holdLane) is taken right behind the child, before the child
   * exists. Adding an id that exists already changes nothing. Worker side: not bounded by the
   * edge's add timeout.
   */
  async enqueueChild(data: JobData, options: { jobId: string; parent: { id: string; queue: string }; holdFor?: string }): Promise<void> {
    const job = jobDataSchema.parse(data);
    const stack = stackFor(job);
    if (stack) await this.lanes.register(stack, options.jobId, { kind: job.kind });
    if (stack && options.holdFor) await this.holdLane(stack, options.holdFor);
    try {
      await this.queue.add(job.kind, job, { ...JOB_OPTIONS, jobId: options.jobId, parent: options.parent, ignoreDependencyOnFailure: true });
    } catch (err) {
      if (stack) await this.lanes.unregister(stack, options.jobId).catch(() => undefined);
      throw new TransientError("the queue cannot take the job now", { cause: err });
    }
  }

  /**
   * Keeps a place for holderJobId in another stack's lane: later jobs of that stack wait until
   * releaseHold(), or until the holder has finished (the lane drops finished heads by itself). A
   * rollout holds each tenant's lane from its step to the wave's commit.
   */
  async holdLane(stack: string, holderJobId: string): Promise<void> {
    await this.#redis.eval(HOLD, 1, this.lanes.laneKey(stack), holderJobId);
  }

  async releaseHold(stack: string, holderJobId: string): Promise<void> {
    await this.lanes.release(stack, holderJobId);
  }

  /** The API's view of a job, or null when no such job exists (or its record expired). */
  async getJobView(id: string, options: { readonly progress?: boolean } = {}): Promise<JobView | null> {
    if (!JOB_ID_PATTERN.test(id)) return null;
    // State first, then the record: the record is then at least as new as the state (a job seen as
    // running always has its start time, a succeeded one its result).
    const bullState = await this.queue.getJobState(id);
    if (bullState === "unknown") return null;
    const job = await Job.fromId<Record<string, unknown>, unknown>(this.queue, id);
    if (!job) return null;
    // A list page shows no progress lines: reading 500 of them per listed job would be thrown away.
    const [meta, logs] = await Promise.all([
      this.lanes.meta(id),
      options.progress === false ? Promise.resolve({ logs: [] as string[], count: 0 }) : this.queue.getJobLogs(id, 0, 499, true),
    ]);

    // A rollout that handed over to a newer release at a wave boundary completed as superseded.
    const handedOver = (job.returnvalue as { supersededBy?: unknown } | null | undefined)?.supersededBy;
    const supersededBy = meta.supersededBy ?? (bullState === "completed" && typeof handedOver === "string" ? handedOver : undefined);
    let state: JobState;
    if (supersededBy) state = "superseded";
    // A job stopped while running shows cancelled once BullMQ has recorded the end (and the error).
    else if (meta.cancelled && bullState !== "active") state = "cancelled";
    // A parent waiting for its child jobs (a rollout wave's steps) is under way.
    else if (bullState === "active" || bullState === "waiting-children") state = "running";
    else if (bullState === "completed") state = "succeeded";
    else if (bullState === "failed") state = "failed";
    else state = "waiting";
    // A rollout parked at a wave that waits for its approval shows so (issue 13 §2), not as waiting.
    if (
      (state === "waiting" || state === "running") &&
      job.name === "release.rollout" &&
      (await this.#redis.exists(rolloutAwaitingKey(this.#prefix, id))) > 0
    ) {
      state = "awaiting-approval";
    }

    const data = job.data ?? {};
    const parsedTrigger = triggerSchema.safeParse(data.trigger);
    let trigger: JobView["trigger"] = parsedTrigger.success ? parsedTrigger.data : null;
    const repo = data.repo as { owner?: string; name?: string } | undefined;
    if (trigger && repo && typeof data.pr === "number") {
      trigger = { ...trigger, pr: { repo: `${repo.owner}/${repo.name}`, number: data.pr } };
    }
    const scrub = <T>(v: T): T => (this.#scrubber ? this.#scrubber.scrubValue(v) : v);
    const iso = (ms: number | undefined | null) => (typeof ms === "number" && ms > 0 ? new Date(ms).toISOString() : null);

    let stack: string | null = meta.stack ?? null;
    if (!stack) {
      const p = jobDataSchema.safeParse(data);
      stack = p.success ? (stackFor(p.data) ?? null) : null;
    }
    const view: JobView = {
      id,
      kind: job.name,
      stack,
      state,
      ...(supersededBy ? { supersededBy } : {}),
      progress: scrub(logs.logs),
      ...(bullState === "completed" && job.returnvalue !== undefined && job.returnvalue !== null ? { result: scrub(job.returnvalue) } : {}),
      ...(bullState === "failed" || (job.failedReason && state !== "succeeded") ? { error: scrub(job.failedReason) } : {}),
      trigger,
      data: scrub(data),
      attempts: job.attemptsMade,
      createdAt: iso(job.timestamp),
      startedAt: iso(job.processedOn),
      finishedAt: iso(job.finishedOn),
    };
    if (view.error === undefined) delete view.error;
    return view;
  }

  /** Cancels a job that has not started yet; false when it is running or finished (it is not interrupted). */
  async cancelWaiting(id: string): Promise<boolean> {
    if (!JOB_ID_PATTERN.test(id)) return false;
    const job = await Job.fromId(this.queue, id);
    if (!job) return false;
    const bullState = await job.getState();
    if (!["waiting", "delayed", "prioritized", "waiting-children"].includes(bullState)) return false;
    const meta = await this.lanes.meta(id);
    // A job outside any lane (a refusal comment) has an empty lane of its own; the record stays readable.
    return this.lanes.cancel(meta.stack ?? `none:${id}`, id);
  }

  async close(): Promise<void> {
    await this.lanes.close();
    await this.queue.close();
  }

  #bounded<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TransientError(`Redis did not answer within ${this.#addTimeoutMs} ms`)), this.#addTimeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}
