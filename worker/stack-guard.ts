// Before a Pulumi operation starts its engine, its stack is claimed: a stack whose lock is held by
// a live process makes the job wait (StackLockedError, naming the holder) without spending an
// engine run, and a lock whose owner is provably dead is cleared first.
//
// Who may clear a lock:
//   - any worker, when the stack's owner record (worker/worker-identity.ts) names a worker whose
//     heartbeat is gone, for the locks written during that worker's operation;
//   - any worker on the same host as the lock's process, when that process is gone (the lock names
//     its pid and host), as well as a same-host worker whose pid is gone.
// Every other lock stays: a live worker's, an operator's CLI on another machine, one nobody can
// vouch for. On a backend whose locks cannot be read or removed here (object stores until
// issue 14), the claim still keeps two Stackrail workers apart, and a dead owner's lock is named
// in the job's progress for an operator to remove.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { StackLockedError, TransientError, type StackLockHolder } from "../core/errors.ts";
import { abandonedWrite, INCOMPLETE_LOCK_STALE_MS, type StackLock, type StackLockStore } from "./stack-locks.ts";
import { stackOwnerKey, workerKey, OWNER_RECORD_TTL_S, type StackOwnerRecord, type WorkerIdentity, type WorkerPresence } from "./worker-identity.ts";

export interface ClaimContext {
  /** The job the operation belongs to ("" outside a job). */
  readonly jobId: string;
  /** A line for the job's progress (recovery steps and why it waits). */
  readonly progress: (line: string) => void;
}

export interface OperationClaim {
  /** The operation's process started: recorded so that the holder can be named. */
  started(childPid: number | undefined): void;
  /** The operation ended (whatever the outcome). */
  release(): Promise<void>;
}

export interface StackGuard {
  /** Claims the stack for one operation; throws StackLockedError while a live process holds it. */
  claim(target: { readonly projectName: string; readonly stack: string }, context: ClaimContext): Promise<OperationClaim>;
}

/** Whether a process runs on this host; an exited process its parent has not reaped yet (a zombie) does not. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state after the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no /proc here: a signal-able pid is taken as alive
  }
}

const iso = (ms: number | undefined): string | undefined => (ms !== undefined ? new Date(ms).toISOString() : undefined);

function lockHolder(lock: StackLock): StackLockHolder {
  const since = iso(lock.timestamp);
  const who = `process ${lock.pid ?? "?"} on ${lock.hostname ?? "an unknown host"}${lock.username ? ` (user ${lock.username})` : ""}`;
  return {
    description: `${who}${since ? ` since ${since}` : ""}, not an operation of a live Stackrail worker`,
    ...(lock.hostname !== undefined ? { host: lock.hostname } : {}),
    ...(lock.pid !== undefined ? { pid: lock.pid } : {}),
    ...(since ? { since } : {}),
  };
}

function ownerHolder(owner: StackOwnerRecord): StackLockHolder {
  const since = iso(owner.startedAt);
  return {
    description:
      `worker ${owner.workerId} on ${owner.host} (pid ${owner.workerPid}), job ${owner.jobId || "(none)"}` +
      `${owner.childPid !== undefined ? `, Pulumi process ${owner.childPid}` : ""}${since ? ` since ${since}` : ""}`,
    workerId: owner.workerId,
    host: owner.host,
    jobId: owner.jobId,
    ...(owner.childPid !== undefined ? { pid: owner.childPid } : {}),
    ...(since ? { since } : {}),
  };
}

const abandonedWriteLine = (lock: StackLock): string =>
  `removed an incomplete lock file ${path.basename(lock.location)}: a lock write cut short (a full disk, a killed process), which the engine would refuse to read`;

const sameHostGone = (lock: StackLock, host: string): boolean => lock.hostname === host && lock.pid !== undefined && !processAlive(lock.pid);

function busy(stack: string, holder: StackLockHolder, retryAfterMs?: number): StackLockedError {
  return new StackLockedError(`stack ${stack} is locked by ${holder.description}`, { holder, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
}

/**
 * Without Redis (a runner used on its own): a lock is cleared only when its process is gone from
 * this host; any other lock makes the operation wait.
 */
