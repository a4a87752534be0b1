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
-- KEYS[1] lane, KEYS[2] lease   ARGV: newJobId, kind, metaPrefix
-- Only a job still waiting in the lane supersedes: one that left it (itself superseded by a newer
-- job whose supersede ran first, cancelled, finished) must not reach past itself to newer jobs.
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return {} end
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local holder = redis.call('GET', KEYS[2])
local out = {}
for _, id in ipairs(ids) do
  if id == ARGV[1] then break end
  local mk = ARGV[3] .. id
  local meta = redis.call('HMGET', mk, 'kind', 'acquired')
  if meta[1] == ARGV[2] and meta[2] ~= '1' and holder ~= id then
    redis.call('HSET', mk, 'supersededBy', ARGV[1])
    redis.call('LREM', KEYS[1], 1, id)
    table.insert(out, id)
  end
end
return out
`;

const TRY_ACQUIRE = `
-- KEYS[1] lane, KEYS[2] lease   ARGV: jobId, leaseMs, metaPrefix, bullJobPrefix, ghostGraceMs, stack, metaTtl
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('GET', KEYS[2])
local mk = ARGV[3] .. ARGV[1]
if redis.call('HGET', mk, 'supersededBy') or redis.call('HGET', mk, 'cancelled') == '1' then return 0 end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then
  -- Added to BullMQ but never (or no longer) registered, e.g. a register undone after an add that
  -- timed out on the client yet ran: join the lane at the back instead of waiting forever.
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('HSET', mk, 'stack', ARGV[6], 'registeredAt', tostring(nowMs))
  redis.call('EXPIRE', mk, tonumber(ARGV[7]))
end
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then return 0 end
  if head == ARGV[1] then break end
  if holder == head then return 0 end
  local jk = ARGV[4] .. head
  local ghost = false
  if redis.call('EXISTS', jk) == 0 then
    local reg = tonumber(redis.call('HGET', ARGV[3] .. head, 'registeredAt') or '0')
    ghost = (nowMs - reg) > tonumber(ARGV[5])
  elseif redis.call('HEXISTS', jk, 'finishedOn') == 1 then
    ghost = true
  end
  if not ghost then return 0 end
  redis.call('LPOP', KEYS[1])
end
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('HSET', ARGV[3] .. ARGV[1], 'acquired', '1')
return 1
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
redis.call('LREM', KEYS[1], 0, ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`;

const CANCEL = `
-- KEYS[1] lane, KEYS[2] lease, KEYS[3] meta   ARGV: jobId, ttl
if redis.call('HGET', KEYS[3], 'acquired') == '1' or redis.call('GET', KEYS[2]) == ARGV[1] then return 0 end
redis.call('HSET', KEYS[3], 'cancelled', '1')
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
redis.call('LREM', KEYS[1], 0, ARGV[1])
return 1
`;

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

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  laneKey(stack: string): string {
    return `${this.#prefix}:lane:${stack}`;
  }

  #leaseKey(stack: string): string {
    return `${this.#prefix}:lane-lease:${stack}`;
  }

  #metaPrefix(): string {
    return `${this.#prefix}:jobmeta:`;
  }

  #metaKey(jobId: string): string {
    return `${this.#metaPrefix()}${jobId}`;
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
   */
  async supersedeOlder(stack: string, newJobId: string, kind: string): Promise<string[]> {
    const out = (await this.#redis.eval(SUPERSEDE_OLDER, 2, this.laneKey(stack), this.#leaseKey(stack), newJobId, kind, this.#metaPrefix())) as string[];
    return out;
  }

  /**
   * True only when jobId is the head of the lane and no other job holds the lease; takes or renews the
   * lease. A superseded or cancelled job never acquires; a job missing from the lane joins it at the back.
   */
  async tryAcquire(stack: string, jobId: string, leaseMs: number): Promise<boolean> {
    const ok = await this.#redis.eval(
      TRY_ACQUIRE,
      2,
      this.laneKey(stack),
      this.#leaseKey(stack),
      jobId,
      String(Math.max(1, Math.floor(leaseMs))),
      this.#metaPrefix(),
      `${this.#prefix}:${JOBS_QUEUE}:`,
      String(GHOST_GRACE_MS),
      stack,
      String(META_TTL_SECONDS),
    );
    return ok === 1;
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

  /** Removes jobId from the lane and frees the lease if it holds it. Call once the job is finished for good. */
  async release(stack: string, jobId: string): Promise<void> {
    await this.#redis.eval(RELEASE, 2, this.laneKey(stack), this.#leaseKey(stack), jobId);
  }

  /** Undoes a register whose BullMQ add failed, so that a retry with the same job id registers again. */
  async unregister(stack: string, jobId: string): Promise<void> {
    await this.#redis.multi().lrem(this.laneKey(stack), 0, jobId).del(this.#metaKey(jobId)).exec();
  }

  /** Cancels a job that never started: it leaves the lane and its view says `cancelled`. False if it already ran. */
  async cancel(stack: string, jobId: string): Promise<boolean> {
    const ok = await this.#redis.eval(CANCEL, 3, this.laneKey(stack), this.#leaseKey(stack), this.#metaKey(jobId), jobId, String(META_TTL_SECONDS));
    return ok === 1;
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
