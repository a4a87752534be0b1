// "Do this once per key, answer every copy the same": the atomic dedupe behind GitHub delivery ids
// and Idempotency-Key headers. The first caller sets a short-lived `pending` marker (SET NX), does
// the work, then stores the answer with a long TTL; concurrent copies wait briefly and answer the
// stored value. If the first attempt fails, the marker is removed so a retry is accepted.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";

const PENDING = "pending:";
const DONE = "done:";

const DEL_IF_OURS = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export interface OnceOptions {
  /** How long a pending marker survives a crashed first attempt. */
  pendingTtlMs: number;
  /** How long the answer is kept. */
  doneTtlSeconds: number;
  /** How long a concurrent copy waits for the first to finish. */
  waitMs: number;
  pollMs?: number;
  /**
   * Answer without waiting for the answer to be stored. Only for work that is itself idempotent
   * (the same key always does the same, harmless-to-repeat thing): if the store is lost, the
   * marker expires after `pendingTtlMs` and a retry redoes the work with the same result. Saves a
   * Redis round trip per first call. A failed store is passed to `onStoreError`.
   */
  storeInBackground?: { onStoreError: (err: unknown) => void };
}

export type OnceResult<T> = { status: "first"; value: T } | { status: "replay"; value: T } | { status: "busy" };

export class OnceStore {
  readonly #redis: Redis;
  readonly #options: OnceOptions;

  constructor(redis: Redis, options: OnceOptions) {
    this.#redis = redis;
    this.#options = options;
  }

  /**
   * Runs `work` for the first caller of `key`. `work` returns whether its value should be remembered
   * (a refusal is not: a retry must be able to succeed). Errors from `work` or from Redis propagate.
   */
  async run<T>(key: string, work: () => Promise<{ remember: boolean; value: T }>): Promise<OnceResult<T>> {
    const deadline = Date.now() + this.#options.waitMs;
    const poll = this.#options.pollMs ?? 25;
    for (;;) {
      const marker = `${PENDING}${randomUUID()}`;
      let claimed: string | null;
      try {
        claimed = await this.#redis.set(key, marker, "PX", this.#options.pendingTtlMs, "NX");
      } catch (err) {
        // A timed-out SET may still run when a hung Redis wakes up; the delete queued behind it on the
        // same connection then removes the marker, so the redelivery is not blocked for pendingTtlMs.
        this.#redis.eval(DEL_IF_OURS, 1, key, marker).catch(() => undefined);
        throw err;
      }
      if (claimed === "OK") {
        let outcome: { remember: boolean; value: T };
        try {
          outcome = await work();
        } catch (err) {
          await this.#redis.eval(DEL_IF_OURS, 1, key, marker).catch(() => undefined);
          throw err;
        }
        if (outcome.remember) {
          const stored = this.#redis.set(key, `${DONE}${JSON.stringify(outcome.value)}`, "EX", this.#options.doneTtlSeconds);
          const background = this.#options.storeInBackground;
          if (background) stored.catch(background.onStoreError);
          else await stored;
        } else {
          await this.#redis.eval(DEL_IF_OURS, 1, key, marker);
        }
        return { status: "first", value: outcome.value };
      }
      // Someone else holds the key: wait for their answer, or for the key to go away (they failed).
      for (;;) {
        const current = await this.#redis.get(key);
        if (current === null) break; // the first attempt gave up; try to claim again
        if (current.startsWith(DONE)) return { status: "replay", value: JSON.parse(current.slice(DONE.length)) as T };
        if (Date.now() >= deadline) return { status: "busy" };
        await new Promise((r) => setTimeout(r, poll));
      }
      if (Date.now() >= deadline) return { status: "busy" };
    }
  }
}
