// The job handlers by kind, built with their dependencies.
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { JOBS_QUEUE } from "../../core/jobs.ts";
import type { BundleReferences } from "../tenant-files.ts";
import type { Config } from "../../core/config.ts";
import type { Logger } from "../../core/logger.ts";
import type { Metrics } from "../../core/metrics.ts";
import type { TenantIndex } from "../../core/tenant-index.ts";
import { DeletionBreaker } from "../deletion-breaker.ts";
import type { GitOpsWriter } from "../gitops/writer.ts";
import type { JobHandlers } from "../job-worker.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import { gateFromHealthCheck, type HealthCheck } from "../health-check.ts";
import { waveHealthGateFor, type WaveHealthGate } from "../health/wave-gate.ts";
import { createGitHubClient } from "../github/octokit.ts";
import type { ReleaseReporter } from "../github/release-report.ts";
import { createReleaseReporter } from "../github/release-reporter.ts";
import { releaseCommandHandler, type CommandGitHub } from "./release-command.ts";
import { releaseRolloutHandler } from "./release-rollout.ts";
import { releaseTenantStepHandler } from "./release-tenant-step.ts";
import { tenantDeprovisionHandler } from "./tenant-deprovision.ts";
import { tenantProvisionHandler } from "./tenant-provision.ts";
import { tenantUpgradeHandler } from "./tenant-upgrade.ts";
import { tenantMoveHandler } from "./tenant-move.ts";
import { tenantMoveCleanupHandler } from "./tenant-move-cleanup.ts";
import { tenantFunctionHandler } from "./tenant-function.ts";
import { tenantDriftHandler } from "./tenant-drift.ts";
import type { CleanupScheduler } from "../cleanup-scheduler.ts";
import type { Feedback } from "../github/feedback.ts";
import type { PreviewRegistry } from "../preview-registry.ts";
import type { RepoRef } from "../../core/jobs.ts";
import type { SecretScrubber } from "../../core/logger.ts";
import { commentRefusalHandler, previewDestroyHandler, previewUpHandler } from "./preview.ts";
import { RegionIndex } from "../../core/regions.ts";
import { JobQueue } from "../../jobs/queue.ts";
import { regionGate, regionProvisionHandler } from "./region-provision.ts";

export interface HandlerDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly runner: StackRunner;
  readonly policyPacks: readonly string[];
  readonly redis: Redis;
  readonly writer: GitOpsWriter;
  readonly tenants: TenantIndex;
  readonly now?: () => number;
  /** A per-tenant check run as every wave's health gate instead of the configured gate (tests). */
  readonly healthCheck?: HealthCheck;
  /** The wave health gate; defaults to the one the configuration selects (worker/health/wave-gate.ts). */
  readonly waveGate?: WaveHealthGate;
  /** Where a release reports its milestones; on GitHub when credentials are configured (worker/github/release-reporter.ts). */
  readonly releaseReporter?: ReleaseReporter;
  /** A GitHub client for a repository (release commands check permissions with it); from the configuration by default. */
  readonly githubFor?: (repo: RepoRef) => Promise<CommandGitHub | null>;
  readonly cleanups: CleanupScheduler;
  readonly previews: PreviewRegistry;
  readonly feedbackFor: (repo: RepoRef) => Promise<Feedback>;
  readonly scrubber: SecretScrubber;
  /** Drift checks count what they find here (stackrail_drift_found_total). */
  readonly metrics?: Metrics;
}

/** Bundles named by the queue's tenant.function jobs (kept 7 days): this tenant's, and every other tenant's. */
function bundleReferencesFrom(redis: Redis, prefix: string): (tenantId: string) => Promise<BundleReferences> {
  let queue: Queue | undefined;
  return async (tenantId) => {
    // On the worker's command connection; the Queue object only reads.
    if (!queue) {
      queue = new Queue(JOBS_QUEUE, { connection: redis, prefix });
      // Errors surface through the calls below; an unheard 'error' event would end the process.
      queue.on("error", () => undefined);
    }
    const jobs = await queue.getJobs(["waiting", "delayed", "prioritized", "active", "completed", "failed"]);
    const own = new Set<string>();
    const others = new Set<string>();
    for (const job of jobs) {
      const data = job.data as { kind?: unknown; tenantId?: unknown; bundleSha256?: unknown } | undefined;
      if (data?.kind !== "tenant.function" || typeof data.bundleSha256 !== "string") continue;
      (data.tenantId === tenantId ? own : others).add(data.bundleSha256);
    }
    return { own, others };
  };
}

