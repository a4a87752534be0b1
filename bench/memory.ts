// Memory: resident set size of a worker process (`node main.ts --role worker`, as production
// splits roles) while N tenant provisions (default 4) run at STACKRAIL_CONCURRENCY=N, sampled every
// 100 ms from /proc/<pid>/status (VmRSS). The Pulumi processes it starts (the Automation API child,
// the CLI, the dynamic-provider hosts) are measured separately, as the sum over the worker's
// descendants. The baseline is the same worker process idle, just before the jobs arrive. The
// tenants are enqueued through an API-only edge in this process that shares the worker's queue.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../core/config.ts";
import { PROJECT_ROOT, engineLocation } from "../core/engine.ts";
import { createLogger } from "../core/logger.ts";
import { startService } from "../service.ts";
import { localServiceEnv, uniqueName } from "../test/support/services.ts";
import { deleteRedisPrefix, dropLocalLeftovers, removeDir } from "./lib/cleanup.ts";
import { expectSucceeded, waitFinal } from "./lib/jobs.ts";
import { envInt, round, say, type Row } from "./lib/report.ts";

const MiB = 1024 * 1024;

function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** RSS (bytes) of every descendant of `pid`, from one `ps` snapshot. */
function descendantsRss(pid: number): { count: number; bytes: number; byName: Record<string, number> } {
  let table: string;
  try {
    table = execFileSync("ps", ["-eo", "pid=,ppid=,rss=,comm="], { encoding: "utf8" });
  } catch {
    return { count: 0, bytes: 0, byName: {} };
  }
  const rows = table
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((r) => r.length >= 4)
    .map(([p, pp, rss, comm]) => ({ pid: Number(p), ppid: Number(pp), rss: Number(rss) * 1024, comm: comm ?? "?" }));
  const children = new Map<number, typeof rows>();
  for (const r of rows) children.set(r.ppid, [...(children.get(r.ppid) ?? []), r]);
  let count = 0;
  let bytes = 0;
  const byName: Record<string, number> = {};
  const stack = [pid];
  while (stack.length > 0) {
    for (const c of children.get(stack.pop() as number) ?? []) {
      count += 1;
      bytes += c.rss;
      // Node names its main thread "MainThread": that is every Node process (Automation API child, dynamic-provider hosts).
      const name = c.comm === "MainThread" ? "node" : c.comm;
      byName[name] = (byName[name] ?? 0) + c.rss;
      stack.push(c.pid);
    }
  }
  return { count, bytes, byName };
}

export async function benchMemory(): Promise<Row[]> {
  const jobs = envInt("BENCH_MEMORY_JOBS", 4);
  const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-bench-mem-"));
  const prefix = uniqueName("bench-mem");
  const apiToken = randomBytes(24).toString("hex");
  const env: Record<string, string> = {
    ...localServiceEnv({ dataDir, prefix, apiToken, passphrase: randomBytes(16).toString("hex"), tokenName: "bench" }),
    STACKRAIL_CONCURRENCY: String(jobs),
    STACKRAIL_SHUTDOWN_GRACE_MS: "10000",
    LOG_LEVEL: "info",
  };
  const token = apiToken;
  const engine = engineLocation();
  const worker = spawn(engine.node, [path.join(PROJECT_ROOT, "main.ts"), "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = worker.pid;
  if (pid === undefined) throw new Error("could not start the worker process");
  let stderr = "";
  worker.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const started = new Promise<void>((resolve, reject) => {
    let out = "";
    worker.stdout.on("data", (c: Buffer) => {
      out = (out + c.toString()).slice(-20_000);
      if (out.includes("stackrail started")) resolve();
    });
    worker.once("exit", (code) => reject(new Error(`worker exited (${code}) before it started: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const api = await startService(loadConfig({ ...env, LOG_LEVEL: "warn" }), { role: "api", logger: createLogger({ level: "warn" }) });
  const ids = Array.from({ length: jobs }, (_, i) => `bm-${randomBytes(2).toString("hex")}-${i}`);
  let sampler: NodeJS.Timeout | undefined;
  try {
    await started;
    await new Promise((r) => setTimeout(r, 1_500));
    const idle = rssOf(pid);
    say(`memory: worker ${pid} idle RSS ${round(idle / MiB, 1)} MiB; provisioning ${jobs} tenants at concurrency ${jobs}`);

    let peakWorker = idle;
    let peakChildren = 0;
    let peakChildCount = 0;
    let peakByName: Record<string, number> = {};
    const samples: number[] = [];
    sampler = setInterval(() => {
      const w = rssOf(pid);
      const d = descendantsRss(pid);
      samples.push(w);
      peakWorker = Math.max(peakWorker, w);
      if (d.bytes > peakChildren) {
        peakChildren = d.bytes;
        peakByName = d.byName;
      }
      peakChildCount = Math.max(peakChildCount, d.count);
    }, 100);

    const jobIds: string[] = [];
    const post = (id: string): Promise<Response> =>
      fetch(`${api.url ?? ""}/v1/tenants`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ id, region: "eu-west-1", tier: "pool", version: "1.0.0" }),
      });
    for (const id of ids) {
      let res = await post(id);
      // 503 means "Redis did not take it in time, retry".
      for (let attempt = 1; res.status === 503 && attempt <= 5; attempt++) {
        await new Promise((r) => setTimeout(r, 500 * attempt));
        res = await post(id);
      }
      const body = (await res.json()) as { jobId?: string };
      if (res.status !== 202 || !body.jobId) throw new Error(`POST /v1/tenants ${id}: ${res.status} ${JSON.stringify(body)}`);
      jobIds.push(body.jobId);
    }
    const queue = api.queue;
    if (!queue) throw new Error("API service has no queue");
    for (const jobId of jobIds) expectSucceeded(await waitFinal(queue, jobId, 600_000, 100), "tenant.provision");
    clearInterval(sampler);
    sampler = undefined;
    const after = rssOf(pid);
    const worstChildrenMiB = Object.fromEntries(Object.entries(peakByName).map(([k, v]) => [k, round(v / MiB, 1)]));
    const baselineIs = "the same worker process idle (started, connected, no job yet)";
    return [
      {
        bench: "memory",
        metric: `worker RSS, ${jobs} concurrent jobs (peak)`,
        ours: round(peakWorker / MiB, 0),
        baseline: round(idle / MiB, 0),
        unit: "MiB",
        ratio: round(peakWorker / idle),
        goal: "< 300 MB",
        met: peakWorker < 300 * 1e6,
        baselineIs,
        details: { jobs, samples: samples.length, idleMiB: round(idle / MiB, 1), peakMiB: round(peakWorker / MiB, 1), afterMiB: round(after / MiB, 1) },
      },
      {
        bench: "memory",
        metric: `Pulumi child processes RSS (peak sum, ${peakChildCount} procs)`,
        ours: round(peakChildren / MiB, 0),
        baseline: round(idle / MiB, 0),
        unit: "MiB",
        ratio: round(peakChildren / idle),
        goal: "(info)",
        met: null,
        baselineIs,
        details: { peakProcesses: peakChildCount, byCommandMiB: worstChildrenMiB },
      },
    ];
  } finally {
    if (sampler) clearInterval(sampler);
    await api.close(1_000);
    worker.kill("SIGTERM");
    const killer = setTimeout(() => worker.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(killer);
    await dropLocalLeftovers("tenant", ids);
    await deleteRedisPrefix(prefix);
    removeDir(dataDir);
  }
}
