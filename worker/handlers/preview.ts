// PR preview environments. preview.up: a live slot (or a wait, with a comment saying why), the
// preview stack up at the head SHA, its manifest committed, and the sticky comment, commit status
// and deployment reporting URL and outputs. preview.destroy: the manifest removed first, then the
// stack destroyed, the deployment marked inactive and the comment updated.
import type { Config } from "../../core/config.ts";
import { NotAllowedError, PolicyViolationError, StackBusyError } from "../../core/errors.ts";
import { previewStackName, repoSlug } from "../../core/ids.ts";
import type { Logger, SecretScrubber } from "../../core/logger.ts";
import type { Feedback, FeedbackRecord, PreviewReport } from "../github/feedback.ts";
import { PREVIEW_MARKER, reportPreview } from "../github/feedback.ts";
import { previewDeletion, renderPreviewFiles } from "../gitops/manifests.ts";
import { commitMessage, type GitOpsWriter } from "../gitops/writer.ts";
import type { JobHandler, StepContext } from "../job-worker.ts";
import type { PreviewRegistry } from "../preview-registry.ts";
import type { OperationSummary } from "../pulumi-protocol.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import type { RepoRef } from "../../core/jobs.ts";
import { publicUrl } from "../../core/urls.ts";
import type { RegionGate } from "./region-provision.ts";
import { PROJECT_NAME, gitopsSettings, infraFromOutputs, publicOutputs, regionFiles } from "./tenant-support.ts";

export interface PreviewDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly scrubber: SecretScrubber;
  readonly runner: StackRunner;
  readonly writer: GitOpsWriter;
  readonly registry: PreviewRegistry;
  readonly feedbackFor: (repo: RepoRef) => Promise<Feedback>;
  /** The target's mandatory policy packs: a preview's `up` is checked like every other one. */
  readonly policyPacks: readonly string[];
  /** aws: waits for the preview region's shared infrastructure before the first preview there. */
  readonly regionReady?: RegionGate;
  readonly now?: () => number;
}

function scalarOutputs(outputs: Record<string, unknown>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(publicOutputs(outputs))) {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") out[k] = v;
  }
  return out;
}

function changes(summary: OperationSummary): NonNullable<PreviewReport["changes"]> {
  const c = summary.resourceChanges;
  return { create: c.create ?? 0, update: (c.update ?? 0) + (c.replace ?? 0), delete: c.delete ?? 0, same: c.same ?? 0 };
}

/**
 * The edge acts only on repositories in STACKRAIL_REPOSITORIES; a job naming another one (put in
 * the queue some other way) creates nothing and posts nothing.
 */
function assertRepositoryAllowed(config: Config, repo: RepoRef): void {
  const name = `${repo.owner}/${repo.name}`.toLowerCase();
  if (!config.repositories.any && !config.repositories.names.includes(name)) {
    throw new NotAllowedError(`repository ${repo.owner}/${repo.name} is not in STACKRAIL_REPOSITORIES`);
  }
}

function jobUrl(config: Config, jobId: string): string {
  return `${publicUrl(config.publicUrl)}/v1/jobs/${encodeURIComponent(jobId)}`;
}

