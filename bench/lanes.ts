// Waiting costs nothing (issue 14 §4): N jobs (default 1,000) queued behind one held stack lane,
// through the real job worker and jobs/stack-lanes.ts. Measures the Redis commands per second
// while they wait (deltas of `INFO commandstats` over a window, every command counted, those run
// inside Lua scripts included) and the hand-over latency from the release of the lane to the
// start of the next job's handler, over H hand-overs. Ours: waiters park and the release wakes the
// next (JobWorkerDeps.laneWait "park"). Baseline: the old behaviour, each waiter re-delaying itself
// every 500 ms (laneWait "poll", the same code path the worker had before). Both sides run one
// after the other on a Redis server of their own (started here on a free loopback port), so that
// other processes' commands on the shared server are not counted.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { z } from "zod";
import { JOBS_QUEUE } from "../core/jobs.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { StackLanes } from "../jobs/stack-lanes.ts";
import { uniqueName } from "../test/support/services.ts";
import { createJobWorker, extraJobKind, type JobWorker } from "../worker/job-worker.ts";
import { envInt, percentile, round, say, type Row } from "./lib/report.ts";

const HOLD_KIND = "bench.lane-hold";
const holdSchema = z.object({ kind: z.literal(HOLD_KIND), stack: z.string(), name: z.string() });
const POLL_MS = 500;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** A throw-away Redis server of the benchmark's own: nothing persisted, loopback only. */
async function startRedis(): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const failed = new Promise<never>((_, reject) => proc.once("error", (err) => reject(new Error(`redis-server could not start: ${err.message}`))));
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // Refused until the server listens: expected, and retried below.
  probe.on("error", () => undefined);
  const deadline = Date.now() + 10_000;
  try {
    for (;;) {
      const ok = await Promise.race([probe.connect().then(() => probe.ping()), failed]).catch((err: unknown) => {
        if (Date.now() > deadline) throw err;
        return null;
      });
      if (ok === "PONG") break;
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    probe.disconnect();
  }
  return { url, proc };
}

/** Every command the server ran so far (from INFO commandstats), by command. */
async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info("commandstats");
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1] as string, Number(m[2]));
  return out;
}

function delta(before: Map<string, number>, after: Map<string, number>): { total: number; top: Record<string, number> } {
  const d: [string, number][] = [];
  for (const [cmd, n] of after) {
    const diff = n - (before.get(cmd) ?? 0);
    if (diff > 0 && cmd !== "info") d.push([cmd, diff]);
  }
  d.sort((a, b) => b[1] - a[1]);
  return { total: d.reduce((s, [, n]) => s + n, 0), top: Object.fromEntries(d.slice(0, 8)) };
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

interface SideResult {
  readonly commandsPerS: number;
  readonly top: Record<string, number>;
  readonly handOverMs: number[];
  /** Ours only: commands one look of a parked waiter costs (every waiter made to look once). */
  readonly commandsPerLook?: number;
  /** Ours only: looks per second of N parked waiters at their park delays (places 1..N). */
  readonly looksPerS?: number;
}

async function runSide(url: string, mode: "park" | "poll", n: number, handOvers: number, windowMs: number, concurrency: number): Promise<SideResult> {
  const prefix = uniqueName(`bench-lanes-${mode}`);
  const redis = new Redis(url);
  const stats = new Redis(url);
  const queue = new Queue(JOBS_QUEUE, { connection: redis, prefix });
  const lanes = new StackLanes(redis, prefix);
  const started = new Map<string, number>();
  const gates = new Map<string, () => void>();
  const workerConnection = new Redis(url, { maxRetriesPerRequest: null });
  const worker: JobWorker = createJobWorker({
    connection: workerConnection,
    prefix,
    concurrency,
    lanes,
    handlers: {},
    extraKinds: {
      [HOLD_KIND]: extraJobKind(
        holdSchema,
        async (ctx) => {
          started.set(ctx.data.name, Date.now());
          await new Promise<void>((resolve) => gates.set(ctx.data.name, resolve));
          return {};
        },
        { stackOf: (d) => d.stack },
      ),
    },
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
    scrubber: new SecretScrubber(),
    stackOf: () => undefined,
    timeoutMs: () => 3_600_000,
    laneWait: mode,
    laneRetryMs: POLL_MS,
  });
  const stack = "tenant-bench-lane";
  const add = async (names: readonly string[]): Promise<void> => {
    for (const name of names) await lanes.register(stack, `${prefix}-${name}`, { kind: HOLD_KIND });
    await queue.addBulk(names.map((name) => ({ name: HOLD_KIND, data: { kind: HOLD_KIND, stack, name }, opts: { jobId: `${prefix}-${name}`, attempts: 1 } })));
  };
  try {
    await add(["holder"]);
    await waitFor("the holder to run", () => started.has("holder"), 60_000);
    const names = Array.from({ length: n }, (_, i) => `w${i}`);
    await add(names);
    say(`lanes/${mode}: ${n} jobs queued behind the held lane`);
    if (mode === "park") {
      await waitFor("every waiter to park", async () => (await queue.getDelayedCount()) >= n, 600_000, 500);
    } else {
      // Polling never settles: let every waiter have looked a few times.
      await new Promise((r) => setTimeout(r, Math.max(5_000, windowMs / 2)));
    }
    await new Promise((r) => setTimeout(r, 2_000));
    const before = await commandCalls(stats);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, windowMs));
    const waited = delta(before, await commandCalls(stats));
    const commandsPerS = waited.total / ((Date.now() - t0) / 1000);
    say(`lanes/${mode}: ${Math.round(commandsPerS)} commands/s while ${n} jobs wait`);

    let commandsPerLook: number | undefined;
    let looksPerS: number | undefined;
    if (mode === "park") {
      looksPerS = 0;
      for (let k = 1; k <= n; k++) looksPerS += 1000 / lanes.parkDelayMs(k);
      // What one look costs: every waiter is made to look once now (and parks again).
      const b = await commandCalls(stats);
      await queue.promoteJobs();
      await waitFor("every waiter to park again", async () => (await queue.getDelayedCount()) >= n, 600_000, 500);
      commandsPerLook = delta(b, await commandCalls(stats)).total / n;
    }

    const handOverMs: number[] = [];
    let current = "holder";
    for (let i = 0; i < Math.min(handOvers, n); i++) {
      const next = names[i] as string;
      const releasedAt = Date.now();
      gates.get(current)?.();
      await waitFor(`${next} to start`, () => started.has(next), 120_000, 2);
      handOverMs.push((started.get(next) as number) - releasedAt);
      current = next;
    }
    say(`lanes/${mode}: hand-over p50 ${percentile(handOverMs, 50)} ms, p99 ${percentile(handOverMs, 99)} ms`);
    return { commandsPerS, top: waited.top, handOverMs, ...(commandsPerLook !== undefined && looksPerS !== undefined ? { commandsPerLook, looksPerS } : {}) };
  } finally {
    for (const g of gates.values()) g();
    await worker.close(1_000).catch(() => undefined);
    await lanes.close();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    const keys = await redis.keys(`${prefix}:*`);
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
    redis.disconnect();
    stats.disconnect();
    workerConnection.disconnect();
  }
}

