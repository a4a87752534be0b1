import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger, SecretScrubber } from "../../core/logger.ts";
import { createMetrics, type Metrics } from "../../core/metrics.ts";
import { TOKEN, startDouble } from "../../test/github-double/double.test-support.ts";
import { GitHubDouble } from "../../test/github-double/server.ts";
import { TEST_REDIS_URL, uniqueName } from "../../test/support/services.ts";
import { CANARY } from "../gitops/fixtures.test-support.ts";
import { git } from "../gitops/git.ts";
import { createGitHubClient } from "./octokit.ts";
import type { ReleaseSource } from "./release-report.ts";
import { GitHubReleaseReporter, RELEASE_CHECK_NAME, releaseReportKey, type ReportOperation } from "./release-reporter.ts";
import { milestones, releasePlan, report, waveOf } from "./release-reporter.test-support.ts";

let redis: Redis;
let double: GitHubDouble;
let prefix: string;
let lines: string[];
let metrics: Metrics;
let failures: ReportOperation[];
let source: ReleaseSource;
const scrubber = new SecretScrubber();
scrubber.add(CANARY);

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  await redis.quit();
});
beforeEach(async () => {
  double = await startDouble();
  prefix = uniqueName("release-report");
  lines = [];
  failures = [];
  metrics = createMetrics();
  source = { repo: { owner: "acme", name: "app" }, sha: await git(["rev-parse", "main"], { gitDir: double.gitDir("acme", "app") }) };
});
afterEach(async () => {
  await double.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
});

function reporterFor(target: GitHubDouble, token = TOKEN): GitHubReleaseReporter {
  const logger = createLogger({ level: "debug", scrubber, destination: { write: (s: string) => lines.push(s) } });
  return new GitHubReleaseReporter({
    redis,
    prefix,
    logger,
    scrub: (t) => scrubber.scrub(t),
    onFailure: (op) => failures.push(op),
    // As the worker builds its clients: every answer feeds the existing GitHub call metrics.
    clientFor: () =>
      createGitHubClient({
        credentials: { kind: "token", token },
        baseUrl: target.url,
        retryAfterBaseMs: 20,
        spaceWrites: false,
        maxRateLimitRetries: 2,
        retries: 2,
        logger,
        onResponse: (status) => metrics.githubCalls.inc({ status: String(status) }),
      }),
  });
}

async function countedCalls(): Promise<number> {
  const m = await metrics.githubCalls.get();
  return m.values.reduce((n, v) => n + v.value, 0);
}

const ops = (d: GitHubDouble) => d.requests.map((r) => r.operationId ?? "?");

