// A job's view of its child jobs (BullMQ flows): what they returned or why they failed, and a way
// to wait for them without holding a worker slot. The worker hands one to every handler; only the
// release rollout uses it (its tenant steps are its children).
import { WaitingChildrenError, type Job } from "bullmq";
import { ProgramError } from "../core/errors.ts";

export interface ChildResults {
  /** Child job id → its return value, for every child that completed. */
  readonly values: ReadonlyMap<string, unknown>;
  /** Child job id → `code: message`, for every child that failed for good. */
  readonly failures: ReadonlyMap<string, string>;
  /** Children still waiting or running. */
  readonly pending: number;
}

export interface JobFlow {
  /** This job as a parent: what a child is added with. */
  readonly parent: { readonly id: string; readonly queue: string };
  children(): Promise<ChildResults>;
  /**
   * Parks the job until its pending children are done: throws WaitingChildrenError (the worker lets
   * it go without a result, and BullMQ runs the handler again afterwards), or returns when no child
   * is pending any more (look again).
   */
  waitForChildren(): Promise<void>;
}

/** The job id in a BullMQ job key (`<prefix>:<queue>:<id>`). */
function idOf(jobKey: string, queueKey: string): string {
  return jobKey.startsWith(`${queueKey}:`) ? jobKey.slice(queueKey.length + 1) : jobKey;
}

export function jobFlow(job: Job, token: string | undefined): JobFlow {
  const queueKey = job.queueQualifiedName;
  return {
    parent: { id: job.id ?? "", queue: queueKey },
    async children() {
      const [values, failures, counts] = await Promise.all([
        job.getChildrenValues<unknown>(),
        job.getIgnoredChildrenFailures(),
        job.getDependenciesCount({ unprocessed: true }),
      ]);
      return {
        values: new Map(Object.entries(values).map(([k, v]) => [idOf(k, queueKey), v])),
        failures: new Map(Object.entries(failures).map(([k, v]) => [idOf(k, queueKey), v])),
        pending: counts.unprocessed ?? 0,
      };
    },
    async waitForChildren() {
      // Without the lock token the job cannot be parked; looking again at once would spin.
      if (!token) throw new ProgramError("the job cannot wait for its children: no lock token");
      if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
    },
  };
}
