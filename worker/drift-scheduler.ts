// Scheduled drift checks: every active tenant's stack gets a `tenant.drift` job once per interval;
// on the same schedule, once per installation, the orphan audit (worker/orphans/).
// Each stack has its own stable offset inside the interval (a hash of its name), so checks spread
// out instead of all starting together; the job id names the stack and the period, so any number
// of workers ticking at once enqueue each check once, and a restart does not enqueue it again.
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../core/logger.ts";
import type { TenantIndex } from "../core/tenant-index.ts";
import { countByKind, type OrphanReport } from "../jobs/orphan-report.ts";
import type { JobQueue } from "../jobs/queue.ts";

export interface DriftSchedule {
  readonly intervalMs: number;
  readonly repair: boolean;
  /**
   * A check is enqueued only during the first windowMs of its period: a worker that starts (or
   * comes back) in the middle of the periods does not start every stack's check at once; a check
   * missed that way runs in the next period.
   */
  readonly windowMs: number;
}

/** Where in each interval the stack's check falls: stable for a stack and an interval. */
export function driftOffsetMs(stack: string, intervalMs: number): number {
  const digest = createHash("sha256").update(stack).digest();
  return Number(digest.readBigUInt64BE(0) % BigInt(intervalMs));
}

/** The stack's current period (its index and when its check was due). */
export function driftSlot(stack: string, intervalMs: number, now: number): { period: number; dueAt: number } {
  const offset = driftOffsetMs(stack, intervalMs);
  const period = Math.floor((now - offset) / intervalMs);
  return { period, dueAt: offset + period * intervalMs };
}

export function driftJobId(stack: string, period: number): string {
  return `drift-${stack}-${period}`;
}

/** The catch-up window: a few scheduler ticks, at least five minutes, never more than the interval. */
export function driftWindowMs(intervalMs: number, tickMs: number): number {
  return Math.min(intervalMs, Math.max(4 * tickMs, 5 * 60_000));
}

/** Enqueues the checks that are due; returns the ids of the jobs it added (not those already there). */
export async function enqueueDueDriftChecks(
  tenants: TenantIndex,
  queue: JobQueue,
  schedule: DriftSchedule,
  logger: Logger,
  now = Date.now(),
): Promise<string[]> {
  if (schedule.intervalMs <= 0) return [];
  const added: string[] = [];
  for (const tenant of await tenants.list()) {
    if (tenant.state !== "active") continue;
    const stack = `tenant-${tenant.id}`;
    const { period, dueAt } = driftSlot(stack, schedule.intervalMs, now);
    if (now - dueAt > schedule.windowMs) continue;
    const jobId = driftJobId(stack, period);
    // Already enqueued (by this worker's last tick or another worker): nothing to do.
    if (await queue.queue.getJob(jobId)) continue;
    await queue.enqueue(
      {
        kind: "tenant.drift",
        trigger: { type: "schedule", name: "drift-check" },
        requestedAt: new Date(now).toISOString(),
        tenantId: tenant.id,
        repair: schedule.repair,
      },
      { stack, jobId },
    );
    logger.info({ jobId, stack, repair: schedule.repair }, "drift check scheduled");
    added.push(jobId);
  }
  return added;
}

/** The slot name of the installation's scheduled orphan audit (its own offset in the interval). */
export const ORPHAN_AUDIT_SLOT = "orphan-audit";

export interface OrphanAuditSchedule {
  readonly redis: Redis;
  readonly prefix: string;
  readonly schedule: Pick<DriftSchedule, "intervalMs" | "windowMs">;
  readonly audit: () => Promise<OrphanReport>;
  readonly logger: Logger;
}

/**
 * The orphan audit, once per drift interval per installation (the first worker to claim the period
 * runs it), so `stackrail_orphans` stays current without anyone calling the route. Its counts are
 * stored for every process's gauge by the audit itself; leftovers are logged as a warning.
 * Returns the report when this worker ran it.
 */
export async function runDueOrphanAudit(s: OrphanAuditSchedule, now = Date.now()): Promise<OrphanReport | null> {
  const { intervalMs, windowMs } = s.schedule;
  if (intervalMs <= 0) return null;
  const { period, dueAt } = driftSlot(ORPHAN_AUDIT_SLOT, intervalMs, now);
  if (now - dueAt > windowMs) return null;
  const claimed = await s.redis.set(`${s.prefix}:${ORPHAN_AUDIT_SLOT}:${period}`, "1", "PX", 2 * intervalMs, "NX");
  if (claimed !== "OK") return null;
  const report = await s.audit();
  const byKind = Object.fromEntries(Object.entries(countByKind(report.findings)).filter(([, n]) => n > 0));
  const fields = {
    scope: report.scope,
    findings: report.findings.length,
    byKind,
    incomplete: report.incomplete.map((i) => i.source),
    durationMs: report.durationMs,
  };
  if (report.findings.length > 0 || report.incomplete.length > 0) s.logger.warn(fields, "orphan audit found leftovers or could not read a source");
  else s.logger.info(fields, "orphan audit found nothing");
  return report;
}