export function localStackGuard(store: StackLockStore, host: string = hostname()): StackGuard {
  return {
    async claim({ projectName, stack }, context) {
      const locks = (await store.list(projectName, stack)) ?? [];
      const live = locks.find((l) => !sameHostGone(l, host) && !abandonedWrite(l));
      if (live) throw busy(stack, lockHolder(live), live.incomplete ? INCOMPLETE_LOCK_STALE_MS : undefined);
      for (const lock of locks) {
        await store.clear(lock);
        context.progress(lock.incomplete ? abandonedWriteLine(lock) : `cleared a stale lock left by process ${lock.pid ?? "?"}, which is gone`);
      }
      return { started: () => undefined, release: () => Promise.resolve() };
    },
  };
}

const CLAIM = `
-- KEYS[1] owner key, KEYS[2] own stacks set   ARGV: workerKeyPrefix, member, record, ownerTtlS, ttlMs
local cur = redis.call('GET', KEYS[1])
local state = 'free'
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' and type(rec.workerId) == 'string' then
    local hb = ARGV[1] .. rec.workerId
    local alive = redis.call('EXISTS', hb) == 1
    if alive and redis.call('SISMEMBER', hb .. ':stacks', ARGV[2]) == 1 then
      return {'busy', cur, redis.call('GET', hb) or '', redis.call('PTTL', hb)}
    end
    -- A live worker that no longer runs this stack left its record (its clean-up failed): stale.
    if alive then state = 'stale' else state = 'dead' end
  else
    state = 'stale'
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', tonumber(ARGV[4]))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
return {state, cur or ''}
`;

const FORGET_DEAD = `
-- KEYS[1] worker key, KEYS[2] its stacks set   ARGV: the identity JSON read
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) return 1 end
return 0
`;

const RELEASE = `
-- KEYS[1] owner key, KEYS[2] own stacks set   ARGV: member, then the record values this operation wrote
local cur = redis.call('GET', KEYS[1])
for i = 2, #ARGV do
  if cur == ARGV[i] then redis.call('DEL', KEYS[1]) break end
end
redis.call('SREM', KEYS[2], ARGV[1])
return 1
`;

function parseRecord(text: string): StackOwnerRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<StackOwnerRecord>;
    if (typeof r.workerId !== "string" || typeof r.startedAt !== "number") return undefined;
    return {
      workerId: r.workerId,
      host: typeof r.host === "string" ? r.host : "?",
      workerPid: typeof r.workerPid === "number" ? r.workerPid : 0,
      jobId: typeof r.jobId === "string" ? r.jobId : "",
      ...(typeof r.childPid === "number" ? { childPid: r.childPid } : {}),
      startedAt: r.startedAt,
    };
  } catch {
    return undefined;
  }
}

function parseIdentity(text: string): WorkerIdentity | undefined {
  try {
    const r = JSON.parse(text) as Partial<WorkerIdentity>;
    return typeof r.id === "string" && typeof r.host === "string" && typeof r.pid === "number" ? (r as WorkerIdentity) : undefined;
  } catch {
    return undefined;
  }
}

/** A lock written during the dead owner's operation (the owner's host wrote both times, so its clock is shared). */
const writtenDuring = (lock: StackLock, owner: StackOwnerRecord): boolean => lock.timestamp === undefined || lock.timestamp >= owner.startedAt - 2_000;

/** The guard of a worker with an identity: the stack's owner record in Redis decides, then the backend's locks. */
export class RedisStackGuard implements StackGuard {
  readonly #redis: Redis;
  readonly #presence: WorkerPresence;
  readonly #store: StackLockStore;

  constructor(redis: Redis, presence: WorkerPresence, store: StackLockStore) {
    this.#redis = redis;
    this.#presence = presence;
    this.#store = store;
  }

