// Pause and resume a release rollout: POST /v1/releases/:jobId/pause|resume.
// Pause only sets a flag: the rollout starts no new tenant step and stops at the wave's end (steps
// already running finish). Resume of a paused rollout clears the flag; resume of a rollout that
// stopped (failed or cancelled) starts a new rollout of the same version, which continues with
// exactly the tenants the GitOps repository does not show at that version yet.
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import type { Config } from "../core/config.ts";
import { versionSchema } from "../core/ids.ts";
import { rolloutPauseKey, ROLLOUT_KEY_TTL_SECONDS } from "../worker/rollout-control.ts";
import { RELEASES_LANE, type JobQueue } from "../worker/queue.ts";
import { authenticate } from "./tenant-api.ts";

const JOB_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export function registerReleaseControl(app: FastifyInstance, deps: { config: Config; redis: Redis; queue: JobQueue }): void {
  for (const action of ["pause", "resume"] as const) {
    app.post<{ Params: { jobId: string } }>(`/v1/releases/:jobId/${action}`, async (req, reply) => {
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
          if (state === "waiting" || state === "running") {
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
        });
        return reply.code(202).send({ jobId: resumedBy, resumes: jobId, version: version.data });
      }
      if (view.state !== "waiting" && view.state !== "running") {
        return reply.code(409).send({ error: "conflict", message: `rollout ${jobId} is ${view.state}` });
      }
      if (action === "pause") await deps.redis.set(key, "1", "EX", ROLLOUT_KEY_TTL_SECONDS);
      else await deps.redis.del(key);
      return reply.code(202).send({ jobId, paused: action === "pause" });
    });
  }
}
