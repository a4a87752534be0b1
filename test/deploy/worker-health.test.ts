// A worker-only process (`main.ts --role worker`) answers the probes the chart and the Dockerfile's
// HEALTHCHECK send it, on HOST:PORT as the API would: /healthz while its event loop answers, /readyz
// while its Redis connections are up and its BullMQ worker runs. A Redis that goes away makes it not
// ready (and ready again when Redis is back); so does its graceful shutdown, while a job still runs.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { loadConfig } from "../../core/config.ts";
import { engineLocation } from "../../core/engine.ts";
import { createLogger } from "../../core/logger.ts";
import { workerConnection } from "../../core/redis.ts";
import { JobQueue } from "../../jobs/queue.ts";
import { startService, type Service } from "../../service.ts";
import { extraJobKind } from "../../worker/job-worker.ts";
import { startPrivateRedis, waitUntil, type PrivateRedis } from "../support/private-services.ts";
import { localServiceEnv, uniqueName } from "../support/services.ts";
import { startWorkerProcess, type WorkerProcess } from "../support/worker-process.ts";

const dir = mkdtempSync(path.join(tmpdir(), "stackrail-worker-health-"));

async function probe(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function env(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...localServiceEnv({ dataDir, prefix: uniqueName("whealth"), apiToken: randomBytes(24).toString("hex"), passphrase: randomBytes(16).toString("hex") }),
    STACKRAIL_DRIFT_INTERVAL_S: "0",
    STACKRAIL_SHUTDOWN_GRACE_MS: "3000",
    ...extra,
  };
}

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("a worker process (main.ts --role worker)", () => {
  let redis: PrivateRedis;
  let worker: WorkerProcess;
  let base = "";

  beforeAll(async () => {
    const engine = engineLocation();
    if (!existsSync(engine.pulumi)) throw new Error(`the Pulumi engine is missing at ${engine.pulumi}: run npm ci (or node scripts/install-engine.ts)`);
    // A redis-server of this file only: the test stops it.
    redis = await startPrivateRedis(path.join(dir, "redis"));
    worker = startWorkerProcess(env(path.join(dir, "process"), { REDIS_URL: redis.url }), { name: "health", logFile: path.join(dir, "worker.log") });
    await worker.ready();
    const started = worker.logs().find((l) => l.msg === "listener started" && l.listener === "probes");
    base = typeof started?.url === "string" ? started.url : "";
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  afterAll(async () => {
    if (worker?.alive()) {
      worker.signal("SIGTERM");
      const gone = await Promise.race([worker.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 15_000))]);
      if (!gone) await worker.killAll();
    }
    await redis?.stop();
  });

  it("answers /healthz and /readyz on HOST:PORT, and nothing else there", async () => {
    expect(await probe(`${base}/healthz`)).toEqual({ status: 200, body: { status: "ok" } });
    await waitUntil("the worker to be ready", async () => (await probe(`${base}/readyz`)).status === 200, 20_000);
    expect(await probe(`${base}/readyz`)).toEqual({ status: 200, body: { status: "ready", redis: true, worker: true } });
    expect((await probe(`${base}/v1/tenants`)).status).toBe(404);
    expect((await probe(`${base}/metrics`)).status).toBe(404);
  });

  it("is not ready while Redis is away, alive all the same, and ready again when Redis is back", async () => {
    const restarted = redis.restart({ keepData: true, downMs: 6_000 });
    try {
      await waitUntil("/readyz to answer 503 with Redis away", async () => (await probe(`${base}/readyz`)).status === 503, 5_000);
      expect((await probe(`${base}/readyz`)).body).toMatchObject({ status: "not ready", redis: false });
      expect((await probe(`${base}/healthz`)).status).toBe(200);
    } finally {
      await restarted;
    }
    await waitUntil("/readyz to answer 200 with Redis back", async () => (await probe(`${base}/readyz`)).status === 200, 30_000);
  });
});

describe("a worker's graceful shutdown", () => {
  const KIND = "health-hold";
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let started = false;
  const holdKind = extraJobKind(z.object({ kind: z.literal(KIND) }), async () => {
    started = true;
    await held;
    return {};
  });
  let service: Service;
  let queue: JobQueue;
  let connection: Redis;

  beforeAll(async () => {
    service = await startService(loadConfig(env(path.join(dir, "in-process"))), {
      role: "worker",
      logger: createLogger({ level: "silent" }),
      extraKinds: () => ({ [KIND]: holdKind }),
    });
    connection = workerConnection(service.config.redisUrl);
    queue = new JobQueue({ connection, prefix: service.config.queuePrefix, scrubber: service.scrubber });
  });

  afterAll(async () => {
    release();
    await service?.close(1_000);
    await queue?.close();
    connection?.disconnect();
  });

  it("answers 503 on /readyz from its first moment, and 200 on /healthz, while a job finishes", async () => {
    const base = service.probeUrl ?? "";
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(service.url).toBeUndefined();
    await waitUntil("the worker to be ready", async () => (await probe(`${base}/readyz`)).status === 200, 20_000);
    await queue.queue.add(KIND, { kind: KIND }, { jobId: uniqueName("hold"), attempts: 1 });
    await waitUntil("the held job to start", () => started, 20_000);

    const closed = service.close(30_000);
    expect(await probe(`${base}/readyz`)).toEqual({ status: 503, body: { status: "not ready", redis: true, worker: false } });
    expect(await probe(`${base}/healthz`)).toEqual({ status: 200, body: { status: "ok" } });
    release();
    await closed;
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
