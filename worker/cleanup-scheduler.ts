// Deferred clean-ups: after a tier move the source side is kept for a rollback window, then
// destroyed. Due clean-ups sit in a Redis sorted set (score = due time); the worker polls it and
// enqueues a `tenant.move-cleanup` job, which runs in the tenant's lane like every other job and
// checks its own guards (never the tier the tenant lives on, protection, a backup first). There is
// no raw stack destroy to enqueue: nothing outside the worker can ask for one.
import type { Redis } from "ioredis";
import { regionSchema, tenantIdSchema, tierSchema, type Tier } from "../core/ids.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "./queue.ts";

interface Cleanup {
  tenantId: string;
  tier: Tier;
  region: string;
}

const TAKE_DUE = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 20)
for _, m in ipairs(due) do redis.call('ZREM', KEYS[1], m) end
return due
`;

export class CleanupScheduler {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #now: () => number;

  constructor(redis: Redis, prefix: string, now: () => number = Date.now) {
    this.#redis = redis;
    this.#key = `${prefix}:move-cleanups`;
    this.#now = now;
  }

  #member(c: Cleanup): string {
    return JSON.stringify({ tenantId: c.tenantId, tier: c.tier, region: c.region });
  }

  async schedule(tenantId: string, tier: Tier, region: string, dueAt: number): Promise<void> {
    await this.#redis.zadd(this.#key, dueAt, this.#member({ tenantId, tier, region }));
  }

  async cancel(tenantId: string, tier: Tier): Promise<void> {
    const all = await this.#redis.zrange(this.#key, 0, -1);
    for (const m of all) {
      const c = JSON.parse(m) as Cleanup;
      if (c.tenantId === tenantId && c.tier === tier) await this.#redis.zrem(this.#key, m);
    }
  }

  /** Takes due clean-ups atomically (one worker gets each) and enqueues their destroys. */
  async enqueueDue(queue: JobQueue, logger: Logger): Promise<number> {
    const due = (await this.#redis.eval(TAKE_DUE, 1, this.#key, String(this.#now()))) as string[];
    for (const m of due) {
      let c: Cleanup;
      try {
        const raw = JSON.parse(m) as Record<string, unknown>;
        c = { tenantId: tenantIdSchema.parse(raw.tenantId), tier: tierSchema.parse(raw.tier), region: regionSchema.parse(raw.region) };
      } catch {
        logger.warn("skipping a move clean-up entry that does not parse");
        continue;
      }
      let jobId: string;
      try {
        ({ jobId } = await queue.enqueue({
          kind: "tenant.move-cleanup",
          trigger: { type: "schedule", name: "move-cleanup" },
          requestedAt: new Date(this.#now()).toISOString(),
          tenantId: c.tenantId,
          tier: c.tier,
          region: c.region,
        }));
      } catch (err) {
        // Taken from the set but not queued: put it back so the next tick tries again.
        await this.#redis.zadd(this.#key, this.#now(), this.#member(c));
        logger.warn({ err, tenantId: c.tenantId, tier: c.tier }, "move clean-up could not be queued; kept for the next tick");
        continue;
      }
      logger.info({ jobId, tenantId: c.tenantId, tier: c.tier }, "rollback window over; source resources scheduled for removal");
    }
    return due.length;
  }
}
