// Scale figures (issue 14 §6), `npm run bench -- scale`. Two parts, both with the queue on a
// redis-server this benchmark starts on a free loopback port (nothing else's traffic or keys count):
//
// 1. provision (real engine): N tenants (BENCH_SCALE_TENANTS, default 50) provisioned through
//    `POST /v1/tenants` at STACKRAIL_CONCURRENCY (default 2) per worker process, with two worker
//    processes (`main.ts --role worker`), against N other tenants provisioned by one. An API-only
//    edge in this process takes the requests, as production splits the roles.
// 2. release (orchestration alone): a release to N tenants (BENCH_SCALE_RELEASE_TENANTS, default
//    200; a list such as `1000,2000,10000` measures each size) with the Pulumi step replaced by a
//    recorded no-op runner (bench/scale-runner.ts: the summaries a real preview and `up` of a
//    tenant's release returned, bench/scale-recorded-release.json). The worker is a
//    `main.ts --role worker` process whose runner factory is swapped by a module hook
//    (bench/scale-hooks.ts); the tenants are seeded straight into the GitOps repository (one
//    commit) and the tenant index, not provisioned. The release comes from a signed `push` webhook
//    (so it reports on GitHub: the GitHub double counts the calls), runs the default waves
//    (STACKRAIL_ROLLOUT_WAVES unset: eu-west-1, then eu-central-1 + us-east-1) with no approval
//    (STACKRAIL_APPROVAL_WAVES=none), and every wave's health gate asks a loopback endpoint that
//    reports each tenant at the new version (STACKRAIL_HEALTH_URL). Measured: planning time
//    (request → plan stored, and → wave 1 starts), the worker's peak RSS, Redis used_memory per
//    tenant, the commits on the GitOps repository and the GitHub calls per wave.
//
// BENCH_SCALE_PARTS=provision or =release runs one part. Rows also go to bench/results/scale-latest.json.
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { loadConfig } from "../core/config.ts";
import { createLogger } from "../core/logger.ts";
import type { JobQueue, JobView } from "../jobs/queue.ts";
import { rolloutPlanKey } from "../jobs/rollout-control.ts";
import { startService, type Service } from "../service.ts";
import { GitHubDouble } from "../test/github-double/server.ts";
import { startPrivateRedis, type PrivateRedis } from "../test/support/private-services.ts";
import { TEST_REDIS_URL, localServiceEnv, uniqueName } from "../test/support/services.ts";
import { git } from "../worker/gitops/git.ts";
import { createGitOpsWriter } from "../worker/gitops/writer-factory.ts";
import { dropLocalLeftovers, removeDir } from "./lib/cleanup.ts";
import { startCpu, type CpuUse } from "./lib/cpu.ts";
import { expectSucceeded, waitFinal } from "./lib/jobs.ts";
import { envInt, machineInfo, renderTable, round, say, type Machine, type Row } from "./lib/report.ts";
import { postJob } from "./lib/post-job.ts";
import { rssOf, sample, startHealthEndpoint, startWorker, stopWorker, usedMemory, type WorkerProcess } from "./scale-processes.ts";
import { loadRecording } from "./scale-runner.ts";
import { seedTenants } from "./scale-seed.ts";

const MiB = 1024 * 1024;
const TOKEN = "ghp_scalebenchtoken000000000000000000000";
const OWNER = "acme";
const REPO = "app";
const HOOKS = path.join(import.meta.dirname, "scale-hooks.ts");

/** The parts to run, in the order given. */
function parts(): ("provision" | "release")[] {
  const raw = process.env.BENCH_SCALE_PARTS ?? "provision,release";
  const list = raw.split(",").map((s) => s.trim());
  const unknown = list.filter((p) => p !== "provision" && p !== "release");
  if (unknown.length > 0) throw new Error(`BENCH_SCALE_PARTS: unknown part(s) ${unknown.join(", ")} (provision, release)`);
  return [...new Set(list as ("provision" | "release")[])];
}

function releaseSizes(): number[] {
  const raw = process.env.BENCH_SCALE_RELEASE_TENANTS ?? "200";
  const list = raw.split(",").map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 10 || n > 100_000))
    throw new Error(`BENCH_SCALE_RELEASE_TENANTS must be whole numbers 10..100000 (got "${raw}")`);
  return list;
}

