// Fixtures for the crash and lock tests (issue 12): a private redis-server a test may stop, worker
// processes with a chosen host name whose log lines the test reads, and waits on conditions.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { Redis } from "ioredis";
import { engineLocation, PROJECT_ROOT } from "../../core/engine.ts";
import type { Harness } from "./harness.ts";

/** Waits until check() holds, looking every 100 ms; fails naming what it waited for. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A tenant request as a careful client sends it: with an Idempotency-Key, again while the edge
 * answers 503 (its Redis calls are bounded to answer fast, and a loaded machine trips them).
 */
export async function acceptedJob(h: Pick<Harness, "request">, method: string, url: string, body?: unknown): Promise<string> {
  const headers = { "idempotency-key": randomUUID() };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await h.request(method, url, body, headers);
    if (res.status === 202) return (res.body as { jobId: string }).jobId;
    if ((res.status !== 503 && res.status !== 409) || Date.now() > deadline)
      throw new Error(`${method} ${url} answered ${res.status}: ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Whether a process is running (a zombie whose stopped parent cannot reap it is not). */
export { processAlive } from "../../worker/stack-guard.ts";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** A redis-server of the test's own: stopping it (SIGSTOP) makes an operation hang inside a provider. */
export async function privateRedis(): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => undefined); // refused until the server listens
    try {
      await probe.connect();
      await probe.ping();
      return { url: `redis://127.0.0.1:${port}`, process: child };
    } catch {
      if (Date.now() > deadline) throw new Error("private redis-server did not start (is redis-server on PATH?)");
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      probe.disconnect();
    }
  }
}

export interface WorkerProcess {
  readonly child: ChildProcess;
  /** The process's log lines so far, parsed (pino JSON). */
  readonly lines: Record<string, unknown>[];
  /** The first line with this message (and these fields), once it is logged. */
  waitForLine(msg: string, fields?: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>>;
  find(msg: string, fields?: Record<string, unknown>): Record<string, unknown> | undefined;
}

function watchLines(child: ChildProcess): WorkerProcess {
  const lines: Record<string, unknown>[] = [];
  let rest = "";
  child.stdout?.on("data", (c: Buffer) => {
    rest += c.toString();
    const parts = rest.split("\n");
    rest = parts.pop() ?? "";
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        lines.push({ msg: p });
      }
    }
  });
  const find = (msg: string, fields: Record<string, unknown> = {}): Record<string, unknown> | undefined =>
    lines.find((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
  return {
    child,
    lines,
    find,
    async waitForLine(msg, fields = {}, timeoutMs = 120_000) {
      await until(
        `log line "${msg}"`,
        () => {
          if (child.exitCode !== null || child.signalCode !== null)
            throw new Error(`worker exited (${child.exitCode ?? child.signalCode}) before logging "${msg}"`);
          return find(msg, fields) !== undefined;
        },
        timeoutMs,
      );
      return find(msg, fields) as Record<string, unknown>;
    },
  };
}

/** `npm start -- --role worker` as production runs it, with the test's environment; its log is read. */
export function startMainWorker(env: Record<string, string>): WorkerProcess {
  const child = spawn(engineLocation().node, ["main.ts", "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return watchLines(child);
}

/**
 * A worker process that says it runs on `host` (a second "machine" on this one): the worker role
 * as main.ts assembles it, with the host and heartbeat injected.
 */
export function startWorkerOnHost(scriptDir: string, env: Record<string, string>, host: string): WorkerProcess {
  const file = path.join(scriptDir, `worker-${host}.ts`);
  const at = (p: string): string => JSON.stringify(path.join(PROJECT_ROOT, p));
  writeFileSync(
    file,
    [
      `import { loadConfig, secretValues } from ${at("core/config.ts")};`,
      `import { engineLocation } from ${at("core/engine.ts")};`,
      `import { createLogger, SecretScrubber } from ${at("core/logger.ts")};`,
      `import { createMetrics } from ${at("core/metrics.ts")};`,
      `import { startWorkerRole } from ${at("worker/worker-role.ts")};`,
      `const config = loadConfig(process.env);`,
      `const scrubber = new SecretScrubber();`,
      `scrubber.add(...secretValues(config));`,
      `const logger = createLogger({ level: "info", scrubber, base: { role: "worker", host: ${JSON.stringify(host)} } });`,
      `const role = await startWorkerRole({ config, logger, metrics: createMetrics({ defaultMetrics: false }), scrubber, engine: engineLocation(), host: ${JSON.stringify(host)} });`,
      `process.on("SIGTERM", () => void role.close(5000).then(() => process.exit(0)));`,
    ].join("\n"),
  );
  const child = spawn(engineLocation().node, [file], { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  return watchLines(child);
}
