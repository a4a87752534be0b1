// Points in a job's life where the fault suite strikes: found by watching the job's progress
// lines through GET /v1/jobs/:id, or made exact by holding the GitOps push in a hook (before or
// after the branch moves) or by pausing the queue's Redis writes (the handler then stops at its
// next awaited write, e.g. the record after the stack operation).
import type { JobView } from "../../jobs/queue.ts";
import type { FaultInstallation } from "./fault-installation.ts";
import { FINAL_STATES } from "./fault-installation.ts";
import { waitUntil } from "./private-services.ts";
import type { WorkerProcess } from "./worker-process.ts";
import { operationChildren } from "./worker-process.ts";

export interface ReachedStep {
  /** What the job showed when the step was reached. */
  readonly view: JobView;
  /** Lets the held job go on (a hook hold, a Redis pause); a no-op for progress steps. */
  release(): Promise<void>;
}

export interface StepPoint {
  readonly name: string;
  /** Arms what the step needs and resolves once the job is at the step. */
  reach(inst: FaultInstallation, jobId: string): Promise<ReachedStep>;
}

const noRelease = (): Promise<void> => Promise.resolve();

/**
 * The step is reached when the job's progress lines satisfy `seen` (and the job is still running);
 * `timeoutMs` for a step far into a slow operation (the watch's default otherwise).
 */
export function progressStep(name: string, seen: (lines: string[]) => boolean, timeoutMs?: number): StepPoint {
  return {
    name,
    async reach(inst, jobId) {
      const view = await inst.watch(jobId, `step ${name}`, (v) => seen(v.progress) || FINAL_STATES.has(v.state), timeoutMs);
      if (FINAL_STATES.has(view.state)) throw new Error(`job ${jobId} ended (${view.state}) before step ${name}: ${view.progress.join(" | ")}`);
      return { view, release: noRelease };
    },
  };
}

/** The job's GitOps push is held in the remote's pre-receive (before the branch moves) or post-receive hook (after). */
export function pushStep(name: string, stage: "pre" | "post"): StepPoint {
  return {
    name,
    async reach(inst, jobId) {
      const hold = inst.remote.hold(stage, `Job: ${jobId}`);
      await hold.arrived(240_000);
      const view = await inst.job(jobId);
      if (!view) throw new Error(`job ${jobId} vanished at step ${name}`);
      return {
        view,
        release: () => {
          hold.release();
          return Promise.resolve();
        },
      };
    },
  };
}

/**
 * After the job's stack operation has finished but before the handler's next write to Redis:
 * once `started` holds, the queue's Redis stops taking writes (CLIENT PAUSE WRITE), and the step
 * is reached when `finished` holds and the worker runs no operation any more.
 */
export function afterOperationStep(name: string, started: (lines: string[]) => boolean, finished: () => Promise<boolean>): StepPoint {
  return {
    name,
    async reach(inst, jobId) {
      const view = await progressStep(name, started).reach(inst, jobId);
      await inst.redis.command("CLIENT", "PAUSE", 120_000, "WRITE");
      const release = async (): Promise<void> => {
        await inst.redis.command("CLIENT", "UNPAUSE");
      };
      try {
        await waitUntil(
          `the operation of job ${jobId} to finish (step ${name})`,
          async () => (await finished()) && inst.workers.every((w) => !w.alive() || operationChildren(w.pid).length === 0),
          120_000,
          100,
        );
      } catch (err) {
        await release();
        throw err;
      }
      return { view: view.view, release };
    },
  };
}

/** The live worker that started the job last (from its `job started` log line). */
export function workerRunning(inst: FaultInstallation, jobId: string): WorkerProcess {
  let best: { w: WorkerProcess; time: number } | undefined;
  for (const w of inst.workers) {
    if (!w.alive()) continue;
    for (const line of w.logs()) {
      if (line.msg === "job started" && line.jobId === jobId) {
        const time = typeof line.time === "number" ? line.time : 0;
        if (!best || time >= best.time) best = { w, time };
      }
    }
  }
  if (!best) throw new Error(`no live worker logged the start of job ${jobId}`);
  return best.w;
}

/** Keeps `n` live workers (starts new ones as needed). */
export async function ensureWorkers(inst: FaultInstallation, n: number): Promise<void> {
  const live = inst.workers.filter((w) => w.alive()).length;
  await Promise.all(Array.from({ length: Math.max(0, n - live) }, () => inst.startWorker()));
}

export interface KillOutcome {
  readonly killed: WorkerProcess;
  readonly killedAt: number;
  /** From the kill until the job is seen running on another worker, or null when it ended without. */
  readonly takeoverMs: number | null;
  readonly final: JobView;
  readonly atStep: JobView;
}

/**
 * Runs the job to `step`, SIGKILLs the worker running it with everything under it (a killed
 * container), lets the step go on, and waits for another worker to finish the job.
 */
export async function killAtStep(inst: FaultInstallation, jobId: string, step: StepPoint, workers = 2): Promise<KillOutcome> {
  const reached = await step.reach(inst, jobId);
  const victim = workerRunning(inst, jobId);
  // From the view at the step: a paused Redis may not answer the edge now.
  const before = reached.view.startedAt;
  await victim.killAll();
  const killedAt = Date.now();
  await reached.release();
  await ensureWorkers(inst, workers);
  const again = await inst.watch(
    jobId,
    "another worker to take the job over",
    (v) => (v.startedAt !== null && v.startedAt !== before) || FINAL_STATES.has(v.state),
    180_000,
  );
  // Timed when the job is seen running again: BullMQ's start time comes from the worker's clock
  // when it asked for a job, which may be before the kill.
  const takeoverMs = again.startedAt !== null && again.startedAt !== before ? Date.now() - killedAt : null;
  const final = await inst.waitForFinal(jobId);
  return { killed: victim, killedAt, takeoverMs, final, atStep: reached.view };
}
