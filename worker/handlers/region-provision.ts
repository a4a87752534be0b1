// region.provision: a region's shared infrastructure. On aws, the `region-<region>` stack (KMS,
// network, Aurora, ElastiCache, EFS, the encrypted bucket, ALB/WAF/ACM; programs/aws/region.ts)
// goes up through the same runner path as every other stack: a preview with the mandatory policy
// pack first, so a violation applies nothing. On every target the region's Argo CD objects are
// committed. On the local target a region has no stack of its own (the configured MariaDB and
// Redis servers serve every region), so the job commits the Argo CD objects only and says so.
//
// The region gate: tenant and preview stacks on aws read the region stack's outputs, so the
// first one in a region waits for a region job. It enqueues one (once: a compare-and-set in the
// region index decides who does) and waits without spending a try until the region is ready; a
// region job that failed or was cancelled fails the waiting job with the region job's id.
import { randomUUID } from "node:crypto";
import type { Config } from "../../core/config.ts";
import { ProgramError, StackBusyError, TransientError, fateOf } from "../../core/errors.ts";
import { regionStackName, type Region } from "../../core/ids.ts";
import type { JobData } from "../../core/jobs.ts";
import { RegionIndex, defaultRegionSettings, type RegionRecord, type RegionSettings } from "../../core/regions.ts";
import { REGION_PROJECT } from "../../core/tenant-resources.ts";
import { commitMessage, type GitOpsWriter } from "../gitops/writer.ts";
import type { JobHandler, StepContext } from "../job-worker.ts";
import type { OperationSummary } from "../pulumi-protocol.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import type { JobQueue } from "../../jobs/queue.ts";
import { failureSummary, publicOutputs, regionFiles } from "./tenant-support.ts";

export interface RegionHandlerDeps {
  readonly config: Config;
  readonly runner: StackRunner;
  readonly writer: GitOpsWriter;
  readonly regions: RegionIndex;
  readonly policyPacks: readonly string[];
  readonly scrub?: (text: string) => string;
}

export function regionProvisionHandler(deps: RegionHandlerDeps): JobHandler<"region.provision"> {
  return async (ctx) => {
    const { region, environment, domain, costCentre, trigger } = ctx.data;
    const settings: RegionSettings = { environment, domain, costCentre };
    const stack = regionStackName(region);
    const aws = deps.config.target === "aws";
    try {
      let summary: OperationSummary | undefined;
      if (aws) {
        await ctx.progress(`stack up ${stack} (${environment}, ${region}.${domain})`);
        summary = await deps.runner.run(
          { stack, projectName: REGION_PROJECT, operation: "up", program: "region", args: { region, ...settings }, policyPacks: deps.policyPacks },
          { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
        );
      } else {
        await ctx.progress("local target: the configured servers serve every region; only the region's Argo CD objects are committed");
      }
      const files = await regionFiles(deps.config, deps.writer, region, region === deps.config.previewRegion);
      const commit =
        Object.keys(files).length === 0
          ? { sha: null, changed: [] as string[] }
          : await deps.writer.commit({
              jobId: ctx.jobId,
              message: commitMessage({ jobId: ctx.jobId, kind: "region", subject: stack, trigger, summary: environment }),
              files,
              subject: stack,
            });
      await ctx.progress(commit.sha ? `committed ${commit.sha}` : "regional Argo CD objects unchanged; no commit");
      const outputs = summary ? publicOutputs(summary.outputs) : {};
      await deps.regions.markReady(region, ctx.jobId, settings, outputs);
      return {
        region,
        target: deps.config.target,
        stack: aws ? stack : null,
        settings,
        outputs,
        resourceChanges: summary?.resourceChanges ?? {},
        commit: commit.sha,
        changedFiles: commit.changed,
      };
    } catch (err) {
      // A retryable failure keeps the region `provisioning`; the gate reads the job's own state.
      if (fateOf(err) === "fail") await deps.regions.markFailed(region, ctx.jobId, failureSummary(err, deps.scrub));
      throw err;
    }
  };
}

export interface RegionGateDeps {
  readonly config: Pick<Config, "previewRegion">;
  readonly regions: RegionIndex;
  readonly queue: Pick<JobQueue, "enqueue" | "getJobView">;
  readonly now?: () => number;
}

/** What a job that needs the region does first: returns when it is ready, else throws (wait or fail). */
export type RegionGate = (region: Region, ctx: StepContext) => Promise<void>;

function regionFailed(region: string, record: RegionRecord, how: string): ProgramError {
  return new ProgramError(
    `region ${region} is not provisioned: region job ${record.jobId ?? "?"} ${how}${record.error ? ` (${record.error})` : ""}; POST /v1/regions/${region} to try again`,
  );
}

export function regionGate(deps: RegionGateDeps): RegionGate {
  return async (region, ctx) => {
    // Twice at most: a lost compare-and-set means another job enqueued it; look again.
    for (let round = 0; round < 2; round++) {
      const record = await deps.regions.get(region);
      if (record?.state === "ready") return;
      if (record?.state === "failed") throw regionFailed(region, record, "failed");
      let expected: string | null = null;
      if (record?.jobId) {
        const view = await deps.queue.getJobView(record.jobId);
        if (view && (view.state === "waiting" || view.state === "running")) {
          await ctx.progress(`waiting for region ${region}: region job ${record.jobId} is ${view.state}`);
          throw new StackBusyError(`region ${region} is being provisioned by job ${record.jobId}`);
        }
        if (view?.state === "succeeded") {
          // Its handler marks the region ready before it finishes; read once more.
          continue;
        }
        if (view) throw regionFailed(region, record, view.state);
        // The job record is gone (expired or lost with Redis): the region needs a job again.
        expected = record.jobId;
      }
      const settings = record?.settings ?? defaultRegionSettings(region, deps.config.previewRegion);
      const jobId = randomUUID();
      const claim = await deps.regions.claim(region, expected, jobId, settings);
      if (claim !== "ok") continue;
      const data: JobData = {
        kind: "region.provision",
        trigger: { type: "job", parentJobId: ctx.jobId },
        requestedAt: new Date((deps.now ?? Date.now)()).toISOString(),
        region,
        ...settings,
      };
      try {
        await deps.queue.enqueue(data, { jobId });
      } catch (err) {
        await deps.regions.forget(region, jobId).catch(() => undefined);
        throw err instanceof TransientError ? err : new TransientError("could not enqueue the region job", { cause: err });
      }
      await ctx.progress(`region ${region} has no shared infrastructure yet: region job ${jobId} enqueued; this job waits for it`);
      throw new StackBusyError(`region ${region} is being provisioned by job ${jobId}`);
    }
    throw new StackBusyError(`region ${region} is being provisioned`);
  };
}
