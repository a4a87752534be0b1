// Typed errors decide a job's fate; nothing in Stackrail inspects message text.
//   retry  — transient (network, 5xx, lock held by a live owner): BullMQ retries with backoff
//   fail   — permanent (bad input, program error, policy violation): fail at once, no retry
//   wait   — the work cannot start yet (stack busy, cap reached): re-queued without using a try

export type Fate = "retry" | "fail" | "wait";

export class StackrailError extends Error {
  readonly fate: Fate = "fail";
  /** Machine-readable code carried into job records and API answers. */
  readonly code: string = "internal";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Configuration that cannot be used; names the variable. Stops the process at start-up. */
export class ConfigError extends StackrailError {
  override readonly code = "config";
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.variable = variable;
  }
}

/** External input that does not match its schema. `field` names what is wrong. */
export class ValidationError extends StackrailError {
  override readonly code = "invalid";
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

export class NotFoundError extends StackrailError {
  override readonly code = "not_found";
}

export class ConflictError extends StackrailError {
  override readonly code = "conflict";
}

/** Worth trying again later: network errors, 5xx answers, a lock held by a live process. */
export class TransientError extends StackrailError {
  override readonly fate = "retry";
  override readonly code = "transient";
}

/** The Pulumi program itself failed (resource error, bad config). Retrying will not help. */
export class ProgramError extends StackrailError {
  override readonly code = "program";
}

/** One policy finding: the pack, the rule, its level, the message and the resource (URN). */
export interface PolicyFinding {
  readonly pack: string;
  readonly policy: string;
  readonly level: string;
  readonly message: string;
  readonly urn?: string;
}

/** A mandatory policy refused the change; nothing was applied. */
export class PolicyViolationError extends StackrailError {
  override readonly code = "policy";
  readonly violations: readonly string[];
  /** The same findings, structured (every level), for PR comments and rollout plans. */
  readonly findings: readonly PolicyFinding[];
  constructor(message: string, violations: readonly string[], findings: readonly PolicyFinding[] = []) {
    super(message);
    this.violations = violations;
    this.findings = findings;
  }
}

/** The stack is being changed by another job; this one waits its turn. */
export class StackBusyError extends StackrailError {
  override readonly fate = "wait";
  override readonly code = "stack_busy";
}

/** Who holds a stack's lock, as far as Stackrail can tell: a worker of this installation, or only the lock's own record. */
export interface StackLockHolder {
  /** One line for the job's progress: who, where, since when. */
  readonly description: string;
  readonly workerId?: string;
  readonly host?: string;
  readonly jobId?: string;
  readonly pid?: number;
  readonly since?: string;
}

/**
 * The stack's lock is held by a live process (another worker's operation, an operator's CLI): the
 * job waits with a growing delay, found out before any engine started. `retryAfterMs` hints when
 * the holder's liveness is next decided (its heartbeat runs out), so the wait need not be longer.
 */
export class StackLockedError extends StackBusyError {
  readonly holder: StackLockHolder | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: { holder?: StackLockHolder; retryAfterMs?: number } = {}) {
    super(message);
    this.holder = options.holder;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export class CancelledError extends StackrailError {
  override readonly code = "cancelled";
}

/** A release rollout paused through the API: it looks again later, keeping its place, until resumed. */
export class RolloutPausedError extends StackrailError {
  override readonly fate = "wait";
  override readonly code = "paused";
}

/**
 * The job's own record vanished while it ran (removed from the dashboard, or lost in a Redis
 * restart without persistence). Handled as a cancel: the operation stops the engine's way, and
 * nothing retries a job that no longer exists.
 */
export class JobLostError extends StackrailError {
  override readonly code = "lost";
}

export class OperationTimeoutError extends StackrailError {
  override readonly code = "timeout";
}

/** A newer request for the same stack replaced this one before it ran. */
export class SupersededError extends StackrailError {
  override readonly code = "superseded";
  readonly supersededBy: string;
  constructor(supersededBy: string) {
    super("superseded by a newer request for the same stack");
    this.supersededBy = supersededBy;
  }
}

/** A GitOps manifest failed validation against the Argo CD CRDs; nothing was written. */
export class ManifestInvalidError extends StackrailError {
  override readonly code = "manifest_invalid";
}

/** A deletion the guards refuse: a protected tenant, or too many deletions in a short window. */
export class DeletionRefusedError extends StackrailError {
  override readonly code = "deletion_refused";
}

/** The worker's own check refuses a job the edge would have refused too (e.g. a repository not in STACKRAIL_REPOSITORIES); nothing was done. */
export class NotAllowedError extends StackrailError {
  override readonly code = "not_allowed";
}

export function fateOf(error: unknown): Fate {
  return error instanceof StackrailError ? error.fate : "fail";
}
