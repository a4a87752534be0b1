// Control of a release rollout: its plan (GET /v1/releases/:jobId/plan), the approval or rejection
// of the wave it waits on (POST …/approve|reject: the approver is the token's name, audited in the
// job's log and the plan), and pause and resume (POST …/pause|resume). An approval may name the wave
// and plan revision the approver saw: when another waits by then, it is refused (409).
// Pause only sets a flag: the rollout starts no new tenant step and stops at the wave's end (steps
// already running finish). Resume of a paused rollout clears the flag; resume of a rollout that
// stopped (failed or cancelled) starts a new rollout of the same version, which continues with
// exactly the tenants the GitOps repository does not show at that version yet.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { Redis } from "ioredis";
import type { Config } from "../core/config.ts";
import { gitShaSchema, versionSchema } from "../core/ids.ts";
import { repoRefSchema } from "../core/jobs.ts";
import { approvalsOf, approveSeen, awaitingWave, rejectionOf, rejectWaiting } from "../jobs/release-approval.ts";
import { loadPlan } from "../jobs/release-plan.ts";
import { rolloutPauseKey, ROLLOUT_KEY_TTL_SECONDS } from "../jobs/rollout-control.ts";
import { RELEASES_LANE, type JobQueue } from "../jobs/queue.ts";
import { rolloutPlanViewSchema } from "../jobs/release-plan-schema.ts";
import { BEARER, documented, errorBody, errorResponses, jobIdParam } from "./openapi-schemas.ts";
import { authenticate } from "./tenant-api.ts";

const JOB_ID = /^[A-Za-z0-9_.-]{1,128}$/;
/** A rollout in one of these states has not ended. */
const UNDER_WAY: ReadonlySet<string> = new Set(["waiting", "running", "awaiting-approval"]);

const sourceSchema = z.object({ repo: repoRefSchema, sha: gitShaSchema });

const rejectBodySchema = z
  .object({ reason: z.string().max(300).optional() })
  .strict()
  .nullish();

/**
 * What the approver saw: the wave and the revision of its plan. Optional (the CLI and scripts approve
 * whatever waits); the console always sends it, so a plan that changed while the operator read it
 * is refused instead of approved unseen.
 */
const approveBodySchema = z
  .object({
    wave: z.number().int().positive().describe("The wave the approver saw waiting"),
    revision: z.number().int().positive().describe("The revision of that wave's plan the approver saw"),
  })
  .strict()
  .nullish();

// The routes' OpenAPI description (webhooks/openapi.ts); documentation only, the handlers validate.
const rolloutParams = z.object({ jobId: jobIdParam });
const rolloutErrors = { ...errorResponses(400, 401, 500, 503), 404: errorBody(404, "No release rollout with this job id") };
const decisionDocs = (action: "approve" | "reject") => ({
  tags: ["releases"],
  summary:
    action === "approve"
      ? "Approve the wave the rollout waits on (the approver is the token's name)"
      : "Reject the wave the rollout waits on: the rollout stops",
  security: BEARER,
  params: rolloutParams,
  body: action === "approve" ? approveBodySchema : rejectBodySchema,
  response: {
    202: z.object({ jobId: z.string(), action: z.literal(action), wave: z.number().int(), by: z.string() }).describe("Decided"),
    ...rolloutErrors,
    409: errorBody(
      409,
      action === "approve"
        ? "The rollout has ended, no wave waits for approval, or the wave and revision given are not the ones waiting"
        : "The rollout has ended, or no wave waits for approval",
    ),
  },
});
const pauseDocs = (action: "pause" | "resume") => ({
  tags: ["releases"],
  summary:
    action === "pause"
      ? "Pause a rollout: no new tenant step starts, it stops at the wave's end"
      : "Resume a paused rollout, or start a new rollout of a stopped one's version (the tenants not at it yet)",
  security: BEARER,
  params: rolloutParams,
  response: {
    202:
      action === "pause"
        ? z.object({ jobId: z.string(), paused: z.literal(true) }).describe("Paused")
        : z
            .union([z.object({ jobId: z.string(), paused: z.literal(false) }), z.object({ jobId: z.string(), resumes: z.string(), version: z.string() })])
            .describe("Resumed; or, for a failed or cancelled rollout, the new rollout that resumes it"),
    ...rolloutErrors,
    409: errorBody(409, "The rollout has ended (pause), or another release is under way (resume)"),
  },
});
const planDocs = {
  tags: ["releases"],
  summary: "A rollout's plan: waves, tenants, versions, manifest and Pulumi diffs, approvals",
  security: BEARER,
  params: rolloutParams,
  response: { 200: rolloutPlanViewSchema.describe("The plan (planned: false until the rollout computed it)"), ...rolloutErrors },
};

