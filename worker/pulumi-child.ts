// One Pulumi operation in its own process (forked by worker/pulumi-runner.ts with the project's
// Node). It builds the inline program, drives the engine through the Automation API and streams
// engine events back as progress lines. It never sends a secret value: stack outputs marked secret
// are replaced before they leave, and the engine itself masks secrets in events.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LocalWorkspace, PulumiCommand, type EngineEvent, type OutputMap, type Stack, type UpResult } from "@pulumi/pulumi/automation/index.js";
import { ProgramError, ValidationError } from "../core/errors.ts";
import { killTree } from "./process-tree.ts";
import { repairFileCheckpoint } from "./checkpoint-repair.ts";
import { classifyEngineFailure } from "./engine-failure.ts";
import { POLICY_PACK_ENV, programFor } from "../programs/index.ts";
import { POLICY_ATTACHMENTS_ROOT_ENV } from "../programs/policy/location.ts";
import { planDigest } from "../jobs/plan-types.ts";
import {
  PARENT_SILENT_MS,
  SECRET_PLACEHOLDER,
  type ChildFailure,
  type ChildMessage,
  type ChildSettings,
  type DriftedResource,
  type EngineOutputMessage,
  type OperationSummary,
  type ParentMessage,
  type PolicyViolation,
  type ResourceDiff,
  type StackOperationRequest,
} from "./pulumi-protocol.ts";

// Everything this process and the engine, plugins and language host it starts write (the file
// backend's state and its backups, workspaces, the engine's home and logs, tenant directories)
// is for this user only (issue 11, finding 12): 0700 directories, 0600 files.
process.umask(0o077);

const send = (message: ChildMessage | EngineOutputMessage): void => {
  // After the parent is gone there is nobody to tell; a send on a closed channel would throw.
  if (process.connected) process.send?.(message);
};

const abort = new AbortController();

function describeEvent(event: EngineEvent, violations: string[]): ChildMessage | undefined {
  if (event.resourcePreEvent) {
    const m = event.resourcePreEvent.metadata;
    if (m.op === "same" || m.type === "pulumi:pulumi:Stack") return undefined;
    return { type: "progress", line: `${m.op} ${m.type} ${m.urn.split("::").pop() ?? ""}`, resourceChange: { op: m.op, urn: m.urn } };
  }
  if (event.resOutputsEvent) {
    const m = event.resOutputsEvent.metadata;
    if (m.op === "same" || m.type === "pulumi:pulumi:Stack") return undefined;
    return { type: "progress", line: `done ${m.op} ${m.type} ${m.urn.split("::").pop() ?? ""}`, applied: { op: m.op, urn: m.urn } };
  }
  if (event.resOpFailedEvent) {
    const m = event.resOpFailedEvent.metadata;
    return { type: "progress", line: `failed ${m.op} ${m.type} ${m.urn.split("::").pop() ?? ""}` };
  }
  if (event.policyEvent) {
    const p = event.policyEvent;
    const line = `policy ${p.enforcementLevel} ${p.policyPackName}/${p.policyName}: ${p.message.trim()}`;
    if (p.enforcementLevel === "mandatory") violations.push(line);
    return { type: "progress", line };
  }
  if (event.diagnosticEvent && (event.diagnosticEvent.severity === "error" || event.diagnosticEvent.severity === "warning")) {
    return { type: "progress", line: `${event.diagnosticEvent.severity}: ${event.diagnosticEvent.message.trim()}` };
  }
  if (event.summaryEvent) {
    const changes = Object.entries(event.summaryEvent.resourceChanges)
      .map(([op, n]) => `${op}=${n}`)
      .join(" ");
    return { type: "progress", line: `summary ${changes} (${event.summaryEvent.durationSeconds}s)` };
  }
  return undefined;
}

/**
 * A refresh preview's step for one resource: drift when the refresh would change it (`update`) or
 * drop it from the state (`delete`). The engine announces every resource as `refresh` and reports
 * the outcome in the step's outputs event; older engines put the outcome in the first event.
 */
