// The idle reaper: previews with no activity (no push, no command) for the configured time are
// destroyed like a closed PR's. The destroy job id is derived from the stack and its last
// activity, so two workers reaping at once enqueue it once.
import type { Logger } from "../core/logger.ts";
import type { PreviewRegistry } from "./preview-registry.ts";
import type { JobQueue } from "../jobs/queue.ts";

export async function reapIdlePreviews(registry: PreviewRegistry, queue: JobQueue, ttlMs: number, logger: Logger, now = Date.now()): Promise<string[]> {
  const idle = await registry.idleSince(now - ttlMs);
  const jobs: string[] = [];
  for (const p of idle) {
    const { jobId } = await queue.enqueue(
      {
        kind: "preview.destroy",
        trigger: { type: "schedule", name: "preview-reaper" },
        requestedAt: new Date(now).toISOString(),
        repo: p.repo,
        pr: p.pr,
      },
      { stack: p.stack, jobId: `reap-${p.stack}-${p.lastActivity}` },
    );
    logger.info({ jobId, stack: p.stack, idleMs: now - p.lastActivity }, "idle preview scheduled for destruction");
    jobs.push(jobId);
  }
  return jobs;
}