export function createHandlers(deps: HandlerDeps): JobHandlers {
  const regions = new RegionIndex(deps.redis, deps.config.queuePrefix, deps.now);
  // aws: tenant and preview stacks read the region stack, so the first one in a region waits for it.
  let gateQueue: JobQueue | undefined;
  const regionJobs = (): JobQueue => (gateQueue ??= new JobQueue({ connection: deps.redis, prefix: deps.config.queuePrefix, scrubber: deps.scrubber }));
  const regionReady =
    deps.config.target === "aws"
      ? regionGate({
          config: deps.config,
          regions,
          queue: { enqueue: (data, options) => regionJobs().enqueue(data, options), getJobView: (id) => regionJobs().getJobView(id) },
          ...(deps.now ? { now: deps.now } : {}),
        })
      : undefined;
  const tenantDeps = {
    config: deps.config,
    runner: deps.runner,
    writer: deps.writer,
    tenants: deps.tenants,
    policyPacks: deps.policyPacks,
    scrub: (text: string) => deps.scrubber.scrub(text),
    ...(regionReady ? { regionReady } : {}),
  };
  // Counted with every other GitHub call (stackrail_github_calls_total).
  const onResponse = (status: number, remaining: number | undefined): void => {
    deps.metrics?.githubCalls.inc({ status: String(status) });
    if (remaining !== undefined) deps.metrics?.githubRateRemaining.set(remaining);
  };
  // A rollout's tenant steps are its child jobs, added on the worker's command connection.
  let stepQueue: JobQueue | undefined;
  const rolloutDeps = {
    ...tenantDeps,
    redis: deps.redis,
    waveGate: deps.waveGate ?? (deps.healthCheck ? gateFromHealthCheck(deps.healthCheck) : waveHealthGateFor(deps.config, { logger: deps.logger })),
    reporter:
      deps.releaseReporter ??
      createReleaseReporter(deps.config, {
        redis: deps.redis,
        prefix: deps.config.queuePrefix,
        logger: deps.logger,
        scrub: (text: string) => deps.scrubber.scrub(text),
        clientOptions: { onResponse },
      }),
    steps: () =>
      (stepQueue ??= new JobQueue({ connection: deps.redis, prefix: deps.config.queuePrefix, ...(deps.scrubber ? { scrubber: deps.scrubber } : {}) })),
  };
  const github = deps.config.github;
  const githubFor =
    deps.githubFor ??
    (async (repo: RepoRef): Promise<CommandGitHub | null> =>
      github.kind === "none"
        ? null
        : createGitHubClient({
            credentials: github,
            baseUrl: deps.config.githubApiUrl,
            logger: deps.logger,
            repo,
            onResponse,
          }));
  const breaker = new DeletionBreaker(deps.redis, deps.config.queuePrefix, deps.config.deleteMaxPerWindow, deps.config.deleteWindowMs, deps.now);
  // Clean-ups after tier moves count in a breaker of their own: a burst of them is deferred, and
  // never holds back a tenant's deprovision.
  const cleanupBreaker = new DeletionBreaker(
    deps.redis,
    `${deps.config.queuePrefix}:move-cleanup`,
    deps.config.deleteMaxPerWindow,
    deps.config.deleteWindowMs,
    deps.now,
  );
  const previewDeps = {
    config: deps.config,
    logger: deps.logger,
    scrubber: deps.scrubber,
    runner: deps.runner,
    writer: deps.writer,
    registry: deps.previews,
    feedbackFor: deps.feedbackFor,
    policyPacks: deps.policyPacks,
    ...(regionReady ? { regionReady } : {}),
    ...(deps.now ? { now: deps.now } : {}),
  };
  return {
    "tenant.provision": tenantProvisionHandler(tenantDeps),
    "region.provision": regionProvisionHandler({ ...tenantDeps, regions }),
    "tenant.upgrade": tenantUpgradeHandler(tenantDeps),
    "tenant.deprovision": tenantDeprovisionHandler({ ...tenantDeps, breaker, bundleReferences: bundleReferencesFrom(deps.redis, deps.config.queuePrefix) }),
    "tenant.move-cleanup": tenantMoveCleanupHandler({
      ...tenantDeps,
      breaker: cleanupBreaker,
      reschedule: (id, tier, region, dueAt) => deps.cleanups.schedule(id, tier, region, dueAt),
      deferMs: deps.config.deleteWindowMs,
      ...(deps.now ? { now: deps.now } : {}),
    }),
    "tenant.move": tenantMoveHandler({
      ...tenantDeps,
      rollbackWindowMs: deps.config.moveRollbackWindowMs,
      scheduleCleanup: (id, tier, region, dueAt) => deps.cleanups.schedule(id, tier, region, dueAt),
      cancelCleanup: (id, tier) => deps.cleanups.cancel(id, tier),
      ...(deps.now ? { now: deps.now } : {}),
    }),
    "tenant.function": tenantFunctionHandler({ ...tenantDeps, ...(deps.config.tenantCodeRoleArn ? { tenantCodeRoleArn: deps.config.tenantCodeRoleArn } : {}) }),
    "tenant.drift": tenantDriftHandler({
      runner: deps.runner,
      tenants: deps.tenants,
      policyPacks: deps.policyPacks,
      repairAllowed: deps.config.driftRepair,
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
    }),
    "preview.up": previewUpHandler(previewDeps),
    "preview.destroy": previewDestroyHandler(previewDeps),
    "comment.refusal": commentRefusalHandler(previewDeps),
    "release.rollout": releaseRolloutHandler(rolloutDeps),
    "release.tenant-step": releaseTenantStepHandler(rolloutDeps),
    "release.command": releaseCommandHandler({ config: deps.config, redis: deps.redis, feedbackFor: deps.feedbackFor, githubFor, queue: rolloutDeps.steps }),
  };
}
