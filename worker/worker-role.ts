// The worker role: connections, the Pulumi runner, the job handlers and the BullMQ worker,
// assembled from configuration. main.ts starts it; tests and the demo start it the same way.
import type { Job } from "bullmq";
import type { FastifyInstance } from "fastify";
import { blobStoreFor } from "../core/blob-store.ts";
import type { Config } from "../core/config.ts";
import type { EngineLocation } from "../core/engine.ts";
import type { JobData } from "../core/jobs.ts";
import type { Logger, SecretScrubber } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import { workerConnection } from "../core/redis.ts";
import { TenantIndex } from "../core/tenant-index.ts";
import type { RepoRef } from "../core/jobs.ts";
import { createFeedback } from "./github/feedback-factory.ts";
import type { Feedback } from "./github/feedback.ts";
import { createGitOpsWriter } from "./gitops/writer-factory.ts";
import { PreviewRegistry } from "./preview-registry.ts";
import { fenced } from "./job-scope.ts";
import { reapIdlePreviews } from "./preview-reaper.ts";
import { driftWindowMs, enqueueDueDriftChecks, runDueOrphanAudit } from "./drift-scheduler.ts";
import { auditAndRecord } from "./orphans/audit.ts";
import { startOrphanAuditWorker } from "./orphans/audit-worker.ts";
import { readOrphanCounts } from "../jobs/last-audit.ts";
import type { GitOpsWriter } from "./gitops/writer.ts";
import { createHandlers } from "./handlers/index.ts";
import { createJobWorker, type ExtraJobKinds, type JobWorker } from "./job-worker.ts";
import type { StackRunner } from "./pulumi-runner.ts";
import { CleanupScheduler } from "./cleanup-scheduler.ts";
import { observedRunner } from "./observed-runner.ts";
import { DeadLetters } from "../jobs/dead-letters.ts";
import { sweepJobLogArchives } from "../jobs/job-log-archive.ts";
import { cancelKey } from "../jobs/job-control.ts";
import { JobQueue, stackFor } from "../jobs/queue.ts";
import { createRunner, policyPacksFor } from "./runner-factory.ts";
import type { HealthCheck } from "./health-check.ts";
import { StackLanes } from "../jobs/stack-lanes.ts";
import { RedisStackGuard } from "./stack-guard.ts";
import { lockStoreFor } from "./stack-locks.ts";
import { newWorkerIdentity, WorkerPresence, type PresenceOptions } from "./worker-identity.ts";

export interface WorkerRoleDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly scrubber: SecretScrubber;
  readonly engine: EngineLocation;
  /** Defaults to the writer GITOPS_REPO names. */
  readonly writer?: GitOpsWriter;
  /** Defaults to GitHub with the configured credentials, or the log without them. */
  readonly feedbackFor?: (repo: RepoRef) => Promise<Feedback>;
  readonly schedulerIntervalMs?: number;
  /** Job kinds beyond the job model, built on this worker's runner: tests and benchmarks only. */
  readonly extraKinds?: (deps: { runner: StackRunner; policyPacks: readonly string[] }) => ExtraJobKinds;
  /** The host this worker says it runs on (default: the machine's); tests run "two machines" on one. */
  readonly host?: string;
  /** Heartbeat interval and TTL (defaults in worker/worker-identity.ts). */
  readonly heartbeat?: Pick<PresenceOptions, "intervalMs" | "ttlMs">;
  /** The rollout's per-tenant health check; defaults to the one configuration selects (worker/health-check.ts). */
  readonly healthCheck?: HealthCheck;
}

export interface WorkerRole {
  readonly jobWorker: JobWorker;
  /** This process's identity: whose heartbeat proves it alive, and whose name a stack's owner record carries. */
  readonly presence: WorkerPresence;
  /** Routes that belong to the worker side (dashboard, cancel) when API and worker share a process. */
  registerRoutes(app: FastifyInstance): Promise<void>;
  /**
   * What a worker process's `/readyz` reports: `redis`, both connections ready and Redis answering;
   * `worker`, the BullMQ worker running and no shutdown begun (false from the first moment of close()).
   */
  readiness(): Promise<WorkerReadiness>;
  close(graceMs: number): Promise<void>;
}

