// The tenant API (/v1/...): the SaaS control plane's way in (brief, "HTTP"; issue 4).
// Bearer tokens compared in constant time; zod-validated input, a 400 names the field and leaves
// nothing behind; 409 for a tenant that exists (checked and marked atomically in the index);
// Idempotency-Key makes a retried mutation return its first answer. Reads come from the tenant
// index and the job records; no answer ever carries a secret.
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from "fastify";
import type { Redis } from "ioredis";
import type { Counter } from "prom-client";
import { z } from "zod";
import { blobKeys, blobStoreFor, type BlobStore } from "../core/blob-store.ts";
import type { ApiToken, Config } from "../core/config.ts";
import { ConflictError, NotFoundError, ValidationError } from "../core/errors.ts";
import { functionNameSchema, regionSchema, tenantIdSchema, tierSchema, versionSchema } from "../core/ids.ts";
import { jobDataSchema, type JobData, type Trigger } from "../core/jobs.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "../jobs/queue.ts";
import { deriveTenantNames } from "../core/tenant-names.ts";
import { checkBundle } from "./bundle-check.ts";
import { BEARER, documented, errorBody, errorResponses, idempotencyHeaders, jobAcceptedSchema } from "./openapi-schemas.ts";
import { OnceStore } from "./once.ts";
import type { TenantIndex, TenantRecord } from "../core/tenant-index.ts";
import { tenantViewSchema, type TenantView } from "../core/tenant-view-schema.ts";
import { jobViewSchema } from "../jobs/job-view-schema.ts";

