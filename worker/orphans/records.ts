// What the records say should exist: the tenant index, the preview registry, the move clean-ups
// still waiting for their rollback window, and the jobs still working on a tenant or preview (whose
// objects are in transit and belong to them). Also which tenant ids and preview keys this
// installation knows of at all, for the installation scope.
import type { Redis } from "ioredis";
import type { Tier } from "../../core/ids.ts";
import { previewKey, TENANT_ID_PATTERN } from "../../core/ids.ts";
import type { Scope } from "../../core/naming.ts";
import { scanAll } from "../../core/redis.ts";
import { TenantIndex, type TenantRecord } from "../../core/tenant-index.ts";
import { PreviewRegistry } from "../preview-registry.ts";
import { pendingMoveCleanups } from "../cleanup-scheduler.ts";
import type { JobQueue } from "../../jobs/queue.ts";

/** Job states that are still going to do something. */
const LIVE_STATES = ["active", "waiting", "delayed", "prioritized", "waiting-children"] as const;

/** A preview key as names are derived from it (core/naming.ts KEY_PATTERN, ending in `-pr-<n>`). */
const PREVIEW_KEY = /^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$/;

export type StackKey = { readonly kind: "tenant"; readonly key: string } | { readonly kind: "preview"; readonly key: string };

/** `tenant-<id>` or `preview-<key>`; null for region stacks and anything else. */
export function stackKey(stack: string): StackKey | null {
  if (stack.startsWith("tenant-")) {
    const key = stack.slice("tenant-".length);
    return TENANT_ID_PATTERN.test(key) ? { kind: "tenant", key } : null;
  }
  if (stack.startsWith("preview-")) {
    const key = stack.slice("preview-".length);
    return PREVIEW_KEY.test(key) && /-pr-\d+$/.test(key) ? { kind: "preview", key } : null;
  }
  return null;
}

/** The Pulumi project a tenant stack of this tier lives in (worker/handlers/tenant-support.ts tenantProject). */
export function tierOfScope(scope: Scope): Tier | null {
  return scope === "tenant" ? "pool" : scope === "silo" ? "silo" : null;
}

export function scopeOfTier(tier: Tier): Scope {
  return tier === "silo" ? "silo" : "tenant";
}

export interface Records {
  readonly tenants: ReadonlyMap<string, TenantRecord>;
  /** Live previews (the registry), by key. */
  readonly previews: ReadonlySet<string>;
  /** `<id>/<tier>`: a tier a move left, kept until its clean-up runs. */
  readonly cleanups: ReadonlySet<string>;
  /** Tenant ids and preview keys with a job that is not finished: their objects are in transit. */
  readonly inFlight: { readonly tenants: ReadonlySet<string>; readonly previews: ReadonlySet<string> };
  /** Stacks whose job is running right now (a lock on them is that job's). */
  readonly runningStacks: ReadonlySet<string>;
  /** Every tenant id and preview key this installation has a trace of (records, jobs, lanes). */
  readonly known: { readonly tenants: Set<string>; readonly previews: Set<string> };
}

export type Owner = { readonly owned: true; readonly owner: string } | { readonly owned: false; readonly owner?: string; readonly why: string };

/** Who owns the objects of `key` in name space `scope` (t_/s_/p_, `t-`/`s-`/`p-`, attachments folders). */
export function ownerOf(records: Records, scope: Scope, key: string): Owner {
  if (scope === "preview") {
    if (records.previews.has(key)) return { owned: true, owner: `preview ${key}` };
    if (records.inFlight.previews.has(key)) return { owned: true, owner: `preview ${key} (a job is working on it)` };
    return { owned: false, why: "no live preview has this key" };
  }
  const tier = tierOfScope(scope);
  const record = records.tenants.get(key);
  if (records.inFlight.tenants.has(key)) return { owned: true, owner: `tenant ${key} (a job is working on it)` };
  if (!record) return { owned: false, why: "no tenant record has this id" };
  const owner = `tenant ${key} (${record.state}, ${record.tier})`;
  if (record.tier === tier) return { owned: true, owner };
  if (tier && records.cleanups.has(`${key}/${tier}`)) return { owned: true, owner: `${owner}; the ${tier} side is kept for a move's rollback window` };
  return { owned: false, owner, why: `tenant ${key} lives on ${record.tier}: this ${tier ?? "?"} side was left by a move, with no clean-up scheduled` };
}

