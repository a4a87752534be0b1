// `npm run demo`: the whole loop once on the embedded default (local target), through the real
// HTTP edge, queue, Pulumi engine, MariaDB, Redis and git. One progress line per step, then a
// summary of jobs, durations and commits. Everything it made is removed at the end unless
// `--keep` is given (then the data dir with the Pulumi state and the GitOps repo stay).
import { createHash } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import path from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../core/engine.ts";
import { publicUrl } from "../core/urls.ts";
import { checkMariaDb, checkRedis } from "../test/support/services.ts";
import { startHarness, type Harness } from "../test/support/harness.ts";
import type { JobView } from "../jobs/queue.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];
const { values } = parseArgs({ options: { keep: { type: "boolean", default: false } } });
const keep = values.keep ?? false;

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface StepRecord {
  step: string;
  jobs: JobView[];
  ms: number;
}

const records: StepRecord[] = [];

/** The GitOps commits a job reports: `commit` of most jobs, one per wave for a rollout. */
function commitsOf(job: JobView): string[] {
  const r = (job.result ?? {}) as { commit?: unknown; waves?: { commit?: unknown }[] };
  const all = [r.commit, ...(r.waves ?? []).map((w) => w.commit)];
  return all.filter((c): c is string => typeof c === "string");
}

/** A pull_request delivery as GitHub sends it (the fields Stackrail reads), from an example payload. */
function pullRequest(repo: string, pr: number, action: string, headSha: string): Record<string, unknown> {
  const base = examples.find((e) => e.name === "pull_request")?.examples.find((e) => (e as { action?: string }).action === "opened") as Record<string, any>;
  const payload = structuredClone(base);
  const repository = { ...payload.repository, name: repo, full_name: `acme/${repo}`, owner: { ...payload.repository.owner, login: "acme" } };
  payload.action = action;
  payload.number = pr;
  payload.repository = repository;
  payload.pull_request = {
    ...payload.pull_request,
    number: pr,
    title: "Checkout: pay by invoice",
    state: action === "closed" ? "closed" : "open",
    head: { ...payload.pull_request.head, sha: headSha, repo: repository },
    base: { ...payload.pull_request.base, repo: repository },
  };
  return payload;
}

async function step(h: Harness, name: string, start: () => Promise<string[]>): Promise<JobView[]> {
  const t0 = Date.now();
  process.stdout.write(`▶ ${name} … `);
  const ids = await start();
  const jobs: JobView[] = [];
  for (const id of ids) jobs.push(await h.waitForJob(id));
  const ms = Date.now() - t0;
  records.push({ step: name, jobs, ms });
  const failed = jobs.filter((j) => j.state === "failed" || j.state === "cancelled");
  out(`${failed.length === 0 ? "ok" : "FAILED"} (${(ms / 1000).toFixed(1)}s; ${jobs.map((j) => `${j.kind}=${j.state}`).join(", ") || "no jobs"})`);
  if (failed.length > 0) {
    for (const f of failed) out(`  ${f.id}: ${f.error ?? "no error recorded"}`);
    throw new Error(`step "${name}" failed`);
  }
  return jobs;
}

function expectAccepted(res: { status: number; body: unknown }, what: string): string[] {
  if (res.status !== 202) throw new Error(`${what}: expected 202, got ${res.status} ${JSON.stringify(res.body)}`);
  const body = res.body as { jobId?: unknown; jobs?: unknown };
  if (typeof body.jobId === "string") return [body.jobId];
  if (Array.isArray(body.jobs)) return body.jobs.filter((j): j is string => typeof j === "string");
  return [];
}

