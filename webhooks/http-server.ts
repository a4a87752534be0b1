// The HTTP edge in one Fastify instance: GitHub ingress, the tenant API, health, readiness and
// metrics. buildHttpServer() returns the app without listening; main.ts listens and may add routes
// (extraRoutes) before that. Errors map to one JSON shape: {error, message, field?}.
// No body is read from a sender who has not shown a credential: every /v1 route checks for an API
// token in onRequest (before the body; each route still authorizes for itself), a route that does
// not exist answers 404 unread, and the webhook route has its own budget (github-ingress.ts).
// A request's headers and body must arrive within STACKRAIL_REQUEST_TIMEOUT_MS.
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Redis } from "ioredis";
import { Counter, Gauge, type Registry } from "prom-client";
import { z } from "zod";
import type { ApiToken, Config } from "../core/config.ts";
import { StackrailError, ValidationError } from "../core/errors.ts";
import { edgeConnection } from "../core/redis.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "../jobs/queue.ts";
import { registerGitHubIngress, WEBHOOK_ROUTE } from "./github-ingress.ts";
import { registerOpenApi } from "./openapi.ts";
import { BEARER_OR_BASIC, PUBLIC, documented, errorResponses, textResponse } from "./openapi-schemas.ts";
import { isRedisUnavailable } from "./redis-errors.ts";
import { httpServerTimeouts } from "./server-timeouts.ts";
import { registerRegionApi } from "./region-api.ts";
import { registerConsole } from "./console-api.ts";
import { authenticate, registerTenantApi } from "./tenant-api.ts";
import { TenantIndex } from "../core/tenant-index.ts";

export interface Readiness {
  redis: boolean;
  engine: boolean;
}

export interface HttpServerDeps {
  config: Config;
  logger: Logger;
  queue: JobQueue;
  /** Connection for deliveries, idempotency keys and the tenant index; see createEdgeRedis(). */
  redis: Redis;
  registry: Registry;
  readiness: () => Promise<Readiness>;
  now?: () => number;
  /** Defaults to a TenantIndex on `redis` under config.queuePrefix. */
  tenants?: TenantIndex;
  /** Lets main.ts add routes (e.g. a queue dashboard) before listen. */
  extraRoutes?: (app: FastifyInstance) => void | Promise<void>;
}

/**
 * A Redis connection for the edge: it fails fast instead of queueing commands while Redis is away,
 * so a request answers 503 within a second rather than hanging. Wait for 'ready' before serving.
 */
export function createEdgeRedis(url: string): Redis {
  // A server or a Redis Cluster, as the URL says (core/redis.ts).
  return edgeConnection(url);
}

const READINESS_TIMEOUT_MS = 1_000;

const healthSchema = {
  tags: ["service"],
  summary: "Liveness",
  security: PUBLIC,
  response: { 200: z.object({ status: z.literal("ok") }).describe("The process serves requests") },
};
const readinessBody = z.object({ status: z.enum(["ready", "not ready"]), redis: z.boolean(), engine: z.boolean() });
const readySchema = {
  tags: ["service"],
  summary: "Readiness: Redis reachable and the Pulumi engine installed",
  security: PUBLIC,
  response: { 200: readinessBody.describe("Ready"), 503: readinessBody.describe("Not ready: what is missing") },
};
const metricsSchema = {
  tags: ["service"],
  summary: "Prometheus metrics (STACKRAIL_METRICS_TOKEN or an API token; or the token-less STACKRAIL_METRICS_PORT listener)",
  security: BEARER_OR_BASIC,
  response: { 200: textResponse("Prometheus text exposition format"), ...errorResponses(401) },
};

/** The name of the token presented as `Bearer <token>`, or as the password of HTTP Basic (browsers, scrapers); null when none matches. */
export function presentedTokenName(header: string | undefined, tokens: readonly ApiToken[]): string | null {
  if (typeof header === "string" && /^Basic /i.test(header)) {
    const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
    return authenticate(`Bearer ${decoded.slice(decoded.indexOf(":") + 1)}`, tokens);
  }
  return authenticate(header, tokens);
}

/** Answers from the headers alone; the connection is closed rather than an unread body drained. */
function answerUnread(req: FastifyRequest, reply: FastifyReply, status: number, body: Record<string, unknown>): FastifyReply {
  const hasBody = req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] ?? "0") !== "0";
  if (hasBody) void reply.header("connection", "close");
  return reply.code(status).send(body);
}

