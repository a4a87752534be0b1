// The last orphan audit's counts, kept in Redis under the queue prefix so that every process of the
// installation exports the same `stackrail_orphans{kind}` values, whichever process ran the audit
// (the route, the CLI, or a worker's scheduled run).
import type { Redis } from "ioredis";
import type { OrphanStats } from "../core/metrics.ts";
import { countByKind, ORPHAN_KINDS, type OrphanReport } from "./orphan-report.ts";

const lastKey = (prefix: string): string => `${prefix}:orphans:last`;

export async function storeOrphanCounts(redis: Redis, prefix: string, report: OrphanReport, now = Date.now()): Promise<void> {
  const counts = countByKind(report.findings);
  await redis.hset(lastKey(prefix), { ...counts, at: String(now), scope: report.scope, incomplete: String(report.incomplete.length) });
}

export async function readOrphanCounts(redis: Redis, prefix: string): Promise<OrphanStats | undefined> {
  const h = await redis.hgetall(lastKey(prefix));
  if (!h.at) return undefined;
  const counts: Record<string, number> = {};
  for (const kind of ORPHAN_KINDS) counts[kind] = Number(h[kind] ?? 0) || 0;
  return { counts, at: Number(h.at) };
}