async function timed<T>(what: () => Promise<T>): Promise<{ ms: number; cpu: CpuUse; value: T }> {
  const cpuOf = startCpu();
  const t0 = performance.now();
  const value = await what();
  return { ms: performance.now() - t0, cpu: cpuOf(), value };
}

async function provisionAll(api: Service, token: string, queue: JobQueue, ids: readonly string[]): Promise<void> {
  const jobIds: string[] = [];
  for (const id of ids) jobIds.push(await postJob(api.url ?? "", token, "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" }));
  for (const jobId of jobIds) expectSucceeded(await waitFinal(queue, jobId, 3_600_000, 100), "tenant.provision");
}

/** Part 1: N provisions with two worker processes against N with one, real engine. */
async function benchProvisions(redisUrl: string): Promise<Row[]> {
  const n = envInt("BENCH_SCALE_TENANTS", 50);
  const concurrency = envInt("STACKRAIL_CONCURRENCY", 2);
  const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-bench-scale-"));
  const prefix = uniqueName("bench-scale");
  const token = randomBytes(24).toString("hex");
  const env: Record<string, string> = {
    ...localServiceEnv({ dataDir, prefix, apiToken: token, passphrase: randomBytes(16).toString("hex"), tokenName: "bench" }),
    // The queue on the benchmark's own server; the tenants' cache users on the shared one, where the clean-up finds them.
    REDIS_URL: redisUrl,
    LOCAL_REDIS_URL: TEST_REDIS_URL,
    STACKRAIL_CONCURRENCY: String(concurrency),
    STACKRAIL_DRIFT_INTERVAL_S: "0",
    STACKRAIL_DELETE_MAX: "10000",
    STACKRAIL_SHUTDOWN_GRACE_MS: "10000",
    LOG_LEVEL: "info",
  };
  const tag = randomBytes(2).toString("hex");
  const oneIds = Array.from({ length: n }, (_, i) => `bs1-${tag}-${i}`);
  const twoIds = Array.from({ length: n }, (_, i) => `bs2-${tag}-${i}`);
  const workers: WorkerProcess[] = [];
  let api: Service | undefined;
  try {
    workers.push(await startWorker(env));
    api = await startService(loadConfig({ ...env, LOG_LEVEL: "warn" }), { role: "api", logger: createLogger({ level: "warn" }) });
    const queue = api.queue;
    if (!queue) throw new Error("the API has no queue");
    const service = api;
    say(`scale: provisioning ${n} tenants at concurrency ${concurrency}, one worker process (real engine)`);
    const one = await timed(() => provisionAll(service, token, queue, oneIds));
    say(`scale: one worker process: ${Math.round(one.ms / 1000)} s; cores busy ${one.cpu.oursCores} with it, ${one.cpu.othersCores} with other processes`);
    workers.push(await startWorker(env));
    for (const w of workers) for (const k of Object.keys(w.started)) delete w.started[k];
    say(`scale: provisioning ${n} other tenants at concurrency ${concurrency} per process, two worker processes (real engine)`);
    const two = await timed(() => provisionAll(service, token, queue, twoIds));
    const perWorker = workers.map((w) => w.started["tenant.provision"] ?? 0);
    say(`scale: two worker processes: ${Math.round(two.ms / 1000)} s (provision job starts per worker, retries included: ${perWorker.join(", ")})`);
    const speedup = one.ms / two.ms;
    return [
      {
        bench: "scale",
        metric: `${n} provisions, two worker processes vs one (concurrency ${concurrency} each)`,
        ours: round(two.ms / 1000, 1),
        baseline: round(one.ms / 1000, 1),
        unit: "s",
        ratio: round(speedup),
        goal: "(info: × faster)",
        met: null,
        baselineIs: `${n} other tenants provisioned the same way (POST /v1/tenants, preview + up + commit each, real engine) by one worker process at STACKRAIL_CONCURRENCY=${concurrency}`,
        details: {
          tenants: n,
          concurrency,
          oneWorkerMs: round(one.ms, 0),
          twoWorkersMs: round(two.ms, 0),
          // Job starts by each worker process, retries (another attempt of a job) included.
          provisionStartsPerWorker: perWorker,
          oneWorkerCpu: one.cpu,
          twoWorkersCpu: two.cpu,
          perTenantS: { one: round(one.ms / 1000 / n, 2), two: round(two.ms / 1000 / n, 2) },
        },
      },
    ];
  } finally {
    for (const w of workers) await stopWorker(w).catch(() => undefined);
    await api?.close().catch(() => undefined);
    say(`scale: dropping the objects of ${oneIds.length + twoIds.length} tenants`);
    await dropLocalLeftovers("tenant", [...oneIds, ...twoIds]);
    removeDir(dataDir);
  }
}

