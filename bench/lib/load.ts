// A bounded HTTP load generator for loopback webhook servers: `total` signed deliveries at a fixed
// `concurrency`, run in a worker thread (load-worker.ts). No external tool is needed.
import { Worker } from "node:worker_threads";

export interface LoadTemplate {
  readonly event: string;
  /** Raw JSON body, signed once: the signature covers the body only, not the delivery id. */
  readonly body: string;
  readonly signature: string;
}

export interface LoadRequest {
  readonly url: string;
  readonly templates: readonly LoadTemplate[];
  readonly total: number;
  readonly concurrency: number;
}

export interface LoadResult {
  readonly latencies: number[];
  readonly statuses: Record<string, number>;
  /** Requests that got no HTTP answer at all (connection errors). */
  readonly errors: number;
  readonly elapsedMs: number;
}

export function runLoad(request: LoadRequest): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./load-worker.ts", import.meta.url), { workerData: request });
    worker.once("message", (m: { ok: true; result: LoadResult } | { ok: false; error: string }) => {
      void worker.terminate();
      if (m.ok) resolve(m.result);
      else reject(new Error(`load generator failed: ${m.error}`));
    });
    worker.once("error", reject);
  });
}
