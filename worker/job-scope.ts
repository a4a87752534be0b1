// The job a piece of work belongs to, carried through async calls: the Pulumi runner records
// which job holds a stack without every handler passing the job id down to it.
import { AsyncLocalStorage } from "node:async_hooks";

export interface JobScope {
  readonly jobId: string;
}

const storage = new AsyncLocalStorage<JobScope>();

export function runInJobScope<T>(scope: JobScope, fn: () => T): T {
  return storage.run(scope, fn);
}

export function currentJobScope(): JobScope | undefined {
  return storage.getStore();
}