function driftOf(event: EngineEvent): DriftedResource | undefined {
  const m = event.resOutputsEvent?.metadata ?? event.resourcePreEvent?.metadata;
  if (!m || m.type === "pulumi:pulumi:Stack" || m.type.startsWith("pulumi:providers:")) return undefined;
  if (m.op === "same" || m.op === "read" || (m.op === "refresh" && (m.diffs ?? []).length === 0)) return undefined;
  // Property names only (the engine's own diff), never values: a secret stays a secret.
  // The engine masks secret values in events, so a changed secret shows no difference here.
  const before = m.old?.outputs ?? {};
  const after = m.new?.outputs ?? {};
  const changed =
    m.op === "delete"
      ? []
      : [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  const properties = [...new Set([...(m.diffs ?? []), ...Object.keys(m.detailedDiff ?? {}), ...changed].map((p) => p.split(/[.[]/)[0] ?? p))]
    .filter((p) => p !== "__provider")
    .sort();
  return { urn: m.urn, type: m.type, op: m.op === "refresh" ? "update" : m.op, properties };
}

/** Steps of a replacement, reported as one `replace` of the resource. */
const REPLACEMENT_STEPS = new Set(["replace", "create-replacement", "delete-replaced"]);

/** Top-level property names of a step: the engine's diff, else the inputs that differ (names only). */
function changedProperties(m: NonNullable<EngineEvent["resourcePreEvent"]>["metadata"]): string[] {
  const named = [...(m.diffs ?? []), ...Object.keys(m.detailedDiff ?? {})];
  if (named.length === 0 && m.old && m.new) {
    // Secret values arrive masked: a changed secret is named by the engine's diff, not here.
    const before = m.old.inputs ?? {};
    const after = m.new.inputs ?? {};
    named.push(...[...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])));
  }
  return [...new Set(named.map((p) => p.split(/[.[]/)[0] ?? p))].filter((p) => p !== "" && p !== "__provider").sort();
}

/**
 * The plan of one preview, from its engine events: each resource's step with the names of the
 * properties that change (never values), and every policy finding. The stack itself and provider
 * resources are bookkeeping, not part of what a reader reviews.
 */
class PlanCapture {
  readonly #steps = new Map<string, ResourceDiff>();
  readonly #seenFindings = new Set<string>();
  readonly violations: PolicyViolation[] = [];

  observe(event: EngineEvent): void {
    if (event.resourcePreEvent) {
      const m = event.resourcePreEvent.metadata;
      if (m.op === "same" || m.op === "read" || m.op === "refresh" || m.type === "pulumi:pulumi:Stack" || m.type.startsWith("pulumi:providers:")) return;
      const op: string = REPLACEMENT_STEPS.has(m.op) ? "replace" : m.op;
      const properties = op === "create" || op === "delete" ? [] : changedProperties(m);
      const seen = this.#steps.get(m.urn);
      const merged = seen ? [...new Set([...seen.properties, ...properties])].sort() : properties;
      this.#steps.set(m.urn, { urn: m.urn, type: m.type, op: seen?.op === "replace" ? "replace" : op, properties: merged });
    }
  }

  /** Findings of every phase (an `up` re-checks what a preview saw as unknown), each once. */
  observePolicy(event: EngineEvent): void {
    if (event.policyEvent) {
      const p = event.policyEvent;
      const message = p.message.trim();
      const key = JSON.stringify([p.policyPackName, p.policyName, p.resourceUrn ?? "", message]);
      if (this.#seenFindings.has(key)) return;
      this.#seenFindings.add(key);
      this.violations.push({
        pack: p.policyPackName,
        policy: p.policyName,
        // The engine calls an advisory finding a warning.
        level: p.enforcementLevel === "warning" ? "advisory" : p.enforcementLevel,
        message: message.length > 1000 ? `${message.slice(0, 1000)}…` : message,
        ...(p.resourceUrn ? { urn: p.resourceUrn } : {}),
      });
    }
  }

  get diff(): ResourceDiff[] {
    return [...this.#steps.values()];
  }
}

function maskOutputs(outputs: OutputMap): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.secret ? SECRET_PLACEHOLDER : v.value]));
}

