// Repairs the audit offers itself (`npm run orphans -- --repair <id>`). Never blind: a fresh audit
// must still report the finding, and each step re-checks its condition where it acts (a lane entry
// is removed only while its job is still gone, an owner row only while its object is). Data is
// never dropped here: a stack's objects go through a queued job whose handler checks its own
// guards (the tier a tenant lives on is never removed, a protected tenant never, a backup first),
// in the stack's lane like every other job; other data objects get the exact statement to run.
import { blobStoreFor } from "../../core/blob-store.ts";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import mysql from "mysql2/promise";
import { Redis } from "ioredis";
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { regionSchema } from "../../core/ids.ts";
import { repoRefSchema } from "../../core/jobs.ts";
import type { RepoRef, Trigger } from "../../core/jobs.ts";
import { OWNER_REGISTRY } from "../../programs/local/mysql-ops.ts";
import { ACL_OWNERS_KEY } from "../../programs/local/redis-ops.ts";
import { previewKey } from "../../core/ids.ts";
import { removeTenantFunctionFiles } from "../tenant-files.ts";
import { auditOrphans, type OrphanAuditDeps } from "./audit.ts";
import { deadLaneEntries, staleLease } from "./queue-check.ts";
import { reRecordOwner } from "./re-record.ts";
import { stackKey } from "./records.ts";
import { auditWorkspace, listLocks } from "./stacks.ts";
import type { OrphanFinding } from "../../jobs/orphan-report.ts";

export interface RepairResult {
  readonly id: string;
  /** True when the repair is complete; false when it queued a job that does it (see jobId). */
  readonly done: boolean;
  readonly jobId?: string;
  readonly message: string;
}

export type RepairDeps = OrphanAuditDeps & { readonly config: OrphanAuditDeps["config"] & { readonly previewRegion?: string } };

const TRIGGER: Trigger = { type: "api", tokenName: "orphans-repair" };

function requestedAt(deps: RepairDeps): string {
  return new Date((deps.now ?? Date.now)()).toISOString();
}

/** The region a tenant stack was made for, from its outputs; the configured preview region otherwise. */
async function stackRegion(deps: RepairDeps, project: string, stack: string): Promise<string> {
  try {
    const { workspace, close } = await auditWorkspace(deps.config, deps.engine);
    try {
      const outputs = await workspace.stackOutputs(`organization/${project}/${stack}`);
      const region = regionSchema.safeParse(outputs.region?.value);
      if (region.success) return region.data;
    } finally {
      close();
    }
  } catch {
    // unreadable outputs: the configured region below (a local destroy does not depend on it)
  }
  return deps.config.previewRegion ?? "eu-west-1";
}

/** The repository a preview key belongs to, from the preview jobs the queue still has. */
async function previewRepo(deps: RepairDeps, key: string): Promise<{ repo: RepoRef; pr: number } | null> {
  for (const job of await deps.queue.queue.getJobs(["completed", "failed", "delayed", "waiting", "active"], 0, -1, false)) {
    const data = (job?.data ?? {}) as { repo?: unknown; pr?: unknown };
    const repo = repoRefSchema.safeParse(data.repo);
    if (!repo.success || typeof data.pr !== "number") continue;
    try {
      if (previewKey(repo.data.name, data.pr) === key) return { repo: repo.data, pr: data.pr };
    } catch {
      // not a usable repository name
    }
  }
  return null;
}

async function repairStack(deps: RepairDeps, f: OrphanFinding): Promise<RepairResult> {
  const [project = "", stack = ""] = f.name.split("/");
  const k = stackKey(stack);
  if (k?.kind === "tenant") {
    const tier = project.endsWith("-silo") ? "silo" : project.endsWith("-pool") ? "pool" : null;
    if (!tier) throw new ConflictError(`${f.id}: a tenant stack outside the tier projects has no automatic repair`);
    const region = await stackRegion(deps, project, stack);
    const { jobId } = await deps.queue.enqueue({
      kind: "tenant.move-cleanup",
      trigger: TRIGGER,
      requestedAt: requestedAt(deps),
      tenantId: k.key,
      tier,
      region,
    });
    return {
      id: f.id,
      done: false,
      jobId,
      message: `queued job ${jobId}: a final backup of its database, then the ${tier} stack of tenant ${k.key} is destroyed (refused if the tenant lives on ${tier})`,
    };
  }
  if (k?.kind === "preview") {
    const ref = await previewRepo(deps, k.key);
    if (!ref)
      throw new ConflictError(`${f.id}: no job names the repository of preview ${k.key}; close its pull request, or redeliver its "closed" event from GitHub`);
    const { jobId } = await deps.queue.enqueue({ kind: "preview.destroy", trigger: TRIGGER, requestedAt: requestedAt(deps), repo: ref.repo, pr: ref.pr });
    return { id: f.id, done: false, jobId, message: `queued job ${jobId}: the preview's manifest is removed, then its stack destroyed` };
  }
  throw new ConflictError(`${f.id}: not a tenant or preview stack`);
}

