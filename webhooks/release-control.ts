// Pause and resume a release rollout between waves: POST /v1/releases/:jobId/pause|resume.
// The API only sets a flag; the rollout job checks it before each wave.
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import type { Config } from "../core/config.ts";
import { rolloutPauseKey } from "../worker/handlers/release-rollout.ts";
import type { JobQueue } from "../worker/queue.ts";
import { authenticate } from "./tenant-api.ts";

const JOB_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export function registerReleaseControl(app: FastifyInstance, deps: { config: Config; redis: Redis; queue: JobQueue }): void {
  for (const action of ["pause", "resume"] as const) {
    app.post<{ Params: { jobId: string } }>(`/v1/releases/:jobId/${action}`, async (req, reply) => {
      if (authenticate(req.headers.authorization, deps.config.apiTokens) === null) {
        return reply
          .code(401)
          .header("www-authenticate", 'Bearer realm="stackrail"')
          .send({ error: "unauthorized", message: "missing or invalid bearer token" });
      }
      const { jobId } = req.params;
      if (!JOB_ID.test(jobId)) return reply.code(400).send({ error: "invalid", field: "jobId", message: "jobId: not a job id" });
      const view = await deps.queue.getJobView(jobId);
      if (!view || view.kind !== "release.rollout") return reply.code(404).send({ error: "not_found", message: `no release rollout ${jobId}` });
      if (view.state !== "waiting" && view.state !== "running") {
        return reply.code(409).send({ error: "conflict", message: `rollout ${jobId} is ${view.state}` });
      }
      const key = rolloutPauseKey(deps.config.queuePrefix, jobId);
      if (action === "pause") await deps.redis.set(key, "1", "EX", 7 * 24 * 3600);
      else await deps.redis.del(key);
      return reply.code(202).send({ jobId, paused: action === "pause" });
    });
  }
}
