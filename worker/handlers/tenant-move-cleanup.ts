// tenant.move-cleanup: after a tier move's rollback window, the tier the tenant left is backed up
// and removed. The move scheduler enqueues it, but the guards are checked here, whoever put the
// job in the queue: never the tier the tenant lives on (by the index or by the GitOps repository,
// the system of record), never a protected tenant, a final backup of that tier's database first,
// and a circuit breaker of its own that defers (not drops) clean-ups arriving in a burst.
import { DeletionRefusedError } from "../../core/errors.ts";
import type { Tier } from "../../core/ids.ts";
import { blobStoreFor } from "../../core/blob-store.ts";
import { databaseExists, dumpDatabase } from "../database-backup.ts";
import type { DeletionBreaker } from "../deletion-breaker.ts";
import type { JobHandler } from "../job-worker.ts";
import { deriveTenantNames } from "../../core/tenant-names.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { repositoryTenant, runTenantStack } from "./tenant-support.ts";

export interface MoveCleanupDeps extends TenantHandlerDeps {
  readonly breaker: DeletionBreaker;
  /** Puts the clean-up back for later (the breaker was open). */
  readonly reschedule: (tenantId: string, tier: Tier, region: string, dueAt: number) => Promise<void>;
  /** How long a deferred clean-up waits. */
  readonly deferMs: number;
  readonly now?: () => number;
}

export function tenantMoveCleanupHandler(deps: MoveCleanupDeps): JobHandler<"tenant.move-cleanup"> {
  return async (ctx) => {
    const { tenantId, tier, region } = ctx.data;
    const names = deriveTenantNames(tenantId);
    const stack = names.stack;
    const tenant = await deps.tenants.get(tenantId);
    const desired = await repositoryTenant(deps.writer, tenantId);
    if (tenant?.protected || desired.protected) {
      throw new DeletionRefusedError(`tenant ${tenantId} is protected; its ${tier} resources are kept (remove the protection, then move again)`);
    }
    // A tenant known to neither (deprovisioned since the move) lives nowhere: its old tier is a leftover.
    if (tenant?.tier === tier || desired.tier === tier) {
      throw new DeletionRefusedError(`tenant ${tenantId} lives on ${tier}; only a tier a move has left is cleaned up`);
    }
    if (!(await deps.breaker.admit(ctx.jobId))) {
      const dueAt = (deps.now ?? Date.now)() + deps.deferMs;
      await deps.reschedule(tenantId, tier, region, dueAt);
      await ctx.progress(`too many clean-ups in a short time; the ${tier} resources are kept until ${new Date(dueAt).toISOString()} at least`);
      return { stack, tier, deferred: true, until: new Date(dueAt).toISOString() };
    }

    let backup: { file: string; bytes: number } | null = null;
    if (deps.config.target === "local") {
      const database = names[tier].database;
      await ctx.progress(`final backup of the ${tier} database ${database}`);
      if (await databaseExists(deps.config.localMysqlUrl, database)) {
        backup = await dumpDatabase({ mysqlUrl: deps.config.localMysqlUrl, database, tenantId, blobs: deps.blobs ?? blobStoreFor(deps.config.blobStore), logger: ctx.logger });
        await ctx.progress(`backup written: ${backup.file} (${backup.bytes} bytes)`);
      } else {
        await ctx.progress(`no database ${database} to back up (already gone)`);
      }
    }
    await ctx.progress(`stack destroy ${stack} (${tier})`);
    // Both tiers share the tenant's cache key space (`t:<id>:`): the tier that stays keeps its keys.
    const summary = await runTenantStack(deps.runner, ctx, "destroy", { tenantId, tier, region, keepCacheKeys: true }, []);
    return { stack, tier, backup, resourceChanges: summary.resourceChanges };
  };
}