async function withMysql<T>(url: string, fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const c = await mysql.createConnection({ uri: url, connectTimeout: 10_000 });
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function withCache<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 10_000, retryStrategy: () => null });
  r.on("error", () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** Applies the repair of finding `id` if the audit still reports it and the repair is one the audit makes itself. */
export async function repairOrphan(deps: RepairDeps, id: string): Promise<RepairResult> {
  const report = await auditOrphans(deps, { scope: "server" });
  const f = report.findings.find((x) => x.id === id);
  if (!f) throw new NotFoundError(`no finding ${id} in a fresh audit: nothing to repair`);
  const prefix = deps.config.queuePrefix;
  const done = (message: string): RepairResult => ({ id, done: true, message });

  if (f.problem === "missing") {
    const tenant = /^tenant ([a-z][a-z0-9-]*[a-z0-9]) /.exec(f.owner ?? "")?.[1];
    if (!tenant || !["database", "database-user", "acl-user", "directory"].includes(f.kind))
      throw new ConflictError(`${id} has no automatic repair: ${f.repair}`);
    const { jobId } = await deps.queue.enqueue({ kind: "tenant.drift", trigger: TRIGGER, requestedAt: requestedAt(deps), tenantId: tenant, repair: true });
    return {
      id,
      done: false,
      jobId,
      message: `queued drift repair ${jobId} of tenant-${tenant} (repairs only where STACKRAIL_DRIFT_REPAIR=true; a protected tenant is only reported)`,
    };
  }
  switch (`${f.kind}/${f.problem}`) {
    case "lane/dead-entries": {
      const removed = await deadLaneEntries(deps.redis, prefix, f.name, true);
      return done(`removed ${removed.length} dead entr${removed.length === 1 ? "y" : "ies"} from lane ${f.name}`);
    }
    case "lane-lease/stale-lease": {
      const removed = await staleLease(deps.redis, prefix, f.name, true);
      return done(
        removed ? `removed the lease of stack ${f.name} (held by ${removed.holder})` : `the lease of stack ${f.name} is gone or live again; nothing removed`,
      );
    }
    case "stack/unowned":
      return repairStack(deps, f);
    case "stack-lock/stale-lock": {
      const locks = (listLocks(deps.config.pulumiBackendUrl) ?? []).filter((l) => `${l.project}/${l.stack}` === f.name);
      if (locks.some((l) => l.alive !== false)) throw new ConflictError(`${id}: a lock's process is alive or on another host; ${f.repair}`);
      for (const l of locks) {
        rmSync(l.file, { force: true });
        rmSync(`${l.file}.attrs`, { force: true }); // the blob store's metadata sidecar
      }
      return done(`removed ${locks.length} lock file(s) of ${f.name}, whose processes are gone`);
    }
    case "database-owner-row/stale-registry": {
      const [kind = "", ...rest] = f.name.split(":");
      const name = rest.join(":");
      const removed = await withMysql(deps.config.localMysqlUrl, async (c) => {
        // Only while the object is still gone.
        const guard =
          kind === "database"
            ? "NOT EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?)"
            : "NOT EXISTS (SELECT 1 FROM mysql.user WHERE CONCAT(User, '@', Host) = ?)";
        const [res] = await c.query<mysql.ResultSetHeader>(`DELETE FROM ${OWNER_REGISTRY} WHERE kind = ? AND name = ? AND ${guard}`, [kind, name, name]);
        return res.affectedRows;
      });
      return done(removed ? `removed the owner row ${f.name}` : `the owner row ${f.name} was kept: its object exists again`);
    }
    case "acl-owner-entry/stale-registry": {
      const removed = await withCache(deps.config.localRedisUrl, async (r) => {
        if (await r.call("ACL", "GETUSER", f.name)) return 0;
        await r.select(0);
        return r.hdel(ACL_OWNERS_KEY, f.name);
      });
      return done(removed ? `removed the owner entry of ACL user ${f.name}` : `the owner entry of ${f.name} was kept: the user exists again`);
    }
    case "directory-owner-marker/stale-registry": {
      const root = path.join(deps.config.dataDir, "attachments");
      if (existsSync(path.join(root, f.name))) return done(`the marker of ${f.name} was kept: its directory exists again`);
      rmSync(path.join(root, ".owners", f.name), { force: true });
      return done(`removed the owner marker of ${f.name}`);
    }
    case "functions/unowned": {
      // A bundle another tenant's upload job still names is kept (as the deprovision does).
      const own = new Set<string>();
      const others = new Set<string>();
      for (const job of await deps.queue.queue.getJobs(["waiting", "delayed", "prioritized", "active", "completed", "failed"])) {
        const data = job?.data as { kind?: unknown; tenantId?: unknown; bundleSha256?: unknown } | undefined;
        if (data?.kind !== "tenant.function" || typeof data.bundleSha256 !== "string") continue;
        (data.tenantId === f.name ? own : others).add(data.bundleSha256);
      }
      const removed = await removeTenantFunctionFiles(deps.config.dataDir, f.name, { own, others }, blobStoreFor(deps.config.blobStore));
      return done(`removed functions/${f.name}/ (${removed.functions} function(s)) and ${removed.bundles} bundle(s) only it used`);
    }
    case "database/unregistered":
    case "database-user/unregistered":
    case "acl-user/unregistered":
    case "directory/unregistered":
      return done(await reRecordOwner(f, deps.config, deps.engine));
    case "tenant-record/stuck-record": {
      const { jobId } = await deps.queue.enqueue({ kind: "tenant.deprovision", trigger: TRIGGER, requestedAt: requestedAt(deps), tenantId: f.name });
      return { id, done: false, jobId, message: `queued the deprovision of tenant ${f.name} again: ${jobId}` };
    }
    default:
      throw new ConflictError(`${id} has no automatic repair: ${f.repair}`);
  }
}
