// Feedback on GitHub through Octokit (with retry and throttling, see octokit.ts): the sticky
// comment is found by its hidden marker and edited in place; commit statuses on the head SHA;
// one deployment per (head SHA, environment), with statuses; inactive once the PR closes.
import { StackrailError, TransientError } from "../../core/errors.ts";
import type { Logger } from "../../core/logger.ts";
import { stripCredentials } from "../gitops/git.ts";
import {
  limit,
  type CommitStatusInput,
  type DeploymentInput,
  type Feedback,
  type FeedbackRecord,
  type RepoRef,
  type Scrub,
  type StickyCommentInput,
} from "./feedback.ts";
import type { GitHubClient } from "./octokit.ts";

export interface GitHubFeedbackOptions {
  client: GitHubClient;
  /** Applied to every outgoing text (SecretScrubber.scrub). */
  scrub?: Scrub;
  logger?: Logger;
  /** Only comments by this login are taken for the sticky one (the App's bot login); any author when unset. */
  authorLogin?: string;
}

function statusOf(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "status" in error && typeof error.status === "number" ? error.status : undefined;
}

export class GitHubFeedback implements Feedback {
  readonly #client: GitHubClient;
  readonly #scrub: Scrub;
  readonly #logger: Logger | undefined;
  readonly #author: string | undefined;

  constructor(options: GitHubFeedbackOptions) {
    this.#client = options.client;
    const scrub = options.scrub ?? ((t: string) => t);
    this.#scrub = (t) => stripCredentials(scrub(t));
    this.#logger = options.logger;
    this.#author = options.authorLogin;
  }

  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      const status = statusOf(error);
      const message = this.#scrub(error instanceof Error ? (error.message.split(" - ")[0] ?? "") : String(error));
      if (status === undefined || status >= 500 || status === 429 || (status === 403 && /rate limit/i.test(message)))
        throw new TransientError(`${what}: GitHub answered ${status ?? "no response"}: ${message}`);
      throw new StackrailError(`${what}: GitHub answered ${status}: ${message}`);
    }
  }

  async stickyComment(input: StickyCommentInput): Promise<FeedbackRecord> {
    const { owner, name: repo } = input.repo;
    const body = limit(`${input.marker}\n${this.#scrub(input.body)}`, 65_000);
    const target = `${owner}/${repo}#${input.pr}`;
    return this.#call(`comment on ${target}`, async () => {
      const comments = await this.#client.paginate(this.#client.rest.issues.listComments, { owner, repo, issue_number: input.pr, per_page: 100 });
      // Ours: starts with the marker (a user quoting the marker mid-text is not), by our login if known.
      const existing = comments.find((c) => (c.body ?? "").startsWith(input.marker) && (!this.#author || c.user?.login === this.#author));
      let record: FeedbackRecord;
      if (existing && existing.body === body) {
        record = { channel: "github", kind: "comment", target, action: "unchanged", id: existing.id, url: existing.html_url, body };
      } else if (existing) {
        const { data } = await this.#client.rest.issues.updateComment({ owner, repo, comment_id: existing.id, body });
        record = { channel: "github", kind: "comment", target, action: "updated", id: data.id, url: data.html_url, body };
      } else {
        const { data } = await this.#client.rest.issues.createComment({ owner, repo, issue_number: input.pr, body });
        record = { channel: "github", kind: "comment", target, action: "created", id: data.id, url: data.html_url, body };
      }
      this.#logger?.info({ target, action: record.action, commentId: record.id }, "PR comment");
      return record;
    });
  }

  async commitStatus(input: CommitStatusInput): Promise<FeedbackRecord> {
    const { owner, name: repo } = input.repo;
    const target = `${owner}/${repo}@${input.sha}`;
    const description = limit(this.#scrub(input.description), 140);
    return this.#call(`status on ${target}`, async () => {
      const { data } = await this.#client.rest.repos.createCommitStatus({
        owner,
        repo,
        sha: input.sha,
        state: input.state,
        context: input.context,
        description,
        ...(input.targetUrl ? { target_url: this.#scrub(input.targetUrl) } : {}),
      });
      this.#logger?.info({ target, context: input.context, state: input.state }, "commit status");
      return { channel: "github", kind: "status", target, action: "created", state: input.state, body: description, id: data.id };
    });
  }

  async #findDeployment(repo: RepoRef, sha: string, environment: string): Promise<number | undefined> {
    const { data } = await this.#client.rest.repos.listDeployments({ owner: repo.owner, repo: repo.name, sha, environment, per_page: 10 });
    return data[0]?.id;
  }

  async deployment(input: DeploymentInput): Promise<FeedbackRecord> {
    const { owner, name: repo } = input.repo;
    const target = `${owner}/${repo}:${input.environment}`;
    const description = limit(this.#scrub(input.description ?? ""), 140);
    return this.#call(`deployment ${target}`, async () => {
      let id = await this.#findDeployment(input.repo, input.sha, input.environment);
      let action: FeedbackRecord["action"] = "updated";
      if (id === undefined) {
        const { data } = await this.#client.rest.repos.createDeployment({
          owner,
          repo,
          ref: input.sha,
          environment: input.environment,
          task: "deploy",
          auto_merge: false,
          // Statuses are ours to set; do not wait for other checks.
          required_contexts: [],
          transient_environment: true,
          production_environment: false,
          description,
        });
        if (!("id" in data)) throw new TransientError(`deployment ${target}: GitHub did not create it (${data.message ?? "no reason"})`);
        id = data.id;
        action = "created";
      }
      await this.#client.rest.repos.createDeploymentStatus({
        owner,
        repo,
        deployment_id: id,
        state: input.state,
        description,
        auto_inactive: true,
        ...(input.environmentUrl ? { environment_url: this.#scrub(input.environmentUrl) } : {}),
        ...(input.logUrl ? { log_url: this.#scrub(input.logUrl) } : {}),
      });
      this.#logger?.info({ target, state: input.state, deploymentId: id }, "deployment status");
      return { channel: "github", kind: "deployment", target, action, state: input.state, id, body: description };
    });
  }

  async deactivateEnvironment(input: { repo: RepoRef; environment: string; description?: string }): Promise<FeedbackRecord[]> {
    const { owner, name: repo } = input.repo;
    const target = `${owner}/${repo}:${input.environment}`;
    const description = limit(this.#scrub(input.description ?? ""), 140);
    return this.#call(`deactivate ${target}`, async () => {
      const deployments = await this.#client.paginate(this.#client.rest.repos.listDeployments, { owner, repo, environment: input.environment, per_page: 100 });
      const records: FeedbackRecord[] = [];
      for (const d of deployments.slice(0, 100)) {
        const { data: statuses } = await this.#client.rest.repos.listDeploymentStatuses({ owner, repo, deployment_id: d.id, per_page: 1 });
        if (statuses[0]?.state === "inactive") continue;
        await this.#client.rest.repos.createDeploymentStatus({ owner, repo, deployment_id: d.id, state: "inactive", description });
        records.push({ channel: "github", kind: "deployment", target, action: "updated", state: "inactive", id: d.id, body: description });
      }
      this.#logger?.info({ target, deactivated: records.length }, "deployments inactive");
      return records;
    });
  }
}
