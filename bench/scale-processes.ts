// Processes and samplers of the scale benchmark: worker processes (`main.ts --role worker`, with
// extra Node flags such as the no-op runner's module hook), the tenant API calls, a peak-RSS
// sampler for a process, a used_memory sampler for a Redis server, and a loopback health endpoint
// for the wave gate (STACKRAIL_HEALTH_URL) that reports every tenant healthy at the version asked.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import path from "node:path";
import { Redis } from "ioredis";
import { PROJECT_ROOT, engineLocation } from "../core/engine.ts";
import { killTree } from "../worker/process-tree.ts";

export interface WorkerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Jobs this worker started, by kind (from its log). */
  readonly started: Record<string, number>;
}

/** Starts `node [nodeArgs] main.ts --role worker` and resolves once it logged that it started. */
export function startWorker(env: Record<string, string>, nodeArgs: readonly string[] = []): Promise<WorkerProcess> {
  const child = spawn(engineLocation().node, [...nodeArgs, path.join(PROJECT_ROOT, "main.ts"), "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) return Promise.reject(new Error("could not start a worker process"));
  const worker: WorkerProcess = { child, pid: child.pid, started: {} };
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    let pending = "";
    let up = false;
    child.stdout?.on("data", (c: Buffer) => {
      pending += c.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (line.includes('"msg":"job started"')) {
          const kind = /"kind":"([a-z.-]+)"/.exec(line)?.[1] ?? "?";
          worker.started[kind] = (worker.started[kind] ?? 0) + 1;
        }
        if (!up && line.includes("stackrail started")) {
          up = true;
          resolve(worker);
        }
      }
    });
    child.once("exit", (code) => {
      if (!up) reject(new Error(`worker exited (${code}) before it started: ${stderr}`));
    });
  });
}

export async function stopWorker(w: WorkerProcess): Promise<void> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => w.child.once("exit", () => r()));
  w.child.kill("SIGTERM");
  const timer = setTimeout(() => killTree(w.pid, "SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}

export function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface Sampler {
  /** Highest value seen so far. */
  peak(): number;
  last(): number;
  stop(): Promise<void>;
}

/** Samples `read` every `everyMs`, keeping the peak; a failed read is skipped. */
export function sample(read: () => number | Promise<number>, everyMs: number): Sampler {
  let peak = 0;
  let last = 0;
  let running: Promise<void> = Promise.resolve();
  const tick = async (): Promise<void> => {
    try {
      last = await read();
      peak = Math.max(peak, last);
    } catch {
      // the next sample counts
    }
  };
  const timer = setInterval(() => {
    running = running.then(tick);
  }, everyMs);
  void (running = tick());
  return {
    peak: () => peak,
    last: () => last,
    async stop() {
      clearInterval(timer);
      await running;
      await tick();
    },
  };
}

/** `used_memory` of a Redis server (INFO memory), in bytes. */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  const m = /^used_memory:(\d+)/m.exec(info);
  if (!m?.[1]) throw new Error("INFO memory has no used_memory");
  return Number(m[1]);
}

export interface HealthEndpoint {
  readonly template: string;
  /** Requests answered. */
  readonly requests: () => number;
  close(): Promise<void>;
}

/**
 * The tenants' health endpoint for the wave gate: every tenant answers 200 with `X-App-Version`
 * set to `version()` (the release under way), as deployed applications would once Argo CD synced.
 */
export async function startHealthEndpoint(version: () => string): Promise<HealthEndpoint> {
  let count = 0;
  const server: Server = createServer((req, res) => {
    count += 1;
    req.resume();
    res.writeHead(200, { "content-type": "application/json", "x-app-version": version() });
    res.end(JSON.stringify({ version: version() }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the health endpoint has no port");
  return {
    template: `http://127.0.0.1:${address.port}/{tenant}/healthz`,
    requests: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