async function runPreviewStack(
  deps: PreviewDeps,
  ctx: StepContext,
  operation: "up" | "destroy",
  args: Record<string, string | number | boolean>,
  stack: string,
): Promise<OperationSummary> {
  return deps.runner.run(
    { stack, projectName: PROJECT_NAME, operation, program: "preview", args, policyPacks: deps.policyPacks },
    { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
  );
}

export function previewUpHandler(deps: PreviewDeps): JobHandler<"preview.up"> {
  return async (ctx) => {
    const { repo, pr, headSha, title, trigger } = ctx.data;
    assertRepositoryAllowed(deps.config, repo);
    const now = (deps.now ?? Date.now)();
    const stack = previewStackName(repo.name, pr);
    const feedback = await deps.feedbackFor(repo);
    const report: PreviewReport = {
      repo,
      pr,
      headSha,
      phase: "running",
      jobId: ctx.jobId,
      jobUrl: jobUrl(deps.config, ctx.jobId),
      ...(title ? { title } : {}),
    };
    const records: FeedbackRecord[] = [];

    // Before a slot is taken or anything is reported: waiting for the region is not a failure.
    await deps.regionReady?.(deps.config.previewRegion, ctx);
    if (!(await deps.registry.admit(stack, repo, pr, deps.config.maxPreviews, now))) {
      const live = await deps.registry.count();
      records.push(
        await feedback.stickyComment({
          repo,
          pr,
          marker: PREVIEW_MARKER,
          body: `### ⏸️ Preview environment waiting\n\n${live} preview environments are live, the limit is ${deps.config.maxPreviews}. This one starts as soon as another preview closes.\n`,
        }),
      );
      await ctx.progress(`waiting: ${live} live previews, cap ${deps.config.maxPreviews}`);
      throw new StackBusyError(`preview cap reached (${live}/${deps.config.maxPreviews})`);
    }

    records.push(...(await reportPreview(feedback, report)));
    try {
      const expiresAt = new Date(now + deps.config.previewTtlMs).toISOString();
      const summary = await runPreviewStack(deps, ctx, "up", { repo: repo.name, pr, headSha, expiresAt, region: deps.config.previewRegion }, stack);
      const files = {
        ...(await regionFiles(deps.config, deps.writer, deps.config.previewRegion, true)),
        ...renderPreviewFiles(
          { repoName: repo.name, pr, headSha, region: deps.config.previewRegion },
          infraFromOutputs(summary.outputs, stack),
          gitopsSettings(deps.config),
        ),
      };
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        message: commitMessage({
          jobId: ctx.jobId,
          kind: "preview",
          subject: `${repoSlug(repo.name)}-pr-${pr}`,
          trigger,
          summary: `at ${headSha.slice(0, 12)}`,
        }),
        files,
        subject: stack,
      });
      const outputs = scalarOutputs(summary.outputs);
      const url = typeof outputs.url === "string" ? outputs.url : undefined;
      // The plan the `up` applied (its policy-checked preview): names of properties, never values.
      const plan = { diff: summary.diff ?? [], violations: summary.violations ?? [] };
      records.push(
        ...(await reportPreview(feedback, {
          ...report,
          phase: "succeeded",
          changes: changes(summary),
          ...plan,
          outputs,
          ...(url ? { environmentUrl: url } : {}),
        })),
      );
      return { stack, headSha, outputs, url: url ?? null, commit: commit.sha, resourceChanges: summary.resourceChanges, ...plan, feedback: records };
    } catch (err) {
      const error = deps.scrubber.scrub(err instanceof Error ? err.message : String(err));
      // A refused plan lists its findings (rule, resource); nothing was applied.
      const violations = err instanceof PolicyViolationError ? err.findings.map((v) => ({ ...v, message: deps.scrubber.scrub(v.message) })) : [];
      await reportPreview(feedback, { ...report, phase: "failed", error, ...(violations.length > 0 ? { violations } : {}) }).catch((e: unknown) =>
        ctx.logger.warn({ err: e }, "could not report the failure on GitHub"),
      );
      throw err;
    }
  };
}

export function previewDestroyHandler(deps: PreviewDeps): JobHandler<"preview.destroy"> {
  // Not limited to STACKRAIL_REPOSITORIES: a preview made before its repository left the list
  // must still go (the reaper sends these too); a destroy removes only a preview's own stack,
  // which holds nothing a later push would not re-create.
  return async (ctx) => {
    const { repo, pr, headSha, trigger } = ctx.data;
    const stack = previewStackName(repo.name, pr);
    const feedback = await deps.feedbackFor(repo);
    await ctx.progress("removing the preview's manifest (Argo CD prunes it)");
    const commit = await deps.writer.commit({
      jobId: ctx.jobId,
      message: commitMessage({ jobId: ctx.jobId, kind: "preview-destroy", subject: `${repoSlug(repo.name)}-pr-${pr}`, trigger }),
      files: previewDeletion(repo.name, pr),
      subject: stack,
    });
    await ctx.progress(`stack destroy ${stack}`);
    const now = new Date((deps.now ?? Date.now)() + deps.config.previewTtlMs).toISOString();
    const summary = await runPreviewStack(
      deps,
      ctx,
      "destroy",
      { repo: repo.name, pr, headSha: headSha ?? "0".repeat(40), expiresAt: now, region: deps.config.previewRegion },
      stack,
    );
    await deps.registry.remove(stack);
    const records = await reportPreview(feedback, {
      repo,
      pr,
      headSha: headSha ?? "0".repeat(40),
      phase: "destroyed",
      jobId: ctx.jobId,
      jobUrl: jobUrl(deps.config, ctx.jobId),
      changes: changes(summary),
    });
    return { stack, commit: commit.sha, resourceChanges: summary.resourceChanges, feedback: records };
  };
}

export function commentRefusalHandler(deps: Pick<PreviewDeps, "feedbackFor" | "config">): JobHandler<"comment.refusal"> {
  return async (ctx) => {
    const { repo, pr, reason } = ctx.data;
    assertRepositoryAllowed(deps.config, repo);
    const feedback = await deps.feedbackFor(repo);
    const record = await feedback.stickyComment({
      repo,
      pr,
      marker: "<!-- stackrail:refusal -->",
      body: `### 🚫 Command not run\n\n${reason.replace(/[<>`]/g, "")}\n`,
    });
    return { refused: true, feedback: [record] };
  };
}
