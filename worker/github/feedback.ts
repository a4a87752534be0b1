// What the people on GitHub see: a sticky comment per PR, a commit status on the head SHA, and
// GitHub Deployments for preview environments. One interface, two implementations: GitHub
// (github-feedback.ts) and the log (log-feedback.ts, when there are no credentials; the records
// it returns go into the job's record). Every outgoing text passes the secret scrubber.
import type { RepoRef } from "../../core/jobs.ts";
import { SECRET_FIELD_NAME } from "../../core/logger.ts";
import type { PolicyViolation, ResourceDiff } from "../pulumi-protocol.ts";
import { codeBlock, inlineCode, isSafeUrl, link } from "./markdown.ts";
import { renderPlan, renderViolations } from "./plan-markdown.ts";

export type { RepoRef } from "../../core/jobs.ts";

export const PREVIEW_MARKER = "<!-- stackrail:preview -->";
export const PREVIEW_STATUS_CONTEXT = "stackrail/preview";

export type CommitState = "pending" | "success" | "failure" | "error";
export type DeploymentState = "in_progress" | "success" | "failure" | "inactive";

/** What one feedback action did; returned to the worker, which stores it in the job record. */
export interface FeedbackRecord {
  channel: "github" | "log";
  kind: "comment" | "status" | "deployment";
  /** `owner/repo#pr`, `owner/repo@sha` or `owner/repo:environment`. */
  target: string;
  action: "created" | "updated" | "unchanged" | "logged";
  state?: string;
  /** The text sent (comment body, status description); scrubbed. */
  body?: string;
  url?: string;
  id?: number;
}

export interface StickyCommentInput {
  repo: RepoRef;
  pr: number;
  /** Hidden HTML comment identifying the sticky comment, e.g. PREVIEW_MARKER. */
  marker: string;
  body: string;
}

export interface CommitStatusInput {
  repo: RepoRef;
  sha: string;
  context: string;
  state: CommitState;
  description: string;
  targetUrl?: string;
}

export interface DeploymentInput {
  repo: RepoRef;
  /** The commit deployed (head SHA). */
  sha: string;
  environment: string;
  state: Exclude<DeploymentState, "inactive">;
  environmentUrl?: string;
  logUrl?: string;
  description?: string;
}

export interface Feedback {
  /** Creates the PR's comment carrying `marker`, or edits it in place. */
  stickyComment(input: StickyCommentInput): Promise<FeedbackRecord>;
  commitStatus(input: CommitStatusInput): Promise<FeedbackRecord>;
  /** Finds or creates the deployment of `sha` to `environment` and adds a status. */
  deployment(input: DeploymentInput): Promise<FeedbackRecord>;
  /** Marks every deployment of `environment` inactive (the PR closed, the preview is gone). */
  deactivateEnvironment(input: { repo: RepoRef; environment: string; description?: string }): Promise<FeedbackRecord[]>;
}

export type Scrub = (text: string) => string;

// ---------------------------------------------------------------------------------------------

export interface ResourceChanges {
  create: number;
  update: number;
  delete: number;
  same?: number;
}

export interface PreviewReport {
  repo: RepoRef;
  pr: number;
  headSha: string;
  /** PR title: user text, rendered inert. */
  title?: string;
  phase: "running" | "succeeded" | "failed" | "destroyed";
  jobId: string;
  jobUrl?: string;
  environmentUrl?: string;
  changes?: ResourceChanges;
  /** The plan the change was made from (or refused on): per resource, the step and changed property names. */
  diff?: readonly ResourceDiff[];
  /** Policy findings of that plan; mandatory ones mean nothing was applied. */
  violations?: readonly PolicyViolation[];
  /** Non-secret stack outputs; keys that look like credentials are dropped anyway. */
  outputs?: Record<string, string | number | boolean>;
  /** Error text of a failed job (scrubbed before it leaves the process). */
  error?: string;
}

export function previewEnvironment(pr: number): string {
  return `preview/pr-${pr}`;
}

const HEADLINE: Record<PreviewReport["phase"], string> = {
  running: "⏳ Preview environment is being updated",
  succeeded: "✅ Preview environment is ready",
  failed: "❌ Preview environment update failed",
  destroyed: "🗑️ Preview environment destroyed",
};

/**
 * What the rendered comment may use: GitHub refuses bodies over 65,536 characters; the marker, a
 * scrubber that may lengthen nothing, and a margin stay below it. JS lengths count UTF-16 units,
 * never fewer than GitHub's characters.
 */
export const COMMENT_BUDGET = 60_000;

/**
 * The sticky comment's Markdown (without the marker). Deterministic for the same report. The
 * plan (per resource: create / update / replace / delete and the changed property names), the
 * policy findings, then the outputs; what does not fit COMMENT_BUDGET is left to the job's page.
 */
