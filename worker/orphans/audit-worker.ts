// Runs the orphan audits the API queues (jobs/orphan-audit.ts): the edge never scans the servers,
// the Pulumi backend or the GitOps repository itself. One audit at a time per worker process; its
// report is the job's return value, and its counts become every process's `stackrail_orphans`.
// A failed audit's reason is stored in the job (BullMQ's failedReason) and answered by the API: it is
// scrubbed of secrets (the process's known secret values, a URL's credentials) before it is stored.
import { Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../../core/logger.ts";
import { ORPHAN_AUDIT_QUEUE, orphanAuditRequestSchema, scrubAuditFailure } from "../../jobs/orphan-audit.ts";
import type { OrphanReport, OrphanScope } from "../../jobs/orphan-report.ts";

export interface OrphanAuditWorkerDeps {
  /** The worker's BullMQ connection (`maxRetriesPerRequest: null`); BullMQ adds its blocking one. */
  readonly connection: Redis;
  readonly prefix: string;
  /** Runs and records one audit (auditAndRecord with the worker's connections and GitOps reader). */
  readonly audit: (scope: OrphanScope) => Promise<OrphanReport>;
  readonly logger: Logger;
  /** Removes the process's known secret values from text (its SecretScrubber); URL credentials are removed anyway. */
  readonly scrub?: (text: string) => string;
}

export interface OrphanAuditWorker {
  /** Stops taking audits; an audit already running finishes first (it only reads). */
  close(): Promise<void>;
}

export function startOrphanAuditWorker(deps: OrphanAuditWorkerDeps): OrphanAuditWorker {
  const processor = async (job: Job): Promise<OrphanReport> => {
    const { scope } = orphanAuditRequestSchema.parse(job.data);
    let report: OrphanReport;
    try {
      report = await deps.audit(scope);
    } catch (err) {
      // BullMQ stores the thrown error's message (and stack) in the job: only a scrubbed copy is thrown,
      // without the original as its cause (a logged cause would carry the unscrubbed text).
      // eslint-disable-next-line preserve-caught-error
      throw new Error(scrubAuditFailure(err instanceof Error ? err.message : String(err), deps.scrub));
    }
    deps.logger.info(
      { jobId: job.id, scope, findings: report.findings.length, incomplete: report.incomplete.length, durationMs: report.durationMs },
      "orphan audit answered",
    );
    return report;
  };
  const worker = new Worker(ORPHAN_AUDIT_QUEUE, processor, { connection: deps.connection, prefix: deps.prefix, concurrency: 1 });
  worker.on("error", (err) => deps.logger.warn({ err }, "orphan audit worker lost its connection"));
  worker.on("failed", (job, err) => deps.logger.warn({ err, jobId: job?.id }, "orphan audit failed"));
  return { close: () => worker.close() };
}
