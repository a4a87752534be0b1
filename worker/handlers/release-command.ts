// release.command: a `/stackrail approve` or `/stackrail reject` comment on a pull request. The
// edge only routed it (the payload's author_association said OWNER, MEMBER or COLLABORATOR); here
// the commenter's permission is checked through the GitHub API (write, maintain or admin), the
// PR's commits (merge commit, head) are looked up, and the release of that commit waiting for an
// approval is approved or rejected. Every outcome is answered on the PR, a refusal included.
import type { Redis } from "ioredis";
import type { Config } from "../../core/config.ts";
import { NotAllowedError, StackrailError, TransientError } from "../../core/errors.ts";
import type { RepoRef } from "../../core/jobs.ts";
import type { Feedback } from "../github/feedback.ts";
import type { GitHubClient } from "../github/octokit.ts";
import type { JobHandler } from "../job-worker.ts";
import { RELEASES_LANE, type JobQueue } from "../../jobs/queue.ts";
import { approveWaiting, awaitingWave, rejectWaiting } from "../../jobs/release-approval.ts";

/** The GitHub calls the command needs. */
export type CommandGitHub = Pick<GitHubClient, "rest">;

export interface ReleaseCommandDeps {
  readonly config: Config;
  readonly redis: Redis;
  readonly feedbackFor: (repo: RepoRef) => Promise<Feedback>;
  /** An authenticated client for the repository; null without GitHub credentials. */
  readonly githubFor: (repo: RepoRef) => Promise<CommandGitHub | null>;
  readonly queue: () => Pick<JobQueue, "lanes" | "getJobView">;
}

const ALLOWED_PERMISSIONS = new Set(["admin", "maintain", "write"]);
const REFUSAL_MARKER = "<!-- stackrail:refusal -->";
const RELEASE_MARKER = "<!-- stackrail:release -->";

function statusOf(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "status" in error && typeof error.status === "number" ? error.status : undefined;
}

/** GitHub's answer as a typed error: unavailable is worth another try, the rest is not. */
function gitHubError(what: string, error: unknown): StackrailError {
  const status = statusOf(error);
  if (status === undefined || status >= 500 || status === 429) return new TransientError(`${what}: GitHub answered ${status ?? "no response"}`);
  return new StackrailError(`${what}: GitHub answered ${status}`);
}

export function releaseCommandHandler(deps: ReleaseCommandDeps): JobHandler<"release.command"> {
  const prefix = deps.config.queuePrefix;
  return async (ctx) => {
    const { repo, pr, command, login, reason } = ctx.data;
    const name = `${repo.owner}/${repo.name}`.toLowerCase();
    if (!deps.config.repositories.any && !deps.config.repositories.names.includes(name)) {
      throw new NotAllowedError(`repository ${repo.owner}/${repo.name} is not in STACKRAIL_REPOSITORIES`);
    }
    const feedback = await deps.feedbackFor(repo);
    const answer = async (marker: string, body: string) => feedback.stickyComment({ repo, pr, marker, body });
    const refuse = async (why: string) => {
      await ctx.progress(`refused /stackrail ${command} by ${login}: ${why}`);
      const record = await answer(REFUSAL_MARKER, `### 🚫 Command not run\n\n${why.replace(/[<>`]/g, "")}\n`);
      return { refused: true, command, login, reason: why, feedback: [record] };
    };

    const github = await deps.githubFor(repo);
    if (!github) return refuse("Stackrail has no GitHub credentials to check the commenter's permission; approve through the API instead");

    // The payload's author_association is what GitHub says of the comment; the permission is what it says now.
    let permission: string;
    try {
      const { data } = await github.rest.repos.getCollaboratorPermissionLevel({ owner: repo.owner, repo: repo.name, username: login });
      const role = (data as { role_name?: unknown }).role_name;
      permission = ALLOWED_PERMISSIONS.has(data.permission) ? data.permission : typeof role === "string" ? role : data.permission;
    } catch (err) {
      if (statusOf(err) !== 404) throw gitHubError("collaborator permission", err);
      permission = "none";
    }
    if (!ALLOWED_PERMISSIONS.has(permission)) {
      return refuse(`only collaborators with write, maintain or admin permission may ${command} a release (@${login} has ${permission})`);
    }

    let shas: string[];
    try {
      const { data } = await github.rest.pulls.get({ owner: repo.owner, repo: repo.name, pull_number: pr });
      shas = [data.merge_commit_sha, data.head.sha].filter((s): s is string => typeof s === "string" && s.length > 0);
    } catch (err) {
      throw gitHubError("pull request", err);
    }

    const queue = deps.queue();
    let target: { jobId: string; version: string } | undefined;
    for (const id of await queue.lanes.entries(RELEASES_LANE)) {
      const view = await queue.getJobView(id);
      if (!view || view.kind !== "release.rollout" || !["waiting", "running", "awaiting-approval"].includes(view.state)) continue;
      const source = view.data.source as { sha?: unknown } | undefined;
      const commit = typeof source?.sha === "string" ? source.sha : view.data.version;
      if (typeof commit !== "string" || !shas.includes(commit)) continue;
      if (await awaitingWave(deps.redis, prefix, id)) target = { jobId: id, version: String(view.data.version) };
    }
    if (!target) {
      await ctx.progress(`no release of ${shas.join(" or ")} waits for approval`);
      const record = await answer(RELEASE_MARKER, `### Nothing to ${command}\n\nNo release of this pull request's commit waits for an approval.\n`);
      return { applied: false, command, login, feedback: [record] };
    }
    const approver = { by: login, via: "comment" as const, pr: `${repo.owner}/${repo.name}#${pr}` };
    const decided =
      command === "approve"
        ? await approveWaiting(deps.redis, prefix, target.jobId, approver)
        : await rejectWaiting(deps.redis, prefix, target.jobId, approver, reason);
    if (!decided) {
      const record = await answer(RELEASE_MARKER, `### Nothing to ${command}\n\nThe release stopped waiting before the ${command} arrived.\n`);
      return { applied: false, command, login, releaseJobId: target.jobId, feedback: [record] };
    }
    await ctx.progress(`${command === "approve" ? "approved" : "rejected"} wave ${decided.wave} of release ${target.jobId} for ${login}`);
    const record = await answer(
      RELEASE_MARKER,
      command === "approve"
        ? `### ✅ Wave ${decided.wave} approved\n\nRelease \`${target.jobId}\` goes on (approved by @${login}).\n`
        : `### ⛔ Release rejected\n\nRelease \`${target.jobId}\` stops at wave ${decided.wave} (rejected by @${login}).\n`,
    );
    return { applied: true, command, login, releaseJobId: target.jobId, wave: decided.wave, feedback: [record] };
  };
}
