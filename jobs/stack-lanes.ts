// Per-stack lanes: jobs that change one stack run one at a time, in arrival order, even though
// they all travel through the one BullMQ queue. A lane is a Redis list of job ids (FIFO) plus a
// lease key naming the job that holds the stack; every transition is one Lua script, so the
// enqueue side (register, supersede, cancel) and the worker side (acquire, renew, release) never
// interleave half-way.
//
// Keys (prefix = config.queuePrefix, beside BullMQ's `<prefix>:jobs:*` keys):
//   <prefix>:lane:<stack>        list of job ids, head = the job allowed to run next
//   <prefix>:lane-lease:<stack>  string: owner job id, with a TTL (the lease)
//   <prefix>:jobmeta:<jobId>     hash: stack, kind, registeredAt, acquired, supersededBy, cancelled,
//                                busyWaits (times it waited for a locked stack; not a BullMQ attempt)
//
// The lane heals itself: a head whose BullMQ job is gone (never added, or removed) or already
// finished (completed or finally failed) and that holds no lease is dropped by the next acquire.
//
// Waiting costs nothing (issue 14 §4): a job that cannot acquire is parked (a BullMQ delayed job,
// `parked` in its metadata) and whoever frees the head of the lane (release, cancel, supersede,
// unregister) promotes the new head at once. The delay a waiter parks with is only a safety poll
// for a lost wake-up (a releaser that died between its release and the promote): the first waiter
// looks every `safetyPollMs`, and each acquire shortens the delay of the waiter right behind it to
// that; deeper waiters look rarely (quadratically later with their place, capped), so a thousand
// waiters cost a few Redis commands per second, not thousands.
//
// Every script declares each key it touches (KEYS[]), so that lanes can run on Redis Cluster
// (with the queue's hash-tagged prefix); keys that depend on the lane's content (the head's
// records) are read first and passed in, and the script says when the head changed meanwhile.
import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { JOBS_QUEUE } from "../core/jobs.ts";

/** Metadata survives the job record (7 days) a little, so job views can still explain themselves. */
const META_TTL_SECONDS = 8 * 24 * 3600;
/** A lane entry whose BullMQ job does not exist is dropped only after this long (the add may be in flight). */
const GHOST_GRACE_MS = 30_000;

const REGISTER = `
-- KEYS[1] lane, KEYS[2] meta, [KEYS[3] guard]   ARGV: jobId, stack, kind, ttl, [guard value]
if #KEYS > 2 and redis.call('GET', KEYS[3]) ~= ARGV[5] then return 0 end
if redis.call('HEXISTS', KEYS[2], 'stack') == 1 then return 0 end
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'stack', ARGV[2], 'kind', ARGV[3], 'registeredAt', tostring(nowMs))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
`;

const SUPERSEDE_OLDER = `
-- KEYS[1] lane, KEYS[2] lease, KEYS[3..n] the records (jobmeta) of the jobs ARGV[3..n] (same order)
-- ARGV: newJobId, kind, the ids ahead of newJobId in the lane when the caller read it
-- Returns {'ok', superseded ids...}, or {'changed'} when a job ahead of newJobId is not among the
-- ids given (the lane changed since the caller read it: read it again).
-- Only a job still waiting in the lane supersedes: one that left it (itself superseded by a newer
-- job whose supersede ran first, cancelled, finished) must not reach past itself to newer jobs.
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return {'ok'} end
local metaOf = {}
for i = 3, #ARGV do metaOf[ARGV[i]] = KEYS[i] end
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  if id == ARGV[1] then break end
  if not metaOf[id] then return {'changed'} end
end
local holder = redis.call('GET', KEYS[2])
local out = {'ok'}
for _, id in ipairs(ids) do
  if id == ARGV[1] then break end
  local mk = metaOf[id]
  local meta = redis.call('HMGET', mk, 'kind', 'acquired')
  if meta[1] == ARGV[2] and meta[2] ~= '1' and holder ~= id then
    redis.call('HSET', mk, 'supersededBy', ARGV[1])
    redis.call('LREM', KEYS[1], 1, id)
    table.insert(out, id)
  end
end
return out
`;

/** Answers of ACQUIRE: acquired, waits (park), or read the head again (it changed, or a dead head was dropped). */
const ACQUIRED = 1;
const WAITS = 0;
const HEAD_CHANGED = -1;

