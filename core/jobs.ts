// The job model shared by the HTTP edge (which enqueues) and the worker (which runs).
// Job data is stored in Redis, so it never holds a secret: only identifiers and references.
import { z } from "zod";
import { regionSettingsSchema } from "./regions.ts";
import { functionNameSchema, gitShaSchema, prNumberSchema, regionSchema, tenantIdSchema, tierSchema, versionSchema } from "./ids.ts";

/** Who or what asked for a job: the audit trail's first half. */
export const triggerSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("webhook"),
    deliveryId: z.string().max(100),
    event: z.string().max(64),
    sender: z.string().max(100).optional(),
  }),
  z.object({ type: z.literal("api"), tokenName: z.string().max(64) }),
  z.object({ type: z.literal("schedule"), name: z.string().max(64) }),
  z.object({ type: z.literal("job"), parentJobId: z.string().max(100) }),
]);
export type Trigger = z.infer<typeof triggerSchema>;

export const repoRefSchema = z.object({
  owner: z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/),
  name: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/),
});
export type RepoRef = z.infer<typeof repoRefSchema>;

const base = { trigger: triggerSchema, requestedAt: z.string() };

/** A job id as the queue accepts it (not a number: BullMQ reserves those). */
export const jobIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,128}$/, "must match [A-Za-z0-9_.-]{1,128}")
  .refine((v) => !/^\d+$/.test(v), "must not be a number");

export const jobDataSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("tenant.provision"),
    ...base,
    tenantId: tenantIdSchema,
    region: regionSchema,
    tier: tierSchema,
    version: versionSchema,
  }),
  z.object({ kind: z.literal("tenant.deprovision"), ...base, tenantId: tenantIdSchema }),
  z.object({ kind: z.literal("tenant.upgrade"), ...base, tenantId: tenantIdSchema, version: versionSchema }),
  z.object({ kind: z.literal("tenant.move"), ...base, tenantId: tenantIdSchema, tier: tierSchema }),
  /**
   * After a tier move's rollback window: the source tier's resources are backed up and removed.
   * Only the move scheduler enqueues it; the handler re-checks every guard (never the tier the
   * tenant lives on, never a protected tenant, a backup first), whoever put it in the queue.
   */
  z.object({ kind: z.literal("tenant.move-cleanup"), ...base, tenantId: tenantIdSchema, tier: tierSchema, region: regionSchema }),
  /** A drift check of the tenant's stack (refresh preview); `repair` brings it back with refresh + up, never for a protected tenant. */
  z.object({ kind: z.literal("tenant.drift"), ...base, tenantId: tenantIdSchema, repair: z.boolean().default(false) }),
  z.object({
    kind: z.literal("tenant.function"),
    ...base,
    tenantId: tenantIdSchema,
    name: functionNameSchema,
    /** Where the validated bundle was stored (content-addressed), never the bundle itself. */
    bundleSha256: z.string().regex(/^[0-9a-f]{64}$/),
    handler: z.string().regex(/^[A-Za-z0-9_./-]{1,128}\.[A-Za-z_$][\w$]{0,63}$/),
  }),
  z.object({
    kind: z.literal("preview.up"),
    ...base,
    repo: repoRefSchema,
    pr: prNumberSchema,
    headSha: gitShaSchema,
    /** Carried as inert data for comments and commit messages; never in a path, stack name or shell. */
    title: z.string().max(1024).optional(),
  }),
  /**
   * A region's shared infrastructure: on aws the `region-<region>` stack (policy-checked `up`), on
   * every target the region's Argo CD objects. Settings are resolved when the job is enqueued.
   */
  z.object({ kind: z.literal("region.provision"), ...base, region: regionSchema, ...regionSettingsSchema.shape }),
  z.object({ kind: z.literal("preview.destroy"), ...base, repo: repoRefSchema, pr: prNumberSchema, headSha: gitShaSchema.optional() }),
  z.object({
    kind: z.literal("release.rollout"),
    ...base,
    version: versionSchema,
    /** The commit or tag that triggered it, for the record. */
    ref: z.string().max(255).optional(),
    /** The stopped rollout (failed or cancelled) this one resumes: `POST /v1/releases/:jobId/resume`. */
    resumes: jobIdSchema.optional(),
    /** The repository and commit a push or release webhook came from: where the rollout reports on GitHub. */
    source: z.object({ repo: repoRefSchema, sha: gitShaSchema }).optional(),
  }),
  /**
   * One tenant's step of a rollout wave: `up` of the tenant's stack at the version, then its health
   * check. Only a rollout adds it, as a child of its own job, in the tenant's lane; the rollout
   * commits the wave's files and records the versions once the wave's steps are done.
   */
  z.object({
    kind: z.literal("release.tenant-step"),
    ...base,
    rolloutJobId: jobIdSchema,
    wave: z.number().int().min(1).max(1000),
    /** A wave starts its remaining tenants again after a pause: each start is a round. */
    round: z.number().int().min(1).max(100_000),
    tenantId: tenantIdSchema,
    version: versionSchema,
    /** The wave stops starting steps once this many of its tenants failed (STACKRAIL_WAVE_MAX_FAILURES when the wave began). */
    maxFailures: z.number().int().min(1).max(1_000_000),
    /** `plan`: only a preview of the tenant stack at the version, for the rollout plan; `apply`: the `up`. */
    mode: z.enum(["plan", "apply"]).default("apply"),
    /** Digest of the approved infrastructure diff: the step previews first and applies only that diff. */
    approvedDigest: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
  }),
  /**
   * A `/stackrail approve` or `/stackrail reject` comment on a pull request: the worker checks the
   * commenter's permission through the GitHub API and decides the release waiting for the PR's commit.
   */
  z.object({
    kind: z.literal("release.command"),
    ...base,
    repo: repoRefSchema,
    pr: prNumberSchema,
    command: z.enum(["approve", "reject"]),
    login: z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/),
    /** Free text after `/stackrail reject`: carried as inert data into the job's record. */
    reason: z.string().max(300).optional(),
  }),
  z.object({
    kind: z.literal("comment.refusal"),
    ...base,
    repo: repoRefSchema,
    pr: prNumberSchema,
    reason: z.string().max(500),
  }),
]);
export type JobData = z.infer<typeof jobDataSchema>;
export type JobKind = JobData["kind"];

/**
 * Every kind a job may have. There is deliberately no raw stack operation among them: each kind
 * names a lifecycle step whose handler checks its own guards (issue 11, finding 3).
 */
export const JOB_KINDS: readonly JobKind[] = jobDataSchema.options.map((o) => o.shape.kind.value);

/** States a job shows in `GET /v1/jobs/:id` (brief + issue 4); `awaiting-approval`: a release wave waits for its approval (issue 13). */
export type JobState = "waiting" | "running" | "awaiting-approval" | "succeeded" | "failed" | "superseded" | "cancelled";

/** The one BullMQ queue every job goes through; per-stack lanes order jobs inside it. */
export const JOBS_QUEUE = "jobs";
