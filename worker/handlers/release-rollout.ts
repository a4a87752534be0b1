// release.rollout: a version rolls out to tenants in configured waves (for example development,
// then production EU, then production US). A wave fans out into one release.tenant-step child job
// per tenant (worker/handlers/release-tenant-step.ts), each in the tenant's own lane, at most
// STACKRAIL_WAVE_MAX_PARALLEL at a time, on whichever workers are free; the rollout waits for them
// without holding a worker slot (BullMQ runs this handler again once its children are done).
// Then it commits the wave once: one GitOps commit with the files of every tenant whose step
// passed, and only after that commit records their versions, so the tenant records, the job and
// the repository agree whatever happens (issue 13 §4). The next wave starts only when every
// tenant of this one passed; STACKRAIL_WAVE_MAX_FAILURES failed tenants stop the wave's new steps.
//
// The handler keeps no state of its own between runs: which tenants still need the version comes
// from the GitOps repository (the system of record), what the steps did from the job's children.
// So a crash anywhere is recovered by running it again, a resume (a new rollout of the same
// version) continues with exactly the tenants not at the version yet, and none is repeated.
import type { Redis } from "ioredis";
import { CancelledError, ProgramError, RolloutPausedError } from "../../core/errors.ts";
import { tenantStackName } from "../../core/ids.ts";
import type { TenantRecord } from "../../webhooks/tenant-index.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import { tenantPath } from "../gitops/paths.ts";
import { commitMessage } from "../gitops/writer.ts";
import { cancelKey } from "../job-control.ts";
import type { JobContext, JobHandler } from "../job-worker.ts";
import {
  ROLLOUT_KEY_TTL_SECONDS,
  parseStepJobId,
  rolloutAnnouncedKey,
  rolloutHandoverKey,
  rolloutPauseKey,
  rolloutWavesKey,
  waveTodoKey,
} from "../rollout-control.ts";
import type { HealthCheck } from "../health-check.ts";
import { fileVersion, startStep, tenantFileDigest, type StepData, type StepQueue, type StepResult } from "./release-tenant-step.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { gitopsSettings, infraFromOutputs } from "./tenant-support.ts";
export type { HealthCheck } from "../health-check.ts";

export { rolloutPauseKey } from "../rollout-control.ts";

export interface RolloutDeps extends TenantHandlerDeps {
  readonly redis: Redis;
  readonly healthCheck: HealthCheck;
  readonly steps: () => StepQueue;
}

/** What one wave did, in the job's result. */
export interface WaveSummary {
  readonly wave: number;
  readonly regions: readonly string[];
  /** Tenants this rollout brought to the version in this wave (committed and recorded). */
  readonly updated: string[];
  readonly failed: { tenantId: string; error: string }[];
  /** Tenants of the wave left untouched when it stopped. */
  readonly notStarted: string[];
  /** Tenants whose step passed but whom another job changed before the commit: left as that job made them. */
  readonly changedMeanwhile: string[];
  /** Tenants whose step left them alone for good (no longer active, or its step job cancelled on its own). */
  readonly skipped: { tenantId: string; reason: string }[];
  readonly commit: string | null;
  /** The step jobs of the wave (`GET /v1/jobs/:id`). */
  readonly steps: string[];
}

interface Step {
  readonly id: string;
  readonly wave: number;
  readonly round: number;
  readonly tenantId: string;
  readonly outcome: "passed" | "skipped" | "failed";
  readonly result?: Extract<StepResult, { outcome: "passed" }>;
  readonly error?: string;
  /** Why a skipped step left its tenant alone; `settled` when starting it again would not help. */
  readonly reason?: string;
  readonly settled?: boolean;
}

/** Skips that end the tenant's part in this rollout; the others (pause, cancel, a stopped wave) may start again. */
const SETTLED_SKIPS: ReadonlySet<string> = new Set(["not-active", "at-version", "rollout-gone", "step-cancelled"]);

function isStepResult(v: unknown): v is StepResult {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as { outcome?: unknown }).outcome === "string" &&
    typeof (v as { tenantId?: unknown }).tenantId === "string"
  );
}

/** Reads up to `width` files at a time. */
async function readAll(ids: readonly string[], read: (id: string) => Promise<string | null>, width = 16): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (let i = 0; i < ids.length; i += width) {
    const chunk = ids.slice(i, i + width);
    const texts = await Promise.all(chunk.map(read));
    chunk.forEach((id, j) => out.set(id, texts[j] ?? null));
  }
  return out;
}