async function openStack(request: StackOperationRequest, settings: ChildSettings): Promise<Stack> {
  mkdirSync(settings.workDir, { recursive: true });
  mkdirSync(settings.pulumiHome, { recursive: true });
  // The file backend needs its folder; other backends (s3://, https://) manage their own.
  if (settings.backendUrl.startsWith("file://")) mkdirSync(fileURLToPath(settings.backendUrl), { recursive: true });
  const pulumiCommand = await PulumiCommand.get({ root: settings.engineDir, version: undefined });
  const program = programFor(request.program, request.args, {
    target: settings.target,
    dataDir: settings.dataDir,
    localMysqlUrl: settings.localMysqlUrl,
    localRedisUrl: settings.localRedisUrl,
  });
  return LocalWorkspace.createOrSelectStack(
    { stackName: request.stack, projectName: request.projectName, program },
    {
      workDir: settings.workDir,
      pulumiHome: settings.pulumiHome,
      pulumiCommand,
      projectSettings: { name: request.projectName, runtime: "nodejs", backend: { url: settings.backendUrl } },
      envVars: {
        PULUMI_BACKEND_URL: settings.backendUrl,
        PULUMI_HOME: settings.pulumiHome,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
        // The engine's policy analyzer would otherwise hand .ts policy files to an old ts-node.
        ...(request.policyPacks.length > 0 ? POLICY_PACK_ENV : {}),
        // Where tenant folders may be: the analyzer inherits the engine's environment.
        [POLICY_ATTACHMENTS_ROOT_ENV]: path.resolve(settings.dataDir, "attachments"),
        // Update plans (`--save-plan`, `--plan`) are an experimental feature of the engine.
        ...(request.savePlan !== undefined || request.plan !== undefined ? { PULUMI_EXPERIMENTAL: "true" } : {}),
        // The engine finds the dynamic-provider and policy shims next to the CLI.
        PATH: `${path.join(settings.engineDir, "bin")}:${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`,
      },
    },
  );
}

// A stack's lock is looked at by the worker before this process is asked to run anything
// (worker/stack-guard.ts): a stale one is cleared there, a live one never reaches the engine.

/** A killed engine's half-written checkpoint files are repaired before the engine reads them. */
function repairCheckpoint(request: StackOperationRequest, settings: ChildSettings): void {
  if (!settings.backendUrl.startsWith("file://")) return;
  for (const line of repairFileCheckpoint(fileURLToPath(settings.backendUrl), request.projectName, request.stack)) send({ type: "progress", line });
}

/** How many operations the stored checkpoint has pending. */
async function pendingOperations(stack: Stack, request: StackOperationRequest, settings: ChildSettings): Promise<number> {
  // On the file backend the checkpoint is read directly: a `stack export` costs a CLI run per job.
  if (settings.backendUrl.startsWith("file://")) {
    const file = path.join(fileURLToPath(settings.backendUrl), ".pulumi", "stacks", request.projectName, `${request.stack}.json`);
    if (!existsSync(file)) return 0;
    try {
      const checkpoint = JSON.parse(readFileSync(file, "utf8")) as { checkpoint?: { latest?: { pending_operations?: unknown[] } } };
      return checkpoint.checkpoint?.latest?.pending_operations?.length ?? 0;
    } catch {
      // unreadable here: ask the engine below
    }
  }
  const state = (await stack.exportStack()) as { deployment?: { pending_operations?: unknown[] } };
  return state.deployment?.pending_operations?.length ?? 0;
}

/** Operations an interrupted update left pending are resolved by a refresh before anything else. */
async function resolvePendingOperations(
  stack: Stack,
  request: StackOperationRequest,
  settings: ChildSettings,
  common: { onEvent: (e: EngineEvent) => void; onOutput: (text: string) => void; onError: (text: string) => void; signal: AbortSignal },
): Promise<void> {
  const pending = await pendingOperations(stack, request, settings);
  if (pending === 0) return;
  send({ type: "progress", line: `resolving ${pending} operation(s) left pending by an interrupted update (refresh)` });
  await stack.refresh({ ...common, clearPendingCreates: true, color: "never" });
}

