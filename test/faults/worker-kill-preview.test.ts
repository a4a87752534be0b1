// SIGKILL of the worker (and everything under it) at each step of a PR preview's `up`: before the
// engine starts, during it, after it before the manifest commit, and after the commit before the
// job's record and GitHub's final report. Another worker completes the preview: one commit, one
// sticky comment, the last status and deployment say success.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { previewKey } from "../../core/ids.ts";
import { GitHubDouble } from "../github-double/server.ts";
import { expectCleanCase } from "../support/fault-expect.ts";
import { startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, killAtStep, progressStep, pushStep, type StepPoint } from "../support/fault-steps.ts";
import { openPullRequest, pullRequestEvent } from "../support/pull-request-events.ts";

const TOKEN = "ghp_faultsuitetoken0000000000000000000000";
let inst: FaultInstallation;
let gh: GitHubDouble;
let repo = "";

beforeAll(async () => {
  gh = await GitHubDouble.start({ tokens: [TOKEN] });
  inst = await startFaultInstallation({ label: "pkill", env: { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: gh.url, STACKRAIL_PREVIEW_DEBOUNCE_MS: "0" } });
  repo = `app-${inst.tag}`;
  await gh.createRepo("acme", repo);
  await ensureWorkers(inst, 2);
});

afterAll(async () => {
  await inst?.close();
  await gh?.close();
});

const steps = (pr: () => number): StepPoint[] => [
  {
    // No progress line precedes the engine here: the step is the "in progress" deployment the job reports first.
    name: "before-up",
    async reach(i, jobId) {
      const view = await i.watch(
        jobId,
        "the in-progress report",
        (v) =>
          v.state === "running" &&
          gh.deployments("acme", repo).some((d) => d.environment === `preview/pr-${pr()}` && d.statuses.some((s) => s.state === "in_progress")),
      );
      return { view, release: () => Promise.resolve() };
    },
  },
  progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))),
  pushStep("after-up-before-commit", "pre"),
  pushStep("after-commit-before-report", "post"),
];

describe("SIGKILL of the worker during a preview up", () => {
  let current = 0;
  steps(() => current).forEach((step, i) => {
    it(`${step.name}: another worker completes the preview`, async () => {
      const { pr, headSha } = await openPullRequest(gh, "acme", repo, `change-${i}`);
      current = pr;
      inst.trackPreview(previewKey(repo, pr));
      const res = await inst.harness.deliver("pull_request", pullRequestEvent({ owner: "acme", repo, pr, action: "opened", headSha }));
      expect(res.status).toBe(202);
      const jobId = (res.body.jobs as string[])[0] as string;
      inst.jobIds.add(jobId);
      const out = await killAtStep(inst, jobId, step);
      expect(out.final.state, String(out.final.error)).toBe("succeeded");
      expect(out.takeoverMs, "another worker took the job over").not.toBeNull();
      const key = previewKey(repo, pr);
      expect(inst.remote.show(`previews/${key}/application.yaml`)).toContain(headSha);
      expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
      const comments = gh.comments("acme", repo, pr);
      expect(comments, "one sticky comment, edited in place").toHaveLength(1);
      expect(comments[0]?.body).toContain("Preview environment is ready");
      expect(gh.statuses("acme", repo, headSha).at(-1)?.state).toBe("success");
      const deployments = gh.deployments("acme", repo).filter((d) => d.environment === `preview/pr-${pr}`);
      expect(deployments.at(-1)?.statuses.at(-1)?.state).toBe("success");
      expect(gh.violations).toEqual([]);
      await expectCleanCase(inst, `preview-kill-${step.name}`, [jobId], out.takeoverMs);
    });
  });
});
