// GitHub calls of a release (issue 13 §5): O(W), not O(N), at most 5 per wave. Drives the
// ReleaseReporter itself (GitHubReleaseReporter, worker/github/release-reporter.ts) through every
// milestone of a release to N tenants (default 200) in W waves (default 3; every wave after the
// first waits for approval) against the GitHub double, over real HTTP with the production client
// (retry + throttling) and the worker's call metrics. It measures the reporter, not the rollout
// wiring. The baseline is what per-tenant reporting would cost: a commit status per tenant job
// (pending, then its result), sent for real to the same double with the same client.
import { Redis } from "ioredis";
import { createLogger } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { GitHubDouble } from "../test/github-double/server.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { git } from "../worker/gitops/git.ts";
import { createGitHubClient, type GitHubClient } from "../worker/github/octokit.ts";
import { GitHubReleaseReporter } from "../worker/github/release-reporter.ts";
import { milestones, releasePlan, report, type Milestone } from "../worker/github/release-reporter.test-support.ts";
import { deleteRedisPrefix } from "./lib/cleanup.ts";
import { envInt, round, say, type Row } from "./lib/report.ts";

const TOKEN = "ghp_benchtoken00000000000000000000000000";

export async function benchGithubCalls(): Promise<Row[]> {
  const tenants = envInt("BENCH_GITHUB_TENANTS", 200);
  const waves = envInt("BENCH_GITHUB_WAVES", 3);
  const double = await GitHubDouble.start({ tokens: [TOKEN] });
  const redis = new Redis(TEST_REDIS_URL);
  const prefix = uniqueName("bench-github");
  const metrics = createMetrics();
  const logger = createLogger({ level: "warn" });
  try {
    await double.createRepo("acme", "app");
    const sha = await git(["rev-parse", "main"], { gitDir: double.gitDir("acme", "app") });
    const source = { repo: { owner: "acme", name: "app" }, sha };
    const client: GitHubClient = await createGitHubClient({
      credentials: { kind: "token", token: TOKEN },
      baseUrl: double.url,
      spaceWrites: false,
      logger,
      onResponse: (status) => metrics.githubCalls.inc({ status: String(status) }),
    });
    const reporter = new GitHubReleaseReporter({ redis, prefix, logger, clientFor: () => Promise.resolve(client) });
    const plan = releasePlan({ jobId: `${prefix}-release`, tenants, waves, violations: 3 });
    say(`github-calls: measures the ReleaseReporter driven directly (not the rollout wiring): ${tenants} tenants, ${waves} waves`);

    const perWave = new Map<number, number>();
    let releaseLevel = 0;
    const attribute = (m: Milestone, calls: number): void => {
      if ("wave" in m) perWave.set(m.wave, (perWave.get(m.wave) ?? 0) + calls);
      else releaseLevel += calls;
    };
    for (const m of milestones(plan)) {
      const before = double.requests.length;
      await report(reporter, source, plan, m);
      attribute(m, double.requests.length - before);
    }
    const total = double.requests.length;
    const counted = (await metrics.githubCalls.get()).values.reduce((n, v) => n + v.value, 0);
    // A crashed rollout replays its milestones: count what a second pass sends.
    const beforeReplay = double.requests.length;
    for (const m of milestones(plan)) await report(reporter, source, plan, m);
    const replay = double.requests.length - beforeReplay;

    // Baseline: a commit status per tenant job, pending then its result.
    const baseWave = new Map<number, number>();
    const baseStart = double.requests.length;
    for (const w of plan.waves) {
      const before = double.requests.length;
      for (const t of w.tenants) {
        for (const state of ["pending", "success"] as const) {
          await client.rest.repos.createCommitStatus({
            owner: "acme",
            repo: "app",
            sha,
            state,
            context: `stackrail/tenant/${t.tenantId}`,
            description: `${t.tenantId} → ${t.to}`,
          });
        }
      }
      baseWave.set(w.wave, double.requests.length - before);
    }
    const baseTotal = double.requests.length - baseStart;
    if (double.violations.length > 0) throw new Error(`the GitHub double refused requests: ${double.violations.slice(0, 3).join("; ")}`);
    if (reporter.failures > 0) throw new Error(`${reporter.failures} report(s) failed`);

    const maxWave = Math.max(...perWave.values());
    const maxBase = Math.max(...baseWave.values());
    const waveList = [...perWave.entries()].map(([n, c]) => `wave ${n}: ${c}`).join(", ");
    say(`github-calls: ${waveList}; plan + conclusion: ${releaseLevel}; total ${total} (metrics counted ${counted}); replay: ${replay}`);
    const details = {
      measures: "GitHubReleaseReporter driven directly against the GitHub double (not the rollout wiring)",
      tenants,
      waves,
      perWave: Object.fromEntries(perWave),
      releaseLevel,
      total,
      countedByMetrics: counted,
      replayCalls: replay,
      operations: double.requests.slice(0, total).map((r) => r.operationId),
      baselinePerWave: Object.fromEntries(baseWave),
    };
    return [
      {
        bench: "github-calls",
        metric: `GitHub calls per wave (max), ${tenants} tenants in ${waves} waves [reporter]`,
        ours: maxWave,
        baseline: maxBase,
        unit: "calls",
        ratio: round(maxWave / maxBase, 3),
        goal: "≤ 5 calls per wave",
        met: maxWave <= 5,
        baselineIs: "a commit status per tenant job (pending + result), per wave",
        details,
      },
      {
        bench: "github-calls",
        metric: "GitHub calls per wave incl. plan + conclusion (total / W) [reporter]",
        ours: round(total / waves, 2),
        baseline: round(baseTotal / waves, 2),
        unit: "calls",
        ratio: round(total / baseTotal, 3),
        goal: "≤ 5 calls per wave",
        met: total / waves <= 5,
        baselineIs: "a commit status per tenant job (pending + result), whole release / W",
      },
      {
        bench: "github-calls",
        metric: "GitHub calls of a replayed release (crash re-entry) [reporter]",
        ours: replay,
        baseline: total,
        unit: "calls",
        ratio: round(replay / total, 3),
        goal: "(info: 0 expected)",
        met: null,
        baselineIs: "the first pass",
      },
    ];
  } finally {
    redis.disconnect();
    await double.close();
    await deleteRedisPrefix(prefix);
  }
}
