// Picks the feedback channel: GitHub when credentials are configured, the log otherwise.
import type { Config } from "../../core/config.ts";
import type { Logger } from "../../core/logger.ts";
import type { Feedback, Scrub } from "./feedback.ts";
import { GitHubFeedback } from "./github-feedback.ts";
import { LogFeedback } from "./log-feedback.ts";
import { createGitHubClient, type GitHubClientOptions } from "./octokit.ts";

export interface FeedbackDeps {
  logger: Logger;
  scrub?: Scrub;
  /** Repository the feedback is about (needed to find a GitHub App's installation). */
  repo?: { owner: string; name: string };
  clientOptions?: Pick<GitHubClientOptions, "retryAfterBaseMs" | "spaceWrites" | "installationId" | "onResponse">;
  authorLogin?: string;
}

export async function createFeedback(config: Pick<Config, "github" | "githubApiUrl">, deps: FeedbackDeps): Promise<Feedback> {
  if (config.github.kind === "none") return new LogFeedback({ logger: deps.logger, ...(deps.scrub ? { scrub: deps.scrub } : {}) });
  const client = await createGitHubClient({
    credentials: config.github,
    baseUrl: config.githubApiUrl,
    logger: deps.logger,
    ...(deps.repo ? { repo: deps.repo } : {}),
    ...deps.clientOptions,
  });
  return new GitHubFeedback({
    client,
    logger: deps.logger,
    ...(deps.scrub ? { scrub: deps.scrub } : {}),
    ...(deps.authorLogin ? { authorLogin: deps.authorLogin } : {}),
  });
}
