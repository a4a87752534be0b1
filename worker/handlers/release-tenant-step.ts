// release.tenant-step: one tenant's part of a rollout wave, a child job of the rollout running in
// the tenant's own lane (so it never overlaps the tenant's other jobs). It brings the tenant's
// stack to the version: its `up` is constrained by the update plan its plan step saved (no second
// policy preview), or, without a usable plan, runs after the policy-checked preview, which in an
// approved wave must find the approved diff (a different diff leaves the tenant untouched and the
// wave asks again); it commits nothing, records
// no version and checks no health (the wave's gate does, after the commit): the rollout commits the wave's files once every step of the wave is done, and only
// then records the versions, so the tenant records never get ahead of the GitOps repository.
//
// A step that finds its rollout cancelled or paused, or its wave stopped by failures, leaves the
// tenant untouched. A step that ends for good starts the next tenant of its wave's to-do list, so
// at most STACKRAIL_WAVE_MAX_PARALLEL steps of a wave run at a time. In `plan` mode a step only
// previews the tenant's stack at the version, for the rollout plan.
import { createHash } from "node:crypto";
import { Job } from "bullmq";
import type { Redis } from "ioredis";
import { parse } from "yaml";
import { CancelledError, fateOf } from "../../core/errors.ts";
import { blobStoreFor } from "../../core/blob-store.ts";
import { tenantStackName, type Tier } from "../../core/ids.ts";
import type { JobData } from "../../core/jobs.ts";
import { tenantPath } from "../../core/gitops-paths.ts";
import { cancelKey } from "../../jobs/job-control.ts";
import type { JobHandler, StepContext } from "../job-worker.ts";
import { JOB_OPTIONS, type JobQueue } from "../../jobs/queue.ts";
import { ROLLOUT_KEY_TTL_SECONDS, rolloutPauseKey, stepJobId, waveFailuresKey, waveTodoKey } from "../../jobs/rollout-control.ts";
import type { OperationSummary, ResourceDiff } from "../pulumi-protocol.ts";
import { planDigest, type TenantInfraPlan } from "../../jobs/release-plan.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { publicOutputs, runTenantStack, type TenantStackArgs } from "./tenant-support.ts";
import { loadPlan, planFile, removePlanFile, storePlan, writePlanFile } from "./release-plan-store.ts";

export type StepData = Extract<JobData, { kind: "release.tenant-step" }>;

/** What the rollout needs of the queue: adding steps as its children, and holding tenants' lanes. */
export type StepQueue = Pick<JobQueue, "enqueueChild" | "releaseHold" | "queue">;

export interface TenantStepDeps extends TenantHandlerDeps {
  readonly redis: Redis;
  readonly steps: () => StepQueue;
  /** How often a running step looks whether its rollout was cancelled. */
  readonly cancelPollMs?: number;
}

/** Why a step left its tenant untouched. `plan-changed`: its preview found another diff than the approved one. */
export type SkipReason = "cancelled" | "paused" | "wave-stopped" | "rollout-gone" | "not-active" | "at-version" | "plan-changed";

/** A step's result, read back by the rollout from its children. */
export type StepResult =
  | {
      readonly tenantId: string;
      readonly wave: number;
      readonly round: number;
      readonly outcome: "passed";
      /** Digest of tenant.yaml as the step found it: the wave commits the tenant only if it is unchanged. */
      readonly from: string | null;
      readonly region: string;
      readonly tier: Tier;
      readonly protected: boolean;
      readonly outputs: Record<string, unknown>;
      readonly resourceChanges: Record<string, number>;
      /** Engine runs of the step's `up` (1 when constrained by the stored plan, 2 with the policy preview). */
      readonly engineRuns?: number;
      /** How the stored update plan was used: absent when there was none to use. */
      readonly planUse?: "constrained" | "fallback";
    }
  | {
      readonly tenantId: string;
      readonly wave: number;
      readonly round: number;
      readonly outcome: "skipped";
      readonly reason: SkipReason;
      /** plan-changed: the diff the preview found instead of the approved one. */
      readonly found?: readonly ResourceDiff[];
    }
  /** A plan step's preview of the tenant stack at the version. */
  | { readonly tenantId: string; readonly wave: number; readonly round: number; readonly outcome: "planned"; readonly infra: TenantInfraPlan };

/** Digest of a tenant.yaml text (null: no file), to notice that another job changed the tenant. */
export function tenantFileDigest(text: string | null): string | null {
  return text === null ? null : createHash("sha256").update(text).digest("hex");
}

/** The version tenant.yaml names, or null. */
export function fileVersion(text: string | null): string | null {
  if (text === null) return null;
  try {
    const v = (parse(text) as { version?: unknown } | null)?.version;
    return typeof v === "string" ? v : null;
  } catch {
    return null;
  }
}

/**
 * Adds the step of `data.tenantId` as a child of the rollout, in the tenant's lane, and keeps the
 * lane held for the rollout behind it: a tenant job that arrives meanwhile runs after the wave's
 * commit, not between the step and the commit. A hold left by an earlier round goes first, or the
 * new step would wait behind it.
 */
