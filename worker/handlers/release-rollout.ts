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
// Before anything is applied the rollout computes its plan (jobs/release-plan.ts): the tenants
// of every wave, version from → to, the Argo CD manifest diff and each tenant stack's Pulumi diff
// (a `plan` step per tenant, fanned out through the tenants' lanes like the apply). Waves named in
// STACKRAIL_APPROVAL_WAVES wait, visibly, until approved (jobs/release-approval.ts); their steps
// apply only the approved diff, and a wave whose diff changed asks again. After a wave's commit
// its health gate (worker/health/wave-gate.ts) looks at the applications at that commit; a failed
// gate stops the release with the wave's tenants at the version in Git and in the API alike (they
// were deployed), and a resume continues with the tenants not at the version yet. Every
// milestone is reported on GitHub when the release came from a commit (worker/github/release-report.ts).
//
// The handler keeps no state of its own between runs: which tenants still need the version comes
// from the GitOps repository (the system of record), what the steps did from the job's children.
// So a crash anywhere is recovered by running it again, a resume (a new rollout of the same
// version) continues with exactly the tenants not at the version yet, and none is repeated.
import type { Redis } from "ioredis";
import { blobStoreFor } from "../../core/blob-store.ts";
import { CancelledError, ProgramError, RolloutPausedError, StackrailError, fateOf } from "../../core/errors.ts";
import { tenantStackName } from "../../core/ids.ts";
import type { TenantRecord } from "../../core/tenant-index.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import { tenantPath } from "../../core/gitops-paths.ts";
import { commitMessage } from "../gitops/writer.ts";
import { cancelKey } from "../../jobs/job-control.ts";
import type { JobContext, JobHandler } from "../job-worker.ts";
import {
  ROLLOUT_KEY_TTL_SECONDS,
  parsePlanStepJobId,
  parseStepJobId,
  planStepJobId,
  rolloutAnnouncedKey,
  rolloutApprovalsKey,
  rolloutRejectedKey,
  rolloutHandoverKey,
  rolloutPauseKey,
  rolloutWavesKey,
  waveTodoKey,
} from "../../jobs/rollout-control.ts";
import { noReleaseReporter, waveEnvironment, type PlanReport, type ReleaseReporter, type ReleaseSource, type WaveReport } from "../github/release-report.ts";
import type { WaveGateReport, WaveHealthGate } from "../health/wave-gate.ts";
import { approvalsOf, clearAwaiting, markAwaiting, rejectionOf, awaitingWave } from "../../jobs/release-approval.ts";
import {
  loadPlan,
  planChange,
  planDigest,
  savePlan,
  unifiedDiff,
  type PlannedTenantEntry,
  type PlannedWave,
  type ReleasePlan,
  type TenantInfraPlan,
} from "../../jobs/release-plan.ts";
import type { ResourceDiff } from "../pulumi-protocol.ts";
import { fileVersion, startStep, tenantFileDigest, type StepData, type StepQueue, type StepResult } from "./release-tenant-step.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { dropPlans } from "./release-plan-store.ts";
import { gitopsSettings, infraFromOutputs } from "./tenant-support.ts";
export type { WaveHealthGate } from "../health/wave-gate.ts";

export { rolloutPauseKey } from "../../jobs/rollout-control.ts";

export interface RolloutDeps extends TenantHandlerDeps {
  readonly redis: Redis;
  /** Runs after each wave's commit, on the tenants the wave changed. */
  readonly waveGate: WaveHealthGate;
  /** Milestones on GitHub (plan check run, a Deployment per wave); none without a source commit. */
  readonly reporter?: ReleaseReporter;
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
  /** The health gate after the wave's commit (absent while it runs, or when the wave changed nobody). */
  readonly gate?: WaveGateReport;
}

