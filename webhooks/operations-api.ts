// Operator routes: the job list and job logs (jobs-api.ts), cancel a job, the dead-letter list and
// its retry, the audit trail, and the queue dashboard (@bull-board, read-only) under
// /admin/queues — all behind the API tokens.
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from "fastify";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis.ts";
import { z } from "zod";
import { blobStoreFor } from "../core/blob-store.ts";
import { secretValues, type Config } from "../core/config.ts";
import { SecretScrubber } from "../core/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import type { DeadLetters } from "../jobs/dead-letters.ts";
import { cancelKey } from "../jobs/job-control.ts";
import { JobIndex } from "../jobs/job-index.ts";
import { RedisJobLogStore } from "../jobs/job-logs.ts";
import { readOrphanCounts } from "../jobs/last-audit.ts";
import { OrphanAuditRequests, scrubAuditFailure } from "../jobs/orphan-audit.ts";
import type { OrphanScope } from "../jobs/orphan-report.ts";
import { JobQueue, type JobView } from "../jobs/queue.ts";
import { jobStateSchema, jobTriggerSchema, jobViewSchema } from "../jobs/job-view-schema.ts";
import { orphanReportSchema } from "../jobs/orphan-report-schema.ts";
import { registerJobsApi } from "./jobs-api.ts";
import { BEARER_OR_BASIC, documented, errorBody, errorResponses, jobIdParam } from "./openapi-schemas.ts";
import { authenticate } from "./tenant-api.ts";

const JOB_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export interface OperationsDeps {
  readonly config: Config;
  readonly redis: Redis;
  readonly queue: JobQueue;
  readonly deadLetters: DeadLetters;
  /** How long GET /v1/audit/orphans waits for a worker's audit before it answers 503 (default 2 minutes; always below STACKRAIL_REQUEST_TIMEOUT_MS). */
  readonly orphanAuditWaitMs?: number;
  /** Gets the `stackrail_orphans` gauge's source. */
  readonly metrics?: Metrics;
}

const ORPHAN_SCOPES = ["server", "installation"] as const satisfies readonly OrphanScope[];
/** Audits take seconds; one that takes minutes is better run with `npm run orphans`. */
const ORPHAN_AUDIT_WAIT_MS = 120_000;
/** The wait ends this long before the connection's inactivity limit (STACKRAIL_REQUEST_TIMEOUT_MS) would cut it. */
const ORPHAN_AUDIT_WAIT_MARGIN_MS = 2_000;

/**
 * How long GET /v1/audit/orphans waits: below the socket's inactivity limit, which would otherwise
 * reset the connection before the 503 that names the queued audit is sent.
 */
export function orphanAuditWait(requestTimeoutMs: number, wantedMs = ORPHAN_AUDIT_WAIT_MS): number {
  return Math.max(500, Math.min(wantedMs, requestTimeoutMs - ORPHAN_AUDIT_WAIT_MARGIN_MS));
}

/** Bearer token, or HTTP Basic with the token as password (so a browser can open the dashboard). */
function tokenName(req: FastifyRequest, config: Config): string | null {
  const header = req.headers.authorization;
  if (typeof header === "string" && header.startsWith("Basic ")) {
    const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
    const password = decoded.slice(decoded.indexOf(":") + 1);
    return authenticate(`Bearer ${password}`, config.apiTokens);
  }
  return authenticate(header, config.apiTokens);
}

function refuse(reply: FastifyReply, basic = false): FastifyReply {
  return reply
    .code(401)
    .header("www-authenticate", basic ? 'Basic realm="stackrail"' : 'Bearer realm="stackrail"')
    .send({ error: "unauthorized", message: "missing or invalid API token" });
}

/** An entry of GET /v1/audit (auditEntry builds it). */
export const auditEntrySchema = z.object({
  jobId: z.string(),
  kind: z.string(),
  stack: z.string().nullable(),
  state: jobStateSchema,
  requestedBy: jobTriggerSchema.nullable(),
  requestedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  changed: z.object({
    resourceChanges: z.unknown().meta({ description: "The engine's resource change counts, or null" }),
    commit: z.unknown().meta({ description: "The GitOps commit, or null" }),
  }),
  error: z.string().optional(),
});
export type AuditEntry = z.infer<typeof auditEntrySchema>;

