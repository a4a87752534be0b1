// Regions: the settings of a region's shared infrastructure (shared by the job model, the API and
// the region program's arguments), and the region index in Redis that the edge and the worker
// both use. The index answers "may a tenant go into this region yet?": a region is `ready` once a
// region job succeeded there, `provisioning` while its job waits or runs, `failed` when that job
// failed (an operator fixes the cause and asks again with POST /v1/regions/:region). It records
// the non-secret outputs of the region stack for GET /v1/regions/:region. Like the tenant index it
// is not the system of record: lost, it is rebuilt by the next region job (an idempotent `up`).
import type { Redis } from "ioredis";
import { z } from "zod";
import { SECRET_FIELD_NAME } from "./logger.ts";

export const regionEnvironmentSchema = z.enum(["production", "development"]);
/** Public DNS name of the regional ingress; the region's ACM certificate covers `<region>.<domain>` and its tenants. */
export const regionDomainSchema = z
  .string()
  .max(200)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, "must be a DNS name like saas.example.com");
export const costCentreSchema = z.string().regex(/^[A-Za-z0-9-]{1,32}$/, "must be 1 to 32 letters, digits or dashes");

export const regionSettingsSchema = z.strictObject({
  environment: regionEnvironmentSchema,
  domain: regionDomainSchema,
  costCentre: costCentreSchema,
});
export type RegionSettings = z.infer<typeof regionSettingsSchema>;

export const DEFAULT_REGION_DOMAIN = "stackrail.example.com";
export const DEFAULT_COST_CENTRE = "platform";

/**
 * Settings for a region nobody has described yet: the preview region is the development
 * environment (the first rollout wave), every other region production.
 */
export function defaultRegionSettings(region: string, previewRegion: string): RegionSettings {
  return { environment: region === previewRegion ? "development" : "production", domain: DEFAULT_REGION_DOMAIN, costCentre: DEFAULT_COST_CENTRE };
}

export type RegionState = "provisioning" | "ready" | "failed";

export interface RegionRecord {
  readonly region: string;
  readonly state: RegionState;
  /** The newest region job (the one that runs or ran last). */
  readonly jobId: string | null;
  readonly settings: RegionSettings | null;
  /** Non-secret outputs of the last successful region job. */
  readonly outputs: Record<string, unknown>;
  /** `code: message` of the last failed region job (scrubbed). */
  readonly error?: string;
  readonly readyAt?: string;
  readonly updatedAt: string;
}

/** Claims the first region job of a region: only when no job is recorded, or the recorded one is `expected`. */
const CLAIM = `
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'ready' or state == 'failed' then return state end
local current = redis.call('HGET', KEYS[1], 'jobId') or ''
if current ~= ARGV[2] then return 'changed' end
redis.call('HSET', KEYS[1], 'region', ARGV[1], 'state', 'provisioning', 'jobId', ARGV[3], 'settings', ARGV[4], 'updatedAt', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
return 'ok'
`;

/** A region job was asked for: it becomes the region's newest job; a ready region stays ready while it runs. */
const REQUESTED = `
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'ready' then state = 'provisioning' end
redis.call('HSET', KEYS[1], 'region', ARGV[1], 'state', state, 'jobId', ARGV[2], 'settings', ARGV[3], 'updatedAt', ARGV[4])
redis.call('HDEL', KEYS[1], 'error')
redis.call('SADD', KEYS[2], ARGV[1])
return state
`;

/** A region job succeeded: the region is ready; a newer job asked for meanwhile stays the newest. */
const READY = `
local current = redis.call('HGET', KEYS[1], 'jobId') or ''
redis.call('HSET', KEYS[1], 'region', ARGV[1], 'state', 'ready', 'outputs', ARGV[3], 'readyAt', ARGV[5], 'updatedAt', ARGV[5])
if current == '' or current == ARGV[2] then
  redis.call('HSET', KEYS[1], 'jobId', ARGV[2], 'settings', ARGV[4])
  redis.call('HDEL', KEYS[1], 'error')
end
redis.call('SADD', KEYS[2], ARGV[1])
return 'ok'
`;

