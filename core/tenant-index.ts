// The tenant index in Redis: what the tenant API reads (desired state + last known outputs).
// Redis is not the system of record: the GitOps repository (tenants/<id>/tenant.yaml) and Pulumi
// state are. Start-up calls rebuild() with what it read from the repository; the worker calls
// recordOutputs() / markDeleted() / abandonProvision() / markFailed() as jobs finish.
//
// Keys: <prefix>:tenants (set of ids), <prefix>:tenant:<id> (hash).
import type { Redis } from "ioredis";
import type { Region, TenantId, Tier } from "./ids.ts";
// Output names that smell like secrets are never stored, whatever the worker passes.
import { SECRET_FIELD_NAME } from "./logger.ts";

export interface TenantDesired {
  id: TenantId;
  region: Region;
  tier: Tier;
  version: string;
  /** A protected tenant is never deprovisioned through the API. */
  protected?: boolean;
}

/**
 * provisioning: accepted, not yet in the repository/infrastructure; active: exists; deprovisioning:
 * on its way out; failed: a provision or deprovision failed after its stack may have created or
 * kept resources. A failed record is never dropped by itself: `failure` says what may exist, and
 * DELETE cleans it up.
 */
export type TenantState = "provisioning" | "active" | "deprovisioning" | "failed";

/** What a failed job left behind, as far as the record can say; never a secret. */
export interface TenantFailure {
  /** The job kind that failed. */
  job: "tenant.provision" | "tenant.deprovision";
  jobId: string;
  /** The stack that may hold resources (and its project's tier). */
  stack: string;
  tier: Tier;
  /** `code: message`, scrubbed and bounded. */
  error: string;
  at: string;
}

export interface TenantRecord extends TenantDesired {
  state: TenantState;
  failure?: TenantFailure;
  /** Last known non-secret infrastructure outputs (endpoints, names, ARNs), as the worker recorded them. */
  outputs: Record<string, unknown>;
  updatedAt: string | null;
}

const CLAIM = `
-- KEYS[1] tenant hash, KEYS[2] ids set   ARGV: id, region, tier, version, updatedAt
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGET', KEYS[1], 'state') or 'active' end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'region', ARGV[2], 'tier', ARGV[3], 'version', ARGV[4],
  'state', 'provisioning', 'outputs', '{}', 'updatedAt', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
return 'ok'
`;

const TRANSITION = `
-- KEYS[1] tenant hash   ARGV: fromStates (comma list, empty = any), toState, updatedAt
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local st = redis.call('HGET', KEYS[1], 'state') or 'active'
if ARGV[1] ~= '' and not string.find(',' .. ARGV[1] .. ',', ',' .. st .. ',', 1, true) then return st end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updatedAt', ARGV[3]) end
return 'ok'
`;

const DROP_IF_PROVISIONING = `
if redis.call('HGET', KEYS[1], 'state') == 'provisioning' then
  redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[1]); return 1
end
return 0
`;

const MARK_FAILED = `
-- KEYS[1] tenant hash   ARGV: failure (JSON), updatedAt
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'failure', ARGV[1], 'updatedAt', ARGV[2])
return 1
`;

/** States a record keeps over a rebuild from the repository: they describe work the repository does not show. */
const KEPT_STATES: ReadonlySet<string> = new Set(["provisioning", "deprovisioning", "failed"]);

export type ClaimResult = { ok: true } | { ok: false; state: TenantState };

