// Assembles the service from a parsed configuration: the HTTP edge, the worker, or both.
// main.ts, the demo and the end-to-end tests all start Stackrail through here, so they exercise
// exactly what production runs.
import { existsSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import type { DestinationStream } from "pino";
import type { Config } from "./core/config.ts";
import { secretValues } from "./core/config.ts";
import { secureDataDir } from "./core/data-dir.ts";
import { engineLocation, type EngineLocation } from "./core/engine.ts";
import { createLogger, SecretScrubber, type Logger } from "./core/logger.ts";
import { createMetrics, type Metrics } from "./core/metrics.ts";
import type { GitOpsWriter } from "./worker/gitops/writer.ts";
import type { JobQueue } from "./jobs/queue.ts";
import type { WorkerRole, WorkerRoleDeps } from "./worker/worker-role.ts";

export type Role = "all" | "api" | "worker";

export interface ServiceOptions {
  readonly role?: Role;
  readonly logger?: Logger;
  readonly engine?: EngineLocation;
  readonly writer?: GitOpsWriter;
  /** Where log lines go when no logger is given (tests capture them to look for secrets). */
  readonly logDestination?: DestinationStream;
  /** Job kinds beyond the job model (tests and benchmarks only; see WorkerRoleDeps). */
  readonly extraKinds?: WorkerRoleDeps["extraKinds"];
  /** The rollout's per-tenant health check instead of the configured one (tests inject failures through it). */
  readonly healthCheck?: WorkerRoleDeps["healthCheck"];
}

export interface Service {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly scrubber: SecretScrubber;
  /** Where the HTTP edge listens (undefined for the worker role). */
  readonly url: string | undefined;
  /** Where the metrics listener (STACKRAIL_METRICS_PORT, any role) serves `/metrics` without a token. */
  readonly metricsUrl: string | undefined;
  /** Where a worker-only process serves `/healthz` and `/readyz` (HOST:PORT); the other roles' edge serves them at url. */
  readonly probeUrl: string | undefined;
  readonly app: FastifyInstance | undefined;
  readonly queue: JobQueue | undefined;
  readonly worker: WorkerRole | undefined;
  /** Stop taking work, let running jobs finish within the grace period, close connections. A second call waits for the first. */
  close(graceMs?: number): Promise<void>;
}

function waitReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`REDIS_URL: Redis not ready within ${timeoutMs}ms`)), timeoutMs);
    redis.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const role = options.role ?? "all";
  // State, backups, bundles and the GitOps repository are for this user only: 0700/0600 (issue 11, finding 12).
  await secureDataDir(config.dataDir);
  const scrubber = new SecretScrubber();
  scrubber.add(...secretValues(config));
  const logger =
    options.logger ??
    createLogger({ level: config.logLevel, scrubber, base: { role }, ...(options.logDestination ? { destination: options.logDestination } : {}) });
  const metrics = createMetrics();
  const engine = options.engine ?? engineLocation();
  const closers: ((graceMs: number) => Promise<void>)[] = [];
  const finalClosers: (() => Promise<void>)[] = [];

  // Prometheus scrapes every process, workers included, here. Started first (a port in use stops the
  // start-up before anything else runs) and closed last (a scrape during shutdown still answers).
  let metricsUrl: string | undefined;
  if (config.metricsPort !== undefined) {
    const { startMetricsListener } = await import("./webhooks/metrics-listener.ts");
    const listener = await startMetricsListener({
      registry: metrics.registry,
      host: config.metricsHost,
      port: config.metricsPort,
      requestTimeoutMs: config.requestTimeoutMs,
      logger,
    });
    metricsUrl = listener.url;
    finalClosers.push(() => listener.close());
  }

  // A worker-only process has no HTTP edge, but orchestrators probe it like the API: /healthz and
  // /readyz on HOST:PORT. Started before the worker (a port in use stops the start-up; a startup
  // probe sees the process answer, not ready yet) and closed last (not ready while it shuts down).
  let worker: WorkerRole | undefined;
  let probeUrl: string | undefined;
  if (role === "worker") {
    const { startProbeListener } = await import("./webhooks/metrics-listener.ts");
    const listener = await startProbeListener({
      host: config.host,
      port: config.port,
      requestTimeoutMs: config.requestTimeoutMs,
      logger,
      readiness: async () => (worker ? { ...(await worker.readiness()) } : { redis: false, worker: false }),
    });
    probeUrl = listener.url;
    finalClosers.push(() => listener.close());
  }

  // Each role loads only its own modules: a worker process carries no HTTP stack, an API process
  // no job handlers (tens of MiB each).
  if (role === "all" || role === "worker") {
    const { startWorkerRole } = await import("./worker/worker-role.ts");
    worker = await startWorkerRole({
      config,
      logger,
      metrics,
      scrubber,
      engine,
      ...(options.writer ? { writer: options.writer } : {}),
      ...(options.extraKinds ? { extraKinds: options.extraKinds } : {}),
      ...(options.healthCheck ? { healthCheck: options.healthCheck } : {}),
    });
    closers.push((graceMs) => worker?.close(graceMs) ?? Promise.resolve());
  }

  let app: FastifyInstance | undefined;
  let queue: JobQueue | undefined;
  let url: string | undefined;
  if (role === "all" || role === "api") {
    const { buildHttpServer } = await import("./webhooks/http-server.ts");
    const { edgeConnection } = await import("./core/redis.ts");
    const { registerReleaseControl } = await import("./webhooks/release-control.ts");
    const { registerOperationsApi } = await import("./webhooks/operations-api.ts");
    const { TenantIndex } = await import("./core/tenant-index.ts");
    const { DeadLetters } = await import("./jobs/dead-letters.ts");
    const { createGitOpsWriter } = await import("./worker/gitops/writer-factory.ts");
    const { readDesiredTenants } = await import("./worker/gitops/tenant-reader.ts");
    const { JobQueue } = await import("./jobs/queue.ts");
    // A server or a Redis Cluster, as REDIS_URL says (core/redis.ts makes every queue connection).
    const edge = edgeConnection(config.redisUrl);
    // The edge connection queues nothing while disconnected; serve only once it is connected.
    await waitReady(edge, 5_000);
    // Redis is the queue, not the system of record: the tenant index is rebuilt from the GitOps repository.
    const reader = options.writer ?? (await createGitOpsWriter(config, { logger }));
    const desired = await readDesiredTenants(reader, logger);
    await new TenantIndex(edge, config.queuePrefix).rebuild(desired);
    logger.info({ tenants: desired.length }, "tenant index rebuilt from the GitOps repository");
    const q = new JobQueue({ connection: edge, prefix: config.queuePrefix, scrubber });
    queue = q;
    metrics.setQueueSource(async () => {
      const counts = await q.queue.getJobCounts("waiting", "active", "delayed", "completed", "failed");
      const [oldest] = await q.queue.getJobs(["waiting", "delayed"], 0, 0, true);
      return { counts, oldestWaitingMs: oldest ? Date.now() - oldest.timestamp : null };
    });
    app = await buildHttpServer({
      config,
      logger,
      queue: q,
      redis: edge,
      registry: metrics.registry,
      readiness: async () => ({
        redis: (await edge.ping().catch(() => "")) === "PONG",
        engine: existsSync(engine.pulumi),
      }),
      extraRoutes: async (a: FastifyInstance) => {
        registerReleaseControl(a, { config, redis: edge, queue: q });
        await registerOperationsApi(a, { config, redis: edge, queue: q, deadLetters: new DeadLetters(edge, config.queuePrefix), metrics });
        await worker?.registerRoutes(a);
      },
    });
    url = await app.listen({ port: config.port, host: config.host });
    const listening = app;
    // The edge closes first: no new work is accepted while the worker finishes.
    closers.unshift(async () => {
      await listening.close();
      await q.close();
      edge.disconnect();
    });
  }

  let closing: Promise<void> | undefined;
  return {
    config,
    logger,
    metrics,
    scrubber,
    url,
    metricsUrl,
    probeUrl,
    app,
    queue,
    worker,
    close(graceMs?: number): Promise<void> {
      closing ??= (async () => {
        for (const close of closers) await close(graceMs ?? config.shutdownGraceMs);
        for (const close of finalClosers) await close();
      })();
      return closing;
    },
  };
}
