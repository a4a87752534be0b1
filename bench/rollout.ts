// Rollout: a release of N tenants (default 20) in one wave, against the same N provisions fanned
// out by the tenant API, on the same service at the same STACKRAIL_CONCURRENCY (issue 18: the wave
// must be as parallel as provisioning, within 1.15×). Then the same wave again with a second
// worker process beside the first, against the wave with one. The service runs as production
// splits it: an API-only edge in this process, workers as their own processes (`main.ts --role
// worker`); the wall time runs from the POST to the job done. Each worker's log says how many
// tenant steps it ran, so the JSON shows every worker taking part.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../core/config.ts";
import { PROJECT_ROOT, engineLocation } from "../core/engine.ts";
import { createLogger } from "../core/logger.ts";
import { startService, type Service } from "../service.ts";
import { localServiceEnv, uniqueName } from "../test/support/services.ts";
import { killTree } from "../worker/process-tree.ts";
import type { JobQueue } from "../jobs/queue.ts";
import { deleteRedisPrefix, dropLocalLeftovers, removeDir } from "./lib/cleanup.ts";
import { startCpu, type CpuUse } from "./lib/cpu.ts";
import { expectSucceeded, waitFinal } from "./lib/jobs.ts";
import { postJob } from "./lib/post-job.ts";
import { envInt, round, say, type Row } from "./lib/report.ts";

interface WorkerProcess {
  readonly child: ChildProcess;
  /** Tenant steps this worker started (from its log). */
  steps: number;
}

function startWorker(env: Record<string, string>): Promise<WorkerProcess> {
  const child = spawn(engineLocation().node, [path.join(PROJECT_ROOT, "main.ts"), "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const worker: WorkerProcess = { child, steps: 0 };
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    let pending = "";
    let started = false;
    child.stdout?.on("data", (c: Buffer) => {
      pending += c.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (line.includes('"msg":"job started"') && line.includes('"kind":"release.tenant-step"')) worker.steps += 1;
        if (!started && line.includes("stackrail started")) {
          started = true;
          resolve(worker);
        }
      }
    });
    child.once("exit", (code) => {
      if (!started) reject(new Error(`worker exited (${code}) before it started: ${stderr}`));
    });
  });
}

