// The index `GET /v1/jobs` pages through: job ids by creation time, overall, per kind and per
// tenant, so that a page reads about as many jobs as it shows instead of every job the queue
// holds (BullMQ keeps jobs in one set per state, ordered by state changes, with no way to select
// by kind or tenant).
//
// Keys (prefix = config.queuePrefix), sorted sets of job id scored by the job's creation time (ms):
//   <prefix>:jobindex:all
//   <prefix>:jobindex:kind:<kind>
//   <prefix>:jobindex:tenant:<tenantId>     jobs whose data names the tenant (`tenantId`)
//
// It is a cache of BullMQ's records, kept complete from two sides: the worker indexes every job
// it takes (worker/job-worker.ts), and sweep() indexes jobs that have not run yet (waiting,
// delayed, ...), so a reader sees a job as soon as it is queued. Bounded by the job retention:
// every write drops entries created more than INDEX_HORIZON_MS ago and renews the key's expiry,
// and a reader that meets an entry whose record is gone (removed after its retention) drops it.
import type { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { JOBS_QUEUE } from "../core/jobs.ts";
import { JOB_OPTIONS } from "./queue.ts";

/**
 * Job records are removed seven days after they finish; a job may have waited or run a while
 * before that. Entries older than this are dropped whatever their record says.
 */
export const INDEX_HORIZON_MS = 2 * JOB_OPTIONS.removeOnComplete.age * 1000;

/** BullMQ's sets of jobs that have not finished; swept into the index before every read. */
const UNFINISHED_SETS = [
  { key: "wait", type: "list" },
  { key: "paused", type: "list" },
  { key: "active", type: "list" },
  { key: "prioritized", type: "zset" },
  { key: "delayed", type: "zset" },
  { key: "waiting-children", type: "zset" },
] as const;

/** At most this many ids per set per sweep: a backlog beyond it is indexed when its jobs run. */
const SWEEP_MAX_PER_SET = 10_000;

const KEY_PART = /^[A-Za-z0-9._-]{1,128}$/;

export interface IndexEntry {
  readonly id: string;
  /** Creation time, ms. */
  readonly t: number;
}

export interface IndexFilter {
  readonly kind?: string;
  readonly tenant?: string;
  /** Only jobs created at or after this time (ms). */
  readonly sinceMs?: number;
}

type IndexedJob = Pick<Job, "id" | "name" | "timestamp" | "data">;

export class JobIndex {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(redis: Redis, prefix: string, now: () => number = Date.now) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#now = now;
  }

  allKey(): string {
    return `${this.#prefix}:jobindex:all`;
  }

  kindKey(kind: string): string {
    return `${this.#prefix}:jobindex:kind:${kind}`;
  }

  tenantKey(tenant: string): string {
    return `${this.#prefix}:jobindex:tenant:${tenant}`;
  }

  /** The smallest set that holds every match of the filter: the tenant's, else the kind's, else all. */
  keyFor(filter: IndexFilter): string {
    if (filter.tenant !== undefined) return this.tenantKey(filter.tenant);
    if (filter.kind !== undefined) return this.kindKey(filter.kind);
    return this.allKey();
  }

  #keysOf(job: IndexedJob): string[] {
    const keys = [this.allKey()];
    if (KEY_PART.test(job.name)) keys.push(this.kindKey(job.name));
    const tenant = (job.data as { tenantId?: unknown } | null | undefined)?.tenantId;
    if (typeof tenant === "string" && KEY_PART.test(tenant)) keys.push(this.tenantKey(tenant));
    return keys;
  }

  /** Indexes jobs (idempotent: an indexed job keeps its place). */
  async add(...jobs: IndexedJob[]): Promise<void> {
    const tx = this.#redis.pipeline();
    const horizon = this.#now() - INDEX_HORIZON_MS;
    const touched = new Set<string>();
    for (const job of jobs) {
      if (!job.id || !(job.timestamp > 0)) continue;
      for (const key of this.#keysOf(job)) {
        tx.zadd(key, job.timestamp, job.id);
        touched.add(key);
      }
    }
    for (const key of touched) {
      tx.zremrangebyscore(key, "-inf", `(${horizon}`);
      tx.pexpire(key, INDEX_HORIZON_MS);
    }
    if (touched.size > 0) await tx.exec();
  }

  /**
   * Indexes the jobs BullMQ holds that have not finished and that the index lacks (queued by any
   * client, not yet taken by a worker). Returns how many it added.
   */
  async sweep(queue: Queue): Promise<number> {
    const keys = queue.keys as Record<string, string>;
    const read = this.#redis.pipeline();
    for (const set of UNFINISHED_SETS) {
      const key = keys[set.key] ?? `${this.#prefix}:${JOBS_QUEUE}:${set.key}`;
      if (set.type === "list") read.lrange(key, 0, SWEEP_MAX_PER_SET - 1);
      else read.zrevrange(key, 0, SWEEP_MAX_PER_SET - 1);
    }
    const ids = new Set<string>();
    for (const [err, value] of (await read.exec()) ?? []) {
      // A set of another type (a BullMQ version that changed it) is skipped, not fatal.
      if (!err && Array.isArray(value)) for (const id of value as string[]) ids.add(id);
    }
    if (ids.size === 0) return 0;
    const all = [...ids];
    const missing: string[] = [];
    for (let i = 0; i < all.length; i += 1000) {
      const chunk = all.slice(i, i + 1000);
      const scores = await this.#redis.zmscore(this.allKey(), ...chunk);
      chunk.forEach((id, n) => {
        if (scores[n] === null) missing.push(id);
      });
    }
    if (missing.length === 0) return 0;
    const fetch = this.#redis.pipeline();
    // keys[""] is BullMQ's job key prefix (`<prefix>:jobs:`).
    const jobKey = keys[""] ?? `${this.#prefix}:${JOBS_QUEUE}:`;
    for (const id of missing) fetch.hmget(`${jobKey}${id}`, "name", "timestamp", "data");
    const jobs: IndexedJob[] = [];
    ((await fetch.exec()) ?? []).forEach(([err, value], n) => {
      const [name, timestamp, data] = (err ? [] : (value as (string | null)[])) as (string | null | undefined)[];
      if (!name || !timestamp) return;
      let parsed: unknown = null;
      try {
        parsed = data ? JSON.parse(data) : null;
      } catch {
        // Unreadable data: indexed without a tenant.
      }
      jobs.push({ id: missing[n] ?? "", name, timestamp: Number(timestamp), data: parsed });
    });
    await this.add(...jobs);
    return jobs.length;
  }

  /**
   * Entries of `key`, newest first, strictly after `after` in that order (same creation time:
   * descending id), created at or after `sinceMs`; at most `count`.
   */
  async range(key: string, options: { after?: IndexEntry; sinceMs?: number; count: number }): Promise<IndexEntry[]> {
    const { after, count } = options;
    const max = after ? String(after.t) : "+inf";
    const min = options.sinceMs !== undefined ? String(options.sinceMs) : "-inf";
    const out: IndexEntry[] = [];
    for (let offset = 0; ;) {
      const raw = await this.#redis.zrange(key, max, min, "BYSCORE", "REV", "LIMIT", offset, count, "WITHSCORES");
      if (raw.length === 0) return out;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const id = raw[i] ?? "";
        const t = Number(raw[i + 1]);
        // Entries sharing the cursor's time come first; those not after it were already shown.
        if (after && t === after.t && id >= after.id) continue;
        out.push({ id, t });
      }
      if (out.length > 0 || raw.length < count * 2) return out.slice(0, count);
      offset += count;
    }
  }

  /** Drops entries whose job record is gone from the keys a reader met them in. */
  async forget(ids: readonly string[], keys: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const tx = this.#redis.pipeline();
    for (const key of new Set(keys)) tx.zrem(key, ...ids);
    await tx.exec();
  }
}
