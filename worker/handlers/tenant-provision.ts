// tenant.provision: the tenant's stack up, then one GitOps commit with its three files (and the
// region's Argo CD objects when it is the region's first tenant), then the tenant index records
// the non-secret outputs so the API shows them.
import { fateOf } from "../../core/errors.ts";
import type { TenantIndex } from "../../webhooks/tenant-index.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import type { GitOpsWriter } from "../gitops/writer.ts";
import type { JobHandler } from "../job-worker.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import type { Config } from "../../core/config.ts";
import { gitopsSettings, infraFromOutputs, publicOutputs, regionFiles, runTenantStack, tenantCommitMessage } from "./tenant-support.ts";

export interface TenantHandlerDeps {
  readonly config: Config;
  readonly runner: StackRunner;
  readonly writer: GitOpsWriter;
  readonly tenants: TenantIndex;
  readonly policyPacks: readonly string[];
}

export function tenantProvisionHandler(deps: TenantHandlerDeps): JobHandler<"tenant.provision"> {
  return async (ctx) => {
    const { tenantId, region, tier, version, trigger } = ctx.data;
    try {
      await ctx.progress(`stack up tenant-${tenantId} (${tier}, ${region})`);
      const summary = await runTenantStack(deps.runner, ctx, "up", { tenantId, tier, region, version }, deps.policyPacks);
      const infra = infraFromOutputs(summary.outputs, `tenant-${tenantId}`);
      const files = {
        ...(await regionFiles(deps.config, deps.writer, region, false)),
        ...renderTenantFiles({ id: tenantId, region, tier, version }, infra, gitopsSettings(deps.config)),
      };
      await ctx.progress(`committing ${Object.keys(files).length} manifests`);
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        message: tenantCommitMessage(ctx, "provision", tenantId, trigger, `${tier} in ${region} at ${version}`),
        files,
        subject: `tenant-${tenantId}`,
      });
      const outputs = publicOutputs(summary.outputs);
      await deps.tenants.recordOutputs(tenantId, outputs, { region, tier, version });
      await ctx.progress(commit.sha ? `committed ${commit.sha}` : "manifests unchanged; no commit");
      return { stack: `tenant-${tenantId}`, resourceChanges: summary.resourceChanges, outputs, commit: commit.sha, changedFiles: commit.changed };
    } catch (err) {
      // A provision that will not be retried leaves no half-claimed tenant behind in the index.
      if (fateOf(err) === "fail") await deps.tenants.abandonProvision(tenantId);
      throw err;
    }
  };
}
