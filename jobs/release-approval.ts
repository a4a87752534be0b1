// Approving or rejecting the wave a release waits on (issue 13 §2), shared by the API
// (`POST /v1/releases/:jobId/approve|reject`) and the `/stackrail approve|reject` comment job. The
// rollout marks the wave it waits on; a decision is recorded beside it (who, how, when, for which
// revision of the wave's plan) and the rollout reads it at its next look. An approval counts only
// for the plan revision it was given for: a wave whose diff changed asks again.
import type { Redis } from "ioredis";
import { ROLLOUT_KEY_TTL_SECONDS, rolloutApprovalsKey, rolloutAwaitingKey, rolloutRejectedKey } from "./rollout-control.ts";

export interface Approver {
  /** The API token's name, or the GitHub login. */
  readonly by: string;
  readonly via: "api" | "comment";
  /** `owner/repo#number` of the pull request a comment came from. */
  readonly pr?: string;
}

export interface ApprovalRecord extends Approver {
  readonly wave: number;
  readonly revision: number;
  readonly at: string;
}

export interface RejectionRecord extends Approver {
  readonly wave: number;
  readonly at: string;
  readonly reason?: string;
}

/** The wave the rollout waits on for an approval and the revision of its plan, or null. */
export async function awaitingWave(redis: Redis, prefix: string, jobId: string): Promise<{ wave: number; revision: number } | null> {
  const raw = await redis.get(rolloutAwaitingKey(prefix, jobId));
  const [wave, revision] = (raw ?? "").split(":").map(Number);
  return wave !== undefined && Number.isInteger(wave) && wave > 0 ? { wave, revision: Number.isInteger(revision) ? (revision ?? 1) : 1 } : null;
}

/** Marks the wave (at this revision of its plan) as waiting for a decision. */
export async function markAwaiting(redis: Redis, prefix: string, jobId: string, wave: number, revision: number): Promise<void> {
  await redis.set(rolloutAwaitingKey(prefix, jobId), `${wave}:${revision}`, "EX", ROLLOUT_KEY_TTL_SECONDS);
}

/** The wave waits no more; true when it did. */
export async function clearAwaiting(redis: Redis, prefix: string, jobId: string): Promise<boolean> {
  return (await redis.del(rolloutAwaitingKey(prefix, jobId))) > 0;
}

/** Records the approval of the waiting wave; null when no wave waits. */
export async function approveWaiting(redis: Redis, prefix: string, jobId: string, approver: Approver): Promise<ApprovalRecord | null> {
  const decided = await approveSeen(redis, prefix, jobId, approver);
  return decided && "mismatch" in decided ? null : decided;
}

/** A wave and plan revision as an approver saw them. */
export interface SeenWave {
  readonly wave: number;
  readonly revision: number;
}

/**
 * Approves the waiting wave only when it is the one the approver saw (when `seen` is given);
 * otherwise answers what waits instead.
 */
export async function approveSeen(
  redis: Redis,
  prefix: string,
  jobId: string,
  approver: Approver,
  seen?: SeenWave,
): Promise<ApprovalRecord | { readonly mismatch: SeenWave } | null> {
  const waiting = await awaitingWave(redis, prefix, jobId);
  if (waiting === null) return null;
  // The record below carries the revision read here, which is the one compared: a plan revised
  // after this read is not covered by the approval (the rollout asks again for a new revision).
  if (seen && (seen.wave !== waiting.wave || seen.revision !== waiting.revision)) return { mismatch: { wave: waiting.wave, revision: waiting.revision } };
  const record: ApprovalRecord = { ...approver, wave: waiting.wave, revision: waiting.revision, at: new Date().toISOString() };
  const key = rolloutApprovalsKey(prefix, jobId);
  await redis.multi().hset(key, `w${waiting.wave}`, JSON.stringify(record)).expire(key, ROLLOUT_KEY_TTL_SECONDS).exec();
  return record;
}

/** Records the rejection of the release at its waiting wave; null when no wave waits. */
export async function rejectWaiting(redis: Redis, prefix: string, jobId: string, approver: Approver, reason?: string): Promise<RejectionRecord | null> {
  const waiting = await awaitingWave(redis, prefix, jobId);
  if (waiting === null) return null;
  const record: RejectionRecord = { ...approver, wave: waiting.wave, at: new Date().toISOString(), ...(reason ? { reason } : {}) };
  await redis.set(rolloutRejectedKey(prefix, jobId), JSON.stringify(record), "EX", ROLLOUT_KEY_TTL_SECONDS);
  return record;
}

/** Every approval given so far, by wave. */
export async function approvalsOf(redis: Redis, prefix: string, jobId: string): Promise<Map<number, ApprovalRecord>> {
  const all = await redis.hgetall(rolloutApprovalsKey(prefix, jobId));
  const out = new Map<number, ApprovalRecord>();
  for (const [field, raw] of Object.entries(all)) {
    const n = Number(field.slice(1));
    if (Number.isInteger(n)) out.set(n, JSON.parse(raw) as ApprovalRecord);
  }
  return out;
}

export async function rejectionOf(redis: Redis, prefix: string, jobId: string): Promise<RejectionRecord | null> {
  const raw = await redis.get(rolloutRejectedKey(prefix, jobId));
  return raw ? (JSON.parse(raw) as RejectionRecord) : null;
}