async function run(request: StackOperationRequest, settings: ChildSettings): Promise<OperationSummary> {
  const started = Date.now();
  repairCheckpoint(request, settings);
  const stack = await openStack(request, settings);
  const violations: string[] = [];
  let plan = new PlanCapture();
  let engineRuns = 0;
  let planUse: OperationSummary["planUse"];
  let planFallback: OperationSummary["planFallback"];
  /** Only the plan's own preview is captured (or, without packs, the `up` itself). */
  let capturing = request.operation === "preview" || request.operation === "up";
  /**
   * While the engine only plans (a `preview`, or the policy check before an `up`), its resource
   * steps are said as `plan: create …`: a job's progress must not read as if resources were being
   * created when nothing is applied yet (operators, and whoever waits for the apply to start).
   */
  let planning = request.operation === "preview";
  const onEvent = (event: EngineEvent): void => {
    if (capturing) plan.observe(event);
    plan.observePolicy(event);
    const message = describeEvent(event, violations);
    if (!message) return;
    if (planning && message.type === "progress" && (message.resourceChange || message.applied)) {
      send({ type: "progress", line: `plan: ${message.line}` });
      return;
    }
    send(message);
  };
  // The engine's own output, as the CLI prints it: the job's full log (jobs/job-logs.ts).
  const onOutput = (text: string): void => send({ type: "output", text });
  const common = { onEvent, onOutput, onError: onOutput, signal: abort.signal, color: "never" as const };
  try {
    // A drift check writes nothing, not even the resolution of pending operations.
    if (request.operation !== "preview" && request.operation !== "drift") {
      const wasCapturing = capturing;
      capturing = false;
      await resolvePendingOperations(stack, request, settings, common);
      capturing = wasCapturing;
    }
    let result: string;
    let changes: Record<string, number> = {};
    let drifted: DriftedResource[] | undefined;
    let upOutputs: OutputMap | undefined;
    switch (request.operation) {
      case "up": {
        /** Today's path: the policy-checked preview (compared with the approved digest), then the `up`. */
        const checkedUp = async (): Promise<UpResult | "plan-changed"> => {
          if (request.policyPacks.length > 0 || request.expectedDigest !== undefined) {
            // `up` does not preview first: a violation found mid-update could come after earlier
            // resources were applied. A policy-checked preview first means "nothing applied".
            send({ type: "progress", line: "policy check (preview with the mandatory policy packs)" });
            const checkStarted = Date.now();
            planning = true;
            engineRuns += 1;
            await stack.preview({ ...common, policyPacks: [...request.policyPacks] });
            planning = false;
            capturing = false;
            send({ type: "progress", line: `policy check passed (${plan.diff.length} planned change(s), ${Date.now() - checkStarted} ms)` });
            // An approved diff is applied only if this very preview finds it: no second preview.
            if (request.expectedDigest !== undefined && planDigest(plan.diff) !== request.expectedDigest) {
              send({ type: "progress", line: "the planned diff differs from the approved one: nothing applied" });
              return "plan-changed";
            }
          }
          engineRuns += 1;
          return stack.up({ ...common, policyPacks: [...request.policyPacks] });
        };
        let r: UpResult | "plan-changed";
        if (request.plan === undefined) r = await checkedUp();
        else {
          // Every step the plan allows was policy-checked when it was saved; the engine refuses
          // any other step, so the separate policy preview is not needed.
          send({ type: "progress", line: "up constrained by the saved update plan (policy-checked when it was saved)" });
          try {
            engineRuns += 1;
            r = await stack.up({ ...common, policyPacks: [...request.policyPacks], plan: request.plan });
            planUse = "constrained";
          } catch (err) {
            const failure = classify(err, violations, plan.violations).failure;
            // A violation, a cancel or a held lock ends the operation as it would without a plan.
            if (failure.kind !== "program" && failure.kind !== "internal") throw err;
            send({ type: "progress", line: `the saved plan could not be used (${failure.kind} failure); falling back to the policy check and an up` });
            planUse = "fallback";
            planFallback = failure.kind;
            plan = new PlanCapture();
            capturing = true;
            r = await checkedUp();
          }
        }
        if (r === "plan-changed") {
          const summary: OperationSummary = {
            operation: "up",
            result: "plan-changed",
            resourceChanges: {},
            diff: plan.diff,
            violations: plan.violations,
            outputs: {},
            durationMs: Date.now() - started,
            engineRuns,
            ...(planUse ? { planUse } : {}),
            ...(planFallback ? { planFallback } : {}),
          };
          return summary;
        }
        upOutputs = r.outputs;
        result = r.summary.result;
        changes = r.summary.resourceChanges ?? {};
        break;
      }
      case "preview": {
        engineRuns += 1;
        const r = await stack.preview({ ...common, policyPacks: [...request.policyPacks], ...(request.savePlan ? { plan: request.savePlan } : {}) });
        result = "succeeded";
        changes = r.changeSummary;
        break;
      }
      case "refresh": {
        engineRuns += 1;
        const r = await stack.refresh({ ...common, clearPendingCreates: request.clearPendingCreates ?? false });
        result = r.summary.result;
        changes = r.summary.resourceChanges ?? {};
        break;
      }
      case "drift": {
        const found = new Map<string, DriftedResource>();
        engineRuns += 1;
        const r = await stack.previewRefresh({
          ...common,
          onEvent: (event: EngineEvent) => {
            onEvent(event);
            const d = driftOf(event);
            if (d) found.set(d.urn, d);
          },
        });
        result = "succeeded";
        changes = r.changeSummary;
        drifted = [...found.values()];
        break;
      }
      case "destroy": {
        engineRuns += 1;
        const r = await stack.destroy(common);
        result = r.summary.result;
        changes = r.summary.resourceChanges ?? {};
        break;
      }
    }
    // `up` returns the outputs; only the other operations ask the engine for them again.
    const outputs = request.operation === "destroy" ? {} : maskOutputs(upOutputs ?? (await stack.outputs()));
    const planned = request.operation === "preview" || request.operation === "up";
    return {
      operation: request.operation,
      result,
      resourceChanges: changes,
      ...(planned ? { diff: plan.diff, violations: plan.violations } : {}),
      ...(drifted ? { drifted } : {}),
      outputs,
      durationMs: Date.now() - started,
      engineRuns,
      ...(planUse ? { planUse } : {}),
      ...(planFallback ? { planFallback } : {}),
    };
  } catch (err) {
    throw classify(err, violations, plan.violations);
  }
}

