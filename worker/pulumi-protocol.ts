// Messages between the worker and the child process that runs one Pulumi operation.
// The child exists because the Node.js runtime of an inline Pulumi program is process-global:
// two programs in one process would share (and corrupt) each other's state.

import type { PolicyViolation, ResourceDiff } from "../jobs/plan-types.ts";

// The plan's vocabulary is part of the job model (rollout plans and job records keep it): it lives in jobs/.
export type { PolicyViolation, ResourceDiff };

/** `drift`: a refresh preview (`pulumi refresh --preview-only`): what a refresh would change, nothing written. */
export type StackOperation = "up" | "destroy" | "preview" | "refresh" | "drift";

export interface StackOperationRequest {
  readonly stack: string;
  readonly projectName: string;
  readonly operation: StackOperation;
  /** Name of a program in programs/index.ts and its validated arguments. */
  readonly program: string;
  readonly args: Record<string, string | number | boolean>;
  /** Mandatory policy packs (absolute paths), enforced before anything is applied. */
  readonly policyPacks: readonly string[];
  /** Clear operations left pending by a process that died mid-update (refresh only). */
  readonly clearPendingCreates?: boolean;
  /**
   * `preview` only: a file (on this host) where the engine saves the preview's update plan. The
   * plan holds the stack's secrets encrypted with its secrets provider, as the checkpoint does.
   */
  readonly savePlan?: string;
  /**
   * `up` only: a saved update plan (a file on this host) that constrains the update. Its preview
   * was policy-checked, so the `up` runs without the separate policy preview (the packs still go
   * with the `up`). If the constrained `up` fails other than by a policy violation or a cancel
   * (the stack changed since the plan, and the engine refuses it), the child falls back once to
   * the policy-checked preview and an unconstrained `up`, and says so (`planFallback`).
   */
  readonly plan?: string;
  /**
   * `up` only: the planDigest (jobs/plan-types.ts) the policy-checked preview before the `up` must
   * find. Another diff applies nothing: the operation returns `result: "plan-changed"` with the
   * diff found. A constrained `up` (`plan`) needs no comparison: the engine applies only its plan.
   */
  readonly expectedDigest?: string;
}

export interface ChildSettings {
  readonly workDir: string;
  readonly pulumiHome: string;
  readonly backendUrl: string;
  readonly engineDir: string;
  readonly engineVersion: string;
  readonly target: "local" | "aws";
  readonly dataDir: string;
  readonly localMysqlUrl: string;
  readonly localRedisUrl: string;
}

/** A resource whose live state differs from the stack's state: names of properties only, never values. */
export interface DriftedResource {
  readonly urn: string;
  readonly type: string;
  /** What a refresh would do to it in the state: `update` (changed outside) or `delete` (gone). */
  readonly op: string;
  readonly properties: readonly string[];
}

export interface OperationSummary {
  readonly operation: StackOperation;
  /** The engine's result; `plan-changed`: an `up` whose preview did not find `expectedDigest`, nothing applied. */
  readonly result: string;
  readonly resourceChanges: Record<string, number>;
  /** `preview`, and the preview before an `up`: the planned steps other than `same`, in engine order. */
  readonly diff?: readonly ResourceDiff[];
  /** Policy findings of the preview (mandatory ones fail the operation before anything is applied). */
  readonly violations?: readonly PolicyViolation[];
  /** `drift` only: the resources a refresh would change. */
  readonly drifted?: readonly DriftedResource[];
  /** Stack outputs; secret ones are replaced by "[secret]" before they leave the child. */
  readonly outputs: Record<string, unknown>;
  readonly durationMs: number;
  /** `up` with a `plan`: how it ran. `constrained`: the plan alone; `fallback`: the plan was refused, preview + `up`. */
  readonly planUse?: "constrained" | "fallback";
  /** `planUse: fallback`: the failure kind of the constrained `up` (never its message). */
  readonly planFallback?: ChildFailure["kind"];
  /** Engine runs the operation made (previews, updates, refreshes), for the benchmarks and tests. */
  readonly engineRuns?: number;
}

export type ParentMessage =
  | { readonly type: "start"; readonly request: StackOperationRequest; readonly settings: ChildSettings }
  | { readonly type: "cancel" }
  /** "Still here": sent every PARENT_PING_MS while an operation runs. */
  | { readonly type: "ping" };

/** How often a worker tells its running child that it is alive. */
export const PARENT_PING_MS = 2_000;
/**
 * How long a running child goes without hearing from its worker before it treats the worker as
 * gone (stopped with SIGSTOP, frozen) and cancels its operation. With the child's grace to stop,
 * this stays well below the worker heartbeat's TTL (worker/worker-identity.ts), after which other
 * workers may clear the stack's lock.
 */
export const PARENT_SILENT_MS = 10_000;

export interface ChildFailure {
  /** Decides the job's fate on the parent side (see worker/pulumi-runner.ts). */
  readonly kind: "policy" | "program" | "concurrent" | "cancelled" | "internal";
  readonly message: string;
  readonly violations?: readonly string[];
  /** `policy`: every finding of the failed check, structured (what `violations` says in lines). */
  readonly policyViolations?: readonly PolicyViolation[];
}

export type ChildMessage =
  | {
      readonly type: "progress";
      readonly line: string;
      /** A step the engine is about to take. */
      readonly resourceChange?: { readonly op: string; readonly urn: string };
      /** A step the engine finished: what was applied, even if the operation is cancelled later. */
      readonly applied?: { readonly op: string; readonly urn: string };
    }
  | EngineOutputMessage
  | { readonly type: "done"; readonly summary: OperationSummary }
  | { readonly type: "failed"; readonly failure: ChildFailure };

/** The Pulumi engine's own output (what the CLI prints on stdout and stderr), kept whole with the job's logs. */
export interface EngineOutputMessage {
  readonly type: "output";
  /** A chunk as the engine wrote it: not necessarily whole lines; never colored. */
  readonly text: string;
}

export function isEngineOutput(message: unknown): message is EngineOutputMessage {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === "output" &&
    typeof (message as { text?: unknown }).text === "string"
  );
}

export const SECRET_PLACEHOLDER = "[secret]";