const ACQUIRE = `
-- KEYS[1] lane, KEYS[2] lease, KEYS[3] own meta, KEYS[4] expected head's meta, KEYS[5] expected head's BullMQ job
-- ARGV: jobId, leaseMs, expectedHead ('' = none known), ghostGraceMs, stack, metaTtl, park ('1' marks a waiter parked)
-- Returns {1, next waiter or ''} acquired; {0, place in the lane (-1: never)} waits; {-1, head} read the head again.
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('GET', KEYS[2])
if redis.call('HGET', KEYS[3], 'supersededBy') or redis.call('HGET', KEYS[3], 'cancelled') == '1' then return {0, -1} end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then
  -- Added to BullMQ but never (or no longer) registered, e.g. a register undone after an add that
  -- timed out on the client yet ran: join the lane at the back instead of waiting forever.
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[3], 'stack', ARGV[5], 'registeredAt', tostring(nowMs))
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
end
local head = redis.call('LINDEX', KEYS[1], 0)
if head == ARGV[1] then
  if holder and holder ~= ARGV[1] then
    if ARGV[7] == '1' then redis.call('HSET', KEYS[3], 'parked', '1') end
    return {0, 0}
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
  redis.call('HSET', KEYS[3], 'acquired', '1')
  redis.call('HDEL', KEYS[3], 'parked', 'parkUntil')
  return {1, redis.call('LINDEX', KEYS[1], 1) or ''}
end
if holder ~= head then
  -- A head that holds no lease may be dead: its job gone (past the grace an add may take) or finished.
  if head ~= ARGV[3] then return {-1, head} end
  local ghost = false
  if redis.call('EXISTS', KEYS[5]) == 0 then
    local reg = tonumber(redis.call('HGET', KEYS[4], 'registeredAt') or '0')
    ghost = (nowMs - reg) > tonumber(ARGV[4])
  elseif redis.call('HEXISTS', KEYS[5], 'finishedOn') == 1 then
    ghost = true
  end
  if ghost then
    redis.call('LPOP', KEYS[1])
    return {-1, redis.call('LINDEX', KEYS[1], 0) or ''}
  end
end
if ARGV[7] == '1' then redis.call('HSET', KEYS[3], 'parked', '1') end
return {0, redis.call('LPOS', KEYS[1], ARGV[1])}
`;

const PARKED = `
-- KEYS[1] lane, KEYS[2] lease, KEYS[3] own meta   ARGV: jobId, parkUntil (ms), metaTtl
-- After the waiter moved itself to delayed: records until when, and says whether the lane became
-- free for it meanwhile (its wake-up may have come while it was not delayed yet) and its place now.
if redis.call('HGET', KEYS[3], 'parked') ~= '1' then return {0, -1} end
redis.call('HSET', KEYS[3], 'parkUntil', ARGV[2])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
local pos = redis.call('LPOS', KEYS[1], ARGV[1])
if not pos then return {0, -1} end
local holder = redis.call('GET', KEYS[2])
if pos == 0 and (not holder or holder == ARGV[1]) then return {1, 0} end
return {0, pos}
`;

const DROP_DEAD_HEAD = `
-- KEYS[1] lane, KEYS[2] lease, KEYS[3] head's meta, KEYS[4] head's BullMQ job   ARGV: head, ghostGraceMs
-- Drops the head if it still is this job and the job is gone or finished; returns the new head
-- when the lane is free, else false.
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  local ghost = false
  if redis.call('EXISTS', KEYS[4]) == 0 then
    local reg = tonumber(redis.call('HGET', KEYS[3], 'registeredAt') or '0')
    ghost = (nowMs - reg) > tonumber(ARGV[2])
  elseif redis.call('HEXISTS', KEYS[4], 'finishedOn') == 1 then
    ghost = true
  end
  if ghost then redis.call('LPOP', KEYS[1]) end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
return redis.call('LINDEX', KEYS[1], 0)
`;

const RENEW = `
-- KEYS[1] lease   ARGV: jobId, leaseMs
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
`;

