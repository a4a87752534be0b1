// Keys through which a release rollout, its tenant steps and the API coordinate (beside BullMQ's
// and the lanes' keys, under config.queuePrefix). The edge writes the pause flag; a newer release
// writes the hand-over; the steps write the wave's failures and take the next tenant of the wave
// from its to-do list. Every key expires with the job records.
import { createHash } from "node:crypto";

/** As long as job records (7 days) and a little more, like the lane metadata. */
export const ROLLOUT_KEY_TTL_SECONDS = 8 * 24 * 3600;

/** "1" while the rollout is paused through `POST /v1/releases/:jobId/pause`. */
export function rolloutPauseKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:paused`;
}

/** The id of a newer release: the running rollout stops at its next wave boundary and hands over. */
export function rolloutHandoverKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:handover`;
}

/** Set of the tenants of a wave whose step failed (for good): the wave starts no more once it is full. */
export function waveFailuresKey(prefix: string, jobId: string, wave: number): string {
  return `${prefix}:rollout:${jobId}:w${wave}:failed`;
}

/** Tenants of a wave's round not yet started, in order: a finishing step starts the next one. */
export function waveTodoKey(prefix: string, jobId: string, wave: number, round: number): string {
  return `${prefix}:rollout:${jobId}:w${wave}:r${round}:todo`;
}

/** Hash: per finished wave, what it changed (`w<n>` → JSON), so that the job's result survives re-entries. */
export function rolloutWavesKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:waves`;
}

/** What the rollout last announced as its pause (one progress line per pause, not one per look). */
export function rolloutAnnouncedKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:announced`;
}

const STEP_ID = /\.w(\d{1,4})\.r(\d{1,6})\.([a-z][a-z0-9-]{1,38}[a-z0-9])$/;

/**
 * The step job of a tenant in a wave's round: deterministic, so that a rollout that crashed while
 * adding its steps adds each one once. Long rollout ids are shortened to keep within 128 characters.
 */
export function stepJobId(rolloutJobId: string, wave: number, round: number, tenantId: string): string {
  const base = rolloutJobId.length <= 64 ? rolloutJobId : createHash("sha256").update(rolloutJobId).digest("hex").slice(0, 32);
  return `${base}.w${wave}.r${round}.${tenantId}`;
}

/** Wave, round and tenant of a step job id made by stepJobId, or null. */
export function parseStepJobId(id: string): { wave: number; round: number; tenantId: string } | null {
  const m = STEP_ID.exec(id);
  if (!m?.[1] || !m[2] || !m[3]) return null;
  return { wave: Number(m[1]), round: Number(m[2]), tenantId: m[3] };
}

/** The rollout plan (JSON, release-plan.ts): written once by the rollout, revised when a wave's diff changes. */
export function rolloutPlanKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:plan`;
}

/** Hash: per wave (`w<n>`), the approval of its plan revision (JSON: who, how, when, which revision). */
export function rolloutApprovalsKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:approvals`;
}

/** The wave number the rollout waits on for an approval, while it waits. */
export function rolloutAwaitingKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:awaiting`;
}

/** Who rejected the release and why (JSON); the rollout stops at its next look. */
export function rolloutRejectedKey(prefix: string, jobId: string): string {
  return `${prefix}:rollout:${jobId}:rejected`;
}

const PLAN_STEP_ID = /\.plan\.([a-z][a-z0-9-]{1,38}[a-z0-9])$/;

/** The plan step (a preview of the tenant's stack at the new version) of a tenant in a rollout. */
export function planStepJobId(rolloutJobId: string, tenantId: string): string {
  const base = rolloutJobId.length <= 64 ? rolloutJobId : createHash("sha256").update(rolloutJobId).digest("hex").slice(0, 32);
  return `${base}.plan.${tenantId}`;
}

/** The tenant of a plan step job id made by planStepJobId, or null. */
export function parsePlanStepJobId(id: string): string | null {
  return PLAN_STEP_ID.exec(id)?.[1] ?? null;
}

/** A rollout id as a blob key segment ([A-Za-z0-9._-]): itself when it is one, else its digest. */
function blobSegment(rolloutJobId: string): string {
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(rolloutJobId) ? rolloutJobId : createHash("sha256").update(rolloutJobId).digest("hex").slice(0, 32);
}

/** Blob-store folder of a rollout's saved update plans (deleted when the rollout ends). */
export function rolloutPlansPrefix(rolloutJobId: string): string {
  return `releases/${blobSegment(rolloutJobId)}/plans/`;
}

/** The update plan its plan step saved for a tenant, for whichever worker runs the tenant's apply step. */
export function rolloutPlanBlobKey(rolloutJobId: string, tenantId: string): string {
  return `${rolloutPlansPrefix(rolloutJobId)}${tenantId}.json`;
}
