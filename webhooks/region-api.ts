// The region API: POST /v1/regions/:region provisions or updates a region's shared
// infrastructure (a region.provision job: on aws the `region-<region>` stack, policy-checked before
// `up`; on every target the region's Argo CD objects); GET /v1/regions and /v1/regions/:region show
// each region's state, settings and non-secret outputs. Bearer-token authenticated like every /v1
// route (the server's root hook checks first; each route checks again for itself).
//
// Settings (environment, domain, cost centre) are remembered per region: a POST without a body
// keeps what the region was last provisioned with, or the defaults (the preview region is the
// development environment). A request equal to a region job that still waits answers that job.
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from "fastify";
import type { Redis } from "ioredis";
import { z } from "zod";
import type { Config } from "../core/config.ts";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import { regionSchema } from "../core/ids.ts";
import type { JobData } from "../core/jobs.ts";
import { RegionIndex, costCentreSchema, defaultRegionSettings, regionDomainSchema, regionEnvironmentSchema, type RegionRecord } from "../core/regions.ts";
import type { JobQueue } from "../jobs/queue.ts";
import { regionViewSchema, type RegionView } from "../core/tenant-view-schema.ts";
import { BEARER, documented, errorBody, errorResponses } from "./openapi-schemas.ts";
import { authenticate } from "./tenant-api.ts";

export interface RegionApiDeps {
  readonly config: Config;
  readonly redis: Redis;
  readonly queue: JobQueue;
  readonly now?: () => number;
}

const regionBody = z
  .strictObject({ environment: regionEnvironmentSchema.optional(), domain: regionDomainSchema.optional(), costCentre: costCentreSchema.optional() })
  .optional();

function parseWith<S extends z.ZodType>(schema: S, value: unknown, fallbackField: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  let field = issue?.path.map(String).join(".") || fallbackField;
  if (issue?.code === "unrecognized_keys" && issue.keys[0]) field = issue.keys[0];
  throw new ValidationError(field, issue?.code === "unrecognized_keys" ? "is not a known field" : (issue?.message ?? "invalid"));
}

// The routes' OpenAPI description (webhooks/openapi.ts); documentation only, the handlers validate.
const regionParams = z.object({ region: regionSchema });
const docs = {
  provision: {
    tags: ["regions"],
    summary: "Provision or update a region's shared infrastructure (settings omitted: the last ones, or the defaults)",
    security: BEARER,
    params: regionParams,
    body: regionBody,
    response: {
      202: z
        .object({ jobId: z.string(), coalesced: z.literal(true).optional() })
        .describe("Queued (coalesced: an equal request's job still waits and does it)"),
      ...errorResponses(400, 401, 413, 415, 500, 503),
    },
  },
  list: {
    tags: ["regions"],
    summary: "Every region: state, settings, non-secret outputs",
    security: BEARER,
    response: { 200: z.object({ regions: z.array(regionViewSchema) }).describe("The regions"), ...errorResponses(401, 500, 503) },
  },
  get: {
    tags: ["regions"],
    summary: "One region",
    security: BEARER,
    params: regionParams,
    response: { 200: regionViewSchema.describe("The region"), ...errorResponses(400, 401, 500, 503), 404: errorBody(404, "Never provisioned") },
  },
} satisfies Record<string, FastifySchema>;

function publicRegion(r: RegionRecord): RegionView {
  return {
    region: r.region,
    state: r.state,
    jobId: r.jobId,
    settings: r.settings,
    outputs: r.outputs,
    ...(r.error ? { error: r.error } : {}),
    ...(r.readyAt ? { readyAt: r.readyAt } : {}),
    updatedAt: r.updatedAt,
  };
}

export function registerRegionApi(app: FastifyInstance, deps: RegionApiDeps): void {
  const regions = new RegionIndex(deps.redis, deps.config.queuePrefix, deps.now);
  const now = deps.now ?? Date.now;

  const authorized = (req: FastifyRequest, reply: FastifyReply): string | null => {
    const name = authenticate(req.headers.authorization, deps.config.apiTokens);
    if (name === null) {
      void reply.code(401).header("www-authenticate", 'Bearer realm="stackrail"').send({ error: "unauthorized", message: "missing or invalid bearer token" });
    }
    return name;
  };
  const regionParam = (req: FastifyRequest): string => parseWith(regionSchema, (req.params as Record<string, unknown>).region, "region");

  app.post("/v1/regions/:region", documented(docs.provision), async (req, reply) => {
    const tokenName = authorized(req, reply);
    if (tokenName === null) return reply;
    const region = regionParam(req);
    const body = parseWith(regionBody, req.body ?? undefined, "body");
    const record = await regions.get(region);
    const settings = { ...(record?.settings ?? defaultRegionSettings(region, deps.config.previewRegion)), ...body };

    // The same request again while its job still waits: that job does it.
    if (record?.jobId && JSON.stringify(record.settings) === JSON.stringify(settings)) {
      const view = await deps.queue.getJobView(record.jobId);
      if (view?.state === "waiting") return reply.code(202).send({ jobId: record.jobId, coalesced: true });
    }

    const jobId = randomUUID();
    const data: JobData = { kind: "region.provision", trigger: { type: "api", tokenName }, requestedAt: new Date(now()).toISOString(), region, ...settings };
    await regions.requested(region, jobId, settings);
    try {
      await deps.queue.enqueue(data, { jobId });
    } catch (err) {
      await regions.forget(region, jobId).catch(() => undefined);
      throw err;
    }
    req.log.info({ jobId, kind: data.kind, region, tokenName }, "job enqueued");
    return reply.code(202).send({ jobId });
  });

  app.get("/v1/regions", documented(docs.list), async (req, reply) => {
    if (authorized(req, reply) === null) return reply;
    return { regions: (await regions.list()).map(publicRegion) };
  });

  app.get("/v1/regions/:region", documented(docs.get), async (req, reply) => {
    if (authorized(req, reply) === null) return reply;
    const region = regionParam(req);
    const record = await regions.get(region);
    if (!record) throw new NotFoundError(`region ${region} has never been provisioned`);
    return publicRegion(record);
  });
}
