// A fresh orphan audit on request: the edge asks for one (GET /v1/audit/orphans) and waits for it; a
// worker runs it (worker/orphans/audit-worker.ts). The audit reads the tenant servers, the Pulumi
// backend and the GitOps repository, which are the worker side's to touch, so the edge only queues it.
// It has a queue of its own, not the job model's: an audit has no stack, no lane and no tenant, changes
// nothing, and is no part of the audit trail of changes.
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import { REDACTED } from "../core/logger.ts";
import { workerConnection } from "../core/redis.ts";
import type { OrphanReport, OrphanScope } from "./orphan-report.ts";

export const ORPHAN_AUDIT_QUEUE = "orphan-audits";

/** What an audit job carries; the worker parses it before it runs anything. */
export const orphanAuditRequestSchema = z.strictObject({ scope: z.enum(["server", "installation"]) });
export type OrphanAuditRequest = z.infer<typeof orphanAuditRequestSchema>;

/** Audits are cheap to ask again: one try, and only the last few kept once they end. */
export const ORPHAN_AUDIT_JOB_OPTIONS = {
  attempts: 1,
  removeOnComplete: { age: 3600, count: 20 },
  removeOnFail: { age: 24 * 3600, count: 20 },
} as const;

/** At most this much of a failure's text is kept. */
const FAILURE_MAX = 500;

/**
 * A failed audit's text as it may be stored (the worker) and answered (the edge): no secret value
 * `scrub` knows (a process's SecretScrubber), no URL credentials, bounded.
 */
export function scrubAuditFailure(text: string, scrub: (text: string) => string = (t) => t): string {
  return scrub(text)
    .replace(/\/\/[^/@\s]*:[^/@\s]*@/g, `//${REDACTED}@`)
    .slice(0, FAILURE_MAX);
}

export type OrphanAuditOutcome =
  | { readonly state: "done"; readonly jobId: string; readonly report: OrphanReport }
  /** No worker finished it in time (none running, or a slow source); it stays queued and runs later. */
  | { readonly state: "timeout"; readonly jobId: string }
  | { readonly state: "failed"; readonly jobId: string; readonly message: string };

export interface OrphanAuditRequestsOptions {
  /** A commands connection (the edge's reader connection): adds and reads audit jobs. */
  readonly connection: Redis;
  /** Where the blocking connection for finish events goes (BullMQ needs one of its own). */
  readonly redisUrl: string;
  readonly prefix: string;
  /** A finished report younger than this is answered instead of a new audit (default 30 s). */
  readonly freshForMs?: number;
  readonly now?: () => number;
}

/** How long a finished report answers new requests: any token could otherwise keep audits running back to back. */
export const ORPHAN_AUDIT_FRESH_MS = 30_000;

/** The edge's side: queue an audit and wait, bounded, for a worker's report. */
export class OrphanAuditRequests {
  private readonly options: OrphanAuditRequestsOptions;
  private readonly queue: Queue;
  private events: { events: QueueEvents; connection: Redis } | undefined;

  constructor(options: OrphanAuditRequestsOptions) {
    this.options = options;
    this.queue = new Queue(ORPHAN_AUDIT_QUEUE, { connection: options.connection, prefix: options.prefix });
  }

  /**
   * Queues an audit of `scope` and waits at most `waitMs` for its report. A report of that scope
   * finished less than `freshForMs` ago is answered at once instead, unless `fresh` asks for a new
   * audit. Requests made while one of the same scope is queued or running share it (it lists stacks
   * and scans servers), `fresh` ones too, so many callers cost one audit.
   */
  async run(scope: OrphanScope, waitMs: number, options: { readonly fresh?: boolean } = {}): Promise<OrphanAuditOutcome> {
    if (!options.fresh) {
      const recent = await this.recentReport(scope);
      if (recent) return recent;
    }
    const request: OrphanAuditRequest = { scope };
    const job = await this.queue.add("audit", request, { ...ORPHAN_AUDIT_JOB_OPTIONS, deduplication: { id: `orphans-${scope}` } });
    const jobId = job.id ?? "";
    try {
      const report = (await job.waitUntilFinished(this.finishEvents(), waitMs)) as OrphanReport;
      return { state: "done", jobId, report };
    } catch (err) {
      // The wait ends with an error both when the job failed and when the time ran out: ask the job.
      const ended = jobId ? await this.queue.getJob(jobId) : undefined;
      const state = ended ? await ended.getState() : "unknown";
      if (ended && state === "completed") return { state: "done", jobId, report: ended.returnvalue as OrphanReport };
      if (ended && state === "failed") return { state: "failed", jobId, message: ended.failedReason || (err as Error).message };
      return { state: "timeout", jobId };
    }
  }

  /** The newest report of `scope` finished within `freshForMs`, among the few completed audits kept. */
  private async recentReport(scope: OrphanScope): Promise<OrphanAuditOutcome | null> {
    const since = (this.options.now ?? Date.now)() - (this.options.freshForMs ?? ORPHAN_AUDIT_FRESH_MS);
    const completed = await this.queue.getJobs(["completed"], 0, ORPHAN_AUDIT_JOB_OPTIONS.removeOnComplete.count - 1);
    let newest: (typeof completed)[number] | undefined;
    for (const job of completed) {
      if (!job?.finishedOn || job.finishedOn < since) continue;
      if (!orphanAuditRequestSchema.safeParse(job.data).success || (job.data as OrphanAuditRequest).scope !== scope) continue;
      if (!newest || job.finishedOn > (newest.finishedOn ?? 0)) newest = job;
    }
    return newest?.id ? { state: "done", jobId: newest.id, report: newest.returnvalue as OrphanReport } : null;
  }

  async close(): Promise<void> {
    await this.events?.events.close();
    this.events?.connection.disconnect();
    await this.queue.close();
  }

  private finishEvents(): QueueEvents {
    if (!this.events) {
      const connection = workerConnection(this.options.redisUrl);
      // Waits end by their own timeout while Redis is away; an unheard error must not crash the edge.
      connection.on("error", () => undefined);
      const events = new QueueEvents(ORPHAN_AUDIT_QUEUE, { connection, prefix: this.options.prefix });
      events.on("error", () => undefined);
      this.events = { events, connection };
    }
    return this.events.events;
  }
}
