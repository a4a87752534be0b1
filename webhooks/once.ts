// "Do this once per key, answer every copy the same": the atomic dedupe behind GitHub deliveries
// and Idempotency-Key headers. The first caller sets a short-lived `pending` marker on every one of
// its keys at once (one Lua script: if any key is taken, none is claimed), does the work, then
// stores the answer under every key with a long TTL; concurrent copies wait briefly and answer the
// stored value. If the first attempt fails, the markers are removed so a retry is accepted.
// Several keys name one piece of work in several ways (a delivery id and a digest of its body): a
// copy that matches any one of them is a copy.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";

const PENDING = "pending:";
const DONE = "done:";
const CLAIMED = "claimed";

// A stored answer wins over a pending marker, so a copy never waits for a retry of finished work.
// KEYS[1..ARGV[3]] are the claim's keys; any KEYS after them are set (to ARGV[4], ARGV[6], … with
// ARGV[5], ARGV[7], … seconds to live) only when this claim wins, in the same script.
const CLAIM = `
local n = tonumber(ARGV[3])
local pending = false
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v then
    if string.sub(v, 1, ${DONE.length}) == '${DONE}' then return v end
    pending = v
  end
end
if pending then return pending end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
for i = n + 1, #KEYS do
  local a = 4 + 2 * (i - n - 1)
  redis.call('SET', KEYS[i], ARGV[a], 'EX', tonumber(ARGV[a + 1]))
end
return '${CLAIMED}'`;

const STORE = `for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2]) end return #KEYS`;

const DEL_IF_OURS = `
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n`;

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

/**
 * Writes that belong to the claim: sent on the claim's own connection in the same tick, right
 * behind it (Redis runs them in that order), so they cost no round trip of their own. They must
 * act only when `guard.key` holds `guard.value` (the claim's marker), i.e. only for the caller
 * whose claim won. A write that fails fails the run. (Not an ioredis pipeline: building one copies
 * every script defined on the connection, BullMQ's included, which costs more than the writes.)
 */
export type ClaimWrites = (redis: Redis, guard: { key: string; value: string }) => readonly Promise<unknown>[];

/**
 * A key set by the claim's own script, only when the claim wins: no command of its own, and no
 * guard to check (a copy that loses the claim, or finds the work done, sets nothing).
 */
export interface ClaimSet {
  readonly key: string;
  readonly value: string;
  readonly ttlSeconds: number;
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
   * Runs `work` for the first caller of `key` (or of any of `keys`: a copy that matches one of them
   * answers what the first did). `work` returns whether its value should be remembered (a refusal
   * is not: a retry must be able to succeed). Errors from `work` or from Redis propagate.
   * `setOnClaim` keys are set by the claim's script when (and only when) this caller wins it;
   * `alsoOnClaim` writes follow the claim on its connection, each guarded by the claim's marker.
   */
  async run<T>(
    key: string | readonly string[],
    work: () => Promise<{ remember: boolean; value: T }>,
    options: { alsoOnClaim?: ClaimWrites; setOnClaim?: readonly ClaimSet[] } = {},
  ): Promise<OnceResult<T>> {
    const keys = typeof key === "string" ? [key] : [...key];
    if (keys.length === 0) throw new TypeError("OnceStore.run needs at least one key");
    const deadline = Date.now() + this.#options.waitMs;
    const poll = this.#options.pollMs ?? 25;
    const release = (marker: string) => this.#redis.eval(DEL_IF_OURS, keys.length, ...keys, marker);
    for (;;) {
      const marker = `${PENDING}${randomUUID()}`;
      let claimed: unknown;
      try {
        claimed = await this.#claim(keys, marker, options.alsoOnClaim, options.setOnClaim ?? []);
      } catch (err) {
        // A timed-out claim may still run when a hung Redis wakes up; the delete queued behind it on the
        // same connection then removes the markers, so the redelivery is not blocked for pendingTtlMs.
        release(marker).catch(() => undefined);
        throw err;
      }
      if (claimed === CLAIMED) {
        let outcome: { remember: boolean; value: T };
        try {
          outcome = await work();
        } catch (err) {
          await release(marker).catch(() => undefined);
          throw err;
        }
        if (outcome.remember) {
          // Stored under every key at once, after the work, so a copy never answers jobs that are not in Redis yet.
          const stored = this.#redis.eval(STORE, keys.length, ...keys, `${DONE}${JSON.stringify(outcome.value)}`, String(this.#options.doneTtlSeconds));
          const background = this.#options.storeInBackground;
          if (background) stored.catch(background.onStoreError);
          else await stored;
        } else {
          await release(marker);
        }
        return { status: "first", value: outcome.value };
      }
      if (typeof claimed === "string" && claimed.startsWith(DONE)) return { status: "replay", value: JSON.parse(claimed.slice(DONE.length)) as T };
      // Someone else holds a key: wait for their answer, or for the keys to go away (they failed).
      for (;;) {
        if (Date.now() >= deadline) return { status: "busy" };
        await new Promise((r) => setTimeout(r, poll));
        const current = await this.#redis.mget(...keys);
        const done = current.find((v) => v?.startsWith(DONE));
        if (done) return { status: "replay", value: JSON.parse(done.slice(DONE.length)) as T };
        if (current.every((v) => v === null)) break; // the first attempt gave up; try to claim again
      }
      if (Date.now() >= deadline) return { status: "busy" };
    }
  }

  async #claim(keys: readonly string[], marker: string, also: ClaimWrites | undefined, sets: readonly ClaimSet[]): Promise<unknown> {
    const args: (string | number)[] = [...keys];
    for (const s of sets) args.push(s.key);
    args.push(marker, String(this.#options.pendingTtlMs), String(keys.length));
    for (const s of sets) args.push(s.value, String(s.ttlSeconds));
    const claim = this.#redis.eval(CLAIM, keys.length + sets.length, ...args);
    if (!also) return claim;
    const writes = also(this.#redis, { key: keys[0] as string, value: marker });
    const [claimed] = await Promise.all([claim, ...writes]);
    return claimed;
  }
}