export async function buildHttpServer(deps: HttpServerDeps): Promise<FastifyInstance> {
  const now = deps.now ?? Date.now;
  const app = Fastify({
    loggerInstance: deps.logger,
    // Request ids in logs; the default serializers log method and URL, never headers.
    genReqId: () => crypto.randomUUID(),
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
    requestTimeout: deps.config.requestTimeoutMs,
    // Socket inactivity; between keep-alive requests Node uses keepAliveTimeout (Fastify: 72 s, above an ALB's 60 s).
    connectionTimeout: deps.config.requestTimeoutMs,
    http: httpServerTimeouts(deps.config.requestTimeoutMs),
    // The webhook route writes one line per delivery itself (github-ingress.ts), so Fastify's two
    // per-request lines (incoming, completed) are left out for it, and for it only. (A route
    // logLevel would do the same, but makes pino rebuild the log methods of every request's child.)
    logController: new LogController({ disableRequestLogging: (req) => req.routeOptions?.url === WEBHOOK_ROUTE }),
  }) as unknown as FastifyInstance;
  // First: it collects every route registered after it into GET /openapi.json (public; see openapi.ts).
  await registerOpenApi(app);

  const unauthorized = (req: FastifyRequest, reply: FastifyReply, message: string) =>
    answerUnread(req, reply.header("www-authenticate", 'Bearer realm="stackrail"'), 401, { error: "unauthorized", message });

  // Root hooks run before any body is read, for every route (and the 404 handler) registered below.
  app.addHook("onRequest", async (req, reply) => {
    if (req.is404) return answerUnread(req, reply, 404, { error: "not_found", message: `Route ${req.method}:${req.url.split("?")[0] ?? ""} not found` });
    // The matched route, not the raw URL: an encoded path that routes to /v1 is covered too.
    const route = req.routeOptions.url ?? "";
    if ((route === "/v1" || route.startsWith("/v1/")) && presentedTokenName(req.headers.authorization, deps.config.apiTokens) === null) {
      return unauthorized(
        req,
        reply,
        deps.config.apiTokens.length === 0 ? "no API token is configured; every request is refused" : "missing or invalid bearer token",
      );
    }
    return undefined;
  });

  const deliveries = new Counter({
    name: "stackrail_webhook_deliveries_total",
    help: "GitHub webhook deliveries by event and outcome",
    labelNames: ["event", "outcome"] as const,
    registers: [deps.registry],
  });
  const enqueued = new Counter({
    name: "stackrail_api_jobs_enqueued_total",
    help: "Jobs enqueued through the tenant API, by kind",
    labelNames: ["kind"] as const,
    registers: [deps.registry],
  });
  const unverifiedBytes = new Gauge({
    name: "stackrail_webhook_unverified_bytes",
    help: "Bytes of webhook bodies held before their signature was checked (at most STACKRAIL_UNVERIFIED_BYTES_MAX)",
    registers: [deps.registry],
  });

  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    if (err instanceof ValidationError) return reply.code(400).send({ error: err.code, field: err.field, message: err.message });
    if (err instanceof StackrailError) {
      const status = err.code === "not_found" ? 404 : err.code === "conflict" ? 409 : err.fate === "retry" ? 503 : 500;
      if (status >= 500) req.log.error({ err }, "request failed");
      return reply.code(status).send({ error: err.code, message: err.message });
    }
    if (isRedisUnavailable(err)) {
      req.log.warn({ err }, "request refused: Redis unavailable");
      return reply.code(503).send({ error: "unavailable", message: "the job queue is unavailable; retry later" });
    }
    const status = "statusCode" in err && typeof err.statusCode === "number" ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      const field = status === 400 ? "body" : undefined;
      return reply
        .code(status)
        .send({ error: "code" in err && typeof err.code === "string" ? err.code : "bad_request", message: err.message, ...(field ? { field } : {}) });
    }
    req.log.error({ err }, "request failed");
    return reply.code(500).send({ error: "internal", message: "internal error" });
  });

  app.get("/healthz", documented(healthSchema), (_req, reply) => reply.send({ status: "ok" }));

  app.get("/readyz", documented(readySchema), async (_req, reply) => {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      deps.readiness().catch(() => ({ redis: false, engine: false })),
      new Promise<Readiness>((resolve) => {
        timer = setTimeout(() => resolve({ redis: false, engine: false }), READINESS_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    const ready = r.redis && r.engine;
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", redis: r.redis, engine: r.engine });
  });

  // Metrics name tenants, stacks and traffic: a scraper shows STACKRAIL_METRICS_TOKEN or an API token
  // here, or uses the separate listener (STACKRAIL_METRICS_PORT) on a private interface.
  const metricsTokens: ApiToken[] = [...deps.config.apiTokens, ...(deps.config.metricsToken ? [{ name: "metrics", token: deps.config.metricsToken }] : [])];
  app.get(
    "/metrics",
    {
      ...documented(metricsSchema),
      onRequest: async (req, reply) => {
        if (presentedTokenName(req.headers.authorization, metricsTokens) !== null) return undefined;
        return unauthorized(
          req,
          reply,
          metricsTokens.length === 0 ? "no metrics or API token is configured; use STACKRAIL_METRICS_PORT" : "missing or invalid bearer token",
        );
      },
    },
    async (_req, reply) => reply.type(deps.registry.contentType).send(await deps.registry.metrics()),
  );

  registerGitHubIngress(app, { config: deps.config, logger: deps.logger, queue: deps.queue, redis: deps.redis, now, deliveries, unverifiedBytes });
  registerTenantApi(app, {
    config: deps.config,
    logger: deps.logger,
    queue: deps.queue,
    redis: deps.redis,
    tenants: deps.tenants ?? new TenantIndex(deps.redis, deps.config.queuePrefix, now),
    now,
    enqueued,
  });
  registerRegionApi(app, { config: deps.config, redis: deps.redis, queue: deps.queue, now });
  registerConsole(app, { config: deps.config, queue: deps.queue });
  if (deps.extraRoutes) await deps.extraRoutes(app);
  return app;
}
