// tenant.deprovision, in order: guards (protected tenant, deletion circuit breaker), then the
// app's manifests leave the GitOps repository (Argo CD prunes the app), then a final backup of the
// tenant's database, then the data resources are destroyed and the tenant leaves the index.
import path from "node:path";
import { DeletionRefusedError, NotFoundError } from "../../core/errors.ts";
import { logicalNames } from "../../programs/naming.ts";
import { databaseExists, dumpDatabase } from "../database-backup.ts";
import type { DeletionBreaker } from "../deletion-breaker.ts";
import { tenantDeletion } from "../gitops/manifests.ts";
import { tenantPath } from "../gitops/paths.ts";
import type { JobHandler } from "../job-worker.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { runTenantStack, tenantCommitMessage } from "./tenant-support.ts";

export interface DeprovisionDeps extends TenantHandlerDeps {
  readonly breaker: DeletionBreaker;
}

export function tenantDeprovisionHandler(deps: DeprovisionDeps): JobHandler<"tenant.deprovision"> {
  return async (ctx) => {
    const { tenantId, trigger } = ctx.data;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    // The repository is the system of record for protection; the index may be stale.
    const desired = (await deps.writer.readFile(tenantPath(tenantId, "tenant.yaml"))) ?? "";
    // A refused deletion hands the tenant back as it was: active, nothing touched.
    const refuse = async (message: string): Promise<never> => {
      await deps.tenants.transition(tenantId, ["deprovisioning"], "active");
      throw new DeletionRefusedError(message);
    };
    if (tenant.protected || /^protected: true$/m.test(desired)) {
      await refuse(`tenant ${tenantId} is protected; remove the protection before deprovisioning`);
    }
    if (!(await deps.breaker.admit(ctx.jobId))) {
      await refuse(`deletion circuit breaker open: more than ${deps.config.deleteMaxPerWindow} deprovisions within ${deps.config.deleteWindowMs / 1000}s`);
    }
    await deps.tenants.transition(tenantId, [], "deprovisioning");

    await ctx.progress("removing the tenant's manifests (Argo CD prunes the app)");
    const commit = await deps.writer.commit({
      jobId: ctx.jobId,
      message: tenantCommitMessage(ctx, "deprovision", tenantId, trigger),
      files: tenantDeletion(tenantId),
      subject: `tenant-${tenantId}`,
    });

    let backup: { file: string; bytes: number } | null = null;
    if (deps.config.target === "local") {
      await ctx.progress("final backup of the tenant database");
      const names = logicalNames(tenant.tier === "silo" ? "silo" : "tenant", tenantId);
      if (!(await databaseExists(deps.config.localMysqlUrl, names.database))) {
        await ctx.progress(`no database ${names.database} to back up (already gone)`);
      } else {
        const b = await dumpDatabase({
          mysqlUrl: deps.config.localMysqlUrl,
          database: names.database,
          outDir: path.join(deps.config.dataDir, "backups", tenantId),
        });
        backup = { file: path.relative(deps.config.dataDir, b.file), bytes: b.bytes };
        await ctx.progress(`backup written: ${backup.file} (${b.bytes} bytes)`);
      }
    }

    await ctx.progress(`stack destroy tenant-${tenantId}`);
    const summary = await runTenantStack(deps.runner, ctx, "destroy", { tenantId, tier: tenant.tier, region: tenant.region }, []);
    await deps.tenants.markDeleted(tenantId);
    return { stack: `tenant-${tenantId}`, commit: commit.sha, backup, resourceChanges: summary.resourceChanges };
  };
}
