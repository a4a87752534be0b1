// Operator routes: the job list and job logs (jobs-api.ts), cancel a job, the dead-letter list and
// its retry, the audit trail, and the queue dashboard (@bull-board, read-only) under
// /admin/queues — all behind the API tokens.
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Redis } from "ioredis";
import type { Config } from "../core/config.ts";
import { engineLocation, type EngineLocation } from "../core/engine.ts";
import type { Metrics } from "../core/metrics.ts";
import type { DeadLetters } from "../worker/dead-letters.ts";
import { createGitOpsWriter } from "../worker/gitops/writer-factory.ts";
import type { GitOpsWriter } from "../worker/gitops/writer.ts";
import { cancelKey } from "../worker/job-control.ts";
import { JobIndex } from "../worker/job-index.ts";
import { RedisJobLogStore } from "../worker/job-logs.ts";
import { auditAndRecord } from "../worker/orphans/audit.ts";
import { readOrphanCounts } from "../worker/orphans/last-audit.ts";
import type { OrphanReport, OrphanScope } from "../worker/orphans/types.ts";
import { JobQueue, type JobView } from "../worker/queue.ts";
import { registerJobsApi } from "./jobs-api.ts";
import { authenticate } from "./tenant-api.ts";

const JOB_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export interface OperationsDeps {
  readonly config: Config;
  readonly redis: Redis;
  readonly queue: JobQueue;
  readonly deadLetters: DeadLetters;
  /** The GitOps repository the orphan audit reads (the one GITOPS_REPO names when not given). */
  readonly reader?: Pick<GitOpsWriter, "listFiles" | "readFile">;
  readonly engine?: EngineLocation;
  /** Gets the `stackrail_orphans` gauge's source. */
  readonly metrics?: Metrics;
}

const ORPHAN_SCOPES: readonly OrphanScope[] = ["server", "installation"];

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

/** The audit view of a job: who or what asked, when, and what it changed. */
export function auditEntry(view: JobView): Record<string, unknown> {
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
  type Reader = { redis: Redis; queue: JobQueue; logs: RedisJobLogStore; index: JobIndex };
  let audit: Reader | undefined;
  const auditConnection = (): Reader => {
    if (!audit) {
      const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5_000 });
      redis.on("error", () => undefined);
      audit = {
        redis,
        queue: new JobQueue({ connection: redis, prefix: config.queuePrefix }),
        logs: new RedisJobLogStore(redis, config.queuePrefix),
        index: new JobIndex(redis, config.queuePrefix),
      };
    }
    return audit;
  };
  app.addHook("onClose", async () => {
    await audit?.queue.close();
    audit?.redis.disconnect();
  });
  deps.metrics?.setOrphanSource(() => readOrphanCounts(auditConnection().redis, config.queuePrefix));
  let reader: Promise<Pick<GitOpsWriter, "listFiles" | "readFile">> | undefined;
  // Concurrent requests share one audit per scope: it lists stacks and scans servers.
  const running = new Map<OrphanScope, Promise<OrphanReport>>();
  const runAudit = (scope: OrphanScope): Promise<OrphanReport> => {
    const current = running.get(scope);
    if (current) return current;
    const started = (async () => {
      reader ??= deps.reader ? Promise.resolve(deps.reader) : createGitOpsWriter(config);
      const { redis, queue: auditQueue } = auditConnection();
      return auditAndRecord({ config, redis, queue: auditQueue, reader: await reader, engine: deps.engine ?? engineLocation() }, { scope });
    })().finally(() => running.delete(scope));
    running.set(scope, started);
    return started;
  };

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
      reader: () => {
        const { logs, index } = auditConnection();
        return { queue, logs, index };
      },
    });

    scope.post<{ Params: { id: string } }>("/v1/jobs/:id/cancel", async (req, reply) => {
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

    scope.get("/v1/dead-letters", async () => {
      const ids = await deps.deadLetters.list();
      const jobs: JobView[] = [];
      for (const id of ids) {
        const v = await queue.getJobView(id);
        if (v?.state === "failed") jobs.push(v);
      }
      return { jobs };
    });

    scope.post<{ Params: { id: string } }>("/v1/dead-letters/:id/retry", async (req, reply) => {
      const { id } = req.params;
      if (!JOB_ID.test(id)) return reply.code(400).send({ error: "invalid", field: "id", message: "id: not a job id" });
      if (!(await deps.deadLetters.has(id))) return reply.code(404).send({ error: "not_found", message: `job ${id} is not in the dead-letter list` });
      if (!(await deps.deadLetters.retry(queue.queue, id))) return reply.code(409).send({ error: "conflict", message: `job ${id} is not failed` });
      return reply.code(202).send({ jobId: id, state: "waiting" });
    });

    // What exists without an owner, and what is owned but missing (worker/orphans/). Read-only.
    scope.get<{ Querystring: { scope?: string } }>("/v1/audit/orphans", async (req, reply) => {
      const requested = req.query.scope ?? config.orphanScope;
      const auditScope = ORPHAN_SCOPES.find((s) => s === requested);
      if (!auditScope) return reply.code(400).send({ error: "invalid", field: "scope", message: "scope: must be server or installation" });
      return runAudit(auditScope);
    });

    scope.get<{ Querystring: { limit?: string } }>("/v1/audit", async (req) => {
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