export interface WorkerReadiness {
  readonly redis: boolean;
  readonly worker: boolean;
}

/** How long a readiness check waits for Redis's PONG. */
const READINESS_PING_MS = 1_000;

const MINUTE = 60_000;

/** Per-kind time limits: a Pulumi `up` may take long, a comment should not. */
export function defaultTimeoutMs(kind: JobData["kind"]): number {
  switch (kind) {
    case "comment.refusal":
      return 2 * MINUTE;
    case "release.rollout":
      return 120 * MINUTE;
    case "tenant.move":
      return 60 * MINUTE;
    case "region.provision":
      // A region's first `up` creates Aurora, ElastiCache and an ALB: often longer than half an hour.
      return 90 * MINUTE;
    default:
      return 30 * MINUTE;
  }
}

export async function startWorkerRole(deps: WorkerRoleDeps): Promise<WorkerRole> {
  const { config, logger } = deps;
  const connection = workerConnection(config.redisUrl);
  const commands = workerConnection(config.redisUrl);
  const lanes = new StackLanes(commands, config.queuePrefix);
  // The identity's first heartbeat exists before any operation claims a stack in its name.
  const presence = new WorkerPresence(commands, config.queuePrefix, newWorkerIdentity(deps.host !== undefined ? { host: deps.host } : {}), {
    ...deps.heartbeat,
    logger,
  });
  await presence.start();
  const guard = new RedisStackGuard(commands, presence, lockStoreFor(config.pulumiBackendUrl, { logger }));
  const runner = observedRunner(createRunner(config, deps.engine, { guard }), deps.metrics);
  const writer = deps.writer ?? (await createGitOpsWriter(config, { logger }));
  // A worker cut off from Redis may have writes queued on its connection: inside a job, each record
  // write first checks that the job's lock is still this worker's (job-scope.ts fencing).
  const previews = fenced(new PreviewRegistry(commands, config.queuePrefix), ["admit", "remove"]);
  const scrub = (text: string): string => deps.scrubber.scrub(text);
  const onResponse = (status: number, remaining: number | undefined): void => {
    deps.metrics.githubCalls.inc({ status: String(status) });
    if (remaining !== undefined) deps.metrics.githubRateRemaining.set(remaining);
  };
  const feedbackFor = deps.feedbackFor ?? ((repo: RepoRef) => createFeedback(config, { logger, scrub, repo, clientOptions: { onResponse } }));
  const tenants = fenced(new TenantIndex(commands, config.queuePrefix), [
    "rebuild",
    "claimProvision",
    "abandonProvision",
    "markFailed",
    "transition",
    "recordOutputs",
    "markDeleted",
    "setCurrentVersion",
  ]);
  const cleanups = new CleanupScheduler(commands, config.queuePrefix);
  const scheduleQueue = new JobQueue({ connection: commands, prefix: config.queuePrefix, scrubber: deps.scrubber });
  // Ended rollback windows: BullMQ delayed timers; one worker of the installation takes each when due.
  await cleanups.start(scheduleQueue, logger);
  const handlers = createHandlers({
    cleanups,
    previews,
    feedbackFor,
    scrubber: deps.scrubber,
    config,
    logger,
    runner,
    policyPacks: policyPacksFor(config),
    redis: commands,
    writer,
    tenants,
    metrics: deps.metrics,
    ...(deps.healthCheck ? { healthCheck: deps.healthCheck } : {}),
  });
  const jobWorker = createJobWorker({
    connection,
    prefix: config.queuePrefix,
    concurrency: config.concurrency,
    lanes,
    handlers,
    ...(deps.extraKinds ? { extraKinds: deps.extraKinds({ runner, policyPacks: policyPacksFor(config) }) } : {}),
    logger,
    metrics: deps.metrics,
    scrubber: deps.scrubber,
    stackOf: (job: Job) => stackFor(job.data as JobData),
    timeoutMs: (kind) => config.timeouts[kind] ?? defaultTimeoutMs(kind),
    lockDurationMs: config.jobLockMs,
    // The engine must be dead before the lock runs out: the margin covers the runner's cancel grace (20 s).
    ...(config.jobLockMs >= 50_000 ? { leaseMarginMs: 25_000 } : {}),
    stalledIntervalMs: config.stalledIntervalMs,
    maxStalledCount: config.maxJobCrashes,
    // A lane lease outlives a dead worker by at most the job lock, so its stack is not blocked for long.
    laneLeaseMs: config.jobLockMs,
    cancelRequested: async (jobId) => (await commands.get(cancelKey(config.queuePrefix, jobId))) === "1",
    deadLetters: new DeadLetters(commands, config.queuePrefix),
    logArchive: blobStoreFor(config.blobStore),
  });
  // Deferred work (idle previews, drift checks, the orphan audit) is enqueued by whichever worker sees it first.
  // The audits GET /v1/audit/orphans asks for run here, not in the edge (jobs/orphan-audit.ts).
  const orphanAudits = startOrphanAuditWorker({
    connection,
    prefix: config.queuePrefix,
    logger,
    scrub,
    audit: (scope) => auditAndRecord({ config, redis: commands, queue: scheduleQueue, reader: writer, engine: deps.engine }, { scope }),
  });
  const tickMs = deps.schedulerIntervalMs ?? config.schedulerIntervalMs;
  const drift = { intervalMs: config.driftIntervalMs, repair: config.driftRepair, windowMs: driftWindowMs(config.driftIntervalMs, tickMs) };
  // Archived job logs outlive their job's record by at most an hour: listing `jobs/` each tick would
  // cost an S3 listing every few seconds. Every worker sweeps; deletes are idempotent.
  let logSweepDue = 0;
  const sweepLogArchives = async (): Promise<void> => {
    if (Date.now() < logSweepDue) return;
    logSweepDue = Date.now() + 60 * MINUTE;
    const deleted = await sweepJobLogArchives(blobStoreFor(config.blobStore));
    if (deleted > 0) logger.info({ deleted }, "expired job log archives deleted");
  };
  const tick = async (): Promise<void> => {
    // Its own failure (the blob store away) must not hold up the scheduled work below.
    await sweepLogArchives().catch((err: unknown) => logger.warn({ err }, "could not sweep expired job log archives"));
    await reapIdlePreviews(previews, scheduleQueue, config.previewTtlMs, logger);
    if (drift.intervalMs > 0) await enqueueDueDriftChecks(tenants, scheduleQueue, drift, logger);
    // On the drift schedule, once per installation: the orphan audit (its counts feed stackrail_orphans).
    const audit = () => auditAndRecord({ config, redis: commands, queue: scheduleQueue, reader: writer, engine: deps.engine }, { scope: config.orphanScope });
    await runDueOrphanAudit({ redis: commands, prefix: config.queuePrefix, schedule: drift, audit, logger });
  };
  deps.metrics.setOrphanSource(() => readOrphanCounts(commands, config.queuePrefix));
  const scheduler = setInterval(() => {
    tick().catch((err: unknown) => logger.warn({ err }, "scheduled work could not be enqueued"));
  }, tickMs);
  logger.info({ concurrency: config.concurrency, target: config.target, workerId: presence.identity.id, host: presence.identity.host }, "worker started");
  let closing = false;
  const redisAnswers = async (): Promise<boolean> => {
    // Commands on these connections wait for a reconnect rather than fail: a disconnected one is
    // not ready without asking, and a PONG that does not come in time is a no.
    if (connection.status !== "ready" || commands.status !== "ready") return false;
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      commands.ping().then(
        (pong) => pong === "PONG",
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), READINESS_PING_MS);
      }),
    ]).finally(() => clearTimeout(timer));
  };
  return {
    jobWorker,
    presence,
    async registerRoutes(): Promise<void> {
      // The queue dashboard and job cancel routes are added here (operations issue).
    },
    async readiness(): Promise<WorkerReadiness> {
      const worker = !closing && jobWorker.worker.isRunning() && jobWorker.worker.closing === undefined;
      return { redis: await redisAnswers(), worker };
    },
    async close(graceMs: number): Promise<void> {
      closing = true;
      clearInterval(scheduler);
      await jobWorker.close(graceMs);
      await orphanAudits.close();
      await cleanups.close();
      runner.close?.();
      await presence.stop();
      await scheduleQueue.close();
      await lanes.close();
      connection.disconnect();
      commands.disconnect();
    },
  };
}