export async function startStep(queue: StepQueue, data: StepData, parent: { id: string; queue: string }): Promise<string> {
  const stack = tenantStackName(data.tenantId);
  const jobId = stepJobId(data.rolloutJobId, data.wave, data.round, data.tenantId);
  await queue.releaseHold(stack, data.rolloutJobId);
  await queue.enqueueChild(data, { jobId, parent, holdFor: data.rolloutJobId });
  return jobId;
}

export function releaseTenantStepHandler(deps: TenantStepDeps): JobHandler<"release.tenant-step"> {
  const prefix = deps.config.queuePrefix;
  const blobs = () => deps.blobs ?? blobStoreFor(deps.config.blobStore);
  const rolloutCancelled = async (rolloutJobId: string) => (await deps.redis.get(cancelKey(prefix, rolloutJobId))) === "1";

  /** Why the step must not touch its tenant, or null. */
  const skipReason = async (d: StepData): Promise<SkipReason | null> => {
    const rollout = await Job.fromId(deps.steps().queue, d.rolloutJobId);
    const rolloutData = rollout?.data as { kind?: unknown; version?: unknown } | undefined;
    if (!rollout || rolloutData?.kind !== "release.rollout" || rolloutData.version !== d.version || rollout.finishedOn) return "rollout-gone";
    if (await rolloutCancelled(d.rolloutJobId)) return "cancelled";
    if ((await deps.redis.get(rolloutPauseKey(prefix, d.rolloutJobId))) === "1") return "paused";
    if ((await deps.redis.scard(waveFailuresKey(prefix, d.rolloutJobId, d.wave))) >= d.maxFailures) return "wave-stopped";
    return null;
  };

  /** The next tenant of the round's to-do list, unless the wave stops starting tenants. */
  const startNext = async (ctx: StepContext, d: StepData): Promise<void> => {
    if ((await skipReason(d)) !== null) return;
    const next = await deps.redis.lpop(waveTodoKey(prefix, d.rolloutJobId, d.wave, d.round));
    if (!next) return;
    const data: StepData = { ...d, tenantId: next, requestedAt: new Date().toISOString() };
    const parent = { id: d.rolloutJobId, queue: deps.steps().queue.qualifiedName };
    // If this fails the tenant is not lost: the rollout finds it not started and starts it itself.
    await startStep(deps.steps(), data, parent).catch((err: unknown) => ctx.logger.warn({ err, tenantId: next }, "could not start the next step of the wave"));
  };

  /** The plan step: a preview of the tenant's stack at the version, nothing applied, no lane held afterwards. */
  const plan = async (ctx: Parameters<JobHandler<"release.tenant-step">>[0]): Promise<StepResult> => {
    const d = ctx.data;
    const base = { tenantId: d.tenantId, wave: d.wave, round: d.round };
    const skip = await skipReason(d);
    if (skip === "rollout-gone" || skip === "cancelled") return { ...base, outcome: "skipped", reason: skip };
    const tenant = await deps.tenants.get(d.tenantId);
    if (!tenant || tenant.state !== "active") return { ...base, outcome: "skipped", reason: "not-active" };
    await ctx.progress(`rollout ${d.rolloutJobId} plan: stack preview tenant-${d.tenantId} at ${d.version}`);
    // The engine saves the preview's update plan: the apply step's `up` is constrained by it.
    const file = planFile(deps.config.dataDir);
    try {
      const summary = await runTenantStack(
        deps.runner,
        ctx,
        "preview",
        { tenantId: d.tenantId, tier: tenant.tier, region: tenant.region, version: d.version },
        deps.policyPacks,
        { savePlan: file },
      );
      const diff = summary.diff ?? [];
      const digest = planDigest(diff);
      // Without a stored plan the apply step takes the policy-checked preview and `up`: slower, as safe.
      await storePlan(blobs(), d.rolloutJobId, d.tenantId, file, { version: d.version, digest }).catch((err: unknown) =>
        ctx.logger.warn({ err, tenantId: d.tenantId }, "could not store the update plan; the apply step previews again"),
      );
      return { ...base, outcome: "planned", infra: { diff, violations: summary.violations ?? [], digest } };
    } finally {
      removePlanFile(file);
    }
  };

  /**
   * The tenant's `up` at the version. With the plan its plan step stored (made for this version
   * and, in an approved wave, for the approved diff) the `up` is constrained by it: the engine
   * applies only steps of that plan, each policy-checked when it was saved, so no second preview
   * runs. Without one, or when the engine refuses it (the stack changed since), the policy-checked
   * preview runs first; in an approved wave that same preview must find the approved diff, or
   * nothing is applied (`plan-changed`).
   */
  const applyUp = async (stepCtx: StepContext, d: StepData, args: TenantStackArgs): Promise<OperationSummary> => {
    const expect = d.approvedDigest !== undefined ? { expectedDigest: d.approvedDigest } : {};
    const stored = await loadPlan(blobs(), d.rolloutJobId, d.tenantId).catch((err: unknown) => {
      stepCtx.logger.warn({ err, tenantId: d.tenantId }, "could not read the stored update plan; previewing instead");
      return null;
    });
    const usable = stored !== null && stored.version === d.version && (d.approvedDigest === undefined || stored.digest === d.approvedDigest);
    if (!usable) {
      if (stored !== null) await stepCtx.progress(`tenant ${d.tenantId}: the stored update plan is not for this diff; previewing before the up`);
      return runTenantStack(deps.runner, stepCtx, "up", args, deps.policyPacks, expect);
    }
    const file = writePlanFile(deps.config.dataDir, stored);
    try {
      return await runTenantStack(deps.runner, stepCtx, "up", args, deps.policyPacks, { ...expect, plan: file });
    } finally {
      removePlanFile(file);
    }
  };

  return async (ctx) => {
    const d = ctx.data;
    if (d.mode === "plan") return plan(ctx);
    const base = { tenantId: d.tenantId, wave: d.wave, round: d.round };
    let final = true;
    try {
      const skip = await skipReason(d);
      if (skip) {
        await ctx.progress(`tenant ${d.tenantId} left untouched: ${skip}`);
        return { ...base, outcome: "skipped", reason: skip } satisfies StepResult;
      }
      const tenant = await deps.tenants.get(d.tenantId);
      if (!tenant || tenant.state !== "active") {
        await ctx.progress(`tenant ${d.tenantId} left untouched: it is ${tenant?.state ?? "gone"}`);
        return { ...base, outcome: "skipped", reason: "not-active" } satisfies StepResult;
      }
      // Read inside the tenant's lane: no job of this tenant changes the file until the wave's commit.
      const file = await deps.writer.readFile(tenantPath(d.tenantId, "tenant.yaml"));
      if (fileVersion(file) === d.version) {
        await ctx.progress(`tenant ${d.tenantId} is at ${d.version} already`);
        return { ...base, outcome: "skipped", reason: "at-version" } satisfies StepResult;
      }

      // A cancelled rollout stops its running steps too, the way a job cancel stops an operation.
      const controller = new AbortController();
      const follow = () => {
        if (!controller.signal.aborted) controller.abort(ctx.signal.reason);
      };
      ctx.signal.addEventListener("abort", follow, { once: true });
      const poll = setInterval(() => {
        rolloutCancelled(d.rolloutJobId).then(
          (yes) => {
            if (yes && !controller.signal.aborted) controller.abort(new CancelledError(`rollout ${d.rolloutJobId} was cancelled`));
          },
          () => undefined,
        );
      }, deps.cancelPollMs ?? 500);
      try {
        const stepCtx: StepContext = { ...ctx, signal: controller.signal };
        const args: TenantStackArgs = { tenantId: d.tenantId, tier: tenant.tier, region: tenant.region, version: d.version };
        await ctx.progress(
          `rollout ${d.rolloutJobId} wave ${d.wave}: stack up tenant-${d.tenantId} at ${d.version}${d.approvedDigest !== undefined ? " (the approved plan only)" : ""}`,
        );
        const summary = await applyUp(stepCtx, d, args);
        if (summary.result === "plan-changed") {
          // Apply only what was approved: another change landed since the plan was seen.
          await ctx.progress(`tenant ${d.tenantId}: the diff differs from the approved plan; nothing applied; the wave asks for approval again`);
          return { ...base, outcome: "skipped", reason: "plan-changed", found: summary.diff ?? [] } satisfies StepResult;
        }
        // Application health is the wave's gate, after its commit (Argo CD must see the commit first).
        await ctx.progress(`tenant ${d.tenantId} is up at ${d.version}; the wave's commit records it`);
        return {
          ...base,
          outcome: "passed",
          from: tenantFileDigest(file),
          region: tenant.region,
          tier: tenant.tier,
          protected: tenant.protected === true,
          outputs: publicOutputs(summary.outputs),
          resourceChanges: summary.resourceChanges,
          ...(summary.engineRuns !== undefined ? { engineRuns: summary.engineRuns } : {}),
          ...(summary.planUse ? { planUse: summary.planUse } : {}),
        } satisfies StepResult;
      } finally {
        clearInterval(poll);
        ctx.signal.removeEventListener("abort", follow);
      }
    } catch (err) {
      const fate = fateOf(err);
      // A try the worker will repeat is not the step's end; a wait is not a failure.
      final = fate === "fail" || (fate === "retry" && ctx.attempt >= JOB_OPTIONS.attempts);
      if (final && !(await rolloutCancelled(d.rolloutJobId))) {
        const key = waveFailuresKey(prefix, d.rolloutJobId, d.wave);
        await deps.redis.multi().sadd(key, d.tenantId).expire(key, ROLLOUT_KEY_TTL_SECONDS).exec();
      }
      throw err;
    } finally {
      if (final) await startNext(ctx, d).catch((err: unknown) => ctx.logger.warn({ err }, "could not look for the next step of the wave"));
    }
  };
}
