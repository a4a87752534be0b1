// GitHub answering 500, 502 and a secondary rate limit (the OpenAPI-checked double's faults on
// demand) while a preview runs with the GitOps repository on GitHub too (`github:OWNER/REPO`):
// the git data writes and the feedback are retried, the preview completes, one commit, one sticky
// comment, and the final status and deployment say success.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { previewKey } from "../../core/ids.ts";
import { GitHubDouble, type Fault } from "../github-double/server.ts";
import { expectCleanCase } from "../support/fault-expect.ts";
import { startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers } from "../support/fault-steps.ts";
import { openPullRequest, pullRequestEvent } from "../support/pull-request-events.ts";

const TOKEN = "ghp_faultsuitetoken1111111111111111111111";
let inst: FaultInstallation;
let gh: GitHubDouble;
let repo = "";

beforeAll(async () => {
  gh = await GitHubDouble.start({ tokens: [TOKEN] });
  await gh.createRepo("acme", "gitops");
  inst = await startFaultInstallation({
    label: "gherr",
    env: { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: gh.url, GITOPS_REPO: "github:acme/gitops", STACKRAIL_PREVIEW_DEBOUNCE_MS: "0" },
    gitopsGitDir: gh.gitDir("acme", "gitops"),
  });
  repo = `app-${inst.tag}`;
  await gh.createRepo("acme", repo);
  await ensureWorkers(inst, 1);
});

afterAll(async () => {
  await inst?.close();
  await gh?.close();
});

describe("GitHub answering errors", () => {
  it("500, 502 and a secondary rate limit on git data and feedback: the preview completes, once", async () => {
    const { pr, headSha } = await openPullRequest(gh, "acme", repo, "feature");
    inst.trackPreview(previewKey(repo, pr));
    const faults: Fault[] = [
      { kind: "server-error", method: "POST", path: /\/repos\/acme\/gitops\/git\/trees$/, times: 2 },
      { kind: "bad-gateway", method: "PATCH", path: /\/repos\/acme\/gitops\/git\/refs\/heads\/main$/, times: 2 },
      { kind: "secondary-rate-limit", method: "POST", path: new RegExp(`/repos/acme/${repo}/issues/${pr}/comments$`), times: 1, retryAfter: 1 },
      { kind: "bad-gateway", method: "POST", path: new RegExp(`/repos/acme/${repo}/statuses/`), times: 2 },
      { kind: "server-error", method: "POST", path: new RegExp(`/repos/acme/${repo}/deployments$`), times: 1 },
      { kind: "secondary-rate-limit", method: "POST", path: /\/repos\/acme\/gitops\/git\/commits$/, times: 1, retryAfter: 1 },
    ];
    for (const f of faults) gh.inject(f);
    const res = await inst.harness.deliver("pull_request", pullRequestEvent({ owner: "acme", repo, pr, action: "opened", headSha }));
    expect(res.status).toBe(202);
    const jobId = (res.body.jobs as string[])[0] as string;
    inst.jobIds.add(jobId);
    const view = await inst.waitForFinal(jobId);
    expect(view.state, String(view.error)).toBe("succeeded");

    // Every injected fault was met, and survived.
    const injected = faults.reduce((n, f) => n + (f.times ?? 1), 0);
    const met = gh.requests.filter((r) => r.fault !== undefined);
    expect(met.length, `faults met: ${met.map((r) => `${r.method} ${r.path} ${r.status}`).join(", ")}`).toBe(injected);
    expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    expect(inst.commits().find((c) => c.jobId === jobId)?.files).toContain(`previews/${previewKey(repo, pr)}/application.yaml`);
    const comments = gh.comments("acme", repo, pr);
    expect(comments).toHaveLength(1);
    expect(comments[0]?.body).toContain("Preview environment is ready");
    expect(gh.statuses("acme", repo, headSha).at(-1)?.state).toBe("success");
    expect(gh.deployments("acme", repo).at(-1)?.statuses.at(-1)?.state).toBe("success");
    expect(gh.violations).toEqual([]);
    process.stdout.write(`faults-detail: github-errors faults_met=${met.length}\n`);
    await expectCleanCase(inst, "github-500-502-secondary-rate-limit", [jobId], null);
  });
});