interface Progress {
  planReadyMs?: number;
  wave1StartMs?: number;
}

/** Follows the rollout until it ends: when its plan is stored, when its first wave starts. */
async function follow(
  queue: JobQueue,
  redis: Redis,
  prefix: string,
  jobId: string,
  t0: number,
  timeoutMs: number,
): Promise<{ view: JobView; progress: Progress }> {
  const progress: Progress = {};
  const deadline = Date.now() + timeoutMs;
  let lastView = 0;
  for (;;) {
    const now = performance.now();
    if (progress.planReadyMs === undefined && (await redis.exists(rolloutPlanKey(prefix, jobId))) > 0) {
      progress.planReadyMs = performance.now() - t0;
      say(`scale: plan stored after ${round(progress.planReadyMs / 1000, 1)} s`);
    }
    if (Date.now() - lastView >= 500) {
      lastView = Date.now();
      const view = await queue.getJobView(jobId).catch(() => null);
      if (view) {
        if (progress.wave1StartMs === undefined && view.progress.some((l) => l.startsWith("wave 1/"))) {
          progress.wave1StartMs = performance.now() - t0;
          say(`scale: wave 1 started after ${round(progress.wave1StartMs / 1000, 1)} s`);
        }
        if (["succeeded", "failed", "superseded", "cancelled"].includes(view.state)) return { view, progress };
      }
    }
    if (Date.now() > deadline) throw new Error(`release ${jobId} did not finish within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - now))));
  }
}

async function commitCount(gitDir: string): Promise<number> {
  return Number(await git(["rev-list", "--count", "refs/heads/main"], { gitDir }));
}

/** Part 2: a release to N seeded tenants, the Pulumi step replaced by the recorded no-op runner. */
async function benchRelease(server: PrivateRedis, n: number): Promise<Row[]> {
  const recording = loadRecording();
  const concurrency = envInt("BENCH_SCALE_RELEASE_CONCURRENCY", 10);
  const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-bench-scale-release-"));
  const gitDir = path.join(dataDir, "gitops.git");
  const prefix = uniqueName("bench-scale-rel");
  const token = randomBytes(24).toString("hex");
  const secret = randomBytes(16).toString("hex");
  const redis = new Redis(server.url);
  const double = await GitHubDouble.start({ tokens: [TOKEN] });
  let version = "";
  const health = await startHealthEndpoint(() => version);
  let worker: WorkerProcess | undefined;
  let api: Service | undefined;
  const samplers: { stop(): Promise<void> }[] = [];
  try {
    await double.createRepo(OWNER, REPO);
    version = await double.push(OWNER, REPO, "main", "src/app.ts", `export const release = "${randomUUID()}";\n`);
    const env: Record<string, string> = {
      ...localServiceEnv({ dataDir, prefix, apiToken: token, passphrase: randomBytes(16).toString("hex"), tokenName: "bench" }),
      REDIS_URL: server.url,
      LOCAL_REDIS_URL: TEST_REDIS_URL,
      GITOPS_REPO: gitDir,
      GITHUB_TOKEN: TOKEN,
      GITHUB_API_URL: double.url,
      GITHUB_WEBHOOK_SECRET: secret,
      STACKRAIL_REPOSITORIES: `${OWNER}/${REPO}`,
      STACKRAIL_APPROVAL_WAVES: "none",
      STACKRAIL_HEALTH_URL: health.template,
      STACKRAIL_CONCURRENCY: String(concurrency),
      STACKRAIL_DRIFT_INTERVAL_S: "0",
      STACKRAIL_SHUTDOWN_GRACE_MS: "10000",
      LOG_LEVEL: "info",
    };
    worker = await startWorker(env, ["--import", HOOKS]);
    api = await startService(loadConfig({ ...env, LOG_LEVEL: "warn" }), { role: "api", logger: createLogger({ level: "warn" }) });
    const queue = api.queue;
    if (!queue) throw new Error("the API has no queue");
    const pid = worker.pid;
    await new Promise((r) => setTimeout(r, 1_500));
    const idleRss = rssOf(pid);
    const memBeforeSeed = await usedMemory(redis);

    // Letters and digits only, like the recorded tenant's id (substituted into database and user names).
    const ids = Array.from({ length: n }, (_, i) => `sc${i}`);
    say(`scale: seeding ${n} tenants at 1.0.0 (one GitOps commit by git fast-import, tenant index records)`);
    const seeded = await seedTenants({ config: api.config, redis, gitDir, ids, version: "1.0.0", recording });
    const memAfterSeed = await usedMemory(redis);
    say(
      `scale: seeded ${seeded.files} files and ${n} records in ${round(seeded.ms / 1000, 1)} s; Redis ${round((memAfterSeed - memBeforeSeed) / n, 0)} B/tenant`,
    );
    // What one read of the GitOps repository costs here (the planner reads each tenant's files one by one).
    const reader = await createGitOpsWriter(api.config);
    const readT0 = performance.now();
    for (const id of ids.slice(0, 20)) await reader.readFile(`tenants/${id}/tenant.yaml`);
    const readFileMs = (performance.now() - readT0) / Math.min(20, ids.length);
    say(`scale: one GitOps readFile takes ${round(readFileMs, 1)} ms on this machine now`);
    const commitsBefore = await commitCount(gitDir);
    const ghBefore = double.requests.length;

    const rss = sample(() => rssOf(pid), 250);
    const mem = sample(() => usedMemory(redis), 500);
    samplers.push(rss, mem);
    const cpuOf = startCpu();
    const payload = JSON.stringify({
      ref: "refs/heads/main",
      after: version,
      repository: { name: REPO, full_name: `${OWNER}/${REPO}`, default_branch: "main", owner: { login: OWNER, name: OWNER } },
      sender: { login: "octocat" },
      commits: [{ added: [], modified: ["src/app.ts"], removed: [] }],
    });
    say(`scale: releasing ${version.slice(0, 12)} to ${n} tenants (push webhook; no-op runner; concurrency ${concurrency})`);
    const t0 = performance.now();
    const res = await fetch(`${api.url ?? ""}/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-hub-signature-256": `sha256=${createHmac("sha256", secret).update(payload).digest("hex")}`,
      },
      body: payload,
    });
    const answer = (await res.json()) as { jobs?: string[] };
    const jobId = answer.jobs?.[0];
    if (res.status !== 202 || !jobId) throw new Error(`push webhook: ${res.status} ${JSON.stringify(answer)}`);
    const { view, progress } = await follow(queue, redis, prefix, jobId, t0, envInt("BENCH_SCALE_RELEASE_TIMEOUT_S", 7200) * 1000);
    const totalMs = performance.now() - t0;
    const cpu = cpuOf();
    await rss.stop();
    await mem.stop();
    expectSucceeded(view, "release.rollout");
    const memAfter = await usedMemory(redis);
    const commits = (await commitCount(gitDir)) - commitsBefore;
    const ghCalls = double.requests.slice(ghBefore);
    const waves = ((view.result as { waves?: { wave: number; updated: string[]; commit: string | null }[] } | null)?.waves ?? []).filter(
      (w) => w.updated.length > 0,
    );
    const updated = waves.reduce((s, w) => s + w.updated.length, 0);
    if (updated !== n) throw new Error(`the release updated ${updated} tenants, not ${n}`);
    if (double.violations.length > 0) throw new Error(`the GitHub double refused requests: ${double.violations.slice(0, 3).join("; ")}`);
    const w = waves.length;
    const peakRss = rss.peak();
    const peakMem = mem.peak();
    const indexPerTenant = (memAfterSeed - memBeforeSeed) / n;
    const peakPerTenant = (peakMem - memBeforeSeed) / n;
    const releasePerTenant = (peakMem - memAfterSeed) / n;
    const retainedPerTenant = (memAfter - memBeforeSeed) / n;
    const operations: Record<string, number> = {};
    for (const r of ghCalls) operations[r.operationId ?? r.path] = (operations[r.operationId ?? r.path] ?? 0) + 1;
    const planMs = progress.planReadyMs ?? Number.NaN;
    const waveMs = progress.wave1StartMs ?? Number.NaN;
    say(
      `scale: release of ${n} done in ${round(totalMs / 1000, 1)} s: plan ${round(planMs / 1000, 1)} s, wave 1 at ${round(waveMs / 1000, 1)} s; worker RSS peak ${round(peakRss / MiB, 0)} MiB; Redis peak ${round(peakPerTenant, 0)} B/tenant; ${commits} commits for ${w} waves; ${ghCalls.length} GitHub calls`,
    );
    const label = "[no-op runner]";
    const details = {
      measures: "orchestration alone: the Pulumi step is the recorded no-op runner (bench/scale-runner.ts), in a main.ts --role worker process",
      tenants: n,
      concurrency,
      waves: waves.map((x) => ({ wave: x.wave, tenants: x.updated.length, commit: x.commit })),
      totalMs: round(totalMs, 0),
      planReadyMs: round(planMs, 0),
      wave1StartMs: round(waveMs, 0),
      perTenantMs: { planning: round(planMs / n, 2), total: round(totalMs / n, 2) },
      seed: { ms: round(seeded.ms, 0), files: seeded.files, commit: seeded.commit },
      gitopsReadFileMs: round(readFileMs, 1),
      workerRssMiB: { idle: round(idleRss / MiB, 1), peak: round(peakRss / MiB, 1) },
      redisBytes: {
        beforeSeed: memBeforeSeed,
        afterSeed: memAfterSeed,
        peak: peakMem,
        after: memAfter,
        perTenant: {
          index: round(indexPerTenant, 0),
          releasePeak: round(releasePerTenant, 0),
          peakTotal: round(peakPerTenant, 0),
          retained: round(retainedPerTenant, 0),
        },
      },
      gitopsCommits: commits,
      githubCalls: ghCalls.length,
      githubOperations: operations,
      healthRequests: health.requests(),
      jobsStarted: worker.started,
      cpu,
      recordedAt: recording.recordedAt,
    };
    const kb = (b: number): number => round(b / 1024, 2);
    return [
      {
        bench: "scale",
        metric: `release to ${n}: planning, request → plan stored ${label}`,
        ours: round(planMs / 1000, 1),
        baseline: round(totalMs / 1000, 1),
        unit: "s",
        ratio: round(planMs / totalMs),
        goal: "(info)",
        met: null,
        baselineIs: "the whole release, push webhook → rollout job done",
        details,
      },
      {
        bench: "scale",
        metric: `release to ${n}: request → wave 1 starts ${label}`,
        ours: round(waveMs / 1000, 1),
        baseline: round(totalMs / 1000, 1),
        unit: "s",
        ratio: round(waveMs / totalMs),
        goal: "(info)",
        met: null,
        baselineIs: "the whole release, push webhook → rollout job done",
      },
      {
        bench: "scale",
        metric: `release to ${n}: worker RSS (peak) ${label}`,
        ours: round(peakRss / MiB, 0),
        baseline: round(idleRss / MiB, 0),
        unit: "MiB",
        ratio: round(peakRss / idleRss),
        goal: "< 300 MB (issue 8)",
        met: peakRss < 300 * 1e6,
        baselineIs: "the same worker process idle, before the tenants were seeded",
      },
      {
        bench: "scale",
        metric: `release to ${n}: Redis memory per tenant (peak) ${label}`,
        ours: kb(peakPerTenant),
        baseline: kb(indexPerTenant),
        unit: "KiB",
        ratio: round(peakPerTenant / indexPerTenant),
        goal: "≤ 4 KB",
        met: peakPerTenant <= 4096,
        baselineIs:
          "the tenant index alone (records seeded, before the release); ours = (peak used_memory during the release − used_memory before the seeding) / tenants",
      },
      {
        bench: "scale",
        metric: `release to ${n}: Redis memory per tenant left after it ${label}`,
        ours: kb(retainedPerTenant),
        baseline: kb(indexPerTenant),
        unit: "KiB",
        ratio: round(retainedPerTenant / indexPerTenant),
        goal: "(info)",
        met: null,
        baselineIs: "the tenant index alone; ours = (used_memory after the release − before the seeding) / tenants (finished jobs are kept for a while)",
      },
      {
        bench: "scale",
        metric: `release to ${n}: GitOps commits ${label}`,
        ours: commits,
        baseline: w,
        unit: "commits",
        ratio: round(commits / w),
        goal: "one per wave",
        met: commits === w,
        baselineIs: "the waves that changed tenants (one commit each)",
      },
      {
        bench: "scale",
        metric: `release to ${n}: GitHub calls per wave (total / ${w}) ${label}`,
        ours: round(ghCalls.length / w, 2),
        baseline: round((2 * n) / w, 0),
        unit: "calls",
        ratio: round(ghCalls.length / (2 * n)),
        goal: "≤ 5 per wave",
        met: ghCalls.length / w <= 5,
        baselineIs: "a commit status per tenant job (pending + result), computed (not sent): 2 × tenants / waves",
      },
    ];
  } finally {
    for (const s of samplers) await s.stop().catch(() => undefined);
    if (worker) await stopWorker(worker).catch(() => undefined);
    await api?.close().catch(() => undefined);
    await health.close();
    await double.close();
    // The benchmark's own server: nothing else lives there.
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
    removeDir(dataDir);
  }
}