async function main(): Promise<void> {
  await checkRedis();
  await checkMariaDb();
  const dataDir = path.join(PROJECT_ROOT, ".stackrail", `demo-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  mkdirSync(dataDir, { recursive: true });
  out(`Stackrail demo — data dir ${path.relative(PROJECT_ROOT, dataDir)}${keep ? " (kept)" : " (removed at the end; --keep keeps it)"}`);
  const h = await startHarness({
    dataDir,
    env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1", STACKRAIL_MOVE_ROLLBACK_WINDOW_S: "0", STACKRAIL_MAX_PREVIEWS: "5" },
  });
  const tag = Math.random().toString(36).slice(2, 7);
  const eu = `demo-eu-${tag}`;
  const us = `demo-us-${tag}`;
  const repo = `shop-${tag}`;
  const pr = 42;
  const head = (n: number): string => createHash("sha1").update(`${repo}-${n}`).digest("hex");
  try {
    for (const [id, region] of [
      [eu, "eu-west-1"],
      [us, "us-east-1"],
    ] as const) {
      const [provisioned] = await step(h, `provision tenant ${id} (pool, ${region})`, async () =>
        expectAccepted(await h.request("POST", "/v1/tenants", { id, region, tier: "pool", version: "1.0.0" }), "provision"),
      );
      const outputs = (provisioned?.result as { outputs?: Record<string, unknown> } | undefined)?.outputs ?? {};
      out(
        `    outputs: ${Object.entries(outputs)
          .filter(([k]) => /^(database|cache)(Name|Host|Port|User|KeyPrefix)$|attachmentsPath/.test(k))
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(" ")}`,
      );
    }

    await step(h, `open PR #${pr} on ${repo} (signed webhook): preview environment`, async () =>
      expectAccepted(await h.deliver("pull_request", pullRequest(repo, pr, "opened", head(1))), "pull_request opened"),
    );
    await step(h, `push to PR #${pr}: preview updated to the new head`, async () =>
      expectAccepted(await h.deliver("pull_request", pullRequest(repo, pr, "synchronize", head(2))), "pull_request synchronize"),
    );
    await step(h, `close PR #${pr}: manifest removed, preview destroyed`, async () =>
      expectAccepted(await h.deliver("pull_request", pullRequest(repo, pr, "closed", head(2))), "pull_request closed"),
    );
    await step(h, "roll out release 1.1.0 in two waves (eu-west-1, then us-east-1)", async () =>
      expectAccepted(await h.request("POST", "/v1/releases", { version: "1.1.0" }), "release"),
    );
    await step(h, `move tenant ${eu} to silo (copy, verify, cut over)`, async () =>
      expectAccepted(await h.request("POST", `/v1/tenants/${eu}/move`, { tier: "silo" }), "move"),
    );
    for (const id of [eu, us]) {
      await step(h, `deprovision tenant ${id} (manifests, backup, destroy)`, async () =>
        expectAccepted(await h.request("DELETE", `/v1/tenants/${id}`), "deprovision"),
      );
    }
  } finally {
    out("");
    out("Summary");
    for (const r of records) {
      out(`  ${(r.ms / 1000).toFixed(1).padStart(6)}s  ${r.step}`);
      for (const j of r.jobs) {
        const commits = commitsOf(j);
        out(`           job ${j.id} ${j.kind} ${j.state}${commits.length > 0 ? ` commit ${commits.map((c) => c.slice(0, 12)).join(" ")}` : ""}`);
      }
    }
    const log = h.gitLog();
    out(`  GitOps repository ${keep ? publicUrl(h.config.gitopsRepo) : "(removed)"}: ${log.length} commits`);
    for (const line of log) out(`    ${line.slice(0, 12)} ${line.slice(41)}`);
    // Every commit a job reports is in the repository's log, and every commit after the first is a job's.
    const fromJobs = new Set(records.flatMap((r) => r.jobs.flatMap((j) => commitsOf(j))));
    const fromLog = log.map((l) => l.slice(0, 40)).slice(0, -1);
    const matches = fromLog.length === fromJobs.size && fromLog.every((c) => fromJobs.has(c));
    out(`  job summary ${matches ? "matches" : "DOES NOT match"} the GitOps log (${fromJobs.size} job commits)`);
    if (keep) out(`  Pulumi state: ${publicUrl(h.config.pulumiBackendUrl)}`);
    await h.close({ keep });
    if (!keep) rmSync(dataDir, { recursive: true, force: true });
  }
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
