// tenant.deprovision, in order: guards (protected tenant, deletion circuit breaker), then the
// app's manifests leave the GitOps repository (Argo CD prunes the app), then a final backup of the
// tenant's database, then its function files and bundles are removed, then the data resources
// are destroyed and the tenant leaves the index.
//
// The guards are checked here, not only at the API: a job put into the queue any other way meets
// the same refusals. A tenant whose provision failed (`failed`) is cleaned up the same way. A
// deprovision that fails after its guards keeps the record, `failed`, so DELETE can try again.
//
// On aws the final backup is taken inside the tenant's region by a Kubernetes Job (the `data-job`
// program, worker/aws-data-job.ts) and kept in the region's encrypted bucket; pool tenants share
// their cluster, so the cluster's own snapshots are no per-tenant backup. A backup that fails
// stops the deprovision before anything is removed.
import { blobStoreFor } from "../../core/blob-store.ts";
import { DeletionRefusedError, NotFoundError, fateOf } from "../../core/errors.ts";
import { logicalNames } from "../../core/naming.ts";
import { runAwsDataJob, type DataJobSettings } from "../aws-data-job.ts";
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
  /** aws: how the backup job runs and where its result is read (defaults: worker/aws-data-job.ts). */
  readonly dataJob?: DataJobSettings;
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

      let backup: { file: string; bytes: number; bucket?: string; sha256?: string } | null = null;
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
      } else if (typeof tenant.outputs.databaseName !== "string") {
        // Its provision never recorded a database (it failed before): no data was ever written.
        await ctx.progress("no database recorded for the tenant (its provision never completed); nothing to back up");
      } else {
        await ctx.progress(`final backup of the tenant database (a Kubernetes Job in ${tenant.region} writes it to the region's bucket)`);
        const taken = await runAwsDataJob({ runner: deps.runner, policyPacks: deps.policyPacks, ...(deps.dataJob ? { settings: deps.dataJob } : {}) }, ctx, {
          mode: "backup",
          tenantId,
          region: tenant.region,
          sourceTier: tenant.tier,
        });
        backup = { bucket: taken.bucket, file: taken.backup.key, bytes: taken.backup.bytes, sha256: taken.backup.sha256 };
        await ctx.progress(`backup written: s3://${taken.bucket}/${taken.backup.key} (${taken.backup.bytes} bytes, ${taken.tables.length} table(s))`);
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
