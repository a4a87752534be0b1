// Webhook ingest: deliveries per second and p99 latency of POST /webhooks/github on the real HTTP
// edge (API role only, so nothing consumes the queue), every accepted delivery durably enqueued as
// a release.rollout job, against a plain @octokit/webhooks server (createNodeMiddleware on
// node:http) that verifies the same signed payloads and enqueues nothing. Both run in this
// process's main thread; the load generator runs in a worker thread.
import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { pino } from "pino";
import { loadConfig, secretValues } from "../core/config.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { startService } from "../service.ts";
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

let releaseSeq = 0;

/**
 * `count` routed events that each enqueue one release.rollout job, alternating a published release
 * and a push to the default branch. Every body is new (a release's tag, a push's head commit): the
 * edge dedupes on the body's digest, so a body sent twice would measure replays, not deliveries.
 */
function templates(secret: string, count: number): LoadTemplate[] {
  const release = example("release", (e) => e.action === "published");
  const push = example("push", (e) => e.ref === `refs/heads/${String(obj(e.repository).default_branch)}` && e.after !== "0".repeat(40));
  const firstCommit = obj((push.commits as unknown[] | undefined)?.[0]);
  push.commits = [{ ...firstCommit, added: [], removed: [], modified: ["src/app.ts"] }];
  return Array.from({ length: count }, (_, i) => {
    const n = releaseSeq++;
    const [event, payload]: [string, Json] =
      i % 2 === 0
        ? ["release", { ...release, release: { ...obj(release.release), tag_name: `v1.${Math.floor(n / 1000)}.${n % 1000}`, draft: false, prerelease: false } }]
        : ["push", { ...push, after: randomBytes(20).toString("hex") }];
    const body = JSON.stringify(payload);
    return { event, body, signature: `sha256=${createHmac("sha256", secret).update(body).digest("hex")}` };
  });
}

interface Side {
  readonly results: LoadResult[];
}

function summarize(side: Side): { rps: number; p50: number; p99: number; non2xx: number; total: number } {
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

  // Ours: the production edge (API role), logging at `logLevel` (production default: info) to /dev/null.
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
  const logger = createLogger({ level: logLevel, scrubber, base: { role: "api" }, destination: pino.destination({ dest: "/dev/null", sync: false }) });
  const service = await startService(config, { role: "api", logger });

  // Baseline: @octokit/webhooks' own Node middleware, every event verified and emitted to a no-op handler.
  const webhooks = new Webhooks({ secret });
  webhooks.onAny(() => undefined);
  const middleware = createNodeMiddleware(webhooks, {
    path: "/webhooks/github",
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
  });
  const plain = http.createServer((req, res) => void middleware(req, res));
  await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
  const plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}/webhooks/github`;
  const oursUrl = `${service.url ?? ""}/webhooks/github`;

  const tpl = templates(secret, 2);
  const ours: Side = { results: [] };
  const base: Side = { results: [] };
  try {
    say(`ingest: warm-up ${warmup} deliveries each`);
    if (warmup > 0) {
      await runLoad({ url: plainUrl, templates: templates(secret, warmup), total: warmup, concurrency });
      await runLoad({ url: oursUrl, templates: templates(secret, warmup), total: warmup, concurrency });
    }
    for (let r = 0; r < rounds; r++) {
      // Alternate the order so drift in machine load hits both sides alike.
      const order: [string, Side][] =
        r % 2 === 0
          ? [
              ["baseline", base],
              ["ours", ours],
            ]
          : [
              ["ours", ours],
              ["baseline", base],
            ];
      for (const [name, side] of order) {
        say(`ingest: round ${r + 1}/${rounds} ${name}: ${total} deliveries at concurrency ${concurrency}`);
        side.results.push(await runLoad({ url: name === "ours" ? oursUrl : plainUrl, templates: templates(secret, total), total, concurrency }));
      }
    }
    // Durability check: every accepted delivery of ours is a job in Redis.
    const counts = await service.queue?.queue.getJobCounts("waiting", "prioritized", "delayed", "active", "completed", "failed");
    const accepted = ours.results.reduce((s, r) => s + (r.statuses["202"] ?? 0), 0);
    const jobsInRedis = Object.values(counts ?? {}).reduce((s, n) => s + n, 0);

    const o = summarize(ours);
    const b = summarize(base);
    const baselineIs = "@octokit/webhooks 14 createNodeMiddleware on node:http, same signed payloads, verify + emit to a no-op handler, enqueues nothing";
    const details = {
      requestsPerRound: total,
      rounds,
      concurrency,
      warmup,
      logLevel,
      events: tpl.map((t) => `${t.event} (${t.body.length} B)`),
      ours: { ...o, statuses: mergeStatuses(ours) },
      baseline: { ...b, statuses: mergeStatuses(base) },
      acceptedMeasured: accepted,
      jobsInRedis,
      jobsExpected: accepted + warmup,
    };
    return [
      {
        bench: "ingest",
        metric: "throughput",
        ours: round(o.rps, 0),
        baseline: round(b.rps, 0),
        unit: "deliveries/s",
        ratio: round(o.rps / b.rps),
        goal: "≥ 0.5× baseline",
        met: o.rps / b.rps >= 0.5,
        baselineIs,
        details,
      },
      {
        bench: "ingest",
        metric: "p99 latency",
        ours: round(o.p99, 1),
        baseline: round(b.p99, 1),
        unit: "ms",
        ratio: round(o.p99 / b.p99),
        goal: "ours < 50 ms",
        met: o.p99 < 50,
        baselineIs,
      },
      {
        bench: "ingest",
        metric: "non-2xx + jobs missing",
        ours: o.non2xx + Math.max(0, accepted + warmup - jobsInRedis),
        baseline: b.non2xx,
        unit: "",
        ratio: null,
        goal: "0 non-2xx, every 202 a job",
        met: o.non2xx === 0 && jobsInRedis >= accepted + warmup,
        baselineIs,
      },
    ];
  } finally {
    await service.close(1_000);
    await new Promise<void>((resolve) => plain.close(() => resolve()));
    plain.closeAllConnections();
    const n = await deleteRedisPrefix(prefix);
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