const RELEASE = `
-- KEYS[1] lane, KEYS[2] lease   ARGV: jobId
-- Returns the lane's new head when nobody holds the lane any more (the job to wake), else false.
redis.call('LREM', KEYS[1], 0, ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
return redis.call('LINDEX', KEYS[1], 0)
`;

const CANCEL = `
-- KEYS[1] lane, KEYS[2] lease, KEYS[3] meta   ARGV: jobId, ttl
if redis.call('HGET', KEYS[3], 'acquired') == '1' or redis.call('GET', KEYS[2]) == ARGV[1] then return 0 end
redis.call('HSET', KEYS[3], 'cancelled', '1')
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
redis.call('LREM', KEYS[1], 0, ARGV[1])
return 1
`;

/** How long the first waiter of a lane parks: the safety poll for a lost wake-up. */
export const LANE_SAFETY_POLL_MS = 30_000;
/** No waiter parks longer than this, however deep in its lane. */
export const LANE_MAX_PARK_MS = 6 * 3600_000;

/** What acquire() answers: the lane is the job's (and who waits right behind it), or its place while it waits. */
export type LaneAcquire = { readonly acquired: true; readonly next: string | null } | { readonly acquired: false; readonly position: number };

/**
 * How a parked job is woken: BullMQ's own promote and change of delay. Injected by tests (to lose
 * wake-ups on purpose); by default built on the queue the lanes belong to.
 */
export interface LaneWaker {
  /** Moves a delayed job to waiting now. `gone`: no such job, or it finished; `not-delayed`: it is waiting or running. */
  promote(jobId: string): Promise<"woken" | "not-delayed" | "gone">;
  /** Makes a delayed job due in delayMs; false when it is not delayed. */
  changeDelay(jobId: string, delayMs: number): Promise<boolean>;
  close?(): Promise<void>;
}

export interface StackLanesOptions {
  /** How long the first waiter of a lane parks before it looks again by itself (default LANE_SAFETY_POLL_MS). */
  readonly safetyPollMs?: number;
  readonly maxParkMs?: number;
  readonly waker?: LaneWaker;
}

