// The circuit breaker on tenant deletions: when more than a configured number of deprovisions
// are requested within a window, further ones are refused until the window moves on. A mass
// deletion is far more often a bug or a compromised token than a real need.
import type { Redis } from "ioredis";

const ADMIT = `
-- KEYS[1] zset of admitted deletions   ARGV: jobId, nowMs, windowMs, max
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

export class DeletionBreaker {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #max: number;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(redis: Redis, prefix: string, max: number, windowMs: number, now: () => number = Date.now) {
    this.#redis = redis;
    this.#key = `${prefix}:deletions`;
    this.#max = max;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** True when this deletion may go ahead; the same job asking again (a retry) is admitted again. */
  async admit(jobId: string): Promise<boolean> {
    const ok = await this.#redis.eval(ADMIT, 1, this.#key, jobId, String(this.#now()), String(this.#windowMs), String(this.#max));
    return ok === 1;
  }
}