export function releaseRolloutHandler(deps: RolloutDeps): JobHandler<"release.rollout"> {
  const prefix = deps.config.queuePrefix;
  const readTenantFile = (id: string) => deps.writer.readFile(tenantPath(id, "tenant.yaml"));

  return async (ctx) => {
    const flow = ctx.flow;
    if (!flow) throw new ProgramError("release.rollout needs a worker that runs child jobs");
    // Each look starts from what is durable (the repository, the children); nothing in memory carries over.
    for (;;) {
      const children = await flow.children();
      if (children.pending > 0) {
        // Steps added before a crash are still under way: wait for them first.
        await flow.waitForChildren();
        continue;
      }
      const next = await evaluate(ctx, children);
      if (next === "look-again") continue;
      return next;
    }
  };

  async function evaluate(
    ctx: JobContext<"release.rollout">,
    children: { values: ReadonlyMap<string, unknown>; failures: ReadonlyMap<string, string> },
  ): Promise<Record<string, unknown> | "look-again"> {
    const { version } = ctx.data;
    const jobId = ctx.jobId;
    const flow = ctx.flow;
    if (!flow) throw new ProgramError("release.rollout needs a worker that runs child jobs");
    const waves = deps.config.rolloutWaves;
    const steps = stepsOf(children);
    const active = (await deps.tenants.list()).filter((t) => t.state === "active");
    const done: WaveSummary[] = [];
    const stored = await deps.redis.hgetall(rolloutWavesKey(prefix, jobId));

    for (const [i, regions] of waves.entries()) {
      const n = i + 1;
      const inWave = active.filter((t) => regions.includes(t.region));
      const files = await readAll(
        inWave.map((t) => t.id),
        readTenantFile,
      );
      // A crash between a wave's commit and its records: the repository says so, the records follow.
      for (const t of inWave) {
        if (fileVersion(files.get(t.id) ?? null) === version && t.version !== version) {
          await deps.tenants.recordOutputs(t.id, passedOf(steps, n, t.id)?.outputs ?? t.outputs, { version });
        }
      }
      const pending = inWave.filter((t) => fileVersion(files.get(t.id) ?? null) !== version);
      const waveSteps = steps.filter((s) => s.wave === n);
      const latest = new Map<string, Step>();
      for (const s of waveSteps) if ((latest.get(s.tenantId)?.round ?? 0) < s.round) latest.set(s.tenantId, s);
      const passed = pending.filter((t) => latest.get(t.id)?.outcome === "passed");
      const failed = pending.filter((t) => latest.get(t.id)?.outcome === "failed");
      const skipped = pending.filter((t) => latest.get(t.id)?.settled === true);
      const notStarted = pending.filter((t) => !passed.includes(t) && !failed.includes(t) && !skipped.includes(t));
      const stepTenants = [...new Set(waveSteps.map((s) => s.tenantId))];

      if (pending.length === skipped.length) {
        const prior = stored[`w${n}`];
        done.push(
          prior
            ? (JSON.parse(prior) as WaveSummary)
            : {
                wave: n,
                regions,
                updated: [],
                failed: [],
                notStarted: [],
                changedMeanwhile: [],
                skipped: skipped.map((t) => ({ tenantId: t.id, reason: latest.get(t.id)?.reason ?? "skipped" })),
                commit: null,
                steps: waveSteps.map((s) => s.id),
              },
        );
        await releaseHolds(stepTenants, jobId);
        continue;
      }

      const cancelled = ctx.signal.aborted || (await deps.redis.get(cancelKey(prefix, jobId))) === "1";
      const paused = (await deps.redis.get(rolloutPauseKey(prefix, jobId))) === "1";
      const handover = await deps.redis.get(rolloutHandoverKey(prefix, jobId));
      const stopped = failed.length >= deps.config.waveMaxFailures;

      if (waveSteps.length === 0) {
        // A wave boundary: nothing of this wave has started.
        if (cancelled) throw new CancelledError(`rollout of ${version} cancelled before wave ${n}; ${summaryLine(done)}`);
        if (handover) return handOver(ctx, done, handover, n);
        if (paused) {
          await announce(ctx, `paused before wave ${n}; resume with POST /v1/releases/${jobId}/resume`);
          throw new RolloutPausedError(`paused before wave ${n}`);
        }
        await announceResumed(ctx, n);
        await ctx.progress(
          `wave ${n}/${waves.length} (${regions.join(", ")}): ${pending.length} tenant(s) to bring to ${version}, at most ${deps.config.waveMaxParallel} at a time`,
        );
      }

      if (!cancelled && !stopped && !paused && notStarted.length > 0) {
        if (waveSteps.length > 0) await announceResumed(ctx, n);
        const round = Math.max(0, ...waveSteps.map((s) => s.round)) + 1;
        await startRound(ctx, n, round, notStarted, version);
        await flow.waitForChildren();
        return "look-again";
      }
      if (paused && !cancelled && !stopped && notStarted.length > 0 && !handover) {
        // Steps that passed stay uncommitted (and their lanes held) until the wave goes on: one commit per wave.
        await announce(ctx, `paused in wave ${n} with ${notStarted.length} tenant(s) not started; resume with POST /v1/releases/${jobId}/resume`);
        throw new RolloutPausedError(`paused in wave ${n}`);
      }

      // The wave is over (every tenant done, or stopped): its one commit, then the records.
      const summary = await commitWave(
        ctx,
        n,
        regions,
        passed.map((t) => passedOf(steps, n, t.id)).filter((r) => r !== undefined),
        {
          failed: failed.map((t) => ({ tenantId: t.id, error: latest.get(t.id)?.error ?? "failed" })),
          notStarted: notStarted.map((t) => t.id),
          skipped: skipped.map((t) => ({ tenantId: t.id, reason: latest.get(t.id)?.reason ?? "skipped" })),
          steps: waveSteps.map((s) => s.id),
        },
      );
      done.push(summary);
      await releaseHolds(stepTenants, jobId);

      if (cancelled) throw new CancelledError(`rollout of ${version} cancelled in wave ${n}; ${summaryLine(done)}`);
      if (failed.length > 0) {
        throw new ProgramError(
          `rollout of ${version} stopped in wave ${n} (${regions.join(", ")}): ${failed.length} tenant(s) failed: ${summary.failed
            .map((f) => `${f.tenantId} (${f.error})`)
            .join("; ")}; ${summaryLine(done)}; resume with POST /v1/releases/${jobId}/resume`,
        );
      }
      if (notStarted.length > 0 && handover) return handOver(ctx, done, handover, n);
      await ctx.progress(`wave ${n} done: ${summary.updated.length} tenant(s) at ${version}, commit ${summary.commit ?? "(none)"}`);
    }
    await deps.tenants.setCurrentVersion(version);
    return { version, ...(ctx.data.resumes ? { resumes: ctx.data.resumes } : {}), waves: done };
  }

  function stepsOf(children: { values: ReadonlyMap<string, unknown>; failures: ReadonlyMap<string, string> }): Step[] {
    const out: Step[] = [];
    for (const [id, value] of children.values) {
      const parsed = parseStepJobId(id);
      if (!parsed) continue;
      if (isStepResult(value) && value.outcome === "passed") out.push({ id, ...parsed, outcome: "passed", result: value });
      else if (isStepResult(value) && value.outcome === "skipped")
        out.push({ id, ...parsed, outcome: "skipped", reason: value.reason, settled: SETTLED_SKIPS.has(value.reason) });
      // A step the worker finished before it ran (its own job cancelled or superseded) touched nothing.
      else out.push({ id, ...parsed, outcome: "skipped", reason: "step-cancelled", settled: true });
    }
    for (const [id, error] of children.failures) {
      const parsed = parseStepJobId(id);
      if (parsed) out.push({ id, ...parsed, outcome: "failed", error: error.slice(0, 300) });
    }
    return out.sort((x, y) => x.wave - y.wave || x.round - y.round || (x.tenantId < y.tenantId ? -1 : 1));
  }

  function passedOf(steps: readonly Step[], wave: number, tenantId: string): Extract<StepResult, { outcome: "passed" }> | undefined {
    let best: Step | undefined;
    for (const s of steps) if (s.wave === wave && s.tenantId === tenantId && (best?.round ?? 0) < s.round) best = s;
    return best?.outcome === "passed" ? best.result : undefined;
  }

  async function startRound(ctx: JobContext<"release.rollout">, wave: number, round: number, tenants: readonly TenantRecord[], version: string): Promise<void> {
    const flow = ctx.flow;
    if (!flow) return;
    const max = deps.config.waveMaxParallel;
    const first = tenants.slice(0, max);
    const rest = tenants.slice(max).map((t) => t.id);
    // The to-do list exists before any step can finish and look into it.
    const todo = waveTodoKey(prefix, ctx.jobId, wave, round);
    const tx = deps.redis.multi().del(todo);
    if (rest.length > 0) tx.rpush(todo, ...rest).expire(todo, ROLLOUT_KEY_TTL_SECONDS);
    await tx.exec();
    const ids: string[] = [];
    for (const t of first) {
      const data: StepData = {
        kind: "release.tenant-step",
        trigger: { type: "job", parentJobId: ctx.jobId },
        requestedAt: new Date().toISOString(),
        rolloutJobId: ctx.jobId,
        wave,
        round,
        tenantId: t.id,
        version,
        maxFailures: deps.config.waveMaxFailures,
      };
      ids.push(await startStep(deps.steps(), data, flow.parent));
    }
    await ctx.progress(
      `wave ${wave}${round > 1 ? ` (round ${round})` : ""}: started ${ids.length} step(s) (${first.map((t) => t.id).join(", ")})${rest.length > 0 ? `, ${rest.length} waiting for a slot` : ""}`,
    );
  }

  async function commitWave(
    ctx: JobContext<"release.rollout">,
    wave: number,
    regions: readonly string[],
    passed: readonly Extract<StepResult, { outcome: "passed" }>[],
    rest: Pick<WaveSummary, "failed" | "notStarted" | "skipped" | "steps">,
  ): Promise<WaveSummary> {
    const { version, trigger } = ctx.data;
    // Read again just before the commit: a tenant another job changed after its step keeps that change.
    const now = await readAll(
      passed.map((p) => p.tenantId),
      readTenantFile,
    );
    const files: Record<string, string> = {};
    const included: Extract<StepResult, { outcome: "passed" }>[] = [];
    const changedMeanwhile: string[] = [];
    for (const p of passed) {
      if (tenantFileDigest(now.get(p.tenantId) ?? null) !== p.from) {
        changedMeanwhile.push(p.tenantId);
        continue;
      }
      included.push(p);
      Object.assign(
        files,
        renderTenantFiles(
          { id: p.tenantId, region: p.region, tier: p.tier, version, ...(p.protected ? { protected: true } : {}) },
          infraFromOutputs(p.outputs, `tenant-${p.tenantId}`),
          gitopsSettings(deps.config),
        ),
      );
    }
    let sha: string | null = null;
    if (included.length > 0) {
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        message: commitMessage({ jobId: ctx.jobId, kind: "rollout", subject: `wave-${wave}`, trigger, summary: `${version} to ${regions.join(",")}` }),
        files,
        subject: `release-wave-${wave}`,
      });
      sha = commit.sha;
      // Only now, with the files in the repository, do the records say so.
      for (const p of included) await deps.tenants.recordOutputs(p.tenantId, p.outputs, { version });
    }
    const summary: WaveSummary = {
      wave,
      regions,
      updated: included.map((p) => p.tenantId),
      failed: rest.failed,
      notStarted: rest.notStarted,
      changedMeanwhile,
      skipped: rest.skipped,
      commit: sha,
      steps: rest.steps,
    };
    await deps.redis
      .multi()
      .hset(rolloutWavesKey(prefix, ctx.jobId), `w${wave}`, JSON.stringify(summary))
      .expire(rolloutWavesKey(prefix, ctx.jobId), ROLLOUT_KEY_TTL_SECONDS)
      .exec();
    if (changedMeanwhile.length > 0)
      await ctx.progress(`wave ${wave}: ${changedMeanwhile.join(", ")} changed by another job after their step; left as that job made them`);
    await ctx.progress(`wave ${wave} committed ${sha ?? "(nothing to commit)"}: ${summary.updated.join(", ") || "no tenant"} at ${version}`);
    return summary;
  }

  async function releaseHolds(tenantIds: readonly string[], jobId: string): Promise<void> {
    const queue = deps.steps();
    for (const id of tenantIds) await queue.releaseHold(tenantStackName(id), jobId);
  }

  async function handOver(ctx: JobContext<"release.rollout">, done: WaveSummary[], newer: string, wave: number): Promise<Record<string, unknown>> {
    await ctx.progress(`a newer release (${newer}) takes over before wave ${wave}; ${summaryLine(done)}`);
    return { version: ctx.data.version, waves: done, supersededBy: newer };
  }

  async function announce(ctx: JobContext<"release.rollout">, line: string): Promise<void> {
    const key = rolloutAnnouncedKey(prefix, ctx.jobId);
    if ((await deps.redis.set(key, line, "EX", ROLLOUT_KEY_TTL_SECONDS, "NX")) === "OK") await ctx.progress(line);
  }

  async function announceResumed(ctx: JobContext<"release.rollout">, wave: number): Promise<void> {
    if ((await deps.redis.del(rolloutAnnouncedKey(prefix, ctx.jobId))) > 0) await ctx.progress(`resumed in wave ${wave}`);
  }
}

function summaryLine(done: readonly WaveSummary[]): string {
  const updated = done.flatMap((w) => w.updated.map((id) => `${id} (wave ${w.wave})`));
  return updated.length > 0 ? `brought to the version and committed: ${updated.join(", ")}` : "no tenant was changed";
}