/** The region's newest job failed: `failed` unless it is ready from an earlier job (then only the error is kept). */
const FAILED = `
if (redis.call('HGET', KEYS[1], 'jobId') or '') ~= ARGV[1] then return 'stale' end
if redis.call('HGET', KEYS[1], 'state') ~= 'ready' then redis.call('HSET', KEYS[1], 'state', 'failed') end
redis.call('HSET', KEYS[1], 'error', ARGV[2], 'updatedAt', ARGV[3])
return 'ok'
`;

export class RegionIndex {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(redis: Redis, prefix: string, now: () => number = Date.now) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#now = now;
  }

  #key(region: string): string {
    return `${this.#prefix}:region:${region}`;
  }
  #idsKey(): string {
    return `${this.#prefix}:regions`;
  }
  #stamp(): string {
    return new Date(this.#now()).toISOString();
  }

  async get(region: string): Promise<RegionRecord | null> {
    const h = await this.#redis.hgetall(this.#key(region));
    if (!h.region || !h.state) return null;
    const settings = regionSettingsSchema.safeParse(parseJson(h.settings));
    const outputs = parseJson(h.outputs);
    return {
      region: h.region,
      state: h.state as RegionState,
      jobId: h.jobId || null,
      settings: settings.success ? settings.data : null,
      outputs: typeof outputs === "object" && outputs !== null ? (outputs as Record<string, unknown>) : {},
      ...(h.error ? { error: h.error } : {}),
      ...(h.readyAt ? { readyAt: h.readyAt } : {}),
      updatedAt: h.updatedAt ?? "",
    };
  }

  async list(): Promise<RegionRecord[]> {
    const regions = (await this.#redis.smembers(this.#idsKey())).sort();
    const records = await Promise.all(regions.map((r) => this.get(r)));
    return records.filter((r): r is RegionRecord => r !== null);
  }

  /**
   * Records `jobId` as the region's first job, if the region has none (`expected` null) or still
   * has `expected` (a job that is gone). "ok" when claimed; otherwise what stood in the way.
   */
  async claim(region: string, expected: string | null, jobId: string, settings: RegionSettings): Promise<"ok" | "changed" | "ready" | "failed"> {
    return (await this.#redis.eval(CLAIM, 2, this.#key(region), this.#idsKey(), region, expected ?? "", jobId, JSON.stringify(settings), this.#stamp())) as
      "ok" | "changed" | "ready" | "failed";
  }

  /** An operator asked for a region job (POST /v1/regions/:region). */
  async requested(region: string, jobId: string, settings: RegionSettings): Promise<void> {
    await this.#redis.eval(REQUESTED, 2, this.#key(region), this.#idsKey(), region, jobId, JSON.stringify(settings), this.#stamp());
  }

  /** Undo `requested`/`claim` for a job that could not be enqueued. */
  async forget(region: string, jobId: string): Promise<void> {
    const current = await this.#redis.hget(this.#key(region), "jobId");
    if (current === jobId) await this.#redis.hdel(this.#key(region), "jobId");
  }

  async markReady(region: string, jobId: string, settings: RegionSettings, outputs: Record<string, unknown>): Promise<void> {
    const safe = Object.fromEntries(Object.entries(outputs).filter(([k]) => !SECRET_FIELD_NAME.test(k)));
    await this.#redis.eval(READY, 2, this.#key(region), this.#idsKey(), region, jobId, JSON.stringify(safe), JSON.stringify(settings), this.#stamp());
  }

  async markFailed(region: string, jobId: string, error: string): Promise<void> {
    await this.#redis.eval(FAILED, 1, this.#key(region), jobId, error.slice(0, 500), this.#stamp());
  }
}

function parseJson(text: string | undefined): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