/** Field `g<n>` of the waves hash: the gate of wave n still to run (set before the wave's commit), or its end. */
interface GateMarker {
  readonly state: "pending" | "passed" | "failed" | "skipped";
  readonly tenants: readonly string[];
  readonly commit: string | null;
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
  /** plan-changed: the diff the step's preview found. */
  readonly found?: readonly ResourceDiff[];
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
  const reporter = deps.reporter ?? noReleaseReporter;
  const readTenantFile = (id: string) => deps.writer.readFile(tenantPath(id, "tenant.yaml"));

  return async (ctx) => {
    const flow = ctx.flow;
    if (!flow) throw new ProgramError("release.rollout needs a worker that runs child jobs");
    // A wave waiting for its approval looks again every few seconds: only a few keys until something changed.
    if (await stillAwaiting(ctx)) throw new RolloutPausedError("awaiting approval");
    try {
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
        await forgetPlans(ctx);
        if (typeof next.supersededBy === "string")
          await report(ctx, (s) => reporter.finished(s, { jobId: ctx.jobId, outcome: "superseded", summary: `handed over to ${String(next.supersededBy)}` }));
        else await report(ctx, (s) => reporter.finished(s, { jobId: ctx.jobId, outcome: "success", summary: `${ctx.data.version} rolled out` }));
        return next;
      }
    } catch (err) {
      // The end of the release (not a wait, not a try the worker repeats) is reported as such.
      if (err instanceof CancelledError) {
        await forgetPlans(ctx);
        await report(ctx, (s) => reporter.finished(s, { jobId: ctx.jobId, outcome: "cancelled", summary: err.message }));
      } else if (err instanceof StackrailError && fateOf(err) === "fail") {
        // A resume is a new rollout with plans of its own.
        await forgetPlans(ctx);
        await report(ctx, (s) => reporter.finished(s, { jobId: ctx.jobId, outcome: "failure", summary: err.message }));
      }
      throw err;
    }
  };

  /** The update plans of the rollout's plan steps (release-plan-store.ts) go with its end. */
  async function forgetPlans(ctx: JobContext<"release.rollout">): Promise<void> {
    await dropPlans(deps.blobs ?? blobStoreFor(deps.config.blobStore), ctx.jobId).catch((err: unknown) =>
      ctx.logger.warn({ err }, "could not delete the rollout's update plans"),
    );
  }

  /** Whether the rollout still waits on the same approval with nothing new to look at. */
  async function stillAwaiting(ctx: JobContext<"release.rollout">): Promise<boolean> {
    const waiting = await awaitingWave(deps.redis, prefix, ctx.jobId);
    if (!waiting) return false;
    const [approval, rejected, handover, cancelled, paused] = await Promise.all([
      deps.redis.hget(rolloutApprovalsKey(prefix, ctx.jobId), `w${waiting.wave}`),
      deps.redis.exists(rolloutRejectedKey(prefix, ctx.jobId)),
      deps.redis.exists(rolloutHandoverKey(prefix, ctx.jobId)),
      deps.redis.get(cancelKey(prefix, ctx.jobId)),
      deps.redis.exists(rolloutPauseKey(prefix, ctx.jobId)),
    ]);
    if (rejected > 0 || handover > 0 || cancelled === "1" || paused > 0 || ctx.signal.aborted) return false;
    return approval === null || (JSON.parse(approval) as { revision?: unknown }).revision !== waiting.revision;
  }

  /** A reporter call, only for releases from a commit; it never stops the release. */
  async function report(ctx: JobContext<"release.rollout">, call: (source: ReleaseSource) => Promise<void>): Promise<void> {
    const source = ctx.data.source;
    if (!source) return;
    await call(source).catch((err: unknown) => ctx.logger.warn({ err }, "release report failed"));
  }

  function waveReport(ctx: JobContext<"release.rollout">, wave: number, regions: readonly string[], tenants: number): WaveReport {
    return { jobId: ctx.jobId, wave, regions, environment: waveEnvironment(wave, regions), tenants };
  }

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

    let plan = await loadPlan(deps.redis, prefix, jobId);
    if (!plan) {
      const made = await makePlan(ctx, active, children);
      if (made === "look-again") return made;
      plan = made;
    }
    const approvals = await approvalsOf(deps.redis, prefix, jobId);

    for (const [i, regions] of waves.entries()) {
      const n = i + 1;
      const stored = await deps.redis.hgetall(rolloutWavesKey(prefix, jobId));
      let wavePlan: PlannedWave | undefined = plan.waves.find((w) => w.wave === n);
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
      const waveSteps = steps.filter((s) => s.wave === n);
      const prior = stored[`w${n}`];
      if (prior) {
        // This rollout committed the wave already: it is over, whatever other jobs did to its tenants since.
        let summary = JSON.parse(prior) as WaveSummary;
        const marker = stored[`g${n}`] ? (JSON.parse(stored[`g${n}`] ?? "{}") as GateMarker) : undefined;
        await releaseHolds([...new Set(waveSteps.map((s) => s.tenantId))], jobId);
        if (marker?.state === "pending") summary = await gateWave(ctx, summary, marker, done);
        done.push(summary);
        continue;
      }
      const pending = inWave.filter((t) => fileVersion(files.get(t.id) ?? null) !== version);
      const latest = new Map<string, Step>();
      for (const s of waveSteps) if ((latest.get(s.tenantId)?.round ?? 0) < s.round) latest.set(s.tenantId, s);
      const passed = pending.filter((t) => latest.get(t.id)?.outcome === "passed");
      const failed = pending.filter((t) => latest.get(t.id)?.outcome === "failed");
      const skipped = pending.filter((t) => latest.get(t.id)?.settled === true);
      const notStarted = pending.filter((t) => !passed.includes(t) && !failed.includes(t) && !skipped.includes(t));
      const stepTenants = [...new Set(waveSteps.map((s) => s.tenantId))];

      if (pending.length === skipped.length) {
        let summary: WaveSummary = {
          wave: n,
          regions,
          updated: [],
          failed: [],
          notStarted: [],
          changedMeanwhile: [],
          skipped: skipped.map((t) => ({ tenantId: t.id, reason: latest.get(t.id)?.reason ?? "skipped" })),
          commit: null,
          steps: waveSteps.map((s) => s.id),
        };
        await releaseHolds(stepTenants, jobId);
        // The wave was committed but the rollout stopped (a crash) before it recorded so: its gate runs now.
        const marker = stored[`g${n}`] ? (JSON.parse(stored[`g${n}`] ?? "{}") as GateMarker) : undefined;
        if (marker?.commit) summary = { ...summary, updated: [...marker.tenants], commit: marker.commit };
        if (marker?.state === "pending") summary = await gateWave(ctx, summary, marker, done);
        done.push(summary);
        continue;
      }

      const cancelled = ctx.signal.aborted || (await deps.redis.get(cancelKey(prefix, jobId))) === "1";
      const paused = (await deps.redis.get(rolloutPauseKey(prefix, jobId))) === "1";
      const handover = await deps.redis.get(rolloutHandoverKey(prefix, jobId));
      const stopped = failed.length >= deps.config.waveMaxFailures;

      // Steps that found another diff than the approved one: the wave's plan is revised and asks again.
      const changed = notStarted.filter((t) => {
        const s = latest.get(t.id);
        return s?.reason === "plan-changed" && !(wavePlan?.changes ?? []).some((c) => c.step === s.id);
      });
      if (changed.length > 0 && wavePlan) {
        wavePlan = await revisePlan(
          ctx,
          plan,
          wavePlan,
          changed.map((t) => latest.get(t.id)).filter((s) => s !== undefined),
        );
        plan = { ...plan, waves: plan.waves.map((w) => (w.wave === n ? (wavePlan as PlannedWave) : w)) };
      }

      if (waveSteps.length === 0) {
        // A wave boundary: nothing of this wave has started.
        if (cancelled) throw new CancelledError(`rollout of ${version} cancelled before wave ${n}; ${summaryLine(done)}`);
        if (handover) return handOver(ctx, done, handover, n);
        if (paused) {
          await announce(ctx, `paused before wave ${n}; resume with POST /v1/releases/${jobId}/resume`);
          throw new RolloutPausedError(`paused before wave ${n}`);
        }
      }
      if (!cancelled && !stopped && !paused && !handover && notStarted.length > 0 && wavePlan?.needsApproval) {
        await decide(ctx, wavePlan, approvals.get(n), regions, pending.length, done);
      }
      if (waveSteps.length === 0) {
        await announceResumed(ctx, n);
        await ctx.progress(
          `wave ${n}/${waves.length} (${regions.join(", ")}): ${pending.length} tenant(s) to bring to ${version}, at most ${deps.config.waveMaxParallel} at a time`,
        );
        await report(ctx, (s) => reporter.waveStarted(s, waveReport(ctx, n, regions, pending.length)));
      }

      if (!cancelled && !stopped && !paused && notStarted.length > 0) {
        if (waveSteps.length > 0) await announceResumed(ctx, n);
        const round = Math.max(0, ...waveSteps.map((s) => s.round)) + 1;
        await startRound(ctx, n, round, notStarted, version, wavePlan);
        await flow.waitForChildren();
        return "look-again";
      }
      if (paused && !cancelled && !stopped && notStarted.length > 0 && !handover) {
        // Steps that passed stay uncommitted (and their lanes held) until the wave goes on: one commit per wave.
        await announce(ctx, `paused in wave ${n} with ${notStarted.length} tenant(s) not started; resume with POST /v1/releases/${jobId}/resume`);
        throw new RolloutPausedError(`paused in wave ${n}`);
      }

      // The wave is over (every tenant done, or stopped): its one commit, then the records, then its gate.
      const complete = !cancelled && failed.length === 0 && notStarted.length === 0;
      let summary = await commitWave(
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
        complete,
      );
      await releaseHolds(stepTenants, jobId);

      if (cancelled) {
        done.push(summary);
        throw new CancelledError(`rollout of ${version} cancelled in wave ${n}; ${summaryLine(done)}`);
      }
      if (failed.length > 0) {
        done.push(summary);
        await report(ctx, (s) =>
          reporter.waveFinished(s, { ...waveReport(ctx, n, regions, pending.length), outcome: "failure", summary: `${failed.length} tenant(s) failed` }),
        );
        throw new ProgramError(
          `rollout of ${version} stopped in wave ${n} (${regions.join(", ")}): ${failed.length} tenant(s) failed: ${summary.failed
            .map((f) => `${f.tenantId} (${f.error})`)
            .join("; ")}; ${summaryLine(done)}; resume with POST /v1/releases/${jobId}/resume`,
        );
      }
      if (notStarted.length > 0 && handover) {
        done.push(summary);
        return handOver(ctx, done, handover, n);
      }
      const marker = await readMarker(ctx.jobId, n);
      if (marker?.state === "pending") summary = await gateWave(ctx, summary, marker, done);
      done.push(summary);
      await ctx.progress(`wave ${n} done: ${summary.updated.length} tenant(s) at ${version}, commit ${summary.commit ?? "(none)"}`);
    }
    await deps.tenants.setCurrentVersion(version);
    return { version, ...(ctx.data.resumes ? { resumes: ctx.data.resumes } : {}), plan: `/v1/releases/${jobId}/plan`, waves: done };
  }

  async function readMarker(jobId: string, wave: number): Promise<GateMarker | undefined> {
    const raw = await deps.redis.hget(rolloutWavesKey(prefix, jobId), `g${wave}`);
    return raw ? (JSON.parse(raw) as GateMarker) : undefined;
  }

  async function writeMarker(jobId: string, wave: number, marker: GateMarker): Promise<void> {
    const key = rolloutWavesKey(prefix, jobId);
    await deps.redis.multi().hset(key, `g${wave}`, JSON.stringify(marker)).expire(key, ROLLOUT_KEY_TTL_SECONDS).exec();
  }

  /**
   * The wave's health gate, after its commit, on the tenants the commit changed. A failed gate
   * stops the release: those tenants stay at the version in Git and in the API (they were
   * deployed), and a resume goes on with the tenants not at the version yet.
   */
  async function gateWave(ctx: JobContext<"release.rollout">, summary: WaveSummary, marker: GateMarker, done: readonly WaveSummary[]): Promise<WaveSummary> {
    const { version } = ctx.data;
    const n = summary.wave;
    const tenants = [];
    for (const id of marker.tenants) {
      const record = await deps.tenants.get(id);
      if (record && record.state === "active") tenants.push({ tenant: record, outputs: record.outputs });
    }
    await ctx.progress(`wave ${n}: health gate on ${tenants.length} tenant(s) at commit ${marker.commit ?? "(none)"}`);
    const gate = await deps.waveGate(
      { wave: n, revision: marker.commit ?? "", tenants },
      { signal: ctx.signal, onProgress: (line) => void ctx.progress(`wave ${n} gate: ${line}`) },
    );
    const gated: WaveSummary = { ...summary, gate };
    const key = rolloutWavesKey(prefix, ctx.jobId);
    await deps.redis
      .multi()
      .hset(key, `w${n}`, JSON.stringify(gated), `g${n}`, JSON.stringify({ ...marker, state: gate.passed ? "passed" : "failed" }))
      .expire(key, ROLLOUT_KEY_TTL_SECONDS)
      .exec();
    if (gate.note) await ctx.progress(`wave ${n} gate (${gate.source}): ${gate.note}`);
    const unhealthy = gate.tenants.filter((t) => !t.healthy);
    const line = `${gate.source}: ${gate.tenants.length - unhealthy.length}/${gate.tenants.length} healthy`;
    await report(ctx, (s) =>
      reporter.waveFinished(s, {
        ...waveReport(ctx, n, summary.regions, summary.updated.length),
        outcome: gate.passed ? "success" : "failure",
        summary: gate.passed ? line : `${line}; ${unhealthy.map((t) => `${t.tenantId}: ${t.detail}`).join("; ")}`,
      }),
    );
    if (!gate.passed) {
      throw new ProgramError(
        `rollout of ${version} stopped after wave ${n} (${summary.regions.join(", ")}): the health gate (${gate.source}) failed at commit ${marker.commit ?? "(none)"}: ${unhealthy
          .map((t) => `${t.tenantId} (${t.detail})`)
          .join("; ")}; ${summaryLine([...done, gated])} (deployed, so at ${version} in Git and the API); resume with POST /v1/releases/${ctx.jobId}/resume`,
      );
    }
    await ctx.progress(`wave ${n} gate passed (${line})`);
    return gated;
  }

  /**
   * The plan: the tenants of every wave not at the version, their manifest diff, and their stack's
   * preview at the version (one plan step per tenant, in its lane). Returns "look-again" while the
   * plan steps run.
   */
  async function makePlan(
    ctx: JobContext<"release.rollout">,
    active: readonly TenantRecord[],
    children: { values: ReadonlyMap<string, unknown>; failures: ReadonlyMap<string, string> },
  ): Promise<ReleasePlan | "look-again"> {
    const { version } = ctx.data;
    const flow = ctx.flow;
    if (!flow) throw new ProgramError("release.rollout needs a worker that runs child jobs");
    const previews = new Map<string, TenantInfraPlan | "skipped">();
    for (const [id, value] of children.values) {
      const tenantId = parsePlanStepJobId(id);
      if (!tenantId || !isStepResult(value)) continue;
      if (value.outcome === "planned") previews.set(tenantId, value.infra);
      else previews.set(tenantId, "skipped");
    }
    for (const [id, error] of children.failures) {
      const tenantId = parsePlanStepJobId(id);
      if (tenantId) previews.set(tenantId, { diff: [], violations: [], digest: planDigest([]), error: error.slice(0, 500) });
    }

    const waves = deps.config.rolloutWaves.map((regions, i) => ({ wave: i + 1, regions, tenants: active.filter((t) => regions.includes(t.region)) }));
    const files = await readAll(
      waves.flatMap((w) => w.tenants.map((t) => t.id)),
      readTenantFile,
    );
    const pending = waves.map((w) => ({ ...w, tenants: w.tenants.filter((t) => fileVersion(files.get(t.id) ?? null) !== version) }));
    const missing = pending.flatMap((w) => w.tenants.map((t) => ({ wave: w.wave, tenant: t }))).filter((p) => !previews.has(p.tenant.id));
    if (missing.length > 0) {
      const steps = deps.steps();
      for (const { wave, tenant } of missing) {
        const data: StepData = {
          kind: "release.tenant-step",
          trigger: { type: "job", parentJobId: ctx.jobId },
          requestedAt: new Date().toISOString(),
          rolloutJobId: ctx.jobId,
          wave,
          round: 1,
          tenantId: tenant.id,
          version,
          maxFailures: deps.config.waveMaxFailures,
          mode: "plan",
        };
        await steps.enqueueChild(data, { jobId: planStepJobId(ctx.jobId, tenant.id), parent: flow.parent });
      }
      await ctx.progress(`plan: previewing ${missing.length} tenant stack(s) at ${version}`);
      await flow.waitForChildren();
      return "look-again";
    }

    const settings = gitopsSettings(deps.config);
    const planned: PlannedWave[] = [];
    for (const w of pending) {
      const tenants: PlannedTenantEntry[] = [];
      for (const t of w.tenants) {
        const infra = previews.get(t.id);
        if (infra === "skipped" || infra === undefined) continue;
        const rendered = renderTenantFiles(
          { id: t.id, region: t.region, tier: t.tier, version, ...(t.protected ? { protected: true } : {}) },
          infraFromOutputs(t.outputs, `tenant-${t.id}`),
          settings,
        );
        const diffs: string[] = [];
        for (const [path, text] of Object.entries(rendered)) diffs.push(unifiedDiff(path, await deps.writer.readFile(path), text));
        tenants.push({
          tenantId: t.id,
          region: t.region,
          tier: t.tier,
          from: fileVersion(files.get(t.id) ?? null),
          to: version,
          manifestDiff: diffs.join(""),
          infra,
        });
      }
      planned.push({
        wave: w.wave,
        regions: w.regions,
        needsApproval: tenants.length > 0 && deps.config.approvalWaves.includes(w.wave),
        revision: 1,
        tenants,
        changes: [],
      });
    }
    const plan: ReleasePlan = {
      jobId: ctx.jobId,
      version,
      createdAt: new Date().toISOString(),
      ...(ctx.data.source ? { source: ctx.data.source } : {}),
      waves: planned,
    };
    await savePlan(deps.redis, prefix, plan);
    const all = planned.flatMap((w) => w.tenants);
    await ctx.progress(
      `plan: ${all.length} tenant(s) to bring to ${version} in ${planned.filter((w) => w.tenants.length > 0).length} wave(s); ${all.filter((t) => t.infra.diff.length > 0).length} with infrastructure changes; waves waiting for approval: ${
        planned
          .filter((w) => w.needsApproval)
          .map((w) => w.wave)
          .join(", ") || "none"
      }; GET /v1/releases/${ctx.jobId}/plan`,
    );
    await report(ctx, (s) => reporter.planned(s, planReport(ctx, plan)));
    const broken = all.filter((t) => t.infra.error !== undefined);
    if (broken.length > 0) {
      throw new ProgramError(
        `rollout of ${version} not started: the plan's preview failed for ${broken.map((t) => `${t.tenantId} (${t.infra.error ?? ""})`).join("; ")}; nothing was applied`,
      );
    }
    return plan;
  }

  function planReport(ctx: JobContext<"release.rollout">, plan: ReleasePlan): PlanReport {
    return {
      jobId: ctx.jobId,
      version: plan.version,
      waves: plan.waves.map((w) => ({
        wave: w.wave,
        regions: w.regions,
        needsApproval: w.needsApproval,
        tenants: w.tenants.map((t) => ({ tenantId: t.tenantId, from: t.from, to: t.to, infraChanges: t.infra.diff.length })),
      })),
      violations: plan.waves.flatMap((w) => w.tenants.flatMap((t) => t.infra.violations.map((v) => ({ tenantId: t.tenantId, ...v })))),
      planUrl: `${deps.config.publicUrl}/v1/releases/${ctx.jobId}/plan`,
    };
  }

  /** Records what the apply-time previews found instead of the approved diff: a new revision of the wave, to approve again. */
  async function revisePlan(ctx: JobContext<"release.rollout">, plan: ReleasePlan, wave: PlannedWave, changedSteps: readonly Step[]): Promise<PlannedWave> {
    const changes = [...wave.changes];
    const tenants = wave.tenants.map((t) => {
      const step = changedSteps.find((s) => s.tenantId === t.tenantId);
      if (!step?.found) return t;
      changes.push({ ...planChange(t.tenantId, t.infra.diff, step.found), step: step.id });
      return { ...t, infra: { ...t.infra, diff: step.found, digest: planDigest(step.found) } };
    });
    const revised: PlannedWave = { ...wave, needsApproval: true, revision: wave.revision + 1, tenants, changes };
    await savePlan(deps.redis, prefix, { ...plan, waves: plan.waves.map((w) => (w.wave === wave.wave ? revised : w)) });
    const named = changes.slice(wave.changes.length).map((c) => `${c.tenantId} (+${c.added.join(", ") || "nothing"}; -${c.removed.join(", ") || "nothing"})`);
    await ctx.progress(
      `wave ${wave.wave}: the diff changed since the approval: ${named.join("; ")}; the wave asks for approval again (revision ${revised.revision})`,
    );
    return revised;
  }

  /**
   * An approval wave goes on only once approved at its current revision; a rejection stops the
   * release. Otherwise the wave waits, visibly (progress, GitHub), looking again every few seconds.
   */
  async function decide(
    ctx: JobContext<"release.rollout">,
    wave: PlannedWave,
    approval: { by: string; via: string; revision: number; at: string } | undefined,
    regions: readonly string[],
    tenants: number,
    done: readonly WaveSummary[],
  ): Promise<void> {
    const rejection = await rejectionOf(deps.redis, prefix, ctx.jobId);
    if (rejection) {
      await clearAwaiting(deps.redis, prefix, ctx.jobId);
      throw new CancelledError(
        `rollout of ${ctx.data.version} rejected at wave ${wave.wave} by ${rejection.by} (${rejection.via}${rejection.pr ? ` on ${rejection.pr}` : ""})${
          rejection.reason ? `: ${rejection.reason}` : ""
        }; ${summaryLine(done)}`,
      );
    }
    if (approval && approval.revision === wave.revision) {
      if (await clearAwaiting(deps.redis, prefix, ctx.jobId)) {
        await ctx.progress(`wave ${wave.wave} approved by ${approval.by} (${approval.via}) at ${approval.at}, plan revision ${approval.revision}`);
      }
      return;
    }
    await markAwaiting(deps.redis, prefix, ctx.jobId, wave.wave, wave.revision);
    const line = `awaiting-approval: wave ${wave.wave} (${regions.join(", ")}), ${tenants} tenant(s), plan revision ${wave.revision}; approve with POST /v1/releases/${ctx.jobId}/approve or /stackrail approve`;
    if (await announce(ctx, line)) await report(ctx, (s) => reporter.waveAwaitingApproval(s, waveReport(ctx, wave.wave, regions, tenants)));
    throw new RolloutPausedError(`awaiting approval of wave ${wave.wave}`);
  }

  function stepsOf(children: { values: ReadonlyMap<string, unknown>; failures: ReadonlyMap<string, string> }): Step[] {
    const out: Step[] = [];
    for (const [id, value] of children.values) {
      const parsed = parseStepJobId(id);
      if (!parsed) continue;
      if (isStepResult(value) && value.outcome === "passed") out.push({ id, ...parsed, outcome: "passed", result: value });
      else if (isStepResult(value) && value.outcome === "skipped")
        out.push({
          id,
          ...parsed,
          outcome: "skipped",
          reason: value.reason,
          settled: SETTLED_SKIPS.has(value.reason),
          ...(value.found ? { found: value.found } : {}),
        });
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

  async function startRound(
    ctx: JobContext<"release.rollout">,
    wave: number,
    round: number,
    tenants: readonly TenantRecord[],
    version: string,
    plan: PlannedWave | undefined,
  ): Promise<void> {
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
        mode: "apply",
        ...approvedDigest(plan, t.id),
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
    complete: boolean,
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
    // Before the commit: a crash after it still finds that the wave's gate has to run.
    const marker: GateMarker = { state: complete && included.length > 0 ? "pending" : "skipped", tenants: included.map((p) => p.tenantId), commit: null };
    await writeMarker(ctx.jobId, wave, marker);
    if (included.length > 0) {
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        message: commitMessage({ jobId: ctx.jobId, kind: "rollout", subject: `wave-${wave}`, trigger, summary: `${version} to ${regions.join(",")}` }),
        files,
        subject: `release-wave-${wave}`,
      });
      sha = commit.sha;
      await writeMarker(ctx.jobId, wave, { ...marker, commit: sha });
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

  /** One progress line per wait (not one per look); true when this call wrote it. */
  async function announce(ctx: JobContext<"release.rollout">, line: string): Promise<boolean> {
    const key = rolloutAnnouncedKey(prefix, ctx.jobId);
    if ((await deps.redis.set(key, line, "EX", ROLLOUT_KEY_TTL_SECONDS, "NX")) !== "OK") return false;
    await ctx.progress(line);
    return true;
  }

  async function announceResumed(ctx: JobContext<"release.rollout">, wave: number): Promise<void> {
    if ((await deps.redis.del(rolloutAnnouncedKey(prefix, ctx.jobId))) > 0) await ctx.progress(`resumed in wave ${wave}`);
  }
}

/** The digest a step of an approval wave applies, from the approved plan. */
function approvedDigest(plan: PlannedWave | undefined, tenantId: string): { approvedDigest?: string } {
  if (!plan?.needsApproval) return {};
  const digest = plan.tenants.find((t) => t.tenantId === tenantId)?.infra.digest;
  return digest ? { approvedDigest: digest } : {};
}

function summaryLine(done: readonly WaveSummary[]): string {
  const updated = done.flatMap((w) => w.updated.map((id) => `${id} (wave ${w.wave})`));
  const left = done.flatMap((w) => [
    ...w.changedMeanwhile.map((id) => `${id} (wave ${w.wave}: changed by another job)`),
    ...w.skipped.map((s) => `${s.tenantId} (wave ${w.wave}: ${s.reason})`),
  ]);
  return `${updated.length > 0 ? `brought to the version and committed: ${updated.join(", ")}` : "no tenant was changed"}${
    left.length > 0 ? `; left alone: ${left.join(", ")}` : ""
  }`;
}
