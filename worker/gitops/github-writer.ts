// GitOps writer for `GITOPS_REPO=github:OWNER/REPO[@BRANCH]`, through GitHub's git data API:
// read the ref, create blobs and a tree on the base tree, create the commit, move the ref
// without force. A 422 on the ref update means the branch moved meanwhile: read it again and
// re-apply, a bounded number of times. In pull-request mode the commit goes to a branch
// `stackrail/<subject>` and a pull request is opened (or updated) instead.
import { createHash } from "node:crypto";
import { StackrailError, TransientError, ValidationError } from "../../core/errors.ts";
import type { Logger } from "../../core/logger.ts";
import type { GitHubClient } from "../github/octokit.ts";
import { defaultCrdValidator, type CrdValidator } from "./crd-validator.ts";
import { COMMIT_AUTHOR, checkChange, raceBackoff, sleep, type GitOpsChange, type GitOpsCommitResult, type GitOpsSource, type GitOpsWriter } from "./writer.ts";
import { assertJobOwned } from "../job-scope.ts";

export interface GitHubWriterOptions {
  client: GitHubClient;
  owner: string;
  repo: string;
  branch?: string;
  /** The web address of the GitHub server (GitHub Enterprise Server); Argo CD clones from it. */
  webUrl?: string;
  /** `push` commits to the branch; `pull-request` opens or updates a PR against it. */
  mode?: "push" | "pull-request";
  maxTries?: number;
  validator?: CrdValidator;
  logger?: Logger;
  /** The process's secret scrubber: a change holding a known secret value is refused. */
  scrub?: (text: string) => string;
  /** Waits between re-applies after a lost race (injectable for tests). */
  backoff?: (attempt: number) => Promise<void>;
}