/** Cache keys `t:<id>:*` are shared by both tiers; `p:<key>:*` are a preview's. */
export function ownerOfKeyPrefix(records: Records, letter: "t" | "p", key: string): Owner {
  if (letter === "p") return ownerOf(records, "preview", key);
  const record = records.tenants.get(key);
  if (record) return { owned: true, owner: `tenant ${key} (${record.state}, ${record.tier})` };
  if (records.inFlight.tenants.has(key)) return { owned: true, owner: `tenant ${key} (a job is working on it)` };
  return { owned: false, why: "no tenant record has this id" };
}

function noteKey(target: { tenants: Set<string>; previews: Set<string> }, data: Record<string, unknown>, stack: string | undefined): void {
  if (typeof data.tenantId === "string" && TENANT_ID_PATTERN.test(data.tenantId)) target.tenants.add(data.tenantId);
  const repo = data.repo as { name?: unknown } | undefined;
  if (repo && typeof repo.name === "string" && typeof data.pr === "number") {
    try {
      target.previews.add(previewKey(repo.name, data.pr));
    } catch {
      // a repository name with no usable characters names no preview
    }
  }
  for (const s of [stack, typeof data.stack === "string" ? data.stack : undefined]) {
    const k = s ? stackKey(s) : null;
    if (k?.kind === "tenant") target.tenants.add(k.key);
    if (k?.kind === "preview") target.previews.add(k.key);
  }
}

/** The stack a job's data names, for jobs registered before lanes kept it (or outside any lane). */
function stackOfData(data: Record<string, unknown>): string | undefined {
  if (typeof data.stack === "string") return data.stack;
  if (typeof data.tenantId === "string") return `tenant-${data.tenantId}`;
  const repo = data.repo as { name?: unknown } | undefined;
  if (repo && typeof repo.name === "string" && typeof data.pr === "number") {
    try {
      return `preview-${previewKey(repo.name, data.pr)}`;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Every key matching `pattern`, found with SCAN in steps (never KEYS), on every master of a Redis Cluster. */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  for await (const keys of scanAll(redis, pattern)) out.push(...keys);
  return out;
}

/** Redis glob metacharacters in a prefix taken literally. */
export function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export async function readRecords(redis: Redis, prefix: string, queue: JobQueue): Promise<Records> {
  const tenants = new Map((await new TenantIndex(redis, prefix).list()).map((t) => [t.id, t]));
  const previews = new Set<string>();
  for (const p of await new PreviewRegistry(redis, prefix).idleSince(Number.MAX_SAFE_INTEGER)) {
    const k = stackKey(p.stack);
    if (k?.kind === "preview") previews.add(k.key);
  }
  // A moved tenant's old tier waits for its clean-up timer (worker/cleanup-scheduler.ts) during
  // the rollback window: expected, not an orphan.
  const cleanups = new Set((await pendingMoveCleanups(redis, prefix)).map((c) => `${c.tenantId}/${c.tier}`));

  const inFlight = { tenants: new Set<string>(), previews: new Set<string>() };
  const runningStacks = new Set<string>();
  const metaPrefix = `${prefix}:jobmeta:`;
  for (const state of LIVE_STATES) {
    for (const job of await queue.queue.getJobs([state], 0, -1, true)) {
      if (!job?.id) continue;
      const data = (job.data ?? {}) as Record<string, unknown>;
      const stack = (await redis.hget(`${metaPrefix}${job.id}`, "stack")) ?? stackOfData(data);
      noteKey(inFlight, data, stack);
      if (stack && state === "active") runningStacks.add(stack);
    }
  }

  const known = { tenants: new Set([...tenants.keys(), ...inFlight.tenants]), previews: new Set([...previews, ...inFlight.previews]) };
  for (const c of cleanups) known.tenants.add(c.split("/")[0] ?? "");
  // Every job of the last days registered its stack (jobmeta), and every lane is named by one.
  const metaKeys = await scanKeys(redis, `${globEscape(metaPrefix)}*`);
  for (let i = 0; i < metaKeys.length; i += 500) {
    const batch = metaKeys.slice(i, i + 500);
    const pipeline = redis.pipeline();
    for (const k of batch) pipeline.hget(k, "stack");
    for (const [, stack] of (await pipeline.exec()) ?? []) if (typeof stack === "string") noteKey(known, {}, stack);
  }
  const lanePrefix = `${prefix}:lane:`;
  for (const k of await scanKeys(redis, `${globEscape(lanePrefix)}*`)) noteKey(known, {}, k.slice(lanePrefix.length));
  known.tenants.delete("");
  return { tenants, previews, cleanups, inFlight, runningStacks, known };
}