export function registerReleaseControl(app: FastifyInstance, deps: { config: Config; redis: Redis; queue: JobQueue }): void {
  const prefix = deps.config.queuePrefix;

  /** The token's name and the rollout's view, or null once the reply is sent. */
  const rolloutOf = async (req: FastifyRequest<{ Params: { jobId: string } }>, reply: FastifyReply) => {
    const tokenName = authenticate(req.headers.authorization, deps.config.apiTokens);
    if (tokenName === null) {
      await reply.code(401).header("www-authenticate", 'Bearer realm="stackrail"').send({ error: "unauthorized", message: "missing or invalid bearer token" });
      return null;
    }
    const { jobId } = req.params;
    if (!JOB_ID.test(jobId)) {
      await reply.code(400).send({ error: "invalid", field: "jobId", message: "jobId: not a job id" });
      return null;
    }
    const view = await deps.queue.getJobView(jobId);
    if (!view || view.kind !== "release.rollout") {
      await reply.code(404).send({ error: "not_found", message: `no release rollout ${jobId}` });
      return null;
    }
    return { tokenName, jobId, view };
  };

  app.get<{ Params: { jobId: string } }>("/v1/releases/:jobId/plan", documented(planDocs), async (req, reply) => {
    const found = await rolloutOf(req, reply);
    if (!found) return reply;
    const { jobId, view } = found;
    const [plan, approvals, rejection, waiting] = await Promise.all([
      loadPlan(deps.redis, prefix, jobId),
      approvalsOf(deps.redis, prefix, jobId),
      rejectionOf(deps.redis, prefix, jobId),
      awaitingWave(deps.redis, prefix, jobId),
    ]);
    const running = UNDER_WAY.has(view.state);
    const decisions = {
      state: view.state,
      ...(running && waiting ? { awaitingApproval: waiting } : {}),
      ...(rejection ? { rejection } : {}),
    };
    if (!plan) return reply.code(200).send({ jobId, version: view.data.version, planned: false, ...decisions, waves: [] });
    return reply.code(200).send({
      ...plan,
      planned: true,
      ...decisions,
      waves: plan.waves.map((w) => ({ ...w, approval: approvals.get(w.wave) ?? null })),
    });
  });

  for (const action of ["approve", "reject"] as const) {
    app.post<{ Params: { jobId: string }; Body: unknown }>(`/v1/releases/:jobId/${action}`, documented(decisionDocs(action)), async (req, reply) => {
      const found = await rolloutOf(req, reply);
      if (!found) return reply;
      const { tokenName, jobId, view } = found;
      const body = action === "approve" ? approveBodySchema.safeParse(req.body) : rejectBodySchema.safeParse(req.body);
      if (!body.success) {
        return action === "approve"
          ? reply.code(400).send({ error: "invalid", field: "body", message: "body: nothing, or {wave, revision} (whole numbers from 1)" })
          : reply.code(400).send({ error: "invalid", field: "reason", message: "body: at most {reason}" });
      }
      if (!UNDER_WAY.has(view.state)) {
        return reply.code(409).send({ error: "conflict", message: `rollout ${jobId} is ${view.state}; nothing waits for approval` });
      }
      const approver = { by: tokenName, via: "api" as const };
      const seen = body.data && "wave" in body.data ? body.data : undefined;
      const reason = body.data && "reason" in body.data ? body.data.reason : undefined;
      const decided =
        action === "approve" ? await approveSeen(deps.redis, prefix, jobId, approver, seen) : await rejectWaiting(deps.redis, prefix, jobId, approver, reason);
      if (!decided) return reply.code(409).send({ error: "conflict", message: `rollout ${jobId} has no wave waiting for approval` });
      if ("mismatch" in decided) {
        const waiting = decided.mismatch;
        return reply.code(409).send({
          error: "conflict",
          message: `rollout ${jobId} waits on wave ${waiting.wave} at plan revision ${waiting.revision}, not wave ${seen?.wave} revision ${seen?.revision}: review the plan again`,
        });
      }
      return reply.code(202).send({ jobId, action, wave: decided.wave, by: tokenName });
    });
  }

  for (const action of ["pause", "resume"] as const) {
    app.post<{ Params: { jobId: string } }>(`/v1/releases/:jobId/${action}`, documented(pauseDocs(action)), async (req, reply) => {
      const tokenName = authenticate(req.headers.authorization, deps.config.apiTokens);
      if (tokenName === null) {
        return reply
          .code(401)
          .header("www-authenticate", 'Bearer realm="stackrail"')
          .send({ error: "unauthorized", message: "missing or invalid bearer token" });
      }
      const { jobId } = req.params;
      if (!JOB_ID.test(jobId)) return reply.code(400).send({ error: "invalid", field: "jobId", message: "jobId: not a job id" });
      const view = await deps.queue.getJobView(jobId);
      if (!view || view.kind !== "release.rollout") return reply.code(404).send({ error: "not_found", message: `no release rollout ${jobId}` });
      const key = rolloutPauseKey(deps.config.queuePrefix, jobId);

      if (action === "resume" && (view.state === "failed" || view.state === "cancelled")) {
        const version = versionSchema.safeParse(view.data.version);
        if (!version.success) return reply.code(409).send({ error: "conflict", message: `rollout ${jobId} has no version to resume` });
        // A resume would supersede a release under way (possibly a newer version): the operator decides.
        for (const other of await deps.queue.lanes.entries(RELEASES_LANE)) {
          const state = (await deps.queue.getJobView(other))?.state;
          if (state !== undefined && UNDER_WAY.has(state)) {
            return reply.code(409).send({ error: "conflict", message: `release ${other} is under way; resume ${jobId} once it has finished` });
          }
        }
        const { jobId: resumedBy } = await deps.queue.enqueue({
          kind: "release.rollout",
          trigger: { type: "api", tokenName },
          requestedAt: new Date().toISOString(),
          version: version.data,
          resumes: jobId,
          ...(typeof view.data.ref === "string" ? { ref: view.data.ref } : {}),
          ...(sourceSchema.safeParse(view.data.source).success ? { source: sourceSchema.parse(view.data.source) } : {}),
        });
        return reply.code(202).send({ jobId: resumedBy, resumes: jobId, version: version.data });
      }
      if (!UNDER_WAY.has(view.state)) {
        return reply.code(409).send({ error: "conflict", message: `rollout ${jobId} is ${view.state}` });
      }
      if (action === "pause") await deps.redis.set(key, "1", "EX", ROLLOUT_KEY_TTL_SECONDS);
      else await deps.redis.del(key);
      return reply.code(202).send({ jobId, paused: action === "pause" });
    });
  }
}