export async function benchLanes(): Promise<Row[]> {
  const n = envInt("BENCH_LANES_JOBS", 1000);
  const handOvers = envInt("BENCH_LANES_HANDOVERS", 50);
  const windowMs = envInt("BENCH_LANES_WINDOW_S", 10) * 1000;
  const concurrency = envInt("BENCH_LANES_CONCURRENCY", 4);
  const server = await startRedis();
  try {
    const ours = await runSide(server.url, "park", n, handOvers, windowMs, concurrency);
    const base = await runSide(server.url, "poll", n, handOvers, windowMs, concurrency);
    // Steady state of ours: the measured window plus every waiter's looks at their park delays
    // (the window after parking sees mostly the first waiter's; deeper ones come due later).
    const looksPerS = ours.looksPerS ?? 0;
    const projected = ours.commandsPerS + (ours.commandsPerLook ?? 0) * looksPerS;
    const baselineIs = `the old behaviour in the same worker (laneWait "poll": each waiter re-delays itself every ${POLL_MS} ms), same jobs, same Redis server`;
    const details = { jobs: n, handOvers, windowS: windowMs / 1000, concurrency, ours, baseline: base, looksPerS: round(looksPerS, 4) };
    const p = (xs: number[], q: number): number => percentile(xs, q);
    return [
      {
        bench: "lanes",
        metric: `Redis commands/s, ${n} jobs waiting (measured ${windowMs / 1000} s)`,
        ours: round(ours.commandsPerS, 1),
        baseline: round(base.commandsPerS, 1),
        unit: "cmd/s",
        ratio: base.commandsPerS > 0 ? round(ours.commandsPerS / base.commandsPerS, 4) : null,
        goal: "≤ 20/s",
        met: ours.commandsPerS <= 20,
        baselineIs,
        details,
      },
      {
        bench: "lanes",
        metric: `Redis commands/s, ${n} waiting, steady state (projected)`,
        ours: round(projected, 1),
        baseline: round(base.commandsPerS, 1),
        unit: "cmd/s",
        ratio: base.commandsPerS > 0 ? round(projected / base.commandsPerS, 4) : null,
        goal: "≤ 20/s",
        met: projected <= 20,
        baselineIs: `${baselineIs}; ours = measured + ${round(ours.commandsPerLook ?? 0, 1)} commands per look (measured) × ${round(looksPerS, 3)} looks/s (the park delays of places 1..${n})`,
      },
      {
        bench: "lanes",
        metric: `hand-over release → next start, p50 (${ours.handOverMs.length})`,
        ours: p(ours.handOverMs, 50),
        baseline: p(base.handOverMs, 50),
        unit: "ms",
        ratio: p(base.handOverMs, 50) > 0 ? round(p(ours.handOverMs, 50) / p(base.handOverMs, 50), 3) : null,
        goal: "(info)",
        met: null,
        baselineIs,
      },
      {
        bench: "lanes",
        metric: `hand-over release → next start, p99 (${ours.handOverMs.length})`,
        ours: p(ours.handOverMs, 99),
        baseline: p(base.handOverMs, 99),
        unit: "ms",
        ratio: p(base.handOverMs, 99) > 0 ? round(p(ours.handOverMs, 99) / p(base.handOverMs, 99), 3) : null,
        goal: "≤ 100 ms",
        met: p(ours.handOverMs, 99) <= 100,
        baselineIs,
      },
    ];
  } finally {
    // Only the server this benchmark started, by its own handle.
    server.proc.kill("SIGTERM");
  }
}