class ChildFailureError extends Error {
  readonly failure: ChildFailure;
  constructor(failure: ChildFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

/** What ended the operation, and so the job's fate (engine-failure.ts: cancelled, policy, concurrent, transient, program). */
function classify(err: unknown, violations: string[], findings: readonly PolicyViolation[]): ChildFailureError {
  return new ChildFailureError(classifyEngineFailure(err, { aborted: abort.signal.aborted, violations, findings }));
}

let started = false;
let orphaned = false;
const parentPid = process.ppid;
/** After its parent died, how long an operation may take to stop the engine's way before it is killed. */
const ORPHAN_GRACE_MS = 5_000;

/** Ends this process and whatever it started (the CLI, plugins, the language host). */
function exitWithTree(code: number): never {
  killTree(process.pid, "SIGKILL", { includeRoot: false });
  process.exit(code);
}

/**
 * The worker that owns this operation is gone (killed, crashed): nobody will read the result, and
 * an operation left running holds the stack's lock and grows without bound. An idle spare just
 * exits; a running operation is cancelled the engine's way (it stops between steps and releases
 * the lock), and the process exits when that finishes or after ORPHAN_GRACE_MS at the latest. What
 * the engine had not finished is recovered by the next worker (stale lock, pending operations).
 */
function parentGone(): void {
  if (orphaned) return;
  orphaned = true;
  if (!started) process.exit(0);
  abort.abort();
  setTimeout(() => exitWithTree(1), ORPHAN_GRACE_MS);
}

process.on("disconnect", parentGone);
// The channel's close is not always seen: the parent pid changes when the parent dies, whatever
// the channel says. A stopped or frozen parent keeps both its pid and the channel, so a running
// operation also expects to hear from it every few seconds (PARENT_PING_MS) and treats a long
// silence as its death: its lock is gone before the worker's heartbeat runs out and another
// worker may clear it (worker/worker-identity.ts).
let lastHeard = Date.now();
let lastTick = Date.now();
setInterval(() => {
  const now = Date.now();
  // This process itself was stalled (a loaded machine): what it did not hear meanwhile is no news.
  if (now - lastTick > 3_000) lastHeard = now;
  lastTick = now;
  if (process.ppid !== parentPid || (started && now - lastHeard > PARENT_SILENT_MS)) parentGone();
}, 1_000).unref();

const finished = (): void => {
  if (orphaned) exitWithTree(1);
  if (process.connected) process.disconnect();
};

process.on("message", (raw: ParentMessage) => {
  lastHeard = Date.now();
  if (raw.type === "ping") return;
  if (raw.type === "start") started = true;
  if (raw.type === "cancel") {
    // The Automation API turns this into SIGINT for the CLI: the engine's own graceful cancellation.
    abort.abort();
    return;
  }
  run(raw.request, raw.settings).then(
    (summary) => {
      send({ type: "done", summary });
      finished();
    },
    (err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      // An unknown program or invalid program arguments will not get better on a retry.
      const failure =
        err instanceof ChildFailureError
          ? err.failure
          : { kind: err instanceof ValidationError || err instanceof ProgramError ? ("program" as const) : ("internal" as const), message };
      send({ type: "failed", failure });
      finished();
    },
  );
});
