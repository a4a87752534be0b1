// Webhook ingest (issues 8 and 19): deliveries per second and p99 latency of POST /webhooks/github
// on the real HTTP edge (API role only, so nothing consumes the queue), every accepted delivery
// durably enqueued as a preview.up job, against two baselines fed the same signed pull_request
// deliveries: a plain @octokit/webhooks server (createNodeMiddleware on node:http) that verifies and
// enqueues nothing, and a Probot-style server (the same middleware, its handler awaiting a BullMQ
// `queue.add(name, payload, {jobId: deliveryId})` before the answer, on the same Redis). All three
// run in this process's main thread; the load generator runs in a worker thread.
import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { loadConfig, secretValues, type Config } from "../core/config.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { startService, type Service } from "../service.ts";
import { localServiceEnv, uniqueName } from "../test/support/services.ts";
import { deleteRedisPrefix } from "./lib/cleanup.ts";
import { runLoad, type LoadResult, type LoadTemplate } from "./lib/load.ts";
import { envInt, percentile, round, say, type Row } from "./lib/report.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (typeof v === "object" && v !== null ? (v as Json) : {});

function example(event: string, pick: (e: Json) => boolean): Json {
  const found = examples.find((d) => d.name === event)?.examples.find((e) => pick(obj(e)));
  if (!found) throw new Error(`no ${event} example in @octokit/webhooks-examples`);
  return structuredClone(found) as Json;
}

let headSeq = 0;
/** Pull requests the deliveries are spread over: a newer head of one PR supersedes its waiting preview. */
const PULL_REQUESTS = 64;

/**
 * `count` signed pull_request `synchronize` deliveries, each routed to one preview.up job. Every body
 * is new (a new 40-hex head): the edge dedupes on the body's digest, so a body sent twice would
 * measure replays, not deliveries.
 */
export function templates(secret: string, count: number): LoadTemplate[] {
  const pr = example("pull_request", (e) => e.action === "opened" || e.action === "synchronize");
  const repository = obj(pr.repository);
  const pull = obj(pr.pull_request);
  return Array.from({ length: count }, () => {
    const n = headSeq++;
    const payload: Json = {
      ...pr,
      action: "synchronize",
      number: (n % PULL_REQUESTS) + 1,
      pull_request: {
        ...pull,
        number: (n % PULL_REQUESTS) + 1,
        head: { ...obj(pull.head), sha: randomBytes(20).toString("hex"), repo: { ...obj(obj(pull.head).repo), full_name: repository.full_name } },
        base: { ...obj(pull.base), repo: { ...obj(obj(pull.base).repo), full_name: repository.full_name } },
      },
    };
    const body = JSON.stringify(payload);
    return { event: "pull_request", body, signature: `sha256=${createHmac("sha256", secret).update(body).digest("hex")}` };
  });
}

type SideName = "ours" | "plain" | "probot";

interface Side {
  readonly results: LoadResult[];
  /** CPU time this process (server and load generator) used while the side's rounds ran. */
  cpuUs: number;
  /** CPU time of the main thread alone (the server under test; not the load generator's thread, not libuv's pool). */
  threadCpuUs: number;
}

function summarize(side: Side): {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  total: number;
  cpuUsPerDelivery: number;
  serverThreadCpuUsPerDelivery: number;
} {
  const latencies = side.results.flatMap((r) => r.latencies);
  const elapsed = side.results.reduce((s, r) => s + r.elapsedMs, 0);
  let non2xx = 0;
  for (const r of side.results) {
    non2xx += r.errors;
    for (const [status, n] of Object.entries(r.statuses)) if (!status.startsWith("2")) non2xx += n;
  }
  return {
    rps: (latencies.length / elapsed) * 1000,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    non2xx,
    total: latencies.length,
    cpuUsPerDelivery: Math.round(side.cpuUs / Math.max(1, latencies.length)),
    serverThreadCpuUsPerDelivery: Math.round(side.threadCpuUs / Math.max(1, latencies.length)),
  };
}

/** The production edge (API role), logging at `logLevel` (production default: info) to /dev/null. */
export async function startOurEdge(secret: string, prefix: string, logLevel: string): Promise<{ config: Config; service: Service }> {
  const config = loadConfig({
    ...localServiceEnv({
      dataDir: `/tmp/${prefix}`,
      prefix,
      apiToken: randomBytes(24).toString("hex"),
      passphrase: randomBytes(16).toString("hex"),
      tokenName: "bench",
    }),
    GITHUB_WEBHOOK_SECRET: secret,
    STACKRAIL_REPOSITORIES: "*",
    LOG_LEVEL: logLevel,
  });
  const scrubber = new SecretScrubber();
  scrubber.add(...secretValues(config));
  const logger = createLogger({
    level: logLevel,
    scrubber,
    base: { role: "api" },
    destination: pino.destination({ dest: process.env.BENCH_INGEST_LOG_FILE ?? "/dev/null", sync: false }),
  });
  const service = await startService(config, { role: "api", logger });

  return { config, service };
}

