// The job handlers by kind, built with their dependencies.
import type { Redis } from "ioredis";
import type { Config } from "../../core/config.ts";
import type { Logger } from "../../core/logger.ts";
import type { Metrics } from "../../core/metrics.ts";
import type { TenantIndex } from "../../webhooks/tenant-index.ts";
import { DeletionBreaker } from "../deletion-breaker.ts";
import type { GitOpsWriter } from "../gitops/writer.ts";
import type { JobHandlers } from "../job-worker.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import { healthCheckFor } from "../health-check.ts";
import { releaseRolloutHandler, type HealthCheck } from "./release-rollout.ts";
import { stackOperationHandler } from "./stack-operation.ts";
import { tenantDeprovisionHandler } from "./tenant-deprovision.ts";
import { tenantProvisionHandler } from "./tenant-provision.ts";
import { tenantUpgradeHandler } from "./tenant-upgrade.ts";
import { tenantMoveHandler } from "./tenant-move.ts";
import { tenantFunctionHandler } from "./tenant-function.ts";
import { tenantDriftHandler } from "./tenant-drift.ts";
import type { CleanupScheduler } from "../cleanup-scheduler.ts";
import type { Feedback } from "../github/feedback.ts";
import type { PreviewRegistry } from "../preview-registry.ts";
import type { RepoRef } from "../../core/jobs.ts";
import type { SecretScrubber } from "../../core/logger.ts";
import { commentRefusalHandler, previewDestroyHandler, previewUpHandler } from "./preview.ts";

export interface HandlerDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly runner: StackRunner;
  readonly policyPacks: readonly string[];
  readonly redis: Redis;
  readonly writer: GitOpsWriter;
  readonly tenants: TenantIndex;
  readonly now?: () => number;
  readonly healthCheck?: HealthCheck;
  readonly cleanups: CleanupScheduler;
  readonly previews: PreviewRegistry;
  readonly feedbackFor: (repo: RepoRef) => Promise<Feedback>;
  readonly scrubber: SecretScrubber;
  /** Drift checks count what they find here (stackrail_drift_found_total). */
  readonly metrics?: Metrics;
}

export function createHandlers(deps: HandlerDeps): JobHandlers {
  const tenantDeps = { config: deps.config, runner: deps.runner, writer: deps.writer, tenants: deps.tenants, policyPacks: deps.policyPacks };
  const breaker = new DeletionBreaker(deps.redis, deps.config.queuePrefix, deps.config.deleteMaxPerWindow, deps.config.deleteWindowMs, deps.now);
  const previewDeps = {
    config: deps.config,
    logger: deps.logger,
    scrubber: deps.scrubber,
    runner: deps.runner,
    writer: deps.writer,
    registry: deps.previews,
    feedbackFor: deps.feedbackFor,
    ...(deps.now ? { now: deps.now } : {}),
  };
  return {
    "stack.operation": stackOperationHandler(deps.runner, deps.policyPacks),
    "tenant.provision": tenantProvisionHandler(tenantDeps),
    "tenant.upgrade": tenantUpgradeHandler(tenantDeps),
    "tenant.deprovision": tenantDeprovisionHandler({ ...tenantDeps, breaker }),
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
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
    }),
    "preview.up": previewUpHandler(previewDeps),
    "preview.destroy": previewDestroyHandler(previewDeps),
    "comment.refusal": commentRefusalHandler(previewDeps),
    "release.rollout": releaseRolloutHandler({ ...tenantDeps, redis: deps.redis, healthCheck: deps.healthCheck ?? healthCheckFor(deps.config) }),
  };
}