export function renderPreviewComment(report: PreviewReport): string {
  const lines: string[] = [`### ${HEADLINE[report.phase]}`, ""];
  lines.push(`**Pull request:** #${report.pr}${report.title ? ` ${inlineCode(report.title, { max: 120 })}` : ""}  `);
  lines.push(`**Commit:** ${inlineCode(report.headSha.slice(0, 12))}  `);
  if (report.environmentUrl && report.phase !== "destroyed") lines.push(`**Environment:** ${link(report.environmentUrl)}  `);
  lines.push(
    `**Job:** ${report.jobUrl && isSafeUrl(report.jobUrl) ? link(report.jobUrl, report.jobId.replace(/[^A-Za-z0-9:_.-]/g, "")) : inlineCode(report.jobId)}`,
  );
  if (report.changes) {
    const c = report.changes;
    lines.push("", "| Create | Update | Delete | Unchanged |", "|---:|---:|---:|---:|", `| ${c.create} | ${c.update} | ${c.delete} | ${c.same ?? 0} |`);
  }
  const tail: string[] = [];
  const outputs = Object.entries(report.outputs ?? {})
    .filter(([k]) => !SECRET_FIELD_NAME.test(k))
    .sort(([a], [b]) => (a < b ? -1 : 1));
  if (outputs.length > 0 && report.phase !== "destroyed") {
    tail.push("", "<details><summary>Outputs</summary>", "", "| Output | Value |", "|---|---|");
    for (const [k, v] of outputs.slice(0, 50)) tail.push(`| ${inlineCode(k, { inTable: true, max: 60 })} | ${inlineCode(String(v), { inTable: true })} |`);
    tail.push("", "</details>");
  }
  if (report.error) tail.push("", "**Error**", "", codeBlock(report.error, { max: 4000 }));

  // The findings first (they say why nothing was applied), then the plan, in what is left.
  let left = COMMENT_BUDGET - lines.join("\n").length - tail.join("\n").length - 16;
  const restUrl = report.jobUrl && isSafeUrl(report.jobUrl) ? report.jobUrl : undefined;
  const violations = renderViolations(report.violations ?? [], { budget: Math.floor(report.diff?.length ? left / 2 : left), ...(restUrl ? { restUrl } : {}) });
  left -= violations.length + 2;
  if (report.diff && report.phase !== "destroyed") lines.push("", renderPlan(report.diff, { budget: left, ...(restUrl ? { restUrl } : {}) }));
  if (violations) lines.push("", violations);
  return [...lines, ...tail].join("\n") + "\n";
}

const COMMIT_STATE: Record<PreviewReport["phase"], CommitState | null> = { running: "pending", succeeded: "success", failed: "failure", destroyed: null };
const DESCRIPTION: Record<PreviewReport["phase"], string> = {
  running: "Preview environment is being updated",
  succeeded: "Preview environment is ready",
  failed: "Preview environment update failed",
  destroyed: "Preview environment destroyed",
};

/** Everything a preview job reports: the sticky comment, the commit status, the deployment. */
export async function reportPreview(feedback: Feedback, report: PreviewReport): Promise<FeedbackRecord[]> {
  const records: FeedbackRecord[] = [];
  records.push(await feedback.stickyComment({ repo: report.repo, pr: report.pr, marker: PREVIEW_MARKER, body: renderPreviewComment(report) }));
  const state = COMMIT_STATE[report.phase];
  const targetUrl = report.jobUrl && isSafeUrl(report.jobUrl) ? report.jobUrl : undefined;
  if (state) {
    records.push(
      await feedback.commitStatus({
        repo: report.repo,
        sha: report.headSha,
        context: PREVIEW_STATUS_CONTEXT,
        state,
        description: DESCRIPTION[report.phase],
        ...(targetUrl ? { targetUrl } : {}),
      }),
    );
  }
  const environment = previewEnvironment(report.pr);
  if (report.phase === "destroyed") {
    records.push(...(await feedback.deactivateEnvironment({ repo: report.repo, environment, description: DESCRIPTION.destroyed })));
  } else {
    const envUrl = report.environmentUrl && isSafeUrl(report.environmentUrl) ? report.environmentUrl : undefined;
    records.push(
      await feedback.deployment({
        repo: report.repo,
        sha: report.headSha,
        environment,
        state: report.phase === "running" ? "in_progress" : report.phase === "succeeded" ? "success" : "failure",
        description: DESCRIPTION[report.phase],
        ...(envUrl ? { environmentUrl: envUrl } : {}),
        ...(targetUrl ? { logUrl: targetUrl } : {}),
      }),
    );
  }
  return records;
}

/** GitHub limits: status/deployment descriptions 140 characters, comment bodies 65536. */
export function limit(text: string, max: number): string {
  const chars = [...text];
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : text;
}
