// release.rollout: a version rolls out to tenants in configured waves (for example development,
// then production EU, then production US). Each wave: every tenant stack of the wave is updated,
// a health check runs, and one GitOps commit points the wave's Applications at the version. The
// gate between waves is "every stack succeeded and every health check passed"; a failed wave
// stops the rollout and the error says which wave and tenant. Between waves the rollout can be
// paused and resumed through the API (a flag in Redis, checked before each wave).
import type { Redis } from "ioredis";
import { ProgramError, StackrailError } from "../../core/errors.ts";
import type { TenantRecord } from "../../webhooks/tenant-index.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import { commitMessage } from "../gitops/writer.ts";
import type { JobHandler, StepContext } from "../job-worker.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { gitopsSettings, infraFromOutputs, publicOutputs, runTenantStack } from "./tenant-support.ts";

export type HealthCheck = (tenant: TenantRecord, outputs: Record<string, unknown>) => Promise<void>;

export interface RolloutDeps extends TenantHandlerDeps {
  readonly redis: Redis;
  readonly healthCheck: HealthCheck;
  readonly pollMs?: number;
}

export function rolloutPauseKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:paused`;
}

async function waitWhilePaused(deps: RolloutDeps, ctx: StepContext, wave: number): Promise<void> {
  const key = rolloutPauseKey(deps.config.queuePrefix, ctx.jobId);
  let announced = false;
  while ((await deps.redis.get(key)) === "1") {
    if (!announced) {
      await ctx.progress(`paused before wave ${wave}; resume with POST /v1/releases/${ctx.jobId}/resume`);
      announced = true;
    }
    if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new ProgramError("cancelled");
    await new Promise((r) => setTimeout(r, deps.pollMs ?? 500));
  }
  if (announced) await ctx.progress(`resumed before wave ${wave}`);
}

export function releaseRolloutHandler(deps: RolloutDeps): JobHandler<"release.rollout"> {
  return async (ctx) => {
    const { version, trigger } = ctx.data;
    const waves = deps.config.rolloutWaves;
    const all = (await deps.tenants.list()).filter((t) => t.state === "active");
    const done: { wave: number; regions: readonly string[]; tenants: string[]; commit: string | null }[] = [];
    for (const [i, regions] of waves.entries()) {
      const n = i + 1;
      await waitWhilePaused(deps, ctx, n);
      const tenants = all.filter((t) => regions.includes(t.region) && t.version !== version);
      await ctx.progress(`wave ${n}/${waves.length} (${regions.join(", ")}): ${tenants.length} tenant(s)`);
      const files: Record<string, string> = {};
      for (const t of tenants) {
        try {
          const summary = await runTenantStack(deps.runner, ctx, "up", { tenantId: t.id, tier: t.tier, region: t.region, version }, deps.policyPacks);
          await deps.healthCheck(t, summary.outputs);
          Object.assign(
            files,
            renderTenantFiles(
              { id: t.id, region: t.region, tier: t.tier, version, ...(t.protected ? { protected: true } : {}) },
              infraFromOutputs(summary.outputs, `tenant-${t.id}`),
              gitopsSettings(deps.config),
            ),
          );
          await deps.tenants.recordOutputs(t.id, publicOutputs(summary.outputs), { version });
          await ctx.progress(`wave ${n}: tenant ${t.id} updated and healthy`);
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          const where = `rollout of ${version} stopped in wave ${n} (${regions.join(", ")}) at tenant ${t.id}: ${reason}`;
          // The gate: nothing of this wave is committed, no later wave starts.
          if (err instanceof StackrailError && err.fate !== "fail") throw err;
          throw new ProgramError(where, { cause: err });
        }
      }
      let sha: string | null = null;
      if (tenants.length > 0) {
        const commit = await deps.writer.commit({
          jobId: ctx.jobId,
          message: commitMessage({ jobId: ctx.jobId, kind: "rollout", subject: `wave-${n}`, trigger, summary: `${version} to ${regions.join(",")}` }),
          files,
          subject: `release-wave-${n}`,
        });
        sha = commit.sha;
        await ctx.progress(`wave ${n} committed ${sha ?? "(no change)"}`);
      }
      done.push({ wave: n, regions, tenants: tenants.map((t) => t.id), commit: sha });
    }
    await deps.tenants.setCurrentVersion(version);
    return { version, waves: done };
  };
}
