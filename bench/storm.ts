// Push storm: N `pull_request` synchronize deliveries (default 20) for one PR, each with a new
// 40-hex head SHA, spread evenly over a window (default 9.5 s, i.e. "within 10 seconds"), through
// the real edge and worker. Counts the preview `up` runs that actually executed (succeeded jobs)
// against those superseded while waiting, and checks that the preview manifest committed last
// names the last head SHA. The baseline is one `up` per delivery (no coalescing). Without GitHub
// credentials feedback goes to the log. The preview is destroyed (PR closed) afterwards.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { previewKey } from "../core/ids.ts";
import { startHarness } from "../test/support/harness.ts";
import { dropLocalLeftovers } from "./lib/cleanup.ts";
import { waitFinal } from "./lib/jobs.ts";
import { envInt, say, type Row } from "./lib/report.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (typeof v === "object" && v !== null ? (v as Json) : {});

function pullRequestEvent(action: string, repoName: string, pr: number, headSha: string): Json {
  const all = examples.find((e) => e.name === "pull_request")?.examples ?? [];
  const found = all.find((e) => obj(e).action === action) ?? all[0];
  if (!found) throw new Error("no pull_request example in @octokit/webhooks-examples");
  const payload = structuredClone(found) as Json;
  const repository = obj(payload.repository);
  const pull = obj(payload.pull_request);
  const repo = { ...repository, name: repoName, full_name: `acme/${repoName}`, owner: { ...obj(repository.owner), login: "acme" } };
  return {
    ...payload,
    action,
    number: pr,
    repository: repo,
    pull_request: { ...pull, number: pr, title: "Bench storm", head: { ...obj(pull.head), sha: headSha, repo }, base: { ...obj(pull.base), repo } },
  };
}

export async function benchStorm(): Promise<Row[]> {
  const events = envInt("BENCH_STORM_EVENTS", 20);
  const windowMs = envInt("BENCH_STORM_WINDOW_MS", 9_500, 0);
  const repoName = `bench-app-${randomBytes(3).toString("hex")}`;
  const pr = 7;
  const key = previewKey(repoName, pr);
  const h = await startHarness({ env: { STACKRAIL_DELETE_MAX: "10000" } });
  const queue = h.service.queue;
  if (!queue) throw new Error("harness has no queue");
  try {
    const shas = Array.from({ length: events }, () => randomBytes(20).toString("hex"));
    const jobIds: string[] = [];
    let lastSentMs = 0;
    const t0 = performance.now();
    say(`storm: ${events} synchronize deliveries for ${repoName}#${pr} over ${windowMs} ms`);
    for (const [i, sha] of shas.entries()) {
      const due = t0 + (events > 1 ? (windowMs * i) / (events - 1) : 0);
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      lastSentMs = performance.now() - t0;
      const res = await h.deliver("pull_request", pullRequestEvent("synchronize", repoName, pr, sha));
      if (res.status !== 202) throw new Error(`delivery ${i + 1}: ${res.status} ${JSON.stringify(res.body)}`);
      jobIds.push(...((res.body as { jobs: string[] }).jobs ?? []));
    }
    const deliveredInMs = performance.now() - t0;
    if (lastSentMs > 10_000)
      say(`storm: the last delivery left ${Math.round(lastSentMs)} ms after the first (deliveries are sent one after another and this machine is slow)`);
    const states: Record<string, number> = {};
    let lastState = "missing";
    for (const [i, id] of jobIds.entries()) {
      const view = await waitFinal(queue, id, 900_000, 100);
      states[view.state] = (states[view.state] ?? 0) + 1;
      if (i === jobIds.length - 1) lastState = view.state;
    }
    const totalMs = performance.now() - t0;
    const lastSha = shas.at(-1) as string;
    const manifest = h.gitShow(`previews/${key}/application.yaml`) ?? "";
    const finalIsLast = manifest.includes(lastSha) && lastState === "succeeded";
    const runs = states.succeeded ?? 0;
    say(`storm: ${JSON.stringify(states)}; final manifest at the last head: ${finalIsLast}`);

    say("storm: closing the PR (preview.destroy)");
    const closed = await h.deliver("pull_request", pullRequestEvent("closed", repoName, pr, lastSha));
    for (const id of (closed.body as { jobs?: string[] }).jobs ?? []) await waitFinal(queue, id, 300_000, 100).catch(() => undefined);

    return [
      {
        bench: "storm",
        metric: `up runs for ${events} pushes sent in ${(lastSentMs / 1000).toFixed(1)} s`,
        ours: runs,
        baseline: events,
        unit: "runs",
        ratio: Math.round((runs / events) * 100) / 100,
        goal: "≤ 2 runs, last SHA wins",
        met: runs <= 2 && finalIsLast,
        baselineIs: "one preview up per synchronize delivery (no coalescing)",
        details: {
          events,
          windowMs,
          lastSentAtMs: Math.round(lastSentMs),
          deliveredInMs: Math.round(deliveredInMs),
          settledInMs: Math.round(totalMs),
          states,
          lastJobState: lastState,
          finalManifestHasLastSha: finalIsLast,
          lastSha,
        },
      },
    ];
  } finally {
    await h.close();
    await dropLocalLeftovers("preview", [key]);
  }
}
