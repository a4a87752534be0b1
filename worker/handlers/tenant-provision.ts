// tenant.provision: the tenant's stack up, then one GitOps commit with its three files (and the
// region's Argo CD objects when it is the region's first tenant), then the tenant index records
// the non-secret outputs so the API shows them.
//
// Guards, checked here whoever enqueued the job: the tenant API must have claimed the id (a
// `provisioning` record with the same tier and region), so a provision never takes over or moves
// an existing tenant; and every name derived from the id is checked before the first `up`. A
// provision that fails before its stack ran leaves nothing and drops its claim; one that fails
// after never forgets what may exist: the record stays `failed` until DELETE cleans it up.
import type { BlobStore } from "../../core/blob-store.ts";
import { ConflictError, fateOf } from "../../core/errors.ts";
import type { TenantIndex } from "../../core/tenant-index.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import type { GitOpsWriter } from "../gitops/writer.ts";
import type { JobHandler } from "../job-worker.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import type { Config } from "../../core/config.ts";
import { deriveTenantNames } from "../../core/tenant-names.ts";
import type { RegionGate } from "./region-provision.ts";
import { failureSummary, gitopsSettings, infraFromOutputs, publicOutputs, regionFiles, runTenantStack, tenantCommitMessage } from "./tenant-support.ts";

export interface TenantHandlerDeps {
  readonly config: Config;
  readonly runner: StackRunner;
  readonly writer: GitOpsWriter;
  readonly tenants: TenantIndex;
  readonly policyPacks: readonly string[];
  /** The service's secret scrubber: a failure kept on a tenant record is scrubbed with it. */
  readonly scrub?: (text: string) => string;
  /** aws: waits for the region's shared infrastructure (region-provision.ts) before the first stack there. */
  readonly regionReady?: RegionGate;
  /** Bundles, function versions and backups (STACKRAIL_BLOB_URL); default: the configured store. */
  readonly blobs?: BlobStore;
}

export function tenantProvisionHandler(deps: TenantHandlerDeps): JobHandler<"tenant.provision"> {
  return async (ctx) => {
    const { tenantId, region, tier, version, trigger } = ctx.data;
    const stack = `tenant-${tenantId}`;
    const record = await deps.tenants.get(tenantId);
    if (!record) throw new ConflictError(`tenant ${tenantId} was not accepted for provisioning (no claim in the index)`);
    if (record.tier !== tier || record.region !== region) {
      throw new ConflictError(`tenant ${tenantId} is ${record.tier} in ${record.region}; a provision never moves a tenant`);
    }
    if (record.state === "active" && record.version === version) {
      // This job already succeeded (a stalled worker's job running again): nothing to do.
      return { stack, alreadyProvisioned: true };
    }
    if (record.state !== "provisioning") throw new ConflictError(`tenant ${tenantId} is ${record.state}; only a claimed tenant is provisioned`);

    let touched = false;
    try {
      deriveTenantNames(tenantId);
      // Before anything exists: a region that cannot be provisioned leaves no tenant behind.
      await deps.regionReady?.(region, ctx);
      await ctx.progress(`stack up ${stack} (${tier}, ${region})`);
      // From here on the stack may have created resources, even if `up` fails half-way.
      touched = true;
      const summary = await runTenantStack(deps.runner, ctx, "up", { tenantId, tier, region, version }, deps.policyPacks);
      const infra = infraFromOutputs(summary.outputs, stack);
      const files = {
        ...(await regionFiles(deps.config, deps.writer, region, false)),
        ...renderTenantFiles({ id: tenantId, region, tier, version }, infra, gitopsSettings(deps.config)),
      };
      await ctx.progress(`committing ${Object.keys(files).length} manifests`);
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        onWait: (line) => void ctx.progress(line),
        message: tenantCommitMessage(ctx, "provision", tenantId, trigger, `${tier} in ${region} at ${version}`),
        files,
        subject: stack,
      });
      const outputs = publicOutputs(summary.outputs);
      await deps.tenants.recordOutputs(tenantId, outputs, { region, tier, version });
      await ctx.progress(commit.sha ? `committed ${commit.sha}` : "manifests unchanged; no commit");
      return { stack, resourceChanges: summary.resourceChanges, outputs, commit: commit.sha, changedFiles: commit.changed };
    } catch (err) {
      // A retry keeps the claim; a final failure drops it only when nothing was created.
      if (fateOf(err) === "fail") {
        if (!touched) await deps.tenants.abandonProvision(tenantId);
        else {
          await deps.tenants.markFailed(tenantId, { job: "tenant.provision", jobId: ctx.jobId, stack, tier, error: failureSummary(err, deps.scrub) });
          await ctx.progress(`provision failed after ${stack} ran: the tenant stays "failed" with what may exist; DELETE /v1/tenants/${tenantId} removes it`);
        }
      }
      throw err;
    }
  };
}