  async claim({ projectName, stack }: { projectName: string; stack: string }, context: ClaimContext): Promise<OperationClaim> {
    const me = this.#presence.identity;
    const prefix = this.#presence.prefix;
    const ownerKey = stackOwnerKey(prefix, projectName, stack);
    const member = `${projectName}/${stack}`;
    let record: StackOwnerRecord = { workerId: me.id, host: me.host, workerPid: me.pid, jobId: context.jobId, startedAt: Date.now() };
    const written = [JSON.stringify(record)];

    // Redis away at this moment is worth another try, not a failed job.
    const tryClaim = async (): Promise<[string, string, string, number]> =>
      (await this.#redis
        .eval(
          CLAIM,
          2,
          ownerKey,
          this.#presence.stacksKey,
          workerKey(prefix, ""),
          member,
          written[0] as string,
          String(OWNER_RECORD_TTL_S),
          String(this.#presence.ttlMs),
        )
        .catch((err: unknown) => {
          throw new TransientError("could not claim the stack: Redis did not answer", { cause: err });
        })) as [string, string, string, number];

    let claimed = await tryClaim();
    if (claimed[0] === "busy") {
      const holderIdentity = claimed[2];
      const identity = parseIdentity(holderIdentity);
      // A worker on this host whose process is gone is dead now, not when its heartbeat runs out.
      if (parseRecord(claimed[1]) && identity && identity.host === me.host && identity.pid !== me.pid && !processAlive(identity.pid)) {
        await this.#redis.eval(FORGET_DEAD, 2, workerKey(prefix, identity.id), `${workerKey(prefix, identity.id)}:stacks`, holderIdentity);
        claimed = await tryClaim();
      }
    }
    const [state, previous, , pttl] = claimed;
    if (state === "busy") {
      const owner = parseRecord(previous);
      const holder: StackLockHolder = owner ? ownerHolder(owner) : { description: "a Stackrail worker" };
      // Its liveness is decided again when its heartbeat would run out.
      throw busy(stack, holder, pttl > 0 ? pttl + 250 : undefined);
    }

    this.#presence.operating(member, ownerKey, written[0] as string);
    const release = async (): Promise<void> => {
      this.#presence.done(member);
      await this.#redis.eval(RELEASE, 2, ownerKey, this.#presence.stacksKey, member, ...written);
    };
    try {
      const deadOwner = state === "dead" ? parseRecord(previous) : undefined;
      await this.#recover(projectName, stack, context, deadOwner);
    } catch (err) {
      await release().catch(() => undefined);
      throw err;
    }
    return {
      started: (childPid) => {
        if (childPid === undefined) return;
        record = { ...record, childPid };
        const text = JSON.stringify(record);
        written.push(text);
        this.#presence.operating(member, ownerKey, text);
        // Best effort: the holder is named with its Pulumi process when another job looks.
        this.#redis.set(ownerKey, text, "EX", OWNER_RECORD_TTL_S, "XX").catch(() => undefined);
      },
      release,
    };
  }

  /** The backend's locks, now that the stack is ours among Stackrail workers: clear the dead's, wait for the living. */
  async #recover(projectName: string, stack: string, context: ClaimContext, deadOwner: StackOwnerRecord | undefined): Promise<void> {
    const host = this.#presence.identity.host;
    const locks = await this.#store.list(projectName, stack);
    if (locks === null) {
      if (deadOwner) {
        context.progress(
          `worker ${deadOwner.workerId} on ${deadOwner.host} died during an operation on ${stack} (job ${deadOwner.jobId || "(none)"}); ` +
            `a lock it left on the ${this.#store.backend} backend cannot be cleared by Stackrail yet: look under ${this.#store.where(projectName, stack)} ` +
            `and remove it with \`pulumi cancel\` once its process is gone`,
        );
      }
      return;
    }
    const clearable = (lock: StackLock): "pid" | "identity" | "abandoned" | undefined =>
      abandonedWrite(lock) ? "abandoned" : sameHostGone(lock, host) ? "pid" : deadOwner && writtenDuring(lock, deadOwner) ? "identity" : undefined;
    const live = locks.find((l) => clearable(l) === undefined);
    if (live) throw busy(stack, lockHolder(live), live.incomplete ? INCOMPLETE_LOCK_STALE_MS : undefined);
    for (const lock of locks) {
      await this.#store.clear(lock);
      if (clearable(lock) === "abandoned") {
        context.progress(abandonedWriteLine(lock));
        continue;
      }
      const owner = deadOwner ? ` (worker ${deadOwner.workerId} on ${deadOwner.host}, job ${deadOwner.jobId || "(none)"})` : "";
      context.progress(
        clearable(lock) === "pid"
          ? `cleared a stale lock left by process ${lock.pid ?? "?"}, which is gone${owner}`
          : `cleared a stale lock left by worker ${deadOwner?.workerId ?? "?"} on ${deadOwner?.host ?? "?"} (job ${deadOwner?.jobId || "(none)"}, Pulumi process ${lock.pid ?? "?"} on ${lock.hostname ?? "?"}): its heartbeat is gone`,
      );
    }
  }
}
