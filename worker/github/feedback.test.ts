import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, SecretScrubber } from "../../core/logger.ts";
import { clientFor, startDouble } from "../../test/github-double/double.test-support.ts";
import type { GitHubDouble } from "../../test/github-double/server.ts";
import { git } from "../gitops/git.ts";
import { GitHubWriter } from "../gitops/github-writer.ts";
import { renderTenantFiles, type InfraOutputs } from "../gitops/manifests.ts";
import { commitMessage } from "../gitops/writer.ts";
import { CANARY, INFRA, SETTINGS, TENANT } from "../gitops/fixtures.test-support.ts";
import { PREVIEW_MARKER, renderPreviewComment, reportPreview, type PreviewReport } from "./feedback.ts";
import { createFeedback } from "./feedback-factory.ts";
import { GitHubFeedback } from "./github-feedback.ts";
import { LogFeedback } from "./log-feedback.ts";

let double: GitHubDouble;
let lines: string[];
let scrubber: SecretScrubber;
const logger = () => createLogger({ level: "debug", scrubber, destination: { write: (s: string) => lines.push(s) } });

beforeEach(async () => {
  double = await startDouble();
  lines = [];
  scrubber = new SecretScrubber();
  scrubber.add(CANARY);
});
afterEach(async () => {
  expect(double.violations).toEqual([]);
  await double.close();
});

const repo = { owner: "acme", name: "app" };
const report = (pr: number, headSha: string, phase: PreviewReport["phase"], extra: Partial<PreviewReport> = {}): PreviewReport => ({
  repo,
  pr,
  headSha,
  phase,
  title: "Add billing page",
  jobId: `job-${headSha.slice(0, 6)}-${phase}`,
  jobUrl: "https://stackrail.example.com/v1/jobs/42",
  environmentUrl: `https://pr-${pr}.preview.example.com`,
  changes: { create: 4, update: 1, delete: 0, same: 7 },
  outputs: { dbHost: "db.internal", cachePrefix: "preview:app-pr-1:" },
  ...extra,
});

