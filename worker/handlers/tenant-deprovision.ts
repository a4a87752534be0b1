// tenant.deprovision, in order: guards (protected tenant, deletion circuit breaker), then the
// app's manifests leave the GitOps repository (Argo CD prunes the app), then a final backup of the
// tenant's database, then its function files and bundles are removed, then the data resources
// are destroyed and the tenant leaves the index.
//
// The guards are checked here, not only at the API: a job put into the queue any other way meets
// the same refusals. A tenant whose provision failed (`failed`) is cleaned up the same way. A
// deprovision that fails after its guards keeps the record, `failed`, so DELETE can try again.
import { blobStoreFor } from "../../core/blob-store.ts";
import { DeletionRefusedError, NotFoundError, fateOf } from "../../core/errors.ts";
import { logicalNames } from "../../core/naming.ts";
import { databaseExists, dumpDatabase } from "../database-backup.ts";
import type { DeletionBreaker } from "../deletion-breaker.ts";
import { tenantDeletion } from "../gitops/manifests.ts";
import type { JobHandler } from "../job-worker.ts";
import { removeTenantFunctionFiles, type BundleReferences } from "../tenant-files.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { failureSummary, repositoryTenant, runTenantStack, tenantCommitMessage } from "./tenant-support.ts";

export interface DeprovisionDeps extends TenantHandlerDeps {
  readonly breaker: DeletionBreaker;
  /** Bundles the queue's tenant.function jobs name, so a bundle another tenant still needs is kept. */
  readonly bundleReferences?: (tenantId: string) => Promise<BundleReferences>;
}

export function tenantDeprovisionHandler(deps: DeprovisionDeps): JobHandler<"tenant.deprovision"> {
  const blobs = deps.blobs ?? blobStoreFor(deps.config.blobStore);
  return async (ctx) => {
    const { tenantId, trigger } = ctx.data;
    const stack = `tenant-${tenantId}`;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    // The repository is the system of record for protection; the index may be stale.
    const desired = await repositoryTenant(deps.writer, tenantId);
    // A refused deletion hands the tenant back as it was, nothing touched.
    const before = tenant.failure ? "failed" : "active";
    const refuse = async (message: string): Promise<never> => {
      await deps.tenants.transition(tenantId, ["deprovisioning"], before);
      throw new DeletionRefusedError(message);
    };
    if (tenant.protected || desired.protected) {
      await refuse(`tenant ${tenantId} is protected; remove the protection before deprovisioning`);
    }
    if (!(await deps.breaker.admit(ctx.jobId))) {
      await refuse(`deletion circuit breaker open: more than ${deps.config.deleteMaxPerWindow} deprovisions within ${deps.config.deleteWindowMs / 1000}s`);
    }
    await deps.tenants.transition(tenantId, [], "deprovisioning");

    try {
      await ctx.progress("removing the tenant's manifests (Argo CD prunes the app)");
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        onWait: (line) => void ctx.progress(line),
        message: tenantCommitMessage(ctx, "deprovision", tenantId, trigger),
        files: tenantDeletion(tenantId),
        subject: stack,
      });

      let backup: { file: string; bytes: number } | null = null;
      let files: { functions: number; bundles: number } | null = null;
      if (deps.config.target === "local") {
        await ctx.progress("final backup of the tenant database");
        const names = logicalNames(tenant.tier === "silo" ? "silo" : "tenant", tenantId);
        if (!(await databaseExists(deps.config.localMysqlUrl, names.database))) {
          await ctx.progress(`no database ${names.database} to back up (already gone)`);
        } else {
          backup = await dumpDatabase({ mysqlUrl: deps.config.localMysqlUrl, database: names.database, tenantId, blobs, logger: ctx.logger });
          await ctx.progress(`backup written: ${backup.file} (${backup.bytes} bytes)`);
        }
      }
      // After the backup: the tenant's code goes with its data. Bundles and versions are in the
      // blob store on every target (the aws Lambda functions themselves are not removed here).
      files = await removeTenantFunctionFiles(deps.config.dataDir, tenantId, await deps.bundleReferences?.(tenantId), blobs);
      await ctx.progress(`function files removed: ${files.functions} function(s), ${files.bundles} bundle(s)`);

      await ctx.progress(`stack destroy ${stack}`);
      const summary = await runTenantStack(deps.runner, ctx, "destroy", { tenantId, tier: tenant.tier, region: tenant.region }, []);
      await deps.tenants.markDeleted(tenantId);
      return { stack, commit: commit.sha, backup, files, resourceChanges: summary.resourceChanges };
    } catch (err) {
      // The resources may still exist: the record stays, and DELETE may be asked again.
      if (fateOf(err) === "fail") {
        await deps.tenants.markFailed(tenantId, {
          job: "tenant.deprovision",
          jobId: ctx.jobId,
          stack,
          tier: tenant.tier,
          error: failureSummary(err, deps.scrub),
        });
      }
      throw err;
    }
  };
}
