// Which previews are live and when each last saw activity: the cap on live previews and the
// idle reaper read it. A Redis sorted set, member = stack name, score = last activity (ms).
import type { Redis } from "ioredis";
import type { RepoRef } from "../core/jobs.ts";

export interface LivePreview {
  readonly stack: string;
  readonly repo: RepoRef;
  readonly pr: number;
  readonly lastActivity: number;
}

const ADMIT = `
-- KEYS[1] activity zset, KEYS[2] refs hash   ARGV: stack, nowMs, cap, ref
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  return 1
end
return 0
`;

export class PreviewRegistry {
  readonly #redis: Redis;
  readonly #activity: string;
  readonly #refs: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#activity = `${prefix}:previews:activity`;
    this.#refs = `${prefix}:previews:refs`;
  }

  /** Takes a live slot for the stack (or refreshes its activity); false when the cap is reached. */
  async admit(stack: string, repo: RepoRef, pr: number, cap: number, now: number): Promise<boolean> {
    const ok = await this.#redis.eval(ADMIT, 2, this.#activity, this.#refs, stack, String(now), String(cap), JSON.stringify({ repo, pr }));
    return ok === 1;
  }

  async remove(stack: string): Promise<void> {
    await this.#redis.multi().zrem(this.#activity, stack).hdel(this.#refs, stack).exec();
  }

  async count(): Promise<number> {
    return this.#redis.zcard(this.#activity);
  }

  /** Previews whose last activity is older than `before`. */
  async idleSince(before: number): Promise<LivePreview[]> {
    const stacks = await this.#redis.zrangebyscore(this.#activity, "-inf", before, "WITHSCORES");
    const out: LivePreview[] = [];
    for (let i = 0; i < stacks.length; i += 2) {
      const stack = stacks[i] as string;
      const ref = await this.#redis.hget(this.#refs, stack);
      if (!ref) continue;
      const { repo, pr } = JSON.parse(ref) as { repo: RepoRef; pr: number };
      out.push({ stack, repo, pr, lastActivity: Number(stacks[i + 1]) });
    }
    return out;
  }
}
