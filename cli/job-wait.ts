// Following a job to its end: polls GET /v1/jobs/:id, reports progress as it comes, follows a
// superseded preview to the job that replaced it, and turns the outcome into an exit code
// (0 succeeded, 1 failed or cancelled, 3 a rollout waits for an approval).
// A rollout at a wave that waits for approval is not final, but nothing happens until a person
// decides: a wait that went on would hang until then (in a script, forever). So the wait stops
// there, unless asked to wait through approvals (--through-approval).
import { z } from "zod";
import type { JobState } from "../core/jobs.ts";
import { ApiError, type ApiClient } from "./api-client.ts";
import { EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_OK } from "./exit-codes.ts";

// Every state the API shows, so that a CLI never refuses a view for a state it does not know
// (`awaiting-approval`: a release wave waits for its approval; not final, but a wait stops there).
const JOB_STATES = ["waiting", "running", "awaiting-approval", "succeeded", "failed", "superseded", "cancelled"] as const satisfies readonly JobState[];

/** The fields of `GET /v1/jobs/:id` the CLI shows; anything else passes through to --json. */
export const jobViewSchema = z.looseObject({
  id: z.string(),
  kind: z.string(),
  stack: z.string().nullable().optional(),
  state: z.enum(JOB_STATES),
  supersededBy: z.string().optional(),
  progress: z.array(z.string()).default([]),
  result: z.unknown().optional(),
  error: z.string().optional(),
  trigger: z.looseObject({ type: z.string() }).nullable().optional(),
  data: z.record(z.string(), z.unknown()).optional(),
  attempts: z.number().optional(),
  createdAt: z.string().nullable().optional(),
  startedAt: z.string().nullable().optional(),
  finishedAt: z.string().nullable().optional(),
});
export type JobViewAnswer = z.infer<typeof jobViewSchema>;

const FINAL: ReadonlySet<JobState> = new Set(["succeeded", "failed", "superseded", "cancelled"]);

export function isFinal(state: JobState): boolean {
  return FINAL.has(state);
}

export function exitCodeOf(view: JobViewAnswer): number {
  if (view.state === "awaiting-approval") return EXIT_AWAITING_APPROVAL;
  return view.state === "succeeded" || view.state === "superseded" ? EXIT_OK : EXIT_FAILED;
}

/** The wave a rollout waits on, at the revision of its plan that needs the approval. */
export interface AwaitedApproval {
  /** Null when the service does not say (no plan route): the job's state is all there is. */
  readonly wave: number | null;
  readonly revision: number | null;
  readonly regions: readonly string[];
}

/** The parts of `GET /v1/releases/:jobId/plan` that say whether a wave waits for a decision not yet given. */
const planDecisionSchema = z.looseObject({
  awaitingApproval: z.looseObject({ wave: z.number(), revision: z.number() }).optional(),
  rejection: z.unknown().optional(),
  waves: z
    .array(
      z.looseObject({
        wave: z.number(),
        regions: z.array(z.string()).optional(),
        approval: z.looseObject({ revision: z.number() }).nullable().optional(),
      }),
    )
    .default([]),
});

/**
 * The approval a rollout shown as awaiting-approval still needs, or null when the decision is
 * already taken and the worker has not acted on it yet: an approval (or rejection) is recorded at
 * once, but the rollout shows awaiting-approval until the worker looks again, a few seconds later.
 * Without this, `releases approve --wait` would stop at once at the wave it just approved.
 */
export async function pendingApproval(client: ApiClient, jobId: string): Promise<AwaitedApproval | null> {
  let plan: z.infer<typeof planDecisionSchema>;
  try {
    plan = await client.get(`/v1/releases/${encodeURIComponent(jobId)}/plan`, planDecisionSchema);
  } catch (err) {
    if (transient(err)) throw err;
    // A service without the plan route (or an answer not understood): the state is all there is.
    return { wave: null, revision: null, regions: [] };
  }
  if (plan.rejection !== undefined && plan.rejection !== null) return null;
  const awaiting = plan.awaitingApproval;
  // The rollout moved on between the two requests: the next poll shows where it is.
  if (!awaiting) return null;
  const wave = plan.waves.find((w) => w.wave === awaiting.wave);
  if (wave?.approval?.revision === awaiting.revision) return null;
  return { wave: awaiting.wave, revision: awaiting.revision, regions: wave?.regions ?? [] };
}

