// tenant.upgrade: the stack is updated with the new version first, then the tenant's manifests
// point Argo CD at it in one commit.
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import type { JobHandler } from "../job-worker.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { gitopsSettings, infraFromOutputs, publicOutputs, runTenantStack, tenantCommitMessage } from "./tenant-support.ts";

export function tenantUpgradeHandler(deps: TenantHandlerDeps): JobHandler<"tenant.upgrade"> {
  return async (ctx) => {
    const { tenantId, version, trigger } = ctx.data;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    // Checked here as at the API: a tenant on its way out, or whose provision failed, is not brought back up.
    if (tenant.state !== "active") throw new ConflictError(`tenant ${tenantId} is ${tenant.state}; only an active tenant is upgraded`);
    await ctx.progress(`stack up tenant-${tenantId} at ${version}`);
    const summary = await runTenantStack(deps.runner, ctx, "up", { tenantId, tier: tenant.tier, region: tenant.region, version }, deps.policyPacks);
    const files = renderTenantFiles(
      { id: tenantId, region: tenant.region, tier: tenant.tier, version, ...(tenant.protected ? { protected: true } : {}) },
      infraFromOutputs(summary.outputs, `tenant-${tenantId}`),
      gitopsSettings(deps.config),
    );
    const commit = await deps.writer.commit({
      jobId: ctx.jobId,
      onWait: (line) => void ctx.progress(line),
      message: tenantCommitMessage(ctx, "upgrade", tenantId, trigger, `${tenant.version || "?"} -> ${version}`),
      files,
      subject: `tenant-${tenantId}`,
    });
    const outputs = publicOutputs(summary.outputs);
    await deps.tenants.recordOutputs(tenantId, outputs, { version });
    return { stack: `tenant-${tenantId}`, from: tenant.version, to: version, commit: commit.sha, resourceChanges: summary.resourceChanges };
  };
}