export const BUNDLE_MAX_BYTES = 10 * 1024 * 1024;
/** JSON body of a function upload: base64 grows by 4/3, plus room for the handler. */
const FUNCTION_BODY_LIMIT = Math.ceil((BUNDLE_MAX_BYTES * 4) / 3) + 64 * 1024;
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export interface TenantApiDeps {
  config: Config;
  logger: Logger;
  queue: JobQueue;
  redis: Redis;
  tenants: TenantIndex;
  now: () => number;
  enqueued: Counter<"kind">;
  /** Where uploaded bundles go (STACKRAIL_BLOB_URL); default: the configured store. */
  blobs?: BlobStore;
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest();

/** Returns the name of the token presented, or null. Every configured token is compared, in constant time. */
export function authenticate(header: string | undefined, tokens: readonly ApiToken[]): string | null {
  if (tokens.length === 0 || typeof header !== "string") return null;
  const m = /^Bearer +([\x21-\x7e]{1,4096})$/i.exec(header);
  const presented = sha256(m?.[1] ?? "");
  let name: string | null = null;
  for (const t of tokens) {
    if (timingSafeEqual(presented, sha256(t.token)) && name === null) name = t.name;
  }
  return m ? name : null;
}

/** First zod issue as a ValidationError naming the field (`region`, `id`, an unknown key, ...). */
function parseWith<S extends z.ZodType>(schema: S, value: unknown, fallbackField: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  let field = issue?.path.map(String).join(".") || fallbackField;
  if (issue?.code === "unrecognized_keys" && issue.keys[0]) field = [...issue.path.map(String), issue.keys[0]].join(".");
  throw new ValidationError(field, issue?.code === "unrecognized_keys" ? "is not a known field" : (issue?.message ?? "invalid"));
}

const provisionBody = z.strictObject({ id: tenantIdSchema, region: regionSchema, tier: tierSchema, version: versionSchema.optional() });
const upgradeBody = z.strictObject({ version: versionSchema });
const moveBody = z.strictObject({ tier: tierSchema });
const releaseBody = z.strictObject({ version: versionSchema });
const handlerSchema = z
  .string()
  .regex(/^[A-Za-z0-9_./-]{1,128}\.[A-Za-z_$][\w$]{0,63}$/, "must look like path/file.export")
  .refine((h) => !h.split("/").includes(".."), "must not contain ..");
const functionBody = z.strictObject({
  handler: handlerSchema,
  code: z
    .string()
    .max(FUNCTION_BODY_LIMIT)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64"),
});

// The routes' OpenAPI description (webhooks/openapi.ts): the bodies above, which the handlers parse
// with, and the views the answers are built from. Documentation only; the handlers validate.
const tenantParams = z.object({ id: tenantIdSchema });
const tenantErrors = errorResponses(401, 500, 503);
/** A mutation: JSON body, Idempotency-Key (a key still being processed: 409; reused for another request: 422). */
const mutationErrors = errorResponses(400, 401, 409, 413, 415, 422, 500, 503);
const docs = {
  provision: {
    tags: ["tenants"],
    summary: "Provision a tenant (version: the current release if omitted)",
    security: BEARER,
    headers: idempotencyHeaders,
    body: provisionBody,
    response: { 202: jobAcceptedSchema, ...mutationErrors, 409: errorBody(409, "The tenant exists, or the Idempotency-Key is still being processed") },
  },
  list: {
    tags: ["tenants"],
    summary: "Every tenant",
    security: BEARER,
    response: { 200: z.object({ tenants: z.array(tenantViewSchema) }).describe("The tenants"), ...tenantErrors },
  },
  get: {
    tags: ["tenants"],
    summary: "One tenant: desired state and last known outputs, never secrets",
    security: BEARER,
    params: tenantParams,
    response: { 200: tenantViewSchema.describe("The tenant"), ...errorResponses(400, 404), ...tenantErrors },
  },
  deprovision: {
    tags: ["tenants"],
    summary: "Deprovision a tenant (a failed one too: its stack is cleaned up)",
    security: BEARER,
    params: tenantParams,
    headers: idempotencyHeaders,
    response: { 202: jobAcceptedSchema, ...mutationErrors, ...errorResponses(404), 409: errorBody(409, "The tenant is protected or already on its way out") },
  },
  upgrade: {
    tags: ["tenants"],
    summary: "Upgrade a tenant to a version",
    security: BEARER,
    params: tenantParams,
    headers: idempotencyHeaders,
    body: upgradeBody,
    response: { 202: jobAcceptedSchema, ...mutationErrors, ...errorResponses(404), 409: errorBody(409, "The tenant is being deprovisioned or failed") },
  },
  move: {
    tags: ["tenants"],
    summary: "Move a tenant to another tier (pool ⇄ silo), keeping its id",
    security: BEARER,
    params: tenantParams,
    headers: idempotencyHeaders,
    body: moveBody,
    response: { 202: jobAcceptedSchema, ...mutationErrors, ...errorResponses(404), 409: errorBody(409, "The tenant is being deprovisioned or failed") },
  },
  function: {
    tags: ["tenants"],
    summary: "Deploy a tenant function: a zip bundle (base64, at most 10 MiB) and its handler",
    security: BEARER,
    params: z.object({ id: tenantIdSchema, name: functionNameSchema }),
    headers: idempotencyHeaders,
    body: functionBody,
    response: {
      202: z.object({ jobId: z.string(), bundleSha256: z.string().regex(/^[0-9a-f]{64}$/) }).describe("Queued; the bundle is stored under its SHA-256"),
      ...mutationErrors,
      ...errorResponses(404),
      409: errorBody(409, "The tenant is being deprovisioned or failed"),
    },
  },
  release: {
    tags: ["releases"],
    summary: "Roll a version out to every tenant, in waves",
    security: BEARER,
    headers: idempotencyHeaders,
    body: releaseBody,
    response: { 202: jobAcceptedSchema, ...mutationErrors },
  },
  job: {
    tags: ["jobs"],
    summary: "One job: state, progress, result or error",
    security: BEARER,
    params: z.object({ id: z.string() }),
    response: { 200: jobViewSchema.describe("The job"), ...errorResponses(404), ...tenantErrors },
  },
} satisfies Record<string, FastifySchema>;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function publicTenant(r: TenantRecord): TenantView {
  return {
    id: r.id,
    region: r.region,
    tier: r.tier,
    version: r.version,
    protected: r.protected ?? false,
    state: r.state,
    // A failed provision or deprovision: which job, which stack may hold resources, and why.
    ...(r.failure ? { failure: r.failure } : {}),
    outputs: r.outputs,
    updatedAt: r.updatedAt,
  };
}

export function registerTenantApi(app: FastifyInstance, deps: TenantApiDeps): void {
  const prefix = deps.config.queuePrefix;
  const idempotency = new OnceStore(deps.redis, { pendingTtlMs: 60_000, doneTtlSeconds: IDEMPOTENCY_TTL_SECONDS, waitMs: 2_000 });
  const tokenName = (req: FastifyRequest) => (req as FastifyRequest & { stackrailToken?: string }).stackrailToken ?? "unknown";

  const tenantParam = (req: FastifyRequest): string => parseWith<typeof tenantIdSchema>(tenantIdSchema, (req.params as Record<string, unknown>).id, "id");
  const triggerOf = (req: FastifyRequest): Trigger => ({ type: "api", tokenName: tokenName(req) });
  const requestedAt = () => new Date(deps.now()).toISOString();

  /** Enqueues the job (under `fixedId` if given: an id that exists already makes this a no-op). */
  async function enqueue(data: JobData, req: FastifyRequest, fixedId?: string): Promise<string> {
    const { jobId } = await deps.queue.enqueue(jobDataSchema.parse(data), fixedId === undefined ? {} : { jobId: fixedId });
    deps.enqueued.inc({ kind: data.kind });
    req.log.info({ jobId, kind: data.kind, tokenName: tokenName(req) }, "job enqueued");
    return jobId;
  }

  /**
   * The scope of the request's Idempotency-Key (token and a digest of the key), or undefined
   * without a valid one. A provision names its job and its claim after it, so that a retry of a
   * request whose answer was lost finds its own claim and job again (see POST /tenants).
   */
  function keyScope(req: FastifyRequest): string | undefined {
    const key = req.headers["idempotency-key"];
    if (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)) return undefined;
    return `${tokenName(req)}:${createHash("sha256").update(key).digest("hex")}`;
  }

  /** Runs a mutation, once per Idempotency-Key (scoped to the token): a retry gets the first answer. */
  async function mutate(req: FastifyRequest, reply: FastifyReply, fingerprintOf: () => string, work: () => Promise<Answer>): Promise<FastifyReply> {
    const key = req.headers["idempotency-key"];
    if (key === undefined) {
      const a = await work();
      return reply.code(a.status).send(a.body);
    }
    if (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)) throw new ValidationError("Idempotency-Key", "must be 1 to 255 visible ASCII characters");
    const fingerprint = createHash("sha256").update(`${req.method} ${req.url}\n`).update(fingerprintOf()).digest("hex");
    const storeKey = `${prefix}:idem:${keyScope(req) as string}`;
    const result = await idempotency.run<Answer & { fingerprint: string }>(storeKey, async () => {
      const a = await work();
      return { remember: a.status >= 200 && a.status < 300, value: { ...a, fingerprint } };
    });
    if (result.status === "busy") return reply.code(409).send({ error: "conflict", message: "a request with this Idempotency-Key is still being processed" });
    if (result.value.fingerprint !== fingerprint) {
      return reply.code(422).send({ error: "idempotency_key_reused", field: "Idempotency-Key", message: "this key was used for a different request" });
    }
    if (result.status === "replay") void reply.header("idempotent-replayed", "true");
    return reply.code(result.value.status).send(result.value.body);
  }

  const bodyPrint = (req: FastifyRequest) => () => JSON.stringify(req.body ?? null);

  const blobs = deps.blobs ?? blobStoreFor(deps.config.blobStore);

  /**
   * The bundle goes to the blob store under the tenant's own folder (`tenants/<id>/bundles/<sha256>`),
   * where whichever worker runs the job finds it: never a path on this machine's disk.
   */
  async function storeBundle(tenantId: string, bundle: Buffer): Promise<string> {
    const sha = createHash("sha256").update(bundle).digest("hex");
    const key = blobKeys.bundle(tenantId, sha);
    if (!(await blobs.exists(key))) await blobs.put(key, bundle);
    return sha;
  }

  void app.register(
    (scope, _opts, done) => {
      scope.addHook("onRequest", async (req, reply) => {
        const name = authenticate(req.headers.authorization, deps.config.apiTokens);
        if (name === null) {
          return reply
            .code(401)
            .header("www-authenticate", 'Bearer realm="stackrail"')
            .send({
              error: "unauthorized",
              message: deps.config.apiTokens.length === 0 ? "no API token is configured; every request is refused" : "missing or invalid bearer token",
            });
        }
        (req as FastifyRequest & { stackrailToken?: string }).stackrailToken = name;
        return undefined;
      });

      scope.post("/tenants", documented(docs.provision), async (req, reply) =>
        mutate(req, reply, bodyPrint(req), async () => {
          const body = parseWith(provisionBody, req.body, "body");
          // Every name the id yields (database, users, paths, Kubernetes and Argo CD names) is
          // checked now, so no id is accepted that some system would refuse after `up`.
          deriveTenantNames(body.id);
          const version = body.version ?? (await deps.tenants.currentVersion());
          if (!version) throw new ValidationError("version", "is required: no release has been rolled out yet");
          // With an Idempotency-Key the job id derives from the key, and every claim records the job
          // it was made for: a retry of a request answered 503 after its claim (an add that timed out
          // yet ran, a claim that could not be undone) finds its own claim and job and answers what
          // the first should have, instead of 409 for its own tenant or a second provision job.
          const scope = keyScope(req);
          const jobId = scope === undefined ? randomUUID() : `provision-${sha256(`${scope}\n${body.id}`).toString("hex").slice(0, 40)}`;
          const ownerKey = `${prefix}:provision-claim:${body.id}`;
          const data: JobData = {
            kind: "tenant.provision",
            trigger: triggerOf(req),
            requestedAt: requestedAt(),
            tenantId: body.id,
            region: body.region,
            tier: body.tier,
            version,
          };
          const claim = await deps.tenants.claimProvision({ id: body.id, region: body.region, tier: body.tier, version });
          if (!claim.ok) {
            const ours = scope !== undefined && (await deps.redis.get(ownerKey)) === jobId;
            if (!ours) throw new ConflictError(`tenant ${body.id} already exists (${claim.state})`);
            // Still provisioning: the job is enqueued again (a no-op if its add ran). Past that, it ran.
            if (claim.state === "provisioning") await enqueue(data, req, jobId);
            return { status: 202, body: { jobId } };
          }
          try {
            await deps.redis.set(ownerKey, jobId, "EX", IDEMPOTENCY_TTL_SECONDS);
            // This key's job exists already (its tenant since gone): it was this request's effect.
            if (scope !== undefined && (await deps.queue.queue.getJobState(jobId)) !== "unknown") {
              await deps.tenants.abandonProvision(body.id);
              return { status: 202, body: { jobId } };
            }
            return { status: 202, body: { jobId: await enqueue(data, req, jobId) } };
          } catch (err) {
            // An add that timed out may still have run (the state is read on the same connection,
            // behind it): then the job exists and is this request's answer.
            const state = await deps.queue.queue.getJobState(jobId).catch(() => undefined);
            if (state !== undefined && state !== "unknown") return { status: 202, body: { jobId } };
            // Not added, or unreadable. Without a key nothing could find this claim again: undone.
            // With one, only a job provably not added undoes it; otherwise the claim stays and a
            // retry with the same key enqueues its job.
            if (scope === undefined || state === "unknown") await deps.tenants.abandonProvision(body.id).catch(() => undefined);
            throw err;
          }
        }),
      );

      scope.get("/tenants", documented(docs.list), async () => ({ tenants: (await deps.tenants.list()).map(publicTenant) }));

      scope.get("/tenants/:id", documented(docs.get), async (req) => {
        const id = tenantParam(req);
        const record = await deps.tenants.get(id);
        if (!record) throw new NotFoundError(`tenant ${id} not found`);
        return publicTenant(record);
      });

      scope.delete("/tenants/:id", documented(docs.deprovision), async (req, reply) =>
        mutate(
          req,
          reply,
          () => "",
          async () => {
            const id = tenantParam(req);
            const record = await deps.tenants.get(id);
            if (!record) throw new NotFoundError(`tenant ${id} not found`);
            if (record.protected) throw new ConflictError(`tenant ${id} is protected`);
            // A failed tenant is cleaned up the same way: its stack may hold resources.
            const moved = await deps.tenants.transition(id, ["active", "provisioning", "failed"], "deprovisioning");
            if (moved === "missing") throw new NotFoundError(`tenant ${id} not found`);
            if (moved !== "ok") throw new ConflictError(`tenant ${id} is already ${moved}`);
            try {
              const jobId = await enqueue({ kind: "tenant.deprovision", trigger: triggerOf(req), requestedAt: requestedAt(), tenantId: id }, req);
              return { status: 202, body: { jobId } };
            } catch (err) {
              await deps.tenants.transition(id, ["deprovisioning"], record.state).catch(() => undefined);
              throw err;
            }
          },
        ),
      );

      /** A tenant that can still be changed: known, not on its way out. */
      async function changeable(id: string): Promise<TenantRecord> {
        const record = await deps.tenants.get(id);
        if (!record) throw new NotFoundError(`tenant ${id} not found`);
        if (record.state === "deprovisioning") throw new ConflictError(`tenant ${id} is being deprovisioned`);
        if (record.state === "failed") throw new ConflictError(`tenant ${id} failed (${record.failure?.job ?? "?"}); DELETE it to clean it up`);
        return record;
      }

      scope.post("/tenants/:id/upgrade", documented(docs.upgrade), async (req, reply) =>
        mutate(req, reply, bodyPrint(req), async () => {
          const id = tenantParam(req);
          const body = parseWith(upgradeBody, req.body, "body");
          await changeable(id);
          const jobId = await enqueue(
            { kind: "tenant.upgrade", trigger: triggerOf(req), requestedAt: requestedAt(), tenantId: id, version: body.version },
            req,
          );
          return { status: 202, body: { jobId } };
        }),
      );

      scope.post("/tenants/:id/move", documented(docs.move), async (req, reply) =>
        mutate(req, reply, bodyPrint(req), async () => {
          const id = tenantParam(req);
          const body = parseWith(moveBody, req.body, "body");
          await changeable(id);
          const jobId = await enqueue({ kind: "tenant.move", trigger: triggerOf(req), requestedAt: requestedAt(), tenantId: id, tier: body.tier }, req);
          return { status: 202, body: { jobId } };
        }),
      );

      scope.put("/tenants/:id/functions/:name", { bodyLimit: FUNCTION_BODY_LIMIT, ...documented(docs.function) }, async (req, reply) =>
        mutate(req, reply, bodyPrint(req), async () => {
          const id = tenantParam(req);
          const name: string = parseWith<typeof functionNameSchema>(functionNameSchema, (req.params as Record<string, unknown>).name, "name");
          const body = parseWith(functionBody, req.body, "body");
          const bundle = Buffer.from(body.code, "base64");
          if (bundle.length === 0) throw new ValidationError("code", "is empty");
          if (bundle.length > BUNDLE_MAX_BYTES) throw new ValidationError("code", "bundle is larger than 10 MiB");
          // The archive itself (not its first bytes), before anything is stored: see bundle-check.ts.
          await checkBundle(bundle, body.handler);
          await changeable(id);
          const bundleSha256 = await storeBundle(id, bundle);
          const jobId = await enqueue(
            { kind: "tenant.function", trigger: triggerOf(req), requestedAt: requestedAt(), tenantId: id, name, bundleSha256, handler: body.handler },
            req,
          );
          return { status: 202, body: { jobId, bundleSha256 } };
        }),
      );

      scope.post("/releases", documented(docs.release), async (req, reply) =>
        mutate(req, reply, bodyPrint(req), async () => {
          const body = parseWith(releaseBody, req.body, "body");
          const jobId = await enqueue({ kind: "release.rollout", trigger: triggerOf(req), requestedAt: requestedAt(), version: body.version }, req);
          return { status: 202, body: { jobId } };
        }),
      );

      scope.get("/jobs/:id", documented(docs.job), async (req) => {
        const raw = (req.params as Record<string, unknown>).id;
        const id = typeof raw === "string" ? raw : "";
        const view = await deps.queue.getJobView(id);
        if (!view) throw new NotFoundError("job not found");
        return view;
      });

      done();
    },
    { prefix: "/v1" },
  );
}