/** BullMQ's promote and changeDelay on the lanes' queue, through a Queue handle made on first use. */
class QueueWaker implements LaneWaker {
  readonly #redis: Redis;
  readonly #prefix: string;
  #queue: Queue | undefined;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  #q(): Queue {
    if (!this.#queue) {
      // On the lanes' own connection, writing nothing at creation (no meta update, no version check).
      this.#queue = new Queue(JOBS_QUEUE, { connection: this.#redis, prefix: this.#prefix, skipVersionCheck: true, skipMetasUpdate: true });
      this.#queue.on("error", () => undefined);
    }
    return this.#queue;
  }

  async promote(jobId: string): Promise<"woken" | "not-delayed" | "gone"> {
    const job = await Job.fromId(this.#q(), jobId);
    if (!job || job.finishedOn) return "gone";
    try {
      await job.promote();
      return "woken";
    } catch {
      // Not delayed (any more): waiting, running, or parking right now (it looks once more after parking).
      return "not-delayed";
    }
  }

  async changeDelay(jobId: string, delayMs: number): Promise<boolean> {
    const job = await Job.fromId(this.#q(), jobId);
    if (!job || job.finishedOn) return false;
    try {
      await job.changeDelay(Math.max(0, Math.floor(delayMs)));
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.#queue?.close();
  }
}

export interface LaneMeta {
  stack?: string;
  kind?: string;
  registeredAt?: number;
  acquired: boolean;
  supersededBy?: string;
  cancelled: boolean;
  /** Times the job waited for a stack locked by a live process. */
  busyWaits: number;
}

export class StackLanes {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #safetyPollMs: number;
  readonly #maxParkMs: number;
  readonly #waker: LaneWaker;
  readonly #ownWaker: boolean;

  constructor(redis: Redis, prefix: string, options: StackLanesOptions = {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#safetyPollMs = Math.max(1, options.safetyPollMs ?? LANE_SAFETY_POLL_MS);
    this.#maxParkMs = Math.max(this.#safetyPollMs, options.maxParkMs ?? LANE_MAX_PARK_MS);
    this.#waker = options.waker ?? new QueueWaker(redis, prefix);
    this.#ownWaker = options.waker === undefined;
  }

  laneKey(stack: string): string {
    return `${this.#prefix}:lane:${stack}`;
  }

  #leaseKey(stack: string): string {
    return `${this.#prefix}:lane-lease:${stack}`;
  }

  #metaKey(jobId: string): string {
    return `${this.#prefix}:jobmeta:${jobId}`;
  }

  #jobKey(jobId: string): string {
    return `${this.#prefix}:${JOBS_QUEUE}:${jobId}`;
  }

  /** Appends jobId to the stack's lane. Idempotent: a job id registers once (redelivery reuses ids). */
  async register(stack: string, jobId: string, options: { kind?: string } = {}): Promise<boolean> {
    const added = await this.#redis.eval(REGISTER, 2, this.laneKey(stack), this.#metaKey(jobId), jobId, stack, options.kind ?? "", String(META_TTL_SECONDS));
    return added === 1;
  }

  /**
   * register() on the connection `redis` (the caller's, so that it follows the caller's earlier
   * commands in order). With `onlyIf`, the job registers only when that key holds that value when
   * Redis runs the script: the edge registers a delivery's jobs only if its claim on the delivery,
   * sent just before on the same connection, is the one that holds the key. True when registered.
   */
  async registerOn(redis: Redis, stack: string, jobId: string, options: { kind?: string; onlyIf?: { key: string; value: string } } = {}): Promise<boolean> {
    const guard = options.onlyIf;
    const keys = [this.laneKey(stack), this.#metaKey(jobId), ...(guard ? [guard.key] : [])];
    const added = await redis.eval(REGISTER, keys.length, ...keys, jobId, stack, options.kind ?? "", String(META_TTL_SECONDS), ...(guard ? [guard.value] : []));
    return added === 1;
  }

  /**
   * Marks every older job of the same kind that is still waiting in the lane (registered, never
   * acquired) as superseded by newJobId and takes it out of the lane. Returns the superseded ids.
   * The superseded jobs that were parked, and the lane's new head if the lane is free, are woken
   * in the background: the caller (the edge) answers without waiting for that.
   */
  async supersedeOlder(stack: string, newJobId: string, kind: string): Promise<string[]> {
    // The records of the jobs ahead are keys the script must be given: read the lane first (jobs
    // only ever join at the back, so the script rarely finds one ahead that it was not given).
    for (let turn = 0; turn < 16; turn++) {
      const lane = await this.#redis.lrange(this.laneKey(stack), 0, -1);
      const at = lane.indexOf(newJobId);
      if (at < 0) return [];
      const ahead = lane.slice(0, at);
      const [answer, ...out] = (await this.#redis.eval(
        SUPERSEDE_OLDER,
        2 + ahead.length,
        this.laneKey(stack),
        this.#leaseKey(stack),
        ...ahead.map((id) => this.#metaKey(id)),
        newJobId,
        kind,
        ...ahead,
      )) as string[];
      if (answer === "changed") continue;
      if (out.length > 0) void this.#afterRemoval(stack, out).catch(() => undefined);
      return out;
    }
    return [];
  }

  /**
   * True only when jobId is the head of the lane and no other job holds the lease; takes or renews the
   * lease. A superseded or cancelled job never acquires; a job missing from the lane joins it at the back.
   * Unlike acquire(), a job that cannot acquire is not marked parked (nobody wakes it: it polls).
   */
  async tryAcquire(stack: string, jobId: string, leaseMs: number): Promise<boolean> {
    return (await this.#acquire(stack, jobId, leaseMs, false)).acquired;
  }

  /**
   * tryAcquire() for a job that parks when it cannot acquire: it is marked parked, so that whoever
   * frees the lane wakes it, and it learns its place (how long to park, parkDelayMs). An acquire
   * answers the waiter right behind, to be armed (arm()).
   */
  async acquire(stack: string, jobId: string, leaseMs: number): Promise<LaneAcquire> {
    return this.#acquire(stack, jobId, leaseMs, true);
  }

  async #acquire(stack: string, jobId: string, leaseMs: number, park: boolean): Promise<LaneAcquire> {
    // The head's records are keys the script must be given: read the head, and read it again when
    // the script says it changed (or it dropped a dead head). A few turns at most in practice.
    let expected = "";
    for (let turn = 0; turn < 16; turn++) {
      const head = expected || jobId;
      const [code, value] = (await this.#redis.eval(
        ACQUIRE,
        5,
        this.laneKey(stack),
        this.#leaseKey(stack),
        this.#metaKey(jobId),
        this.#metaKey(head),
        this.#jobKey(head),
        jobId,
        String(Math.max(1, Math.floor(leaseMs))),
        expected,
        String(GHOST_GRACE_MS),
        stack,
        String(META_TTL_SECONDS),
        park ? "1" : "0",
      )) as [number, string | number];
      if (code === ACQUIRED) return { acquired: true, next: value === "" ? null : String(value) };
      if (code === WAITS) return { acquired: false, position: Number(value) };
      if (code !== HEAD_CHANGED) break;
      expected = String(value);
    }
    // The head kept changing under us: wait like the first waiter and look again.
    return { acquired: false, position: 1 };
  }

  /** How long a waiter at this place of its lane parks (0 = head blocked, 1 = right behind the runner). */
  parkDelayMs(position: number): number {
    const k = Math.max(1, Math.floor(position));
    return Math.min(this.#maxParkMs, this.#safetyPollMs * k * k);
  }

  /** The first waiter's delay: the safety poll. */
  get safetyPollMs(): number {
    return this.#safetyPollMs;
  }

  /**
   * Called by a waiter once it is delayed (parked until parkUntil): whether the lane became free
   * for it meanwhile (a wake-up that came before it was delayed finds nothing to promote, so the
   * waiter promotes itself), and its place now.
   */
  async parked(stack: string, jobId: string, parkUntil: number): Promise<{ free: boolean; position: number }> {
    const [free, position] = (await this.#redis.eval(
      PARKED,
      3,
      this.laneKey(stack),
      this.#leaseKey(stack),
      this.#metaKey(jobId),
      jobId,
      String(Math.floor(parkUntil)),
      String(META_TTL_SECONDS),
    )) as [number, number];
    return { free: free === 1, position: Number(position) };
  }

  /**
   * Brings the next look of a parked job forward to the safety poll: called on the waiter right
   * behind a job that just acquired, so that if the lane's release never wakes it (the releaser
   * died), it looks again within one safety poll. Best effort: never throws.
   */
  async arm(jobId: string): Promise<void> {
    try {
      const [parked, until] = await this.#redis.hmget(this.#metaKey(jobId), "parked", "parkUntil");
      if (parked !== "1") return;
      const soon = Date.now() + this.#safetyPollMs;
      if (until !== null && Number(until) <= soon) return;
      if (await this.#waker.changeDelay(jobId, this.#safetyPollMs)) await this.#redis.hset(this.#metaKey(jobId), "parkUntil", String(soon));
    } catch {
      // The waiter's own delay still brings it back.
    }
  }

  /**
   * Wakes the lane's head (known to be `head`, with nobody holding the lane) if it is parked; a head
   * whose job is gone or finished is dropped and the next one woken. Never throws: a wake-up that
   * fails costs the waiter its safety poll, never its place.
   */
  async #wake(stack: string, head: string | null): Promise<void> {
    let next = head;
    try {
      for (let turn = 0; next && turn < 8; turn++) {
        if ((await this.#redis.hget(this.#metaKey(next), "parked")) === "1") {
          // Woken, or waiting or running already (or parking right now: it looks once more once delayed).
          if ((await this.#waker.promote(next)) !== "gone") return;
        }
        const after = (await this.#redis.eval(
          DROP_DEAD_HEAD,
          4,
          this.laneKey(stack),
          this.#leaseKey(stack),
          this.#metaKey(next),
          this.#jobKey(next),
          next,
          String(GHOST_GRACE_MS),
        )) as string | null;
        // Still the head (alive, not parked: it looks by itself), or the lane is held.
        if (!after || after === next) return;
        next = after;
      }
    } catch {
      // See above: the safety poll covers it.
    }
  }

  /** After entries left the lane from the side (cancel, supersede, unregister): finish the removed parked ones now, wake the head. */
  async #afterRemoval(stack: string, removed: readonly string[]): Promise<void> {
    for (const id of removed) {
      // A removed job that is parked would otherwise sit until its next look before it ends.
      if ((await this.#redis.hget(this.#metaKey(id), "parked")) === "1") await this.#waker.promote(id).catch(() => undefined);
    }
    const [head] = await this.#redis.lrange(this.laneKey(stack), 0, 0);
    if (head && (await this.#redis.exists(this.#leaseKey(stack))) === 0) await this.#wake(stack, head);
  }

  /** Extends the lease if jobId still holds it (a no-op otherwise; see renewIfOwner to know which). */
  async renew(stack: string, jobId: string, leaseMs: number): Promise<void> {
    await this.renewIfOwner(stack, jobId, leaseMs);
  }

  /** Extends the lease; false when jobId no longer holds it (it expired and another job took the stack). */
  async renewIfOwner(stack: string, jobId: string, leaseMs: number): Promise<boolean> {
    const ok = await this.#redis.eval(RENEW, 1, this.#leaseKey(stack), jobId, String(Math.max(1, Math.floor(leaseMs))));
    return ok === 1;
  }

  /**
   * Removes jobId from the lane and frees the lease if it holds it, then wakes the lane's next job
   * (if it is parked). Call once the job is finished for good.
   */
  async release(stack: string, jobId: string): Promise<void> {
    const head = (await this.#redis.eval(RELEASE, 2, this.laneKey(stack), this.#leaseKey(stack), jobId)) as string | null;
    if (head) await this.#wake(stack, head);
  }

  /** Undoes a register whose BullMQ add failed, so that a retry with the same job id registers again. */
  async unregister(stack: string, jobId: string): Promise<void> {
    await this.#redis.multi().lrem(this.laneKey(stack), 0, jobId).del(this.#metaKey(jobId)).exec();
    // In the background: the edge's bounded call answers without it.
    void this.#afterRemoval(stack, []).catch(() => undefined);
  }

  /** Cancels a job that never started: it leaves the lane and its view says `cancelled`. False if it already ran. */
  async cancel(stack: string, jobId: string): Promise<boolean> {
    const ok = await this.#redis.eval(CANCEL, 3, this.laneKey(stack), this.#leaseKey(stack), this.#metaKey(jobId), jobId, String(META_TTL_SECONDS));
    if (ok === 1) await this.#afterRemoval(stack, [jobId]).catch(() => undefined);
    return ok === 1;
  }

  /** Closes the queue handle the lanes made to wake jobs, if any (not the connection, which is the caller's). */
  async close(): Promise<void> {
    if (this.#ownWaker) await this.#waker.close?.();
  }

  /** The id of the job that replaced this one, or null. The processor checks this first and finishes at once. */
  async isSuperseded(jobId: string): Promise<string | null> {
    return this.#redis.hget(this.#metaKey(jobId), "supersededBy");
  }

  /** Marks a job that was stopped while running (cancel API, time limit): its view says `cancelled`. */
  async markCancelled(jobId: string): Promise<void> {
    await this.#redis.multi().hset(this.#metaKey(jobId), "cancelled", "1").expire(this.#metaKey(jobId), META_TTL_SECONDS).exec();
  }

  /** One more wait of the job for a locked stack; returns how many it has had. */
  async noteWait(jobId: string): Promise<number> {
    const [[, n] = []] = (await this.#redis.multi().hincrby(this.#metaKey(jobId), "busyWaits", 1).expire(this.#metaKey(jobId), META_TTL_SECONDS).exec()) ?? [];
    return typeof n === "number" ? n : 1;
  }

  async isCancelled(jobId: string): Promise<boolean> {
    return (await this.#redis.hget(this.#metaKey(jobId), "cancelled")) === "1";
  }

  async meta(jobId: string): Promise<LaneMeta> {
    const h = await this.#redis.hgetall(this.#metaKey(jobId));
    return {
      ...(h.stack ? { stack: h.stack } : {}),
      ...(h.kind ? { kind: h.kind } : {}),
      ...(h.registeredAt ? { registeredAt: Number(h.registeredAt) } : {}),
      acquired: h.acquired === "1",
      ...(h.supersededBy ? { supersededBy: h.supersededBy } : {}),
      cancelled: h.cancelled === "1",
      busyWaits: Number(h.busyWaits ?? 0),
    };
  }

  /** The lane's job ids, head first (diagnostics and tests). */
  async entries(stack: string): Promise<string[]> {
    return this.#redis.lrange(this.laneKey(stack), 0, -1);
  }
}
