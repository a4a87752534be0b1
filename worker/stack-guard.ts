// Before a Pulumi operation starts its engine, its stack is claimed: a stack whose lock is held by
// a live process makes the job wait (StackLockedError, naming the holder) without spending an
// engine run, and a lock whose owner is provably dead is cleared first.
//
// Who may clear a lock:
//   - any worker, when the stack's owner record (worker/worker-identity.ts) names a worker whose
//     heartbeat is gone, for a lock that worker's operation wrote: one naming a pid the record
//     holds for the operation's Pulumi processes, on the host the record names for them, written
//     between the operation's start and the worker's last heartbeat (plus the heartbeat's TTL). A
//     lock of anyone else (an operator's `pulumi up` from a laptop after the worker died) stays;
//   - any worker on the same host as the lock's process, when that process is gone (the lock names
//     its pid and host); a worker whose pid is gone is forgotten at once only by a worker in the
//     same pid space (boot id and pid namespace: a shared host name is not enough), by everyone
//     else when its heartbeat runs out.
// Every other lock stays: a live worker's, an operator's CLI on another machine, one nobody can
// vouch for. Locks are read and removed on the file and S3 backends (worker/stack-locks.ts: S3
// through the blob store's client, so workers on different machines recover each other's stacks).
// On a backend whose locks cannot be read or removed here (gs://, azblob://), the claim still
// keeps two Stackrail workers apart, and a dead owner's lock is named in the job's progress for an
// operator to remove.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { StackLockedError, TransientError, type StackLockHolder } from "../core/errors.ts";
import { abandonedWrite, INCOMPLETE_LOCK_STALE_MS, type StackLock, type StackLockStore } from "./stack-locks.ts";
import { descendants } from "./process-tree.ts";
import {
  samePidSpace,
  stackOwnerKey,
  workerKey,
  OWNER_RECORD_TTL_S,
  type StackOwnerRecord,
  type WorkerIdentity,
  type WorkerPresence,
} from "./worker-identity.ts";

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
-- KEYS[1] owner key, KEYS[2] own stacks set, KEYS[3] the owner's worker key, KEYS[4] its stacks set
-- ARGV: owner record as the caller read it ('' = none), member, record, ownerTtlS, ttlMs, the owner's workerId ('' = none)
-- The owner's keys are declared (Redis Cluster), so the caller reads the record first: {'changed'}
-- when it changed meanwhile (read it again).
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return {'changed', cur or '', '', 0} end
-- What is left of a record's expiry (renewed on each beat of its worker) says when it last beat.
local left = redis.call('PTTL', KEYS[1])
local state = 'free'
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' and type(rec.workerId) == 'string' then
    -- The caller's reading of the record named other keys: do not judge this owner; wait.
    if rec.workerId ~= ARGV[6] then return {'busy', cur, '', left} end
    local hb = KEYS[3]
    local alive = redis.call('EXISTS', hb) == 1
    if alive and redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then
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
return {state, cur or '', '', left}
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

/** The workerId of an owner record as the claim script reads it (any JSON object with a string workerId), else ''. */
function ownerWorkerId(text: string): string {
  try {
    const r = JSON.parse(text) as { workerId?: unknown } | null;
    return typeof r === "object" && r !== null && typeof r.workerId === "string" ? r.workerId : "";
  } catch {
    return "";
  }
}