/**
 * The Probot-style server: @octokit/webhooks' Node middleware, its handler awaiting a BullMQ add
 * keyed on the delivery id before the answer (durable, and a redelivery adds nothing), on its own
 * connection. Not listening yet.
 */
export function startProbotStyle(secret: string, redisUrl: string, prefix: string): { server: http.Server; queue: Queue; close: () => Promise<void> } {
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue("probot", { connection: redis, prefix });
  const hooks = new Webhooks({ secret });
  hooks.on("pull_request", async ({ id, name, payload }) => {
    await queue.add(name, payload, { jobId: id });
  });
  const middleware = createNodeMiddleware(hooks, { path: "/webhooks/github", log: quiet });
  const server = http.createServer((req, res) => void middleware(req, res));
  return {
    server,
    queue,
    close: async () => {
      await queue.close();
      redis.disconnect();
    },
  };
}

export async function benchIngest(): Promise<Row[]> {
  const total = envInt("BENCH_INGEST_REQUESTS", 2000);
  const concurrency = envInt("BENCH_INGEST_CONCURRENCY", 16);
  const rounds = envInt("BENCH_INGEST_ROUNDS", 2);
  const warmup = envInt("BENCH_INGEST_WARMUP", 300, 0);
  const logLevel = process.env.BENCH_INGEST_LOG_LEVEL ?? "info";
  const secret = randomBytes(24).toString("hex");
  const prefix = uniqueName("bench-ingest");

  const { config, service } = await startOurEdge(secret, prefix, logLevel);

  // Baseline: @octokit/webhooks' own Node middleware, every event verified and emitted to a no-op handler.
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  const webhooks = new Webhooks({ secret });
  webhooks.onAny(() => undefined);
  const middleware = createNodeMiddleware(webhooks, { path: "/webhooks/github", log: quiet });
  const plain = http.createServer((req, res) => void middleware(req, res));

  const probotSide = startProbotStyle(secret, config.redisUrl, `${prefix}-probot`);
  const { queue: probotQueue, server: probot } = probotSide;

  const listen = async (server: http.Server): Promise<string> => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/github`;
  };
  const urls: Record<SideName, string> = { ours: `${service.url ?? ""}/webhooks/github`, plain: await listen(plain), probot: await listen(probot) };

  const tpl = templates(secret, 1);
  const sides: Record<SideName, Side> = {
    ours: { results: [], cpuUs: 0, threadCpuUs: 0 },
    plain: { results: [], cpuUs: 0, threadCpuUs: 0 },
    probot: { results: [], cpuUs: 0, threadCpuUs: 0 },
  };
  const names: SideName[] = ["plain", "probot", "ours"];
  try {
    say(`ingest: warm-up ${warmup} deliveries each`);
    if (warmup > 0) {
      for (const name of names) await runLoad({ url: urls[name], templates: templates(secret, warmup), total: warmup, concurrency });
    }
    for (let r = 0; r < rounds; r++) {
      // Rotate the order so drift in machine load hits every side alike.
      const order = names.map((_, i) => names[(i + r) % names.length] as SideName);
      for (const name of order) {
        say(`ingest: round ${r + 1}/${rounds} ${name}: ${total} deliveries at concurrency ${concurrency}`);
        const load = templates(secret, total);
        const cpu0 = process.cpuUsage();
        const thread0 = process.threadCpuUsage();
        sides[name].results.push(await runLoad({ url: urls[name], templates: load, total, concurrency }));
        const cpu = process.cpuUsage(cpu0);
        const thread = process.threadCpuUsage(thread0);
        sides[name].cpuUs += cpu.user + cpu.system;
        sides[name].threadCpuUs += thread.user + thread.system;
      }
    }
    // Durability check: every accepted delivery is a job in Redis (ours and the Probot-style server's).
    const states = ["waiting", "prioritized", "delayed", "active", "completed", "failed"] as const;
    const jobsIn = async (queue: Queue | undefined) => Object.values((await queue?.getJobCounts(...states)) ?? {}).reduce((s, n) => s + n, 0);
    const acceptedBy = (side: Side, status: string) => side.results.reduce((s, r) => s + (r.statuses[status] ?? 0), 0);
    const accepted = acceptedBy(sides.ours, "202");
    const jobsInRedis = await jobsIn(service.queue?.queue);
    const probotAccepted = acceptedBy(sides.probot, "200");
    const probotJobs = await jobsIn(probotQueue);

    const o = summarize(sides.ours);
    const b = summarize(sides.plain);
    const p = summarize(sides.probot);
    const plainIs = "@octokit/webhooks 14 createNodeMiddleware on node:http, same signed payloads, verify + emit to a no-op handler, enqueues nothing";
    const probotIs = "Probot-style: the same middleware, handler awaits BullMQ queue.add(name, payload, {jobId: deliveryId}) before the answer, same Redis";
    const details = {
      requestsPerRound: total,
      rounds,
      concurrency,
      warmup,
      logLevel,
      events: tpl.map((t) => `${t.event} synchronize (${t.body.length} B), heads spread over ${PULL_REQUESTS} PRs`),
      ours: { ...o, statuses: mergeStatuses(sides.ours) },
      plain: { ...b, statuses: mergeStatuses(sides.plain) },
      probot: { ...p, statuses: mergeStatuses(sides.probot), accepted: probotAccepted, jobsInRedis: probotJobs, jobsExpected: probotAccepted + warmup },
      acceptedMeasured: accepted,
      jobsInRedis,
      jobsExpected: accepted + warmup,
    };
    return [
      {
        bench: "ingest",
        metric: "throughput vs Probot-style",
        ours: round(o.rps, 0),
        baseline: round(p.rps, 0),
        unit: "deliveries/s",
        ratio: round(o.rps / p.rps),
        goal: "≥ 1.0× baseline",
        met: o.rps / p.rps >= 1,
        baselineIs: probotIs,
        details,
      },
      {
        bench: "ingest",
        metric: "p99 latency vs Probot-style",
        ours: round(o.p99, 1),
        baseline: round(p.p99, 1),
        unit: "ms",
        ratio: round(o.p99 / p.p99),
        goal: "ours < 20 ms",
        met: o.p99 < 20,
        baselineIs: probotIs,
      },
      {
        bench: "ingest",
        metric: "CPU per delivery vs Probot-style (process, incl. load generator)",
        ours: o.cpuUsPerDelivery,
        baseline: p.cpuUsPerDelivery,
        unit: "µs",
        ratio: round(o.cpuUsPerDelivery / p.cpuUsPerDelivery),
        goal: "(info)",
        met: null,
        baselineIs: probotIs,
      },
      {
        bench: "ingest",
        metric: "CPU per delivery vs Probot-style (server thread only)",
        ours: o.serverThreadCpuUsPerDelivery,
        baseline: p.serverThreadCpuUsPerDelivery,
        unit: "µs",
        ratio: round(o.serverThreadCpuUsPerDelivery / p.serverThreadCpuUsPerDelivery),
        goal: "(info)",
        met: null,
        baselineIs: probotIs,
      },
      {
        bench: "ingest",
        metric: "throughput vs plain",
        ours: round(o.rps, 0),
        baseline: round(b.rps, 0),
        unit: "deliveries/s",
        ratio: round(o.rps / b.rps),
        goal: "≥ 0.5× baseline",
        met: o.rps / b.rps >= 0.5,
        baselineIs: plainIs,
      },
      {
        bench: "ingest",
        metric: "p99 latency vs plain",
        ours: round(o.p99, 1),
        baseline: round(b.p99, 1),
        unit: "ms",
        ratio: round(o.p99 / b.p99),
        goal: "(info)",
        met: null,
        baselineIs: plainIs,
      },
      {
        bench: "ingest",
        metric: "non-2xx + jobs missing",
        ours: o.non2xx + Math.max(0, accepted + warmup - jobsInRedis),
        baseline: p.non2xx + Math.max(0, probotAccepted + warmup - probotJobs),
        unit: "",
        ratio: null,
        goal: "0 non-2xx, every 202 a job",
        met: o.non2xx === 0 && jobsInRedis >= accepted + warmup,
        baselineIs: probotIs,
      },
    ];
  } finally {
    await service.close(1_000);
    for (const server of [plain, probot]) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    }
    await probotSide.close();
    let n = await deleteRedisPrefix(prefix);
    n += await deleteRedisPrefix(`${prefix}-probot`);
    say(`ingest: deleted ${n} Redis keys under ${prefix}`);
  }
}

function mergeStatuses(side: Side): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of side.results) for (const [k, v] of Object.entries(r.statuses)) out[k] = (out[k] ?? 0) + v;
  const errors = side.results.reduce((s, r) => s + r.errors, 0);
  if (errors > 0) out.connectionErrors = errors;
  return out;
}