describe("GitHubFeedback through the GitHub double", () => {
  it("edits one sticky comment across three pushes; statuses and deployments follow the head", async () => {
    const feedback = new GitHubFeedback({ client: await clientFor(double), logger: logger() });
    await double.push("acme", "app", "feature", "src/a.ts", "v1");
    const pr = await double.openPullRequest("acme", "app", { head: "feature", title: "Add billing page" });
    // Someone quotes the marker in their own comment: it must never be taken for ours.
    await (await clientFor(double)).rest.issues.createComment({ owner: "acme", repo: "app", issue_number: pr.number, body: `see ${PREVIEW_MARKER} above` });

    const shas: string[] = [];
    for (let push = 1; push <= 3; push++) {
      const sha = push === 1 ? pr.headSha : await double.push("acme", "app", "feature", "src/a.ts", `v${push}`);
      shas.push(sha);
      await reportPreview(feedback, report(pr.number, sha, "running"));
      await reportPreview(feedback, report(pr.number, sha, push === 3 ? "failed" : "succeeded", push === 3 ? { error: "helm upgrade failed: timed out" } : {}));
    }
    const ours = double.comments("acme", "app", pr.number).filter((c) => c.body.startsWith(PREVIEW_MARKER));
    expect(ours).toHaveLength(1);
    expect(double.comments("acme", "app", pr.number)).toHaveLength(2);
    expect(ours[0]?.body).toContain("❌ Preview environment update failed");
    expect(ours[0]?.body).toContain(shas[2]?.slice(0, 12));
    expect(ours[0]?.body).toContain("helm upgrade failed");
    expect(double.requests.filter((r) => r.operationId === "issues/create-comment")).toHaveLength(2); // the user's and ours
    expect(double.requests.filter((r) => r.operationId === "issues/update-comment")).toHaveLength(5);

    for (const [i, sha] of shas.entries()) {
      expect(double.statuses("acme", "app", sha).map((s) => `${s.context}:${s.state}`)).toEqual([
        "stackrail/preview:pending",
        `stackrail/preview:${i === 2 ? "failure" : "success"}`,
      ]);
    }
    const deployments = double.deployments("acme", "app");
    expect(deployments.map((d) => d.sha)).toEqual(shas);
    expect(deployments.every((d) => d.environment === `preview/pr-${pr.number}` && d.transient && !d.production)).toBe(true);
    expect(deployments[2]?.statuses.map((s) => s.state)).toEqual(["in_progress", "failure"]);
    expect(deployments[1]?.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);

    // The PR closes: the preview is destroyed and every deployment of the environment goes inactive.
    await reportPreview(feedback, report(pr.number, shas[2] ?? "", "destroyed"));
    for (const d of double.deployments("acme", "app")) expect(d.statuses.at(-1)?.state).toBe("inactive");
    expect(double.comments("acme", "app", pr.number).filter((c) => c.body.startsWith(PREVIEW_MARKER))).toHaveLength(1);
  });

  it("a secondary rate limit on the comment delays and retries instead of failing", async () => {
    const log = logger();
    const feedback = new GitHubFeedback({ client: await clientFor(double, log), logger: log });
    await double.push("acme", "app", "feature", "src/a.ts", "v1");
    const pr = await double.openPullRequest("acme", "app", { head: "feature", title: "x" });
    double.inject({ kind: "secondary-rate-limit", method: "POST", path: /\/issues\/\d+\/comments$/, retryAfter: 3 });
    const started = Date.now();
    const records = await reportPreview(feedback, report(pr.number, pr.headSha, "succeeded"));
    expect(records[0]).toMatchObject({ kind: "comment", action: "created" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290); // 3 s at 100 ms per second
    expect(double.requests.filter((r) => r.fault === "secondary-rate-limit")).toHaveLength(1);
    expect(lines.join("")).toMatch(/GitHub rate limit/);
  });

  it("a canary secret put through a whole job appears in no file, commit, comment, status, deployment, log line or record", async () => {
    const log = logger();
    const client = await clientFor(double, log);
    const scrub = (t: string) => scrubber.scrub(t);
    // The GitOps side: the canary arrives as a credential among the infrastructure outputs.
    const writer = new GitHubWriter({ client, owner: "acme", repo: "gitops", logger: log });
    const leaky = { ...INFRA, dbPassword: CANARY, cacheAuthToken: CANARY } as InfraOutputs;
    const jobId = "job-canary";
    const commit = await writer.commit({
      jobId,
      message: commitMessage({ jobId, kind: "tenant.provision", subject: "tenant acme", trigger: { type: "api", tokenName: "cp" } }),
      files: renderTenantFiles(TENANT, leaky, SETTINGS),
    });
    expect(commit.changed).toHaveLength(3);

    // The feedback side: the canary is in outputs, in the error text (even inside a URL) and in the PR title.
    const feedback = new GitHubFeedback({ client, logger: log, scrub });
    await double.push("acme", "app", "feature", "src/a.ts", "v1");
    const pr = await double.openPullRequest("acme", "app", { head: "feature", title: "t" });
    const records = [
      ...(await reportPreview(feedback, report(pr.number, pr.headSha, "running", { outputs: { dbPassword: CANARY, dbHost: "db" } }))),
      ...(await reportPreview(
        feedback,
        report(pr.number, pr.headSha, "failed", {
          title: `Fix ${CANARY}`,
          error: `connect mysql://app:${CANARY}@db.internal:3306 failed: access denied for password ${CANARY}`,
          outputs: { connection: `redis://u:${CANARY}@cache`, note: CANARY },
        }),
      )),
    ];
    const logFeedback = new LogFeedback({ logger: log, scrub });
    records.push(...(await reportPreview(logFeedback, report(pr.number, pr.headSha, "failed", { error: `boom ${CANARY}` }))));
    log.error({ err: new Error(`job failed: ${CANARY}`) }, "job failed");
    await new Promise((r) => setTimeout(r, 50));

    const everything = [
      await git(["log", "-p", "--all", "--format=%B"], { gitDir: double.gitDir("acme", "gitops") }),
      JSON.stringify(double.comments("acme", "app")),
      JSON.stringify(double.statuses("acme", "app")),
      JSON.stringify(double.deployments("acme", "app")),
      JSON.stringify(records),
      lines.join(""),
    ];
    expect(everything[0]).toContain("tenants/acme/application.yaml");
    expect(everything[1]).toContain("access denied");
    expect(lines.length).toBeGreaterThan(3);
    for (const text of everything) expect(text).not.toContain(CANARY);
  });
});

describe("renderPreviewComment", () => {
  it("renders user text inert: no mention, link, HTML or forged marker escapes its code span", () => {
    const hostile = "@acme/admins `` <!-- stackrail:preview --> <img src=x onerror=alert(1)> [click](https://evil.example) **bold** | pipe\n# heading";
    const body = renderPreviewComment(report(3, "a".repeat(40), "failed", { title: hostile, error: "```\n@acme/admins\n```", outputs: { "a|b": "c|d `x`" } }));
    // Remove code spans and fenced blocks: what is left must hold none of the hostile text.
    const outside = body.replace(/^(`{3,})text\n[\s\S]*?\n\1$/gm, "").replace(/(`+) ?[^`]*?(?:`(?!\1)[^`]*?)* ?\1/g, "");
    for (const needle of ["@acme", "<img", "evil.example", "<!--", "**bold**", "# heading"]) expect(outside).not.toContain(needle);
    expect(body).toContain("<https://pr-3.preview.example.com>");
    expect(renderPreviewComment(report(3, "a".repeat(40), "succeeded"))).toBe(renderPreviewComment(report(3, "a".repeat(40), "succeeded")));
  });

  it("drops outputs whose names look like credentials", () => {
    const body = renderPreviewComment(report(3, "a".repeat(40), "succeeded", { outputs: { dbPassword: "x1", apiKey: "x2", authToken: "x3", dbHost: "db" } }));
    expect(body).toContain("dbHost");
    expect(body).not.toMatch(/dbPassword|apiKey|authToken/);
  });
});

describe("createFeedback", () => {
  it("writes to the log and returns records when there are no credentials", async () => {
    const feedback = await createFeedback({ github: { kind: "none" }, githubApiUrl: double.url }, { logger: logger() });
    expect(feedback).toBeInstanceOf(LogFeedback);
    const records = await reportPreview(feedback, report(5, "b".repeat(40), "succeeded"));
    expect(records.map((r) => `${r.channel}:${r.kind}`)).toEqual(["log:comment", "log:status", "log:deployment"]);
    expect(records[0]?.body).toContain("✅ Preview environment is ready");
    await new Promise((r) => setTimeout(r, 50));
    expect(lines.join("")).toContain("feedback (no GitHub credentials)");
    expect(double.requests).toEqual([]);
  });

  it("talks to GitHub with a token", async () => {
    const feedback = await createFeedback(
      { github: { kind: "token", token: "ghp_testtoken000000000000000000000000" }, githubApiUrl: double.url },
      { logger: logger(), clientOptions: { retryAfterBaseMs: 100, spaceWrites: false } },
    );
    expect(feedback).toBeInstanceOf(GitHubFeedback);
  });
});