export function jobRoute(id: string): string {
  return `/v1/jobs/${encodeURIComponent(id)}`;
}

export function getJob(client: ApiClient, id: string): Promise<JobViewAnswer> {
  return client.get(jobRoute(id), jobViewSchema);
}

export interface WaitObserver {
  /** Every poll's view (the progress line redraws from it). */
  onView?(view: JobViewAnswer): void;
  /** Each progress line once, in order. */
  onProgress?(line: string, view: JobViewAnswer): void;
  /** A superseded job is followed to the job that replaced it. */
  onSuperseded?(from: string, to: string): void;
  /** Polls started getting no answer or a 502/503/504; polling goes on for a while (a restart, a slow Redis). */
  onUnavailable?(err: ApiError): void;
  /** The wait stops: the rollout waits for an approval nobody has given yet (not called with throughApproval). */
  onAwaitingApproval?(waiting: AwaitedApproval, view: JobViewAnswer): void;
}

/** How long polling outlasts a service that does not answer before the wait gives up. */
const UNAVAILABLE_GRACE_MS = 60_000;

function transient(err: unknown): err is ApiError {
  return err instanceof ApiError && (err.status === 0 || err.status === 502 || err.status === 503 || err.status === 504) && err.code !== "no_token";
}

export interface WaitOptions {
  readonly pollMs?: number;
  /** Give up after this long (the job goes on); null waits for as long as it takes. */
  readonly timeoutMs?: number | null;
  readonly sleep?: (ms: number) => Promise<void>;
  /**
   * Keep waiting while a rollout waits for an approval (for as long as it takes someone to give
   * it). By default the wait returns the awaiting-approval view instead (exit code 3).
   */
  readonly throughApproval?: boolean;
}

export class WaitTimeoutError extends Error {
  readonly view: JobViewAnswer;
  constructor(view: JobViewAnswer, timeoutMs: number) {
    super(`job ${view.id} is still ${view.state} after ${Math.round(timeoutMs / 1000)}s; it goes on (stackrail jobs show ${view.id} --wait)`);
    this.name = "WaitTimeoutError";
    this.view = view;
  }
}

/**
 * Polls until the job (or the job that superseded it) is final, or is a rollout waiting for an
 * approval not given yet (unless `throughApproval`); returns that view.
 */
export async function waitForJob(client: ApiClient, jobId: string, observer: WaitObserver = {}, options: WaitOptions = {}): Promise<JobViewAnswer> {
  const pollMs = options.pollMs ?? 500;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = options.timeoutMs ? Date.now() + options.timeoutMs : null;
  let id = jobId;
  let seen = 0;
  let unavailableSince: number | null = null;
  for (;;) {
    let view: JobViewAnswer;
    let waiting: AwaitedApproval | null = null;
    try {
      view = await getJob(client, id);
      if (view.state === "awaiting-approval" && options.throughApproval !== true) waiting = await pendingApproval(client, id);
      unavailableSince = null;
    } catch (err) {
      if (!transient(err)) throw err;
      if (unavailableSince === null) {
        unavailableSince = Date.now();
        observer.onUnavailable?.(err);
      } else if (Date.now() - unavailableSince > UNAVAILABLE_GRACE_MS) throw err;
      await sleep(pollMs * 2);
      continue;
    }
    observer.onView?.(view);
    // Progress lines are only ever appended: print those past the ones already printed.
    for (const line of view.progress.slice(seen)) observer.onProgress?.(line, view);
    seen = Math.max(seen, view.progress.length);
    if (view.state === "superseded" && view.supersededBy) {
      observer.onSuperseded?.(id, view.supersededBy);
      id = view.supersededBy;
      seen = 0;
      continue;
    }
    if (isFinal(view.state)) return view;
    if (waiting !== null) {
      observer.onAwaitingApproval?.(waiting, view);
      return view;
    }
    if (deadline !== null && Date.now() > deadline) throw new WaitTimeoutError(view, options.timeoutMs ?? 0);
    await sleep(pollMs);
  }
}