// The routes' OpenAPI description (webhooks/openapi.ts); documentation only, the handlers validate.
const jobParams = z.object({ id: jobIdParam });
const common = errorResponses(401, 500, 503);
const docs = {
  cancel: {
    tags: ["jobs"],
    summary: "Cancel a job: a waiting one at once, a running one by stopping its Pulumi operation",
    security: BEARER_OR_BASIC,
    params: jobParams,
    response: {
      202: z.object({ jobId: z.string(), state: z.enum(["cancelled", "cancelling"]) }).describe("Cancelled (waiting) or being cancelled (running)"),
      ...common,
      ...errorResponses(400),
      404: errorBody(404, "No such job"),
      409: errorBody(409, "The job has ended"),
    },
  },
  deadLetters: {
    tags: ["jobs"],
    summary: "Jobs that failed for good (every attempt used)",
    security: BEARER_OR_BASIC,
    response: { 200: z.object({ jobs: z.array(jobViewSchema) }).describe("The failed jobs"), ...common },
  },
  retry: {
    tags: ["jobs"],
    summary: "Run a dead-lettered job again",
    security: BEARER_OR_BASIC,
    params: jobParams,
    response: {
      202: z.object({ jobId: z.string(), state: z.literal("waiting") }).describe("Queued again"),
      ...common,
      ...errorResponses(400),
      404: errorBody(404, "The job is not in the dead-letter list"),
      409: errorBody(409, "The job is not failed"),
    },
  },
  orphans: {
    tags: ["audit"],
    summary: "What exists without an owner, and what is owned but missing (a worker runs the audit; the edge waits, bounded)",
    security: BEARER_OR_BASIC,
    querystring: z.object({
      scope: z.enum(ORPHAN_SCOPES).optional().meta({ description: "Default: STACKRAIL_ORPHAN_SCOPE" }),
      fresh: z
        .enum(["0", "1"])
        .optional()
        .meta({ description: "1: a new audit even when one finished less than 30 s ago (whose report is answered otherwise)" }),
    }),
    response: {
      200: orphanReportSchema.describe("The report"),
      ...errorResponses(400, 401),
      500: z.object({ error: z.literal("audit_failed"), jobId: z.string(), message: z.string() }).describe("The audit failed"),
      503: z
        .object({ error: z.string(), jobId: z.string().optional(), message: z.string() })
        .describe("No worker finished the audit in time (it stays queued: ask again), or Redis is unavailable"),
    },
  },
  audit: {
    tags: ["audit"],
    summary: "The audit trail: who or what asked for each job, when, and what it changed",
    security: BEARER_OR_BASIC,
    querystring: z.object({ limit: z.string().regex(/^\d+$/).optional().meta({ description: "1 to 500, default 50" }) }),
    response: { 200: z.object({ entries: z.array(auditEntrySchema) }).describe("Newest first"), ...common },
  },
} satisfies Record<string, FastifySchema>;

/** The audit view of a job: who or what asked, when, and what it changed. */
export function auditEntry(view: JobView): AuditEntry {
  const result = (view.result ?? {}) as Record<string, unknown>;
  return {
    jobId: view.id,
    kind: view.kind,
    stack: view.stack,
    state: view.state,
    requestedBy: view.trigger,
    requestedAt: view.createdAt,
    finishedAt: view.finishedAt,
    changed: {
      resourceChanges: result.resourceChanges ?? null,
      commit: result.commit ?? null,
    },
    ...(view.error ? { error: view.error } : {}),
  };
}