/** The git blob id of a text, as git computes it: lets us skip unchanged files without a request. */
export function gitBlobSha(content: string): string {
  const data = Buffer.from(content, "utf8");
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

function statusOf(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "status" in error && typeof error.status === "number" ? error.status : undefined;
}

/** Maps Octokit errors to Stackrail's fates; keeps only the status and GitHub's message. */
function asStackrailError(error: unknown, what: string): Error {
  if (error instanceof StackrailError) return error;
  const status = statusOf(error);
  const message = error instanceof Error ? (error.message.split(" - ")[0] ?? "") : String(error);
  if (status === undefined || status >= 500 || status === 429 || (status === 403 && /rate limit/i.test(message)))
    return new TransientError(`${what}: GitHub answered ${status ?? "no response"}: ${message}`);
  return new StackrailError(`${what}: GitHub answered ${status}: ${message}`);
}

interface Built {
  commit: string;
  changed: string[];
}

export class GitHubWriter implements GitOpsWriter {
  readonly #o: Required<Pick<GitHubWriterOptions, "owner" | "repo" | "branch" | "mode" | "maxTries">> & GitHubWriterOptions;
  readonly #blobs = new Set<string>();

  constructor(options: GitHubWriterOptions) {
    this.#o = { branch: "main", mode: "push", maxTries: 8, ...options };
  }

  get source(): GitOpsSource {
    const web = (this.#o.webUrl ?? "https://github.com").replace(/\/+$/, "");
    return { repoURL: `${web}/${this.#o.owner}/${this.#o.repo}.git`, revision: this.#o.branch };
  }

  get #gh(): GitHubClient["rest"]["git"] {
    return this.#o.client.rest.git;
  }

  async #head(branch: string): Promise<string | null> {
    try {
      const { data } = await this.#gh.getRef({ owner: this.#o.owner, repo: this.#o.repo, ref: `heads/${branch}` });
      return data.object.sha;
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw error;
    }
  }

  async #files(commitSha: string): Promise<{ tree: string; blobs: Map<string, string>; truncated: boolean }> {
    const { data: commit } = await this.#gh.getCommit({ owner: this.#o.owner, repo: this.#o.repo, commit_sha: commitSha });
    const { data: tree } = await this.#gh.getTree({ owner: this.#o.owner, repo: this.#o.repo, tree_sha: commit.tree.sha, recursive: "1" });
    const blobs = new Map<string, string>();
    for (const e of tree.tree) if (e.type === "blob" && e.path && e.sha) blobs.set(e.path, e.sha);
    return { tree: commit.tree.sha, blobs, truncated: tree.truncated };
  }

  /** Creates (but does not publish) the commit applying the change on `parent`; null when nothing changes. */
  async #build(parent: string, change: GitOpsChange): Promise<Built | null> {
    const { owner, repo } = this.#o;
    const current = await this.#files(parent);
    const entries: { path: string; mode: "100644"; type: "blob"; sha: string | null }[] = [];
    const changed: string[] = [];
    for (const [file, content] of Object.entries(change.files).sort(([a], [b]) => (a < b ? -1 : 1))) {
      const existing = current.blobs.get(file);
      if (content === null) {
        if (existing !== undefined) entries.push({ path: file, mode: "100644", type: "blob", sha: null });
        else continue;
      } else {
        const sha = gitBlobSha(content);
        if (existing === sha) continue;
        if (!this.#blobs.has(sha)) {
          const { data } = await this.#gh.createBlob({ owner, repo, content, encoding: "utf-8" });
          if (data.sha !== sha) throw new StackrailError(`GitHub stored blob ${data.sha} for content hashing to ${sha}`);
          this.#blobs.add(sha);
        }
        entries.push({ path: file, mode: "100644", type: "blob", sha });
      }
      changed.push(file);
    }
    if (entries.length === 0) return null;
    const { data: tree } = await this.#gh.createTree({ owner, repo, base_tree: current.tree, tree: entries });
    const { data: commit } = await this.#gh.createCommit({
      owner,
      repo,
      message: change.message,
      tree: tree.sha,
      parents: [parent],
      author: { ...COMMIT_AUTHOR },
    });
    return { commit: commit.sha, changed };
  }

  async #wait(attempt: number): Promise<void> {
    await (this.#o.backoff ? this.#o.backoff(attempt) : sleep(raceBackoff(attempt)));
  }

  async commit(change: GitOpsChange): Promise<GitOpsCommitResult> {
    checkChange(change, this.#o.validator ?? defaultCrdValidator(), this.#o.scrub);
    try {
      return this.#o.mode === "push" ? await this.#push(change) : await this.#pullRequest(change);
    } catch (error) {
      throw asStackrailError(error, `committing job ${change.jobId} to ${this.#o.owner}/${this.#o.repo}`);
    }
  }

  async #push(change: GitOpsChange): Promise<GitOpsCommitResult> {
    const { owner, repo, branch, maxTries } = this.#o;
    for (let attempt = 0; attempt < maxTries; attempt++) {
      const head = await this.#head(branch);
      if (!head) throw new ValidationError("GITOPS_REPO", `branch ${branch} does not exist in ${owner}/${repo}`);
      const built = await this.#build(head, change);
      if (!built) return { sha: null, changed: [] };
      // Fencing: a worker that lost its job's lock publishes nothing (its job's new owner may).
      await assertJobOwned();
      try {
        await this.#gh.updateRef({ owner, repo, ref: `heads/${branch}`, sha: built.commit, force: false });
        this.#o.logger?.info({ jobId: change.jobId, sha: built.commit, changed: built.changed, attempt }, "gitops commit on GitHub");
        return { sha: built.commit, changed: built.changed };
      } catch (error) {
        if (statusOf(error) !== 422) throw error;
        this.#o.logger?.info({ jobId: change.jobId, attempt }, "gitops branch moved on GitHub; re-applying");
        await this.#wait(attempt);
      }
    }
    throw new TransientError(`the GitOps branch ${branch} kept moving; gave up after ${maxTries} tries`);
  }

  async #pullRequest(change: GitOpsChange): Promise<GitOpsCommitResult> {
    const { owner, repo, branch: base, maxTries } = this.#o;
    const pulls = this.#o.client.rest.pulls;
    const subject = change.subject ?? change.jobId.toLowerCase().replace(/[^a-z0-9-]+/g, "-");
    let prBranch = `stackrail/${subject}`;
    for (let attempt = 0; attempt < maxTries; attempt++) {
      const baseHead = await this.#head(base);
      if (!baseHead) throw new ValidationError("GITOPS_REPO", `branch ${base} does not exist in ${owner}/${repo}`);
      let branchHead = await this.#head(prBranch);
      let open = branchHead ? (await pulls.list({ owner, repo, head: `${owner}:${prBranch}`, base, state: "open", per_page: 10 })).data[0] : undefined;
      if (branchHead && !open) {
        // The earlier PR was merged or closed: start a fresh branch from the base.
        prBranch = `stackrail/${subject}-${change.jobId.toLowerCase().replace(/[^a-z0-9-]+/g, "-")}`.slice(0, 200);
        branchHead = await this.#head(prBranch);
        open = undefined;
      }
      const built = await this.#build(branchHead ?? baseHead, change);
      if (!built) return { sha: null, changed: [], ...(open ? { pullRequest: { number: open.number, url: open.html_url } } : {}) };
      await assertJobOwned();
      try {
        if (branchHead) await this.#gh.updateRef({ owner, repo, ref: `heads/${prBranch}`, sha: built.commit, force: false });
        else await this.#gh.createRef({ owner, repo, ref: `refs/heads/${prBranch}`, sha: built.commit });
      } catch (error) {
        if (statusOf(error) !== 422) throw error;
        await this.#wait(attempt);
        continue;
      }
      const title = change.message.split("\n")[0] ?? change.jobId;
      const body = `Opened by Stackrail for job \`${change.jobId}\`.\n\nChanged files:\n${built.changed.map((f) => `- \`${f}\``).join("\n")}\n`;
      const pr = open
        ? (await pulls.update({ owner, repo, pull_number: open.number, title, body })).data
        : (await pulls.create({ owner, repo, head: prBranch, base, title, body, maintainer_can_modify: true })).data;
      this.#o.logger?.info({ jobId: change.jobId, sha: built.commit, pr: pr.number }, "gitops pull request");
      return { sha: built.commit, changed: built.changed, pullRequest: { number: pr.number, url: pr.html_url } };
    }
    throw new TransientError(`the GitOps branch ${prBranch} kept moving; gave up after ${maxTries} tries`);
  }

  async readFile(path: string): Promise<string | null> {
    try {
      const head = await this.#head(this.#o.branch);
      if (!head) return null;
      const { blobs } = await this.#files(head);
      const sha = blobs.get(path);
      if (!sha) return null;
      const { data } = await this.#gh.getBlob({ owner: this.#o.owner, repo: this.#o.repo, file_sha: sha });
      return Buffer.from(data.content, data.encoding === "base64" ? "base64" : "utf8").toString("utf8");
    } catch (error) {
      throw asStackrailError(error, `reading ${path}`);
    }
  }

  async listFiles(prefix: string): Promise<string[]> {
    try {
      const head = await this.#head(this.#o.branch);
      if (!head) return [];
      const p = prefix.replace(/\/+$/, "");
      const { blobs } = await this.#files(head);
      return [...blobs.keys()].filter((f) => p === "" || f.startsWith(`${p}/`)).sort();
    } catch (error) {
      throw asStackrailError(error, `listing ${prefix}`);
    }
  }
}
