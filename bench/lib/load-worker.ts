// The load generator's thread: a fixed number of POSTs at a fixed concurrency over keep-alive
// loopback connections, each with a fresh X-GitHub-Delivery id, recording every latency and status.
// It runs in a worker thread so that the server under test has the main event loop to itself.
import { randomUUID } from "node:crypto";
import http from "node:http";
import { parentPort, workerData } from "node:worker_threads";
import type { LoadRequest, LoadResult, LoadTemplate } from "./load.ts";

function post(agent: http.Agent, url: URL, template: LoadTemplate): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": template.body.length,
          "user-agent": "GitHub-Hookshot/bench",
          "x-github-event": template.event,
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": template.signature,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(template.body);
  });
}

async function run(job: LoadRequest): Promise<LoadResult> {
  const url = new URL(job.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let next = 0;
  let errors = 0;
  const started = performance.now();
  const lane = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= job.total) return;
      const template = job.templates[i % job.templates.length] as LoadTemplate;
      const t0 = performance.now();
      try {
        const status = await post(agent, url, template);
        statuses[status] = (statuses[status] ?? 0) + 1;
      } catch {
        errors += 1;
      }
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, lane));
  const elapsedMs = performance.now() - started;
  agent.destroy();
  return { latencies, statuses, errors, elapsedMs };
}

const request = workerData as LoadRequest;
run(request).then(
  (result) => parentPort?.postMessage({ ok: true, result }),
  (err: unknown) => parentPort?.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) }),
);