export async function registerOperationsApi(app: FastifyInstance, deps: OperationsDeps): Promise<void> {
  const { config, queue } = deps;

  // The audit, the job list and job logs read many keys: their own connection, without the edge's
  // fail-fast command limit, made on first use (a scrape of the gauge, an audit, a list) and closed
  // with the app.
  type Reader = { redis: Redis; queue: JobQueue; logs: RedisJobLogStore; index: JobIndex; orphanAudits: OrphanAuditRequests };
  let audit: Reader | undefined;
  const auditConnection = (): Reader => {
    if (!audit) {
      const redis = connectRedis(config.redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5_000 });
      redis.on("error", () => undefined);
      audit = {
        redis,
        queue: new JobQueue({ connection: redis, prefix: config.queuePrefix }),
        logs: new RedisJobLogStore(redis, config.queuePrefix),
        index: new JobIndex(redis, config.queuePrefix),
        orphanAudits: new OrphanAuditRequests({ connection: redis, redisUrl: config.redisUrl, prefix: config.queuePrefix }),
      };
    }
    return audit;
  };
  app.addHook("onClose", async () => {
    await audit?.orphanAudits.close();
    await audit?.queue.close();
    audit?.redis.disconnect();
  });
  deps.metrics?.setOrphanSource(() => readOrphanCounts(auditConnection().redis, config.queuePrefix));
  const orphanAuditWaitMs = orphanAuditWait(config.requestTimeoutMs, deps.orphanAuditWaitMs);
  // An audit's failure is worker-scrubbed text; scrubbed again here with this process's secrets.
  const scrubber = new SecretScrubber();
  scrubber.add(...secretValues(config));

  await app.register((scope, _options, registered) => {
    scope.addHook("onRequest", (req, reply, done) => {
      if (tokenName(req, config) === null) {
        void refuse(reply);
        return;
      }
      done();
    });

    // Job views through the edge's queue client (it scrubs them); index and logs on the reader connection.
    registerJobsApi(scope, {
      // A finished job's full log lives in the blob store once its Redis stream has expired.
      logArchive: blobStoreFor(config.blobStore),
      reader: () => {
        const { logs, index } = auditConnection();
        return { queue, logs, index };
      },
    });

    scope.post<{ Params: { id: string } }>("/v1/jobs/:id/cancel", documented(docs.cancel), async (req, reply) => {
      const { id } = req.params;
      if (!JOB_ID.test(id)) return reply.code(400).send({ error: "invalid", field: "id", message: "id: not a job id" });
      const view = await queue.getJobView(id);
      if (!view) return reply.code(404).send({ error: "not_found", message: `no job ${id}` });
      if (view.state === "waiting") {
        if (await queue.cancelWaiting(id)) return reply.code(202).send({ jobId: id, state: "cancelled" });
      }
      const now = await queue.getJobView(id);
      if (now?.state === "running" || now?.state === "waiting") {
        // The worker polls this flag and cancels the Pulumi operation: the engine first, then the process tree.
        await deps.redis.set(cancelKey(config.queuePrefix, id), "1", "EX", 24 * 3600);
        return reply.code(202).send({ jobId: id, state: "cancelling" });
      }
      return reply.code(409).send({ error: "conflict", message: `job ${id} is already ${now?.state ?? view.state}` });
    });

    scope.get("/v1/dead-letters", documented(docs.deadLetters), async () => {
      const ids = await deps.deadLetters.list();
      const jobs: JobView[] = [];
      for (const id of ids) {
        const v = await queue.getJobView(id);
        if (v?.state === "failed") jobs.push(v);
      }
      return { jobs };
    });

    scope.post<{ Params: { id: string } }>("/v1/dead-letters/:id/retry", documented(docs.retry), async (req, reply) => {
      const { id } = req.params;
      if (!JOB_ID.test(id)) return reply.code(400).send({ error: "invalid", field: "id", message: "id: not a job id" });
      if (!(await deps.deadLetters.has(id))) return reply.code(404).send({ error: "not_found", message: `job ${id} is not in the dead-letter list` });
      if (!(await deps.deadLetters.retry(queue.queue, id))) return reply.code(409).send({ error: "conflict", message: `job ${id} is not failed` });
      return reply.code(202).send({ jobId: id, state: "waiting" });
    });

    // What exists without an owner, and what is owned but missing. Read-only. A worker runs the audit
    // (worker/orphans/): the edge queues it and waits, bounded, for the report.
    scope.get<{ Querystring: { scope?: string; fresh?: string } }>("/v1/audit/orphans", documented(docs.orphans), async (req, reply) => {
      const requested = req.query.scope ?? config.orphanScope;
      const auditScope = ORPHAN_SCOPES.find((s) => s === requested);
      if (!auditScope) return reply.code(400).send({ error: "invalid", field: "scope", message: "scope: must be server or installation" });
      const fresh = req.query.fresh;
      if (fresh !== undefined && fresh !== "0" && fresh !== "1")
        return reply.code(400).send({ error: "invalid", field: "fresh", message: "fresh: must be 1 or 0" });
      const outcome = await auditConnection().orphanAudits.run(auditScope, orphanAuditWaitMs, { fresh: fresh === "1" });
      if (outcome.state === "done") return outcome.report;
      if (outcome.state === "failed") {
        return reply.code(500).send({ error: "audit_failed", jobId: outcome.jobId, message: scrubAuditFailure(outcome.message, (t) => scrubber.scrub(t)) });
      }
      return reply
        .code(503)
        .header("retry-after", "30")
        .send({
          error: "timeout",
          jobId: outcome.jobId,
          message: `no worker finished the orphan audit within ${Math.round(orphanAuditWaitMs / 1000)} s (is a worker running?); it stays queued, ask again`,
        });
    });

    scope.get<{ Querystring: { limit?: string } }>("/v1/audit", documented(docs.audit), async (req) => {
      const limit = Math.min(Math.max(Number(req.query.limit ?? 50) || 50, 1), 500);
      const jobs = await queue.queue.getJobs(["completed", "failed", "active", "waiting", "delayed"], 0, limit - 1, false);
      const entries: Record<string, unknown>[] = [];
      for (const j of jobs.sort((a, b) => b.timestamp - a.timestamp)) {
        const v = j.id ? await queue.getJobView(j.id) : null;
        if (v) entries.push(auditEntry(v));
      }
      return { entries };
    });
    registered();
  });

  // The dashboard, in its own scope so its auth hook covers its static assets too. It only ever
  // looks: a job added, retried or edited here would reach the worker without passing the tenant
  // API's checks, so Bull Board runs read-only and, should a version of it ever serve a write
  // route anyway, the edge refuses every method that is not a read.
  await app.register(
    async (scope) => {
      scope.addHook("onRequest", (req, reply, done) => {
        if (tokenName(req, config) === null) {
          void refuse(reply, true);
          return;
        }
        if (req.method !== "GET" && req.method !== "HEAD") {
          void reply
            .code(405)
            .header("allow", "GET, HEAD")
            .send({ error: "read_only", message: "the queue dashboard is read-only; use the /v1 API to change jobs" });
          return;
        }
        done();
      });
      const serverAdapter = new FastifyAdapter();
      serverAdapter.setBasePath("/admin/queues");
      createBullBoard({ queues: [new BullMQAdapter(queue.queue, { readOnlyMode: true, allowRetries: false })], serverAdapter });
      await scope.register(serverAdapter.registerPlugin());
    },
    { prefix: "/admin/queues" },
  );
}
