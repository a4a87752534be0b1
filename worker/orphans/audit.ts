// auditOrphans(): what exists without an owner, and what is owned but missing, across every place
// Stackrail makes things (MariaDB, the tenant cache server, the data directory, the Pulumi
// backend, the GitOps repository, the queue), each compared with the tenant index and the preview
// registry, in both directions. Read-only: it changes nothing (repairs are repair.ts, on request).
// A source that cannot be read is named in `incomplete`; the rest of the audit still runs.
import type { Redis } from "ioredis";
import type { Config } from "../../core/config.ts";
import type { EngineLocation } from "../../core/engine.ts";
import { urlCredentials } from "../../core/urls.ts";
import type { GitOpsWriter } from "../gitops/writer.ts";
import type { JobQueue } from "../../jobs/queue.ts";
import { checkCache } from "./cache.ts";
import { AuditContext, stillHolds } from "./context.ts";
import { checkDataDir, dataDirKeys } from "./data-dir.ts";
import { blobStoreFor } from "../../core/blob-store.ts";
import { backupsByTenant } from "../database-backup.ts";
import { checkGitOps, readGitOpsFolders } from "./gitops.ts";
import { checkMariaDb } from "./mariadb.ts";
import { storeOrphanCounts } from "../../jobs/last-audit.ts";
import { checkQueue } from "./queue-check.ts";
import { readRecords, stackKey } from "./records.ts";
import { checkLocks, checkStacks, listLocks, listStacks, type StackInfo } from "./stacks.ts";
import type { FailedTenant, OrphanReport, OrphanScope, RetainedItem } from "../../jobs/orphan-report.ts";

export type AuditConfig = Pick<
  Config,
  "target" | "dataDir" | "queuePrefix" | "localMysqlUrl" | "localRedisUrl" | "pulumiBackendUrl" | "pulumiPassphrase" | "redisUrl" | "gitopsRepo" | "blobStore"
>;

export interface OrphanAuditDeps {
  readonly config: AuditConfig;
  /** The queue's Redis: the records, the lanes and BullMQ's keys. */
  readonly redis: Redis;
  readonly queue: JobQueue;
  /** The GitOps repository, read through the writer's read API. */
  readonly reader: Pick<GitOpsWriter, "listFiles" | "readFile">;
  readonly engine: EngineLocation;
  readonly now?: () => number;
}

/** Error text for the report: no credentials of a configured URL, bounded. */
function describe(err: unknown, config: AuditConfig): string {
  let text = err instanceof Error ? err.message : String(err);
  for (const url of [config.localMysqlUrl, config.localRedisUrl, config.redisUrl, config.pulumiBackendUrl, config.gitopsRepo]) {
    for (const secret of urlCredentials(url)) if (secret.length >= 4) text = text.split(secret).join("[REDACTED]");
  }
  return text.replace(/\/\/[^/@\s]*:[^/@\s]*@/g, "//[REDACTED]@").slice(0, 500);
}

export async function auditOrphans(deps: OrphanAuditDeps, options: { scope?: OrphanScope } = {}): Promise<OrphanReport> {
  const now = deps.now ?? Date.now;
  const started = now();
  const scope = options.scope ?? "server";
  const { config } = deps;
  const incomplete: { source: string; error: string }[] = [];
  const skipped: string[] = [];
  const retained: RetainedItem[] = [];
  let failed: FailedTenant[] = [];
  const attempt = async <T>(source: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      incomplete.push({ source, error: describe(err, config) });
      return undefined;
    }
  };
  const report = (ctx: AuditContext | undefined): OrphanReport => ({
    scope,
    checkedAt: new Date(started).toISOString(),
    durationMs: now() - started,
    findings: (ctx?.findings ?? []).sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name) || a.problem.localeCompare(b.problem)),
    retained: retained.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name)),
    failed,
    skipped,
    incomplete,
  });

  // Without the records every object would look unowned: nothing is judged then.
  const records = await attempt("records", () => readRecords(deps.redis, config.queuePrefix, deps.queue));
  if (!records) return report(undefined);

  const listed = await attempt("pulumi-stacks", () => listStacks(config, deps.engine));
  const stacks: StackInfo[] = listed ?? [];
  const ctx = new AuditContext(scope, records, stacks);
  const folders = await attempt("gitops", () => readGitOpsFolders(deps.reader));
  // Everything this installation holds names keys it knows, whatever the records say now.
  for (const s of stacks) {
    const k = stackKey(s.stack);
    if (k) ctx.know(k.kind, k.key);
  }
  for (const [key] of folders?.tenants ?? []) ctx.know("tenant", key);
  for (const [key] of folders?.previews ?? []) ctx.know("preview", key);
  const local = dataDirKeys(config.dataDir);
  for (const key of local.tenants) ctx.know("tenant", key);
  for (const key of local.previews) ctx.know("preview", key);
  // Final backups live in the blob store (STACKRAIL_BLOB_URL, `tenants/<id>/backups/`): retained on purpose.
  const blobs = blobStoreFor(config.blobStore);
  const backups = await attempt("blob-store", () => backupsByTenant(blobs));
  for (const key of backups?.keys() ?? []) ctx.know("tenant", key);
  ctx.committedPreviews = new Set([...(folders?.previews.keys() ?? [])]);

  const add = ctx.add.bind(ctx);
  // Without the listing, every active tenant would look stackless: no stack is judged then.
  if (listed) retained.push(...checkStacks(add, stacks, records, ctx.committedPreviews));
  const locks = listLocks(config.pulumiBackendUrl);
  if (locks === null) skipped.push("stack locks: only the file backend's locks can be listed; other backends show a lock when an operation meets it");
  else checkLocks(add, locks, records);
  if (folders) checkGitOps(ctx, folders);

  const localTarget = config.target === "local";
  if (!localTarget) skipped.push("MariaDB, cache server and attachments directories: the aws target keeps them in AWS, audited through the stacks");
  const kept = await attempt("data-dir", () => Promise.resolve().then(() => checkDataDir(ctx, config.dataDir, { attachments: localTarget })));
  retained.push(...(kept ?? []));
  for (const [id, b] of backups ?? []) {
    retained.push({
      kind: "backup",
      name: id,
      detail: `${b.files} file(s), ${b.bytes} bytes in ${blobs.location}/tenants/${id}/backups/ (${records.tenants.has(id) ? "tenant exists" : "tenant gone"}); kept on purpose, remove by hand when no longer needed`,
    });
  }
  if (localTarget) {
    await attempt("mariadb", () => checkMariaDb(ctx, config.localMysqlUrl));
    const cache = await attempt("cache", () => checkCache(ctx, config.localRedisUrl));
    if (cache?.partial) incomplete.push({ source: "cache", error: cache.partial });
  }
  failed = (await attempt("queue", () => checkQueue(ctx, deps.redis, config.queuePrefix, now()))) ?? [];
  // The objects were read after the records: work that started meanwhile made objects (or began a
  // deprovision) the first read cannot know of. A finding stands only if the records read now agree.
  const again = await attempt("records", () => readRecords(deps.redis, config.queuePrefix, deps.queue));
  if (again) ctx.keepOnly((f, subject) => stillHolds(f, subject, again));
  return report(ctx);
}

/** An audit whose counts become the installation's `stackrail_orphans` values (route, CLI, schedule). */
export async function auditAndRecord(deps: OrphanAuditDeps, options: { scope?: OrphanScope } = {}): Promise<OrphanReport> {
  const report = await auditOrphans(deps, options);
  await storeOrphanCounts(deps.redis, deps.config.queuePrefix, report, (deps.now ?? Date.now)());
  return report;
}
