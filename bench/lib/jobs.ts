// Waiting on jobs from a benchmark: a finer poll than the test harness (20 ms, so the wait adds
// little to a measured wall time) and a check that a job ended the way the benchmark needs.
import type { JobQueue, JobView } from "../../jobs/queue.ts";

const FINAL = new Set(["succeeded", "failed", "superseded", "cancelled"]);

export async function waitFinal(queue: JobQueue, jobId: string, timeoutMs = 600_000, pollMs = 20): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // The edge's connection gives up on a command after 500 ms; on a busy machine a poll may time
    // out. A failed poll is retried (until the deadline): it says nothing about the job.
    const view = await queue.getJobView(jobId).catch((err: unknown) => {
      if (Date.now() > deadline) throw err;
      return null;
    });
    if (view && FINAL.has(view.state)) return view;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not finish within ${timeoutMs} ms (state ${view?.state ?? "missing"})`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export function expectSucceeded(view: JobView, what: string): JobView {
  if (view.state !== "succeeded") throw new Error(`${what}: job ${view.id} ended ${view.state}: ${view.error ?? "no error recorded"}`);
  return view;
}

/** Milliseconds between two ISO timestamps of a job view (NaN when either is missing). */
export function between(from: string | null, to: string | null): number {
  return from && to ? Date.parse(to) - Date.parse(from) : Number.NaN;
}
