// Test helpers around the GitHub double: a started double with a repository and a client.
import { createGitHubClient, type GitHubClient } from "../../worker/github/octokit.ts";
import type { Logger } from "../../core/logger.ts";
import { GitHubDouble } from "./server.ts";

export const TOKEN = "ghp_testtoken000000000000000000000000";

export async function startDouble(): Promise<GitHubDouble> {
  const double = await GitHubDouble.start({ tokens: [TOKEN] });
  await double.createRepo("acme", "gitops");
  await double.createRepo("acme", "app");
  return double;
}

/** A client for the double: real Octokit + retry + throttling, with waits shrunk (1 s → 100 ms). */
export function clientFor(double: GitHubDouble, logger?: Logger): Promise<GitHubClient> {
  return createGitHubClient({
    credentials: { kind: "token", token: TOKEN },
    baseUrl: double.url,
    retryAfterBaseMs: 100,
    spaceWrites: false,
    ...(logger ? { logger } : {}),
  });
}