function parseRecord(text: string): StackOwnerRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<StackOwnerRecord>;
    if (typeof r.workerId !== "string" || typeof r.startedAt !== "number") return undefined;
    const enginePids = Array.isArray(r.enginePids) ? r.enginePids.filter((p): p is number => Number.isInteger(p) && p > 0) : [];
    return {
      workerId: r.workerId,
      host: typeof r.host === "string" ? r.host : "?",
      workerPid: typeof r.workerPid === "number" ? r.workerPid : 0,
      jobId: typeof r.jobId === "string" ? r.jobId : "",
      ...(typeof r.childPid === "number" ? { childPid: r.childPid } : {}),
      ...(typeof r.childHost === "string" ? { childHost: r.childHost } : {}),
      ...(enginePids.length > 0 ? { enginePids } : {}),
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

/** Clocks of different machines are compared with this much slack. */
const CLOCK_SLACK_MS = 2_000;
/** How often a running operation looks for the Pulumi processes its child started (the CLI that writes the lock). */
export const ENGINE_PID_POLL_MS = 1_000;
/** A record names at most this many of them (the CLI comes first; plugins after). */
const MAX_ENGINE_PIDS = 64;

/** A dead owner's record, and until when its operation may have written (its last beat plus the heartbeat's TTL). */
export interface DeadOwner {
  readonly record: StackOwnerRecord;
  readonly aliveUntil: number;
}

/**
 * Whether the dead owner's operation wrote this lock: a pid the record holds for its Pulumi
 * processes, on the host it names for them, timestamped within the owner's lifetime. A lock
 * without a timestamp, on another host, of another pid, or written after the owner was gone is
 * somebody else's (an operator's CLI, another machine) and stays.
 */
export function writtenByDeadOwner(lock: StackLock, owner: DeadOwner): boolean {
  const { record } = owner;
  const pids = new Set([...(record.childPid !== undefined ? [record.childPid] : []), ...(record.enginePids ?? [])]);
  return (
    lock.hostname !== undefined &&
    lock.hostname === (record.childHost ?? record.host) &&
    lock.pid !== undefined &&
    pids.has(lock.pid) &&
    lock.timestamp !== undefined &&
    lock.timestamp >= record.startedAt - CLOCK_SLACK_MS &&
    lock.timestamp <= owner.aliveUntil + CLOCK_SLACK_MS
  );
}

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
    const claimOnce = async (): Promise<[string, string, string, number]> => {
      const cur = (await this.#redis.get(ownerKey)) ?? "";
      const ownerId = ownerWorkerId(cur);
      const ownerWorker = workerKey(prefix, ownerId);
      return (await this.#redis.eval(
        CLAIM,
        4,
        ownerKey,
        this.#presence.stacksKey,
        ownerWorker,
        `${ownerWorker}:stacks`,
        cur,
        member,
        written[0] as string,
        String(OWNER_RECORD_TTL_S),
        String(this.#presence.ttlMs),
        ownerId,
      )) as [string, string, string, number];
    };
    const tryClaim = async (): Promise<[string, string, string, number]> => {
      try {
        for (let turn = 0; ; turn++) {
          const answer = await claimOnce();
          if (answer[0] !== "changed" || turn >= 16) return answer[0] === "changed" ? ["busy", answer[1], "", 0] : answer;
        }
      } catch (err) {
        throw new TransientError("could not claim the stack: Redis did not answer", { cause: err });
      }
    };

    let claimed = await tryClaim();
    if (claimed[0] === "busy") {
      const holderIdentity = claimed[2];
      const identity = parseIdentity(holderIdentity);
      // A worker whose process is gone is dead now, not when its heartbeat runs out; but its pid
      // means something here only in the same pid space (same boot, same pid namespace): a host
      // name is shared by containers, and from another namespace a live process looks gone.
      if (
        parseRecord(claimed[1]) &&
        identity &&
        identity.host === me.host &&
        samePidSpace(identity, me) &&
        identity.pid !== me.pid &&
        !processAlive(identity.pid)
      ) {
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
    let watch: NodeJS.Timeout | undefined;
    const release = async (): Promise<void> => {
      if (watch) clearInterval(watch);
      watch = undefined;
      this.#presence.done(member);
      await this.#redis.eval(RELEASE, 2, ownerKey, this.#presence.stacksKey, member, ...written);
    };
    const publish = (next: StackOwnerRecord): void => {
      record = next;
      const text = JSON.stringify(record);
      written.push(text);
      this.#presence.operating(member, ownerKey, text);
      // Best effort: the holder is named with its Pulumi process when another job looks.
      this.#redis.set(ownerKey, text, "EX", OWNER_RECORD_TTL_S, "XX").catch(() => undefined);
    };
    let deadOwner: DeadOwner | undefined;
    try {
      const deadRecord = state === "dead" ? parseRecord(previous) : undefined;
      // Without an expiry left (a record written by hand), its worker is taken to have beaten until now.
      const lastBeat = pttl > 0 ? Date.now() - (OWNER_RECORD_TTL_S * 1000 - pttl) : Date.now();
      deadOwner = deadRecord ? { record: deadRecord, aliveUntil: lastBeat + this.#presence.ttlMs } : undefined;
      await this.#recover(projectName, stack, context, deadOwner);
    } catch (err) {
      await release().catch(() => undefined);
      // The dead owner's record goes back (with what was left of its expiry): the next look, once
      // the lock that made this one wait is gone, still knows which lock the dead worker left.
      if (deadOwner) await this.#redis.set(ownerKey, previous, "PX", pttl > 0 ? pttl : OWNER_RECORD_TTL_S * 1000, "NX").catch(() => undefined);
      throw err;
    }
    return {
      started: (childPid) => {
        if (childPid === undefined) return;
        // The host name the engine writes into its lock is the OS's, whatever this worker is called.
        publish({ ...record, childPid, childHost: hostname() });
        // The lock is written by the Pulumi CLI the child starts: its pid goes into the record as
        // soon as it is seen, so that a worker finding this record dead can tell its lock from others'.
        const seen = new Set<number>();
        watch = setInterval(() => {
          if (seen.size >= MAX_ENGINE_PIDS) return;
          const fresh = descendants(childPid).filter((p) => !seen.has(p));
          if (fresh.length === 0) return;
          for (const p of fresh.slice(0, MAX_ENGINE_PIDS - seen.size)) seen.add(p);
          publish({ ...record, enginePids: [...seen] });
        }, ENGINE_PID_POLL_MS);
        watch.unref();
      },
      release,
    };
  }

  /** The backend's locks, now that the stack is ours among Stackrail workers: clear the dead's, wait for the living. */
  async #recover(projectName: string, stack: string, context: ClaimContext, dead: DeadOwner | undefined): Promise<void> {
    const host = this.#presence.identity.host;
    const deadOwner = dead?.record;
    const locks = await this.#store.list(projectName, stack);
    if (locks === null) {
      if (deadOwner) {
        context.progress(
          `worker ${deadOwner.workerId} on ${deadOwner.host} died during an operation on ${stack} (job ${deadOwner.jobId || "(none)"}); ` +
            `a lock it left on the ${this.#store.backend} backend cannot be cleared by Stackrail: look under ${this.#store.where(projectName, stack)} ` +
            `and remove it with \`pulumi cancel\` once its process is gone`,
        );
      }
      return;
    }
    const clearable = (lock: StackLock): "pid" | "identity" | "abandoned" | undefined =>
      abandonedWrite(lock) ? "abandoned" : sameHostGone(lock, host) ? "pid" : dead && writtenByDeadOwner(lock, dead) ? "identity" : undefined;
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