export class TenantIndex {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(redis: Redis, prefix: string, now: () => number = Date.now) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#now = now;
  }

  #idsKey(): string {
    return `${this.#prefix}:tenants`;
  }

  #key(id: string): string {
    return `${this.#prefix}:tenant:${id}`;
  }

  #stamp(): string {
    return new Date(this.#now()).toISOString();
  }

  /**
   * Replaces the index with the tenants read from the GitOps repository. Tenants still being
   * provisioned (accepted, not yet committed), being deprovisioned (manifests already removed,
   * resources not yet) or failed are kept: forgetting them would forget resources that exist.
   * Last outputs are kept for known tenants.
   */
  async rebuild(tenants: readonly TenantDesired[]): Promise<void> {
    const existing = await this.#redis.smembers(this.#idsKey());
    const states = new Map<string, string | null>();
    for (const id of existing) states.set(id, await this.#redis.hget(this.#key(id), "state"));
    const wanted = new Set(tenants.map((t) => t.id));
    const tx = this.#redis.multi();
    for (const id of existing) {
      if (!wanted.has(id) && !KEPT_STATES.has(states.get(id) ?? "")) tx.del(this.#key(id)).srem(this.#idsKey(), id);
    }
    for (const t of tenants) {
      const prev = states.get(t.id);
      const state = prev && KEPT_STATES.has(prev) ? prev : "active";
      tx.hset(this.#key(t.id), {
        id: t.id,
        region: t.region,
        tier: t.tier,
        version: t.version,
        protected: t.protected ? "1" : "0",
        state,
        updatedAt: this.#stamp(),
      });
      tx.hsetnx(this.#key(t.id), "outputs", "{}");
      tx.sadd(this.#idsKey(), t.id);
    }
    await tx.exec();
  }

  /** Atomically: 409-check and mark the tenant `provisioning`. Two concurrent claims for one id: one wins. */
  async claimProvision(t: Omit<TenantDesired, "protected">): Promise<ClaimResult> {
    const r = await this.#redis.eval(CLAIM, 2, this.#key(t.id), this.#idsKey(), t.id, t.region, t.tier, t.version, this.#stamp());
    return r === "ok" ? { ok: true } : { ok: false, state: r as TenantState };
  }

  /** Undo a claim whose job could not be enqueued, or whose provision finally failed. */
  async abandonProvision(id: string): Promise<void> {
    await this.#redis.eval(DROP_IF_PROVISIONING, 2, this.#key(id), this.#idsKey(), id);
  }

  /**
   * A job failed after the tenant's stack may have created or kept resources: the record stays,
   * `failed`, saying which job and stack, so the API shows it and DELETE can clean it up.
   */
  async markFailed(id: string, failure: Omit<TenantFailure, "at">): Promise<void> {
    const value: TenantFailure = { ...failure, error: failure.error.slice(0, 500), at: this.#stamp() };
    await this.#redis.eval(MARK_FAILED, 1, this.#key(id), JSON.stringify(value), this.#stamp());
  }

  /**
   * Moves the tenant to `to` if it is in one of `from` (any state when `from` is empty).
   * Returns "ok", "missing", or the current state that refused the transition.
   */
  async transition(id: string, from: readonly TenantState[], to: TenantState | ""): Promise<"ok" | "missing" | TenantState> {
    return (await this.#redis.eval(TRANSITION, 1, this.#key(id), from.join(","), to, this.#stamp())) as "ok" | "missing" | TenantState;
  }

  /** Worker: the tenant's stack is up; records its non-secret outputs and (optionally) its new desired state. */
  async recordOutputs(id: string, outputs: Record<string, unknown>, desired?: Partial<Omit<TenantDesired, "id">>): Promise<void> {
    const safe: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(outputs)) if (!SECRET_FIELD_NAME.test(k)) safe[k] = v;
    // A tenant already on its way out stays `deprovisioning` until markDeleted(); a failed one
    // stays failed until DELETE has cleaned it up.
    const current = await this.#redis.hget(this.#key(id), "state");
    const fields: Record<string, string> = {
      id,
      outputs: JSON.stringify(safe),
      state: current === "deprovisioning" || current === "failed" ? current : "active",
      updatedAt: this.#stamp(),
    };
    if (desired?.region) fields.region = desired.region;
    if (desired?.tier) fields.tier = desired.tier;
    if (desired?.version) fields.version = desired.version;
    if (desired?.protected !== undefined) fields.protected = desired.protected ? "1" : "0";
    await this.#redis.multi().hset(this.#key(id), fields).sadd(this.#idsKey(), id).exec();
  }

  /** Worker: the tenant is gone. */
  async markDeleted(id: string): Promise<void> {
    await this.#redis.multi().del(this.#key(id)).srem(this.#idsKey(), id).exec();
  }

  async get(id: string): Promise<TenantRecord | null> {
    const h = await this.#redis.hgetall(this.#key(id));
    if (!h.id) return null;
    let outputs: Record<string, unknown>;
    try {
      outputs = JSON.parse(h.outputs ?? "{}") as Record<string, unknown>;
    } catch {
      outputs = {};
    }
    let failure: TenantFailure | undefined;
    try {
      failure = h.failure ? (JSON.parse(h.failure) as TenantFailure) : undefined;
    } catch {
      failure = undefined;
    }
    return {
      id: h.id,
      region: h.region ?? "",
      tier: (h.tier ?? "pool") as Tier,
      version: h.version ?? "",
      protected: h.protected === "1",
      state: (h.state ?? "active") as TenantState,
      ...(failure ? { failure } : {}),
      outputs,
      updatedAt: h.updatedAt ?? null,
    };
  }

  async list(): Promise<TenantRecord[]> {
    const ids = (await this.#redis.smembers(this.#idsKey())).sort();
    const out: TenantRecord[] = [];
    for (const id of ids) {
      const r = await this.get(id);
      if (r) out.push(r);
    }
    return out;
  }

  /** The version a provision without `version` gets: the last one rolled out (the worker sets it). */
  async currentVersion(): Promise<string | null> {
    return this.#redis.get(`${this.#prefix}:release:current`);
  }

  async setCurrentVersion(version: string): Promise<void> {
    await this.#redis.set(`${this.#prefix}:release:current`, version);
  }
}
