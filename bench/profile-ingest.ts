// A CPU profile of Stackrail's webhook edge under the ingest benchmark's load (issue 19): the edge
// alone in this process's main thread, the load generator in a worker thread. The main thread is
// profiled (V8's sampling profiler, as `node --cpu-prof` does) only while the load runs, so start-up
// and signing the bodies stay out of it. `node bench/profile-ingest.ts [out.cpuprofile]`, then
// `node bench/lib/cpu-profile-summary.ts out.cpuprofile`. Sizes: BENCH_INGEST_REQUESTS (per pass,
// 2000), BENCH_INGEST_CONCURRENCY (16), BENCH_PROFILE_PASSES (3).
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import type { AddressInfo } from "node:net";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { startOurEdge, startProbotStyle, templates } from "./ingest.ts";
import { deleteRedisPrefix } from "./lib/cleanup.ts";
import { runLoad } from "./lib/load.ts";
import { envInt, percentile, say } from "./lib/report.ts";

const total = envInt("BENCH_INGEST_REQUESTS", 2000);
const concurrency = envInt("BENCH_INGEST_CONCURRENCY", 16);
const passes = envInt("BENCH_PROFILE_PASSES", 3);
const secret = randomBytes(24).toString("hex");
const prefix = uniqueName("bench-profile");
// Bodies are signed before the edge starts, so that the profile holds the edge's work only.
const loads = Array.from({ length: passes }, () => templates(secret, total));
// BENCH_PROFILE_SIDE=probot profiles the Probot-style baseline instead, for comparison.
const side = process.env.BENCH_PROFILE_SIDE === "probot" ? "probot" : "ours";
let url: string;
let closeSide: () => Promise<void>;
if (side === "probot") {
  const probot = startProbotStyle(secret, TEST_REDIS_URL, prefix);
  await new Promise<void>((resolve) => probot.server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(probot.server.address() as AddressInfo).port}/webhooks/github`;
  closeSide = async () => {
    await new Promise<void>((resolve) => probot.server.close(() => resolve()));
    probot.server.closeAllConnections();
    await probot.close();
  };
} else {
  const { service } = await startOurEdge(secret, prefix, process.env.BENCH_INGEST_LOG_LEVEL ?? "info");
  url = `${service.url ?? ""}/webhooks/github`;
  closeSide = () => service.close(1_000);
}
const out = process.argv[2] ?? "ingest.cpuprofile";
const session = new Session();
session.connect();
await session.post("Profiler.enable");
await session.post("Profiler.setSamplingInterval", { interval: 1000 });
await session.post("Profiler.start");
try {
  for (let i = 0; i < passes; i++) {
    const r = await runLoad({ url, templates: loads[i] ?? [], total, concurrency });
    const non2xx = r.errors + Object.entries(r.statuses).reduce((s, [k, n]) => s + (k.startsWith("2") ? 0 : n), 0);
    say(
      `profile pass ${i + 1}/${passes}: ${Math.round((r.latencies.length / r.elapsedMs) * 1000)} deliveries/s, p99 ${percentile(r.latencies, 99).toFixed(1)} ms, non-2xx ${non2xx} ${JSON.stringify(r.statuses)}`,
    );
  }
  const { profile } = await session.post("Profiler.stop");
  writeFileSync(out, JSON.stringify(profile));
  say(`profile written: ${out}`);
} finally {
  session.disconnect();
  await closeSide();
  await deleteRedisPrefix(prefix);
}