function writeResults(machine: Machine, rows: readonly Row[], failures: readonly string[]): void {
  const outDir = path.join(import.meta.dirname, "results");
  mkdirSync(outDir, { recursive: true });
  // BENCH_SCALE_RESULTS names another file in bench/results (two parts run side by side each keep theirs).
  const file = path.join(outDir, path.basename(process.env.BENCH_SCALE_RESULTS ?? "scale-latest.json"));
  const table = renderTable(rows);
  writeFileSync(
    file,
    `${JSON.stringify({ machine: { ...machine, loadAverageAtEnd: machineInfo().loadAverage }, selected: ["scale"], table: table.split("\n"), rows, failures }, null, 2)}\n`,
  );
  say(`scale: written ${path.relative(process.cwd(), file)}`);
}

export async function benchScale(): Promise<Row[]> {
  const selected = parts();
  const sizes = releaseSizes();
  const machine = machineInfo();
  const redisDir = mkdtempSync(path.join(tmpdir(), "stackrail-bench-scale-redis-"));
  const server = await startPrivateRedis(redisDir);
  const rows: Row[] = [];
  const failures: string[] = [];
  try {
    if (selected.includes("release")) loadRecording();
    for (const part of selected) {
      if (part === "provision") {
        rows.push(...(await benchProvisions(server.url)));
        writeResults(machine, rows, failures);
        continue;
      }
      for (const n of sizes) {
        try {
          rows.push(...(await benchRelease(server, n)));
        } catch (err) {
          // A size that could not finish is reported; the sizes measured before it are kept.
          failures.push(`release to ${n}: ${err instanceof Error ? err.message : String(err)}`);
          say(`scale: release to ${n} could not run: ${failures.at(-1) ?? ""}`);
        }
        // Written after each size: a long run stopped later keeps what it measured.
        writeResults(machine, rows, failures);
      }
    }
  } finally {
    await server.stop();
    removeDir(redisDir);
    writeResults(machine, rows, failures);
  }
  // Only when nothing could be measured is the benchmark a failure; a size that did not finish is in the JSON and said here.
  if (rows.length === 0 && failures.length > 0) throw new Error(failures.join("; "));
  for (const f of failures) say(`scale: NOT MEASURED: ${f}`);
  return rows;
}
