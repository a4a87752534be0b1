// Picks the GitOps writer from GITOPS_REPO: `github:OWNER/REPO[@BRANCH]` → the GitHub git data
// API; anything else (a path, a file:// / https:// / ssh URL) → the system git. GITOPS_MODE=pr
// makes the GitHub writer open a pull request per subject instead of pushing to the branch.
import type { Config } from "../../core/config.ts";
import { ConfigError } from "../../core/errors.ts";
import { publicUrl } from "../../core/urls.ts";
import type { Logger } from "../../core/logger.ts";
import { createGitHubClient, type GitHubClient } from "../github/octokit.ts";
import type { CrdValidator } from "./crd-validator.ts";
import { GitHubWriter } from "./github-writer.ts";
import { LocalGitWriter } from "./local-git-writer.ts";
import type { GitOpsWriter } from "./writer.ts";

export interface GitHubRepoTarget {
  owner: string;
  repo: string;
  branch: string;
}

/** Parses `github:OWNER/REPO[@BRANCH]`; null for any other GITOPS_REPO. */
export function parseGitHubTarget(gitopsRepo: string): GitHubRepoTarget | null {
  if (!gitopsRepo.startsWith("github:")) return null;
  const m = /^github:([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})(?:@([A-Za-z0-9_./-]{1,200}))?$/.exec(gitopsRepo);
  if (!m || m[2] === "." || m[2] === ".." || (m[3] ?? "").split("/").includes("..")) {
    throw new ConfigError("GITOPS_REPO", "must be github:OWNER/REPO or github:OWNER/REPO@BRANCH");
  }
  return { owner: m[1] ?? "", repo: m[2] ?? "", branch: m[3] ?? "main" };
}

/** The web address of the GitHub server behind an API URL (`https://HOST/api/v3` on GitHub Enterprise Server). */
export function githubWebUrl(apiUrl: string | undefined): string {
  // It becomes the repoURL of committed manifests: never with the API URL's user information.
  const url = apiUrl === undefined ? undefined : publicUrl(apiUrl);
  if (url === undefined || /^https:\/\/api\.github\.com\/?$/.test(url)) return "https://github.com";
  return url.replace(/\/+$/, "").replace(/\/api\/v3$/, "");
}

export interface GitOpsWriterDeps {
  logger?: Logger;
  validator?: CrdValidator;
  now?: () => Date;
  /** SecretScrubber.scrub of the process: a change holding a known secret value is refused. */
  scrub?: (text: string) => string;
  /** `pull-request` opens/updates a PR per subject instead of pushing (GitHub only); defaults to GITOPS_MODE. */
  mode?: "push" | "pull-request";
  /** An already-built client (tests, or shared with feedback); otherwise built from config. */
  client?: GitHubClient;
  /** Options passed to the client factory (tests shrink waits). */
  clientOptions?: { retryAfterBaseMs?: number; spaceWrites?: boolean };
}

/** The writer's mode for GITOPS_MODE (`direct` unless configured). */
export function writerMode(gitopsMode: Config["gitopsMode"] | undefined): "push" | "pull-request" {
  return gitopsMode === "pr" ? "pull-request" : "push";
}

export async function createGitOpsWriter(
  config: Pick<Config, "gitopsRepo" | "dataDir" | "github" | "githubApiUrl"> & Partial<Pick<Config, "gitopsMode">>,
  deps: GitOpsWriterDeps = {},
): Promise<GitOpsWriter> {
  const target = parseGitHubTarget(config.gitopsRepo);
  const mode = deps.mode ?? writerMode(config.gitopsMode);
  if (target === null) {
    // loadConfig refuses this combination; a hand-built configuration must not commit directly
    // when it asked for review.
    if (mode === "pull-request") throw new ConfigError("GITOPS_MODE", "pr needs a GitHub GitOps repository: set GITOPS_REPO=github:OWNER/REPO[@BRANCH]");
    return new LocalGitWriter({
      repo: config.gitopsRepo,
      dataDir: config.dataDir,
      ...(deps.logger ? { logger: deps.logger } : {}),
      ...(deps.validator ? { validator: deps.validator } : {}),
      ...(deps.now ? { now: deps.now } : {}),
      ...(deps.scrub ? { scrub: deps.scrub } : {}),
    });
  }
  let client = deps.client;
  if (!client) {
    if (config.github.kind === "none")
      throw new ConfigError("GITOPS_REPO", "a github: GitOps repository needs GITHUB_TOKEN or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY");
    client = await createGitHubClient({
      credentials: config.github,
      baseUrl: config.githubApiUrl,
      repo: { owner: target.owner, name: target.repo },
      ...(deps.logger ? { logger: deps.logger } : {}),
      ...deps.clientOptions,
    });
  }
  return new GitHubWriter({
    client,
    owner: target.owner,
    repo: target.repo,
    branch: target.branch,
    webUrl: githubWebUrl(config.githubApiUrl),
    mode,
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.validator ? { validator: deps.validator } : {}),
    ...(deps.scrub ? { scrub: deps.scrub } : {}),
  });
}
