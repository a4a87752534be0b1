// Signed pull_request deliveries for tests, built from GitHub's own example payloads with the
// repository, PR number and head SHA a test needs.
import { createRequire } from "node:module";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import type { GitHubDouble } from "../github-double/server.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];

export function pullRequestEvent(input: { owner: string; repo: string; pr: number; action: string; headSha: string; title?: string }): Record<string, any> {
  const all = examples.find((e) => e.name === "pull_request")?.examples ?? [];
  const example = all.find((e) => (e as { action?: string }).action === input.action) ?? all[0];
  const payload = structuredClone(example) as Record<string, any>;
  payload.action = input.action;
  payload.number = input.pr;
  const repository = {
    ...payload.repository,
    name: input.repo,
    full_name: `${input.owner}/${input.repo}`,
    owner: { ...payload.repository.owner, login: input.owner },
  };
  payload.repository = repository;
  payload.pull_request = {
    ...payload.pull_request,
    number: input.pr,
    title: input.title ?? "A change",
    head: { ...payload.pull_request.head, sha: input.headSha, repo: repository },
    base: { ...payload.pull_request.base, repo: repository },
    merged: input.action === "closed",
  };
  return payload;
}

/** A new PR in the double's repository with one pushed commit: its number and head SHA. */
export async function openPullRequest(double: GitHubDouble, owner: string, repo: string, branch: string): Promise<{ pr: number; headSha: string }> {
  const headSha = await double.push(owner, repo, branch, `src/${branch}.ts`, `export const v = "${branch}";\n`);
  const pr = (await double.openPullRequest(owner, repo, { head: branch, title: `Change ${branch}` })).number;
  return { pr, headSha };
}