describe("GitHubReleaseReporter against the GitHub double", () => {
  it("reports a release: one check run with the plan, a deployment per wave, at most 5 calls a wave, every call counted", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-1", tenants: 200, waves: 3, violations: 3 });
    const perMilestone: Record<string, string[]> = {};
    for (const m of milestones(plan)) {
      const before = double.requests.length;
      await report(reporter, source, plan, m);
      perMilestone["wave" in m ? `${m.kind}:${m.wave}` : m.kind] = ops(double).slice(before);
    }
    const runs = double.checkRuns("acme", "app", source.sha);
    expect(runs).toHaveLength(1);
    const run = runs[0]!;
    expect(run).toMatchObject({ name: RELEASE_CHECK_NAME, status: "completed", conclusion: "success", externalId: "rel-1", detailsUrl: plan.planUrl });
    expect(run.output.title).toBe("Release 2.4.0 released");
    const summary = run.output.summary ?? "";
    expect(summary).toContain(plan.planUrl);
    expect(summary).toContain("3 wave(s), 200 tenant(s), 3 policy violation(s)");
    expect(summary).toMatch(/\| 1 \| `dev-eu` \| 67 \| `2\.3\.1 → 2\.4\.0 ×61; new → 2\.4\.0 ×6` \| 10 tenant\(s\), 20 resource\(s\) \| — \| ✅ done \|/);
    expect(summary).toMatch(/\| 3 \| `us-east-1`, `ap-south-1` \| 66 \| .* \| required \| ✅ done \|/);
    expect(summary).toContain("2.4.0 released to every tenant");
    expect(run.annotations.map((a) => `${a.level}:${a.path}:${a.title ?? ""}`)).toEqual([
      "failure:tenants/t-1-000:t-1-000: stackrail-baseline/encryption-at-rest",
      "warning:tenants/t-1-001:t-1-001: stackrail-baseline/no-public-ingress",
      "warning:tenants/t-1-002:t-1-002: stackrail-baseline/encryption-at-rest",
    ]);
    expect(run.output.text).toContain("no-public-ingress");

    const deployments = double.deployments("acme", "app");
    expect(deployments.map((d) => d.environment)).toEqual(["dev-eu", "eu-west-1", "wave-3"]);
    for (const [i, d] of deployments.entries()) {
      expect(d.sha).toBe(source.sha);
      expect(d.payload).toEqual({ jobId: "rel-1", wave: i + 1, version: "2.4.0" });
      expect(d.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
    }

    // The budget: per wave, whatever the tenant count (the plan and the conclusion are per release).
    expect(perMilestone).toEqual({
      planned: ["checks/create"],
      "started:1": ["repos/create-deployment", "repos/create-deployment-status"],
      "finished:1": ["repos/create-deployment-status", "checks/update"],
      "awaiting:2": ["checks/update"],
      "started:2": ["repos/create-deployment", "repos/create-deployment-status"],
      "finished:2": ["repos/create-deployment-status", "checks/update"],
      "awaiting:3": ["checks/update"],
      "started:3": ["repos/create-deployment", "repos/create-deployment-status"],
      "finished:3": ["repos/create-deployment-status"],
      done: ["checks/update"],
    });
    expect(double.requests.length).toBeLessThanOrEqual(5 * 3);
    expect(await countedCalls()).toBe(double.requests.length);
    expect(failures).toEqual([]);
    expect(double.violations).toEqual([]);
  });

  it("is idempotent: every milestone twice, and again from a fresh process, creates nothing twice and sends nothing twice", async () => {
    const plan = releasePlan({ jobId: "rel-2", tenants: 30, waves: 3, violations: 70 });
    const first = reporterFor(double);
    for (const m of milestones(plan)) {
      await report(first, source, plan, m);
      const before = double.requests.length;
      await report(first, source, plan, m);
      expect(double.requests.slice(before), JSON.stringify(m)).toEqual([]);
    }
    // A restarted worker (new reporter, same Redis) replays the whole release.
    const before = double.requests.length;
    const restarted = reporterFor(double);
    for (const m of milestones(plan)) await report(restarted, source, plan, m);
    expect(double.requests.slice(before)).toEqual([]);

    expect(double.checkRuns("acme", "app")).toHaveLength(1);
    expect(double.checkRuns("acme", "app")[0]?.annotations).toHaveLength(70);
    expect(double.deployments("acme", "app")).toHaveLength(3);
    for (const d of double.deployments("acme", "app")) expect(d.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
    expect(double.violations).toEqual([]);
  });

  it("sends policy violations as annotations in batches of at most 50 (GitHub refuses more)", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-3", tenants: 40, waves: 2, violations: 120 });
    await reporter.planned(source, plan);
    // 50 with the creation, then 50 and 20: the double refuses (and records) any request over 50.
    expect(ops(double)).toEqual(["checks/create", "checks/update", "checks/update"]);
    const run = double.checkRuns("acme", "app")[0]!;
    expect(run.annotations.map((a) => a.message)).toEqual(Array.from({ length: 120 }, (_, i) => `violation ${i}`));
    expect(run.output.summary).toContain("120 policy violation(s)");
    expect(double.violations).toEqual([]);
  });

  it("finds what a crash left unrecorded: no second check run, no second deployment", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-4", tenants: 10, waves: 2 });
    await reporter.planned(source, plan);
    await reporter.waveStarted(source, waveOf(plan, 1));
    // The process died between GitHub's answer and the record: the markers are what Redis holds.
    const key = releaseReportKey(prefix, "rel-4");
    await redis.hset(key, "check", "creating", "w1:deployment", "creating", "w1:deploymentState", "");
    const again = reporterFor(double);
    await again.planned(source, plan);
    await again.waveStarted(source, waveOf(plan, 1));
    await again.waveFinished(source, { ...waveOf(plan, 1), outcome: "success", summary: "ok" });
    expect(double.checkRuns("acme", "app")).toHaveLength(1);
    expect(double.deployments("acme", "app")).toHaveLength(1);
    expect(double.deployments("acme", "app")[0]?.statuses.map((s) => s.state)).toEqual(["in_progress", "in_progress", "success"]);
    expect(await redis.hget(key, "check")).toBe(String(double.checkRuns("acme", "app")[0]?.id));
    expect(double.violations).toEqual([]);
  });

  it("never throws on GitHub 500, 502 or a secondary rate limit: retried where the client can, else logged, counted and caught up later", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-5", tenants: 20, waves: 2 });
    // More 500s than the client retries: the report fails, the rollout does not.
    double.inject({ kind: "server-error", method: "POST", path: /\/check-runs$/, times: 10 });
    await expect(reporter.planned(source, plan)).resolves.toBeUndefined();
    expect(failures).toEqual(["planned"]);
    expect(reporter.failures).toBe(1);
    const failed = lines
      .map((l) => JSON.parse(l) as { msg: string; operation?: string; status?: number })
      .filter((l) => l.msg === "release report to GitHub failed");
    expect(failed).toMatchObject([{ operation: "planned", status: 500 }]);
    expect(double.checkRuns("acme", "app")).toHaveLength(0);

    // 502s within the client's retries, and a secondary rate limit: the reports go through.
    double.clearFaults();
    double.inject({ kind: "bad-gateway", method: "POST", path: /\/deployments$/, times: 2 });
    double.inject({ kind: "secondary-rate-limit", method: "POST", path: /\/deployments\/\d+\/statuses$/, times: 1, retryAfter: 1 });
    await expect(reporter.waveStarted(source, waveOf(plan, 1))).resolves.toBeUndefined();
    expect(double.deployments("acme", "app")).toHaveLength(1);
    expect(double.deployments("acme", "app")[0]?.statuses.map((s) => s.state)).toEqual(["in_progress"]);
    // The client retried the 500 twice before giving up, then the 502s and the rate limit.
    expect(double.requests.filter((r) => r.fault).map((r) => r.fault)).toEqual([
      "server-error",
      "server-error",
      "server-error",
      "bad-gateway",
      "bad-gateway",
      "secondary-rate-limit",
    ]);

    // A rate limit that outlasts the client's patience: caught as well.
    double.inject({ kind: "secondary-rate-limit", method: "POST", path: /\/deployments\/\d+\/statuses$/, times: 10, retryAfter: 1 });
    await expect(reporter.waveFinished(source, { ...waveOf(plan, 1), outcome: "success", summary: "ok" })).resolves.toBeUndefined();
    expect(failures).toEqual(["planned", "waveFinished"]);

    // GitHub is back: the next milestone catches up (the check run created late, the status sent).
    double.clearFaults();
    await reporter.waveFinished(source, { ...waveOf(plan, 1), outcome: "success", summary: "ok" });
    await reporter.finished(source, { jobId: "rel-5", outcome: "failure", summary: "wave 2 stopped" });
    expect(double.checkRuns("acme", "app")).toHaveLength(1);
    expect(double.checkRuns("acme", "app")[0]).toMatchObject({ conclusion: "failure", externalId: "rel-5" });
    expect(double.deployments("acme", "app")[0]?.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
    // The failed calls are in the GitHub call metrics under their status.
    const byStatus = Object.fromEntries((await metrics.githubCalls.get()).values.map((v) => [String(v.labels.status), v.value]));
    expect(byStatus).toMatchObject({ "500": 1, "403": 1 });
    // Resumed after the failure: the same check run goes back to in progress, then succeeds.
    await reporter.waveStarted(source, waveOf(plan, 2));
    expect(double.checkRuns("acme", "app")[0]).toMatchObject({ status: "in_progress", output: { title: "Release 2.4.0: 1/2 waves done" } });
    expect(double.checkRuns("acme", "app")[0]?.output.summary).not.toContain("wave 2 stopped");
    await reporter.waveFinished(source, { ...waveOf(plan, 2), outcome: "success", summary: "ok" });
    await reporter.finished(source, { jobId: "rel-5", outcome: "success", summary: "resumed and released" });
    expect(double.checkRuns("acme", "app")).toHaveLength(1);
    expect(double.checkRuns("acme", "app")[0]).toMatchObject({ conclusion: "success", output: { title: "Release 2.4.0 released" } });
    expect(double.deployments("acme", "app").map((d) => d.statuses.map((s) => s.state).join(">"))).toEqual(["in_progress>success", "in_progress>success"]);
    expect(double.violations).toEqual([]);
  });

  it("a superseded release: the check run ends neutral, the wave it left running goes inactive, finished waves stay", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-6", tenants: 30, waves: 3 });
    for (const m of milestones(plan).slice(0, 5)) await report(reporter, source, plan, m); // wave 2 started
    await reporter.finished(source, { jobId: "rel-6", outcome: "superseded", summary: "superseded by 2.5.0" });
    const [w1, w2] = double.deployments("acme", "app");
    expect(w1?.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
    expect(w2?.statuses.map((s) => s.state)).toEqual(["in_progress", "inactive"]);
    expect(double.checkRuns("acme", "app")[0]).toMatchObject({ status: "completed", conclusion: "neutral" });
    expect(double.checkRuns("acme", "app")[0]?.output.title).toBe("Release 2.4.0 superseded by a newer release");
    expect(double.violations).toEqual([]);
  });

  it("shows a wave waiting for approval on the check run and how to approve it", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-7", tenants: 30, waves: 2 });
    for (const m of milestones(plan).slice(0, 4)) await report(reporter, source, plan, m); // wave 2 awaits
    const run = double.checkRuns("acme", "app")[0]!;
    expect(run.status).toBe("in_progress");
    expect(run.output.title).toBe("Release 2.4.0: wave 2 waits for approval");
    expect(run.output.summary).toContain("/stackrail approve");
    expect(run.output.summary).toMatch(/\| 2 \| .* \| required \| ✋ waits for approval \|/);
    // Wave 2 started, then its plan changed and it waits again: its deployment says queued.
    await reporter.waveStarted(source, waveOf(plan, 2));
    await reporter.waveAwaitingApproval(source, waveOf(plan, 2));
    expect(double.deployments("acme", "app")[1]?.statuses.map((s) => s.state)).toEqual(["in_progress", "queued"]);
    await reporter.finished(source, { jobId: "rel-7", outcome: "cancelled", summary: "rejected by a release manager" });
    expect(double.checkRuns("acme", "app")[0]).toMatchObject({ conclusion: "cancelled" });
    expect(double.checkRuns("acme", "app")[0]?.output.summary).toContain("rejected by a release manager");
    // The wave the rejection stopped ends in error; the finished one stays a success.
    expect(double.deployments("acme", "app").map((d) => d.statuses.at(-1)?.state)).toEqual(["success", "error"]);
    expect(double.violations).toEqual([]);
  });

  it("without the Checks API (a personal access token), reports by commit status with the same context", async () => {
    const strict = await GitHubDouble.start({ tokens: [TOKEN], checksNeedApp: true });
    try {
      await strict.createRepo("acme", "app");
      const sha = await git(["rev-parse", "main"], { gitDir: strict.gitDir("acme", "app") });
      const reporter = reporterFor(strict);
      const plan = releasePlan({ jobId: "rel-8", tenants: 12, waves: 2 });
      for (const m of milestones(plan)) await report(reporter, { ...source, sha }, plan, m);
      const statuses = strict.statuses("acme", "app", sha);
      expect(statuses.every((s) => s.context === RELEASE_CHECK_NAME)).toBe(true);
      expect(statuses.map((s) => s.state)).toEqual(["pending", "pending", "pending", "success"]);
      expect(statuses.at(-1)?.description).toBe("Release 2.4.0 released");
      expect(strict.requests.filter((r) => r.operationId === "checks/create")).toHaveLength(1);
      expect(failures).toEqual([]);
      expect(strict.violations).toEqual([]);
    } finally {
      await strict.close();
    }
  });

  it("sends no secret to GitHub: violation messages, summaries and URLs are scrubbed", async () => {
    const reporter = reporterFor(double);
    const plan = releasePlan({ jobId: "rel-9", tenants: 6, waves: 2, violations: 2, message: `password=${CANARY} in config` });
    for (const m of milestones(plan)) {
      if (m.kind === "finished") await reporter.waveFinished(source, { ...waveOf(plan, m.wave), outcome: "success", summary: `token ${CANARY}` });
      else await report(reporter, source, plan, m);
    }
    const everything = JSON.stringify([double.checkRuns("acme", "app"), double.deployments("acme", "app"), double.statuses("acme", "app"), lines]);
    expect(everything).not.toContain(CANARY);
    expect(everything).toContain("[REDACTED]");
    expect(double.violations).toEqual([]);
  });
});
