// The job a piece of work belongs to, carried through async calls: the Pulumi runner records
// which job holds a stack, and the side effects of a job (GitOps commits, tenant records) check
// that this worker still holds the job's lock, without every handler passing the job down to them.
import { AsyncLocalStorage } from "node:async_hooks";
import { StackrailError } from "../core/errors.ts";

/**
 * This worker no longer holds the job's lock (it could not renew it, cut off from the queue's
 * Redis, or another worker took the job over): whatever it was doing stops, and it writes nothing
 * more for the job. The job itself is not failed by this worker: its new owner runs it.
 */
export class LeaseLostError extends StackrailError {
  override readonly fate = "retry";
  override readonly code = "lease_lost";
}

export interface JobScope {
  readonly jobId: string;
  /**
   * Confirms, with a fresh round trip to the queue's Redis, that this worker still holds the job's
   * lock (and extends it); throws LeaseLostError when it does not or cannot tell in time.
   */
  readonly assertOwned?: () => Promise<void>;
}

const storage = new AsyncLocalStorage<JobScope>();

export function runInJobScope<T>(scope: JobScope, fn: () => T): T {
  return storage.run(scope, fn);
}

export function currentJobScope(): JobScope | undefined {
  return storage.getStore();
}

/**
 * The fencing check before a side effect of a job: throws LeaseLostError when the running job's
 * worker lost its lock. Outside a job (scripts, the orphan audit) there is nothing to check.
 */
export async function assertJobOwned(): Promise<void> {
  await storage.getStore()?.assertOwned?.();
}

/**
 * `target` with `methods` fenced: each call first checks that the running job's lock is still this
 * worker's (assertJobOwned). For the stores a job writes (the tenant index): a cut-off worker
 * must not record what its job's new owner may be doing differently.
 */
export function fenced<T extends object>(target: T, methods: readonly (keyof T & string)[]): T {
  const guarded = new Set<string>(methods);
  return new Proxy(target, {
    get(obj, prop) {
      const value: unknown = Reflect.get(obj, prop, obj);
      if (typeof value !== "function") return value;
      // Called on the object itself: its private fields are not the proxy's.
      if (typeof prop !== "string" || !guarded.has(prop)) return (value as (...a: unknown[]) => unknown).bind(obj);
      return async (...args: unknown[]): Promise<unknown> => {
        await assertJobOwned();
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
}
