// A push to the default branch starts a rollout only when a changed file passes
// STACKRAIL_DEPLOY_PATHS (issue 15 §2): added, modified and removed files of every commit count,
// exclusions win over earlier inclusions. The patterns themselves are tested in core/deploy-paths.test.ts.
import { describe, expect, it } from "vitest";
import { parseDeployPaths } from "../core/deploy-paths.ts";
import type { RepoRef } from "../core/jobs.ts";
import { routeGitHubEvent, type PrHead, type PrHeadStore, type RouteContext } from "./github-routing.ts";

const heads: PrHeadStore = {
  get: (_repo: RepoRef, _pr: number): Promise<PrHead | null> => Promise.resolve(null),
  set: (): Promise<void> => Promise.resolve(),
};

const context = (patterns: string): RouteContext => ({
  deliveryId: "11111111-2222-3333-4444-555555555555",
  requestedAt: "2026-11-29T20:00:00.000Z",
  deployPaths: parseDeployPaths(patterns),
  prHeads: heads,
});

const push = (commits: { added?: string[]; modified?: string[]; removed?: string[] }[]) => ({
  ref: "refs/heads/main",
  after: "a".repeat(40),
  repository: { name: "shop", default_branch: "main", owner: { login: "acme" } },
  sender: { login: "octocat" },
  commits,
});

describe("push routing through STACKRAIL_DEPLOY_PATHS", () => {
  it.each([
    { name: "a changed file under a prefix", patterns: "charts/", commits: [{ modified: ["charts/app/values.yaml"] }], rollout: true },
    { name: "a removed file counts", patterns: "src/**", commits: [{ removed: ["src/old.ts"] }], rollout: true },
    { name: "any commit of the push", patterns: "Dockerfile", commits: [{ modified: ["README.md"] }, { added: ["Dockerfile"] }], rollout: true },
    { name: "a brace alternative", patterns: "src/{api,web}/**", commits: [{ modified: ["src/web/page.tsx"] }], rollout: true },
    { name: "only excluded files", patterns: "src/**,!src/**/*.test.ts", commits: [{ modified: ["src/a.test.ts"] }], rollout: false },
    { name: "one excluded, one not", patterns: "src/**,!src/**/*.test.ts", commits: [{ modified: ["src/a.test.ts", "src/a.ts"] }], rollout: true },
    { name: "nothing deployable", patterns: "src/**,charts/", commits: [{ modified: ["docs/guide.md"] }], rollout: false },
    { name: "an empty list", patterns: "", commits: [{ modified: ["src/a.ts"] }], rollout: false },
  ])("$name: rollout $rollout", async ({ patterns, commits, rollout }) => {
    const outcome = await routeGitHubEvent("push", push(commits), context(patterns));
    if (rollout) {
      expect(outcome.ignored).toBeUndefined();
      expect(outcome.jobs.map((j) => j.data.kind)).toEqual(["release.rollout"]);
    } else {
      expect(outcome).toEqual({ jobs: [], ignored: "no deployable path changed" });
    }
  });
});