async function stopWorker(w: WorkerProcess): Promise<void> {
  if (w.child.exitCode !== null || w.child.pid === undefined) return;
  const exited = new Promise<void>((r) => w.child.once("exit", () => r()));
  w.child.kill("SIGTERM");
  const timer = setTimeout(() => killTree(w.child.pid as number, "SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}

async function timed<T>(what: () => Promise<T>): Promise<{ ms: number; cpu: CpuUse; value: T }> {
  const cpuOf = startCpu();
  const t0 = performance.now();
  const value = await what();
  return { ms: performance.now() - t0, cpu: cpuOf(), value };
}

async function release(queue: JobQueue, service: Service, token: string, version: string): Promise<Record<string, unknown>> {
  const jobId = await postJob(service.url ?? "", token, "/v1/releases", { version });
  const view = expectSucceeded(await waitFinal(queue, jobId, 1_800_000, 50), "release.rollout");
  return (view.result ?? {}) as Record<string, unknown>;
}

/**
 * How the apply steps of a release used the update plans of its plan steps (from the steps' job
 * results): `constrained` (one engine run), `fallback` (the plan was refused: three runs) or
 * `none` (no stored plan: the policy preview and the `up`); with the engine runs of all `up`s.
 */
async function planUse(queue: JobQueue, result: Record<string, unknown>): Promise<Record<string, number>> {
  const counts: Record<string, number> = { constrained: 0, fallback: 0, none: 0, engineRuns: 0 };
  const steps = ((result.waves as { steps?: string[] }[] | undefined) ?? []).flatMap((w) => w.steps ?? []);
  for (const id of steps) {
    const view = await queue.getJobView(id).catch(() => null);
    const r = (view?.result ?? {}) as { outcome?: unknown; planUse?: unknown; engineRuns?: unknown };
    if (r.outcome !== "passed") continue;
    const use = r.planUse === "constrained" || r.planUse === "fallback" ? r.planUse : "none";
    counts[use] = (counts[use] ?? 0) + 1;
    if (typeof r.engineRuns === "number") counts.engineRuns = (counts.engineRuns ?? 0) + r.engineRuns;
  }
  return counts;
}

export async function benchRollout(): Promise<Row[]> {
  const n = envInt("BENCH_ROLLOUT_TENANTS", 20);
  const concurrency = envInt("STACKRAIL_CONCURRENCY", 2);
  const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-bench-rollout-"));
  const prefix = uniqueName("bench-rollout");
  const token = randomBytes(24).toString("hex");
  const env: Record<string, string> = {
    ...localServiceEnv({ dataDir, prefix, apiToken: token, passphrase: randomBytes(16).toString("hex"), tokenName: "bench" }),
    STACKRAIL_CONCURRENCY: String(concurrency),
    STACKRAIL_ROLLOUT_WAVES: "eu-west-1",
    STACKRAIL_DRIFT_INTERVAL_S: "0",
    STACKRAIL_DELETE_MAX: "10000",
    STACKRAIL_SHUTDOWN_GRACE_MS: "10000",
    LOG_LEVEL: "info",
  };
  const ids = Array.from({ length: n }, (_, i) => `bro-${randomBytes(2).toString("hex")}-${i}`);
  const workers: WorkerProcess[] = [];
  let api: Service | undefined;
  try {
    workers.push(await startWorker(env));
    api = await startService(loadConfig({ ...env, LOG_LEVEL: "warn" }), { role: "api", logger: createLogger({ level: "warn" }) });
    const queue = api.queue;
    if (!queue) throw new Error("the API has no queue");
    const service = api;

    say(`rollout: provisioning ${n} tenants through the tenant API at concurrency ${concurrency} (one worker process)`);
    const provisions = await timed(async () => {
      const jobIds: string[] = [];
      for (const id of ids) jobIds.push(await postJob(service.url ?? "", token, "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" }));
      for (const jobId of jobIds) expectSucceeded(await waitFinal(queue, jobId, 1_800_000, 50), "tenant.provision");
    });
    say(`rollout: ${n} provisions took ${Math.round(provisions.ms)} ms`);

    say(`rollout: releasing 2.0.0 to the ${n} tenants in one wave (one worker process)`);
    const one = await timed(() => release(queue, service, token, "2.0.0"));
    const stepsOne = workers.map((w) => w.steps);
    say(`rollout: the wave took ${Math.round(one.ms)} ms (${round(one.ms / provisions.ms)}× the provisions)`);

    workers.push(await startWorker(env));
    for (const w of workers) w.steps = 0;
    say(`rollout: releasing 3.0.0 to the ${n} tenants in one wave (two worker processes)`);
    const two = await timed(() => release(queue, service, token, "3.0.0"));
    const stepsTwo = workers.map((w) => w.steps);
    say(`rollout: the wave took ${Math.round(two.ms)} ms with two workers (steps per worker: ${stepsTwo.join(", ")})`);

    const wavesOf = (r: Record<string, unknown>) => (r.waves as { updated: string[]; commit: string | null }[] | undefined) ?? [];
    for (const [label, r] of [
      ["2.0.0", one.value],
      ["3.0.0", two.value],
    ] as const) {
      const updated = wavesOf(r).reduce((s, w) => s + w.updated.length, 0);
      if (updated !== n) throw new Error(`release ${label} updated ${updated} tenants, not ${n}`);
    }
    const ratio = one.ms / provisions.ms;
    const planUseOne = await planUse(queue, one.value);
    const planUseTwo = await planUse(queue, two.value);
    say(`rollout: apply steps by update-plan use: ${JSON.stringify(planUseOne)} (one worker), ${JSON.stringify(planUseTwo)} (two)`);
    return [
      {
        bench: "rollout",
        metric: `${n}-tenant wave vs ${n} provisions, concurrency ${concurrency}`,
        ours: round(one.ms / 1000, 1),
        baseline: round(provisions.ms / 1000, 1),
        unit: "s",
        ratio: round(ratio),
        goal: "≤ 1.15×",
        met: ratio <= 1.15,
        baselineIs: `the same ${n} tenants provisioned through POST /v1/tenants (up + commit each), fanned out at the same STACKRAIL_CONCURRENCY on the same worker process`,
        details: {
          tenants: n,
          concurrency,
          provisionsMs: round(provisions.ms, 0),
          waveMs: round(one.ms, 0),
          provisionsCpu: provisions.cpu,
          waveCpu: one.cpu,
          stepsPerWorker: stepsOne,
          planUse: planUseOne,
          commits: wavesOf(one.value).map((w) => w.commit),
        },
      },
      {
        bench: "rollout",
        metric: `${n}-tenant wave, two worker processes vs one`,
        ours: round(two.ms / 1000, 1),
        baseline: round(one.ms / 1000, 1),
        unit: "s",
        ratio: round(one.ms / two.ms),
        goal: "(info: × faster)",
        met: null,
        baselineIs: `the same one-wave release of ${n} tenants with one worker process (each worker at STACKRAIL_CONCURRENCY=${concurrency})`,
        details: { waveOneWorkerMs: round(one.ms, 0), waveTwoWorkersMs: round(two.ms, 0), stepsPerWorker: stepsTwo, planUse: planUseTwo, cpu: two.cpu },
      },
    ];
  } finally {
    for (const w of workers) await stopWorker(w).catch(() => undefined);
    await api?.close().catch(() => undefined);
    say(`rollout: dropping the objects of ${ids.length} tenants`);
    await dropLocalLeftovers("tenant", ids);
    await deleteRedisPrefix(prefix).catch(() => undefined);
    removeDir(dataDir);
  }
}
