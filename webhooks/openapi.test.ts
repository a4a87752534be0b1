// GET /openapi.json (issue 15 §4) against the service as it runs (the API role of the real
// service over a real Redis): the document is a well-formed OpenAPI 3.1 description, every route
// Fastify serves is in it (internal dashboards excepted) and nothing else is, and every documented
// operation, called with good and bad requests, answers only statuses, media types and bodies the
// document describes (each body checked with ajv against the document's own schema).
// No copy of the official OpenAPI JSON Schema is installed, so the document's structure is checked
// here (the OpenAPI 3.1 fields this API uses, every $ref resolvable, every schema a valid JSON
// Schema 2020-12 by ajv's meta-schema).
import { createHmac } from "node:crypto";
import { Ajv2020 } from "ajv/dist/2020.js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { savePlan } from "../jobs/release-plan.ts";
import { rolloutAwaitingKey } from "../jobs/rollout-control.ts";
import { startHarness, type Harness } from "../test/support/harness.ts";
import { TEST_REDIS_URL } from "../test/support/services.ts";
import { functionZip } from "../test/support/zip-builder.ts";
import { isInternalRoute, OPENAPI_PATH, routesOf } from "./openapi.ts";

const METHODS = ["get", "put", "post", "delete", "patch", "options", "head", "trace"] as const;

// The parts of OpenAPI 3.1 this document uses, checked strictly enough that a malformed document fails.
const schemaObject = z.union([z.record(z.string(), z.unknown()), z.boolean()]);
const mediaType = z.strictObject({ schema: schemaObject });
const parameter = z.strictObject({
  name: z.string().min(1),
  in: z.enum(["query", "header", "path", "cookie"]),
  required: z.boolean().optional(),
  description: z.string().optional(),
  schema: schemaObject,
});
const operation = z.strictObject({
  summary: z.string().min(1),
  description: z.string().optional(),
  tags: z.array(z.string()).min(1),
  security: z.array(z.record(z.string(), z.array(z.string()))),
  parameters: z.array(parameter).optional(),
  requestBody: z.strictObject({ required: z.boolean(), description: z.string().optional(), content: z.record(z.string(), mediaType) }).optional(),
  responses: z.record(z.string().regex(/^[1-5]\d\d$/), z.strictObject({ description: z.string().min(1), content: z.record(z.string(), mediaType).optional() })),
});
const openApiDocument = z.strictObject({
  openapi: z.string().regex(/^3\.1\.\d+$/),
  info: z.strictObject({ title: z.string().min(1), version: z.string().min(1), description: z.string().optional() }),
  tags: z.array(z.strictObject({ name: z.string(), description: z.string() })).optional(),
  components: z.strictObject({
    schemas: z.record(z.string(), schemaObject),
    securitySchemes: z.record(z.string(), z.strictObject({ type: z.literal("http"), scheme: z.enum(["bearer", "basic"]), description: z.string() })),
  }),
  paths: z.record(z.string().startsWith("/"), z.partialRecord(z.enum(METHODS), operation)),
});
type Doc = z.infer<typeof openApiDocument>;
type Operation = z.infer<typeof operation>;

let h: Harness;
let redis: Redis;
let doc: Doc;
let ajv: Ajv2020;
/** `METHOD /template` → statuses seen. */
const covered = new Map<string, Set<number>>();

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll("~", "~0").replaceAll("/", "~1")).join("/");

interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

/**
 * Sends one request and checks its answer against the document: the route's operation exists,
 * the status is one of its responses, the media type one of that response's, the body valid.
 */
async function call(
  method: string,
  template: string,
  url: string,
  options: { body?: unknown; raw?: string; token?: string | null; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== null) headers.authorization ??= `Bearer ${options.token ?? h.token}`;
  let body: string | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  const res = await fetch(`${h.service.url ?? ""}${url}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  const where = `${method} ${url} → ${res.status} ${text.slice(0, 300)}`;
  const op: Operation | undefined = doc.paths[template]?.[method.toLowerCase() as (typeof METHODS)[number]];
  expect(op, `${where}: ${method} ${template} is not in the document`).toBeDefined();
  const response = op?.responses[String(res.status)];
  expect(response, `${where}: status ${res.status} is not documented for ${method} ${template}`).toBeDefined();
  const media = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
  expect(response?.content?.[media], `${where}: ${media} is not documented`).toBeDefined();
  const value: unknown = media === "application/json" ? JSON.parse(text) : text;
  const validate = ajv.getSchema(
    `openapi.json#/${pointer("paths", template, method.toLowerCase(), "responses", String(res.status), "content", media, "schema")}`,
  );
  expect(validate, where).toBeDefined();
  expect(validate?.(value), `${where}: ${JSON.stringify(validate?.errors)}`).toBe(true);
  const key = `${method} ${template}`;
  covered.set(key, (covered.get(key) ?? new Set()).add(res.status));
  // A request the route accepted is one its documented request body accepts too.
  if (res.status < 300 && options.body !== undefined) {
    const accepts = ajv.getSchema(`openapi.json#/${pointer("paths", template, method.toLowerCase(), "requestBody", "content", "application/json", "schema")}`);
    expect(accepts?.(options.body), `${where}: the body sent is not one the document accepts: ${JSON.stringify(accepts?.errors)}`).toBe(true);
  }
  return { status: res.status, body: value, headers: res.headers };
}

function signed(raw: string, headers: Record<string, string> = {}) {
  return {
    raw,
    token: null,
    headers: {
      "content-type": "application/json",
      "x-github-event": "ping",
      "x-github-delivery": crypto.randomUUID(),
      "x-hub-signature-256": `sha256=${createHmac("sha256", h.webhookSecret).update(raw).digest("hex")}`,
      ...headers,
    },
  };
}

const tag = Math.random().toString(36).slice(2, 6);
const REQUEST_TIMEOUT_MS = 5_000;
const tenant = `oa-${tag}`;

beforeAll(async () => {
  // A short inactivity limit: GET /v1/audit/orphans must answer its 503 before it cuts the connection.
  h = await startHarness({ role: "api", env: { STACKRAIL_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) } });
  redis = new Redis(TEST_REDIS_URL);
  const res = await fetch(`${h.service.url ?? ""}${OPENAPI_PATH}`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  const parsed = openApiDocument.safeParse(await res.json());
  if (!parsed.success) throw new Error(`not an OpenAPI 3.1 document: ${z.prettifyError(parsed.error)}`);
  doc = parsed.data;
  // The document itself holds the schemas: answers are checked against it by JSON pointer.
  ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema(doc, "openapi.json");
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await h?.close();
});

describe("GET /openapi.json", () => {
  it("is public, and every schema in it is a JSON Schema 2020-12 whose $refs resolve", () => {
    const schemas: unknown[] = [...Object.values(doc.components.schemas)];
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        for (const p of op.parameters ?? []) schemas.push(p.schema);
        for (const m of Object.values(op.requestBody?.content ?? {})) schemas.push(m.schema);
        for (const r of Object.values(op.responses)) for (const m of Object.values(r.content ?? {})) schemas.push(m.schema);
        for (const s of op.security) for (const name of Object.keys(s)) expect(doc.components.securitySchemes[name], name).toBeDefined();
      }
    }
    expect(schemas.length).toBeGreaterThan(100);
    for (const s of schemas) expect(ajv.validateSchema(s as object), JSON.stringify(ajv.errors)).toBe(true);
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]*"/g) ?? [];
    for (const ref of refs) {
      const target = ref.slice('"$ref":"'.length, -1);
      expect(target, ref).toMatch(/^#\/components\/schemas\//);
      expect(doc.components.schemas[target.slice("#/components/schemas/".length)], ref).toBeDefined();
    }
    // Nothing from the configuration: no token, secret, data directory or prefix.
    const text = JSON.stringify(doc);
    for (const secret of [h.token, h.webhookSecret, h.dataDir, h.config.queuePrefix]) expect(text).not.toContain(secret);
  });

  it("lists every route the service serves, and only those, except the internal dashboards", () => {
    const served = routesOf(h.service.app as NonNullable<typeof h.service.app>);
    const gets = new Set(served.filter((r) => r.method === "GET").map((r) => r.url));
    const api = new Set(
      served
        // Fastify answers HEAD for every GET route itself; the GET is the operation.
        .filter((r) => !(r.method === "HEAD" && gets.has(r.url)) && !isInternalRoute(r.url))
        .map((r) => `${r.method} ${r.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`)));
    expect(
      [...api].filter((r) => !documented.has(r)),
      "served but not documented",
    ).toEqual([]);
    expect(
      [...documented].filter((r) => !api.has(r)),
      "documented but not served",
    ).toEqual([]);
    expect(served.some((r) => r.url.startsWith("/admin/queues"))).toBe(true);
    expect(Object.keys(doc.paths).filter((p) => isInternalRoute(p))).toEqual([]);
  });

  it("checks answers against the document's schemas for real (a wrong body fails)", () => {
    const accepted = ajv.getSchema(`openapi.json#/${pointer("paths", "/v1/tenants", "post", "responses", "202", "content", "application/json", "schema")}`);
    expect(accepted?.({ jobId: "j1" })).toBe(true);
    expect(accepted?.({ jobId: 1 })).toBe(false);
    expect(accepted?.({ jobId: "j1", secret: "x" })).toBe(false);
    const tenantView = ajv.getSchema(
      `openapi.json#/${pointer("paths", "/v1/tenants/{id}", "get", "responses", "200", "content", "application/json", "schema")}`,
    );
    expect(tenantView?.({ id: "acme" })).toBe(false);
  });

  it("describes what is optional: a region's settings body, query parameters, the Idempotency-Key", () => {
    expect(doc.paths["/v1/regions/{region}"]?.post?.requestBody?.required).toBe(false);
    expect(doc.paths["/v1/tenants"]?.post?.requestBody?.required).toBe(true);
    expect(doc.paths["/v1/jobs"]?.get?.parameters?.map((p) => `${p.in}:${p.name}:${String(p.required)}`)).toEqual(
      expect.arrayContaining(["query:kind:false", "query:state:false", "query:tenant:false", "query:since:false", "query:limit:false", "query:cursor:false"]),
    );
    expect(doc.paths["/v1/tenants/{id}"]?.delete?.parameters?.map((p) => `${p.in}:${p.name}:${String(p.required)}`)).toEqual(
      expect.arrayContaining(["path:id:true", "header:idempotency-key:false"]),
    );
  });

  it("documents the bearer token, and the webhook's signature, event and delivery headers", () => {
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
    const webhook = doc.paths["/webhooks/github"]?.post;
    expect(webhook?.security).toEqual([]);
    expect((webhook?.parameters ?? []).filter((p) => p.in === "header" && p.required).map((p) => p.name)).toEqual(
      expect.arrayContaining(["x-hub-signature-256", "x-github-event", "x-github-delivery"]),
    );
    expect(doc.paths["/v1/tenants"]?.post?.security).toEqual([{ bearerAuth: [] }]);
    expect(Object.keys(doc.paths["/v1/tenants"]?.post?.responses ?? {})).toEqual(expect.arrayContaining(["202", "400", "401", "409"]));
  });
});

describe("every documented route answers as documented", () => {
  it("service routes", async () => {
    expect((await call("GET", "/openapi.json", "/openapi.json", { token: null })).status).toBe(200);
    expect((await call("GET", "/healthz", "/healthz", { token: null })).status).toBe(200);
    expect([200, 503]).toContain((await call("GET", "/readyz", "/readyz", { token: null })).status);
    expect((await call("GET", "/metrics", "/metrics")).status).toBe(200);
    expect((await call("GET", "/metrics", "/metrics", { token: null })).status).toBe(401);
  });

  it("the webhook", async () => {
    const ping = JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 1 });
    const first = signed(ping);
    expect((await call("POST", "/webhooks/github", "/webhooks/github", first)).status).toBe(202);
    expect((await call("POST", "/webhooks/github", "/webhooks/github", first)).status).toBe(202);
    expect(
      (
        await call("POST", "/webhooks/github", "/webhooks/github", {
          ...signed(ping),
          headers: { ...signed(ping).headers, "x-hub-signature-256": `sha256=${"0".repeat(64)}` },
        })
      ).status,
    ).toBe(401);
    expect((await call("POST", "/webhooks/github", "/webhooks/github", signed(ping, { "x-github-event": "NOT AN EVENT" }))).status).toBe(400);
    expect((await call("POST", "/webhooks/github", "/webhooks/github", signed("{not json"))).status).toBe(400);
    expect(
      (await call("POST", "/webhooks/github", "/webhooks/github", { raw: ping, token: null, headers: { "content-type": "application/json" } })).status,
    ).toBe(401);
  });

  it("tenants, releases and jobs", async () => {
    const t = (suffix = "") => `/v1/tenants/${tenant}${suffix}`;
    expect((await call("POST", "/v1/tenants", "/v1/tenants", { body: { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" } })).status).toBe(202);
    expect((await call("POST", "/v1/tenants", "/v1/tenants", { body: { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" } })).status).toBe(409);
    expect((await call("POST", "/v1/tenants", "/v1/tenants", { body: { id: "Not_An_Id", region: "eu-west-1", tier: "pool" } })).status).toBe(400);
    expect((await call("POST", "/v1/tenants", "/v1/tenants", { body: { id: tenant }, token: "wrong" })).status).toBe(401);
    expect((await call("POST", "/v1/tenants", "/v1/tenants", { raw: "<id/>", headers: { "content-type": "application/xml" } })).status).toBe(415);
    expect((await call("GET", "/v1/tenants", "/v1/tenants")).status).toBe(200);
    expect((await call("GET", "/v1/tenants/{id}", t())).status).toBe(200);
    expect((await call("GET", "/v1/tenants/{id}", `/v1/tenants/nope-${tag}`)).status).toBe(404);
    expect((await call("GET", "/v1/tenants/{id}", "/v1/tenants/NOT_AN_ID")).status).toBe(400);
    expect((await call("POST", "/v1/tenants/{id}/upgrade", t("/upgrade"), { body: { version: "1.1.0" } })).status).toBe(202);
    expect((await call("POST", "/v1/tenants/{id}/upgrade", t("/upgrade"), { body: { version: "not a version" } })).status).toBe(400);
    expect((await call("POST", "/v1/tenants/{id}/upgrade", `/v1/tenants/nope-${tag}/upgrade`, { body: { version: "1.1.0" } })).status).toBe(404);
    const moved = await call("POST", "/v1/tenants/{id}/move", t("/move"), { body: { tier: "silo" } });
    expect(moved.status).toBe(202);
    expect((await call("POST", "/v1/tenants/{id}/move", t("/move"), { body: { tier: "gold" } })).status).toBe(400);
    const fn = `/v1/tenants/${tenant}/functions/resize`;
    expect(
      (await call("PUT", "/v1/tenants/{id}/functions/{name}", fn, { body: { handler: "index.handler", code: functionZip().toString("base64") } })).status,
    ).toBe(202);
    expect((await call("PUT", "/v1/tenants/{id}/functions/{name}", fn, { body: { handler: "../x.handler", code: "AAAA" } })).status).toBe(400);

    const key = { "idempotency-key": `oa-${tag}-release` };
    const release = await call("POST", "/v1/releases", "/v1/releases", { body: { version: "2.0.0" }, headers: key });
    expect(release.status).toBe(202);
    expect((await call("POST", "/v1/releases", "/v1/releases", { body: { version: "2.0.0" }, headers: key })).status).toBe(202);
    expect((await call("POST", "/v1/releases", "/v1/releases", { body: { version: "2.0.1" }, headers: key })).status).toBe(422);
    expect((await call("POST", "/v1/releases", "/v1/releases", { body: { version: "2.0.0", extra: 1 } })).status).toBe(400);
    const rollout = (release.body as { jobId: string }).jobId;

    expect((await call("GET", "/v1/jobs/{id}", `/v1/jobs/${rollout}`)).status).toBe(200);
    expect((await call("GET", "/v1/jobs/{id}", `/v1/jobs/nope-${tag}`)).status).toBe(404);
    expect((await call("GET", "/v1/jobs", "/v1/jobs")).status).toBe(200);
    expect((await call("GET", "/v1/jobs", `/v1/jobs?tenant=${tenant}&limit=2`)).status).toBe(200);
    expect((await call("GET", "/v1/jobs", "/v1/jobs", { headers: { authorization: `Basic ${Buffer.from(`op:${h.token}`).toString("base64")}` } })).status).toBe(
      200,
    );
    expect((await call("GET", "/v1/jobs", "/v1/jobs?kind=nothing")).status).toBe(400);
    expect((await call("GET", "/v1/jobs", "/v1/jobs", { token: null })).status).toBe(401);
    expect((await call("GET", "/v1/jobs/{id}/logs", `/v1/jobs/${rollout}/logs`)).status).toBe(200);
    expect((await call("GET", "/v1/jobs/{id}/logs", `/v1/jobs/nope-${tag}/logs`)).status).toBe(404);
    expect((await call("GET", "/v1/jobs/{id}/logs", "/v1/jobs/12345/logs")).status).toBe(400);
    expect((await call("GET", "/v1/jobs/{id}/logs", `/v1/jobs/${rollout}/logs?tail=1`)).status).toBe(400);

    // The rollout's plan, its approval and rejection, pause and resume.
    const plan = (suffix: string) => `/v1/releases/${rollout}/${suffix}`;
    expect((await call("GET", "/v1/releases/{jobId}/plan", plan("plan"))).body).toMatchObject({ planned: false });
    await savePlan(redis, h.config.queuePrefix, {
      jobId: rollout,
      version: "2.0.0",
      createdAt: new Date().toISOString(),
      waves: [
        {
          wave: 1,
          regions: ["eu-west-1"],
          needsApproval: true,
          revision: 1,
          tenants: [
            {
              tenantId: tenant,
              region: "eu-west-1",
              tier: "silo",
              from: "1.1.0",
              to: "2.0.0",
              manifestDiff: "",
              infra: { diff: [{ urn: "urn:pulumi:x::y::t::n", type: "t", op: "update", properties: ["a"] }], violations: [], digest: "0".repeat(64) },
            },
          ],
          changes: [],
        },
      ],
    });
    expect((await call("POST", "/v1/releases/{jobId}/approve", plan("approve"))).status).toBe(409);
    // An approval names what its approver saw: a plan revised since then is refused, naming what waits.
    await redis.set(rolloutAwaitingKey(h.config.queuePrefix, rollout), "1:2");
    const stale = await call("POST", "/v1/releases/{jobId}/approve", plan("approve"), { body: { wave: 1, revision: 1 } });
    expect(stale.status).toBe(409);
    expect((stale.body as { message: string }).message).toContain("waits on wave 1 at plan revision 2");
    expect((await call("GET", "/v1/releases/{jobId}/plan", plan("plan"))).body).toMatchObject({ awaitingApproval: { wave: 1, revision: 2 } });
    expect((await call("POST", "/v1/releases/{jobId}/approve", plan("approve"), { body: { wave: 2, revision: 2 } })).status).toBe(409);
    expect((await call("POST", "/v1/releases/{jobId}/approve", plan("approve"), { body: { wave: 1, revision: "2" } })).status).toBe(400);
    expect((await call("POST", "/v1/releases/{jobId}/approve", plan("approve"), { body: { wave: 1, revision: 2, extra: 1 } })).status).toBe(400);
    const current = await call("POST", "/v1/releases/{jobId}/approve", plan("approve"), { body: { wave: 1, revision: 2 } });
    expect(current.status).toBe(202);
    expect(current.body).toMatchObject({ wave: 1, action: "approve" });
    expect((await call("GET", "/v1/releases/{jobId}/plan", plan("plan"))).body).toMatchObject({ waves: [{ approval: { wave: 1, revision: 2 } }] });
    // Without a body (the CLI, scripts) it approves what waits.
    await redis.set(rolloutAwaitingKey(h.config.queuePrefix, rollout), "1:1");
    expect((await call("POST", "/v1/releases/{jobId}/approve", plan("approve"))).status).toBe(202);
    expect((await call("POST", "/v1/releases/{jobId}/reject", plan("reject"), { body: { reason: "not today" } })).status).toBe(202);
    expect((await call("POST", "/v1/releases/{jobId}/reject", plan("reject"), { body: { why: "?" } })).status).toBe(400);
    expect((await call("GET", "/v1/releases/{jobId}/plan", plan("plan"))).body).toMatchObject({ planned: true });
    expect((await call("GET", "/v1/releases/{jobId}/plan", `/v1/releases/nope-${tag}/plan`)).status).toBe(404);
    expect((await call("GET", "/v1/releases/{jobId}/plan", "/v1/releases/no%20such/plan")).status).toBe(400);
    expect((await call("POST", "/v1/releases/{jobId}/pause", plan("pause"))).status).toBe(202);
    expect((await call("POST", "/v1/releases/{jobId}/resume", plan("resume"))).status).toBe(202);
    expect((await call("POST", "/v1/releases/{jobId}/pause", `/v1/releases/nope-${tag}/pause`)).status).toBe(404);
    expect((await call("POST", "/v1/releases/{jobId}/resume", "/v1/releases/no%20such/resume")).status).toBe(400);
    expect((await call("POST", "/v1/releases/{jobId}/approve", `/v1/releases/nope-${tag}/approve`)).status).toBe(404);

    // The console's lists (webhooks/console-api.ts).
    expect((await call("GET", "/v1/releases", "/v1/releases")).status).toBe(200);
    expect((await call("GET", "/v1/releases", "/v1/releases?limit=0")).status).toBe(400);
    expect((await call("GET", "/v1/releases/{jobId}", `/v1/releases/${rollout}`)).status).toBe(200);
    expect((await call("GET", "/v1/releases/{jobId}", `/v1/releases/nope-${tag}`)).status).toBe(404);
    expect((await call("GET", "/v1/releases/{jobId}", "/v1/releases/12345")).status).toBe(400);
    expect((await call("GET", "/v1/previews", "/v1/previews?closed=1")).status).toBe(200);
    expect((await call("GET", "/v1/previews", "/v1/previews?closed=2")).status).toBe(400);
    expect((await call("GET", "/v1/last-jobs", "/v1/last-jobs")).status).toBe(200);
    expect((await call("GET", "/v1/last-jobs", "/v1/last-jobs?tenant=x")).status).toBe(400);
    expect((await call("GET", "/v1/last-jobs", "/v1/last-jobs?limit=501")).status).toBe(400);
    expect((await call("GET", "/v1/last-jobs", "/v1/last-jobs?cursor=NOT%20AN%20ID")).status).toBe(400);
    // Pages of `limit` tenants; each page's `next` continues where it stopped, the last one's is null.
    const extra = [`${tenant}-a`, `${tenant}-b`, `${tenant}-c`];
    await redis.sadd(`${h.config.queuePrefix}:tenants`, ...extra);
    try {
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let pages = 0; pages < 10; pages += 1) {
        const page = await call("GET", "/v1/last-jobs", `/v1/last-jobs?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
        const body = page.body as { lastJobs: Record<string, { id: string } | null>; next: string | null };
        expect(Object.keys(body.lastJobs).length).toBeLessThanOrEqual(2);
        seen.push(...Object.keys(body.lastJobs));
        if (body.lastJobs[tenant]) expect(body.lastJobs[tenant]?.id).toEqual(expect.any(String));
        cursor = body.next;
        if (cursor === null) break;
      }
      expect(cursor).toBeNull();
      expect(seen).toEqual([tenant, ...extra].sort());
      const whole = (await call("GET", "/v1/last-jobs", "/v1/last-jobs?limit=500")).body as { lastJobs: Record<string, unknown>; next: string | null };
      expect(whole.next).toBeNull();
      expect(whole.lastJobs[tenant]).not.toBeNull();
      expect(whole.lastJobs[`${tenant}-a`]).toBeNull();
    } finally {
      await redis.srem(`${h.config.queuePrefix}:tenants`, ...extra);
    }

    // Cancel: a waiting job at once; then it has ended.
    const movedJob = (moved.body as { jobId: string }).jobId;
    expect((await call("POST", "/v1/jobs/{id}/cancel", `/v1/jobs/${movedJob}/cancel`)).status).toBe(202);
    expect((await call("POST", "/v1/jobs/{id}/cancel", `/v1/jobs/${movedJob}/cancel`)).status).toBe(409);
    expect((await call("POST", "/v1/jobs/{id}/cancel", `/v1/jobs/nope-${tag}/cancel`)).status).toBe(404);
    expect((await call("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/no%20such/cancel")).status).toBe(400);
    expect((await call("POST", "/v1/releases/{jobId}/pause", `/v1/releases/${rollout}/pause`)).status).toBe(202);

    expect((await call("DELETE", "/v1/tenants/{id}", t())).status).toBe(202);
    expect((await call("DELETE", "/v1/tenants/{id}", t())).status).toBe(409);
    expect((await call("DELETE", "/v1/tenants/{id}", `/v1/tenants/nope-${tag}`)).status).toBe(404);
  });

  it("regions", async () => {
    const region = "ap-south-1";
    const first = await call("POST", "/v1/regions/{region}", `/v1/regions/${region}`);
    expect(first.status).toBe(202);
    expect((await call("POST", "/v1/regions/{region}", `/v1/regions/${region}`)).body).toMatchObject({ coalesced: true });
    expect((await call("POST", "/v1/regions/{region}", `/v1/regions/${region}`, { body: { costCentre: "cc-1" } })).status).toBe(202);
    expect((await call("POST", "/v1/regions/{region}", `/v1/regions/${region}`, { body: { colour: "red" } })).status).toBe(400);
    expect((await call("POST", "/v1/regions/{region}", "/v1/regions/mars")).status).toBe(400);
    expect((await call("GET", "/v1/regions", "/v1/regions")).status).toBe(200);
    expect((await call("GET", "/v1/regions/{region}", `/v1/regions/${region}`)).status).toBe(200);
    expect((await call("GET", "/v1/regions/{region}", "/v1/regions/sa-east-9")).status).toBe(404);
    expect((await call("GET", "/v1/regions/{region}", "/v1/regions/mars")).status).toBe(400);
  });

  it("dead letters and the audit", async () => {
    expect((await call("GET", "/v1/dead-letters", "/v1/dead-letters")).status).toBe(200);
    expect((await call("POST", "/v1/dead-letters/{id}/retry", `/v1/dead-letters/nope-${tag}/retry`)).status).toBe(404);
    expect((await call("POST", "/v1/dead-letters/{id}/retry", "/v1/dead-letters/no%20such/retry")).status).toBe(400);
    expect((await call("GET", "/v1/audit", "/v1/audit?limit=5")).status).toBe(200);
    expect((await call("GET", "/v1/audit/orphans", "/v1/audit/orphans?scope=galaxy")).status).toBe(400);
    expect((await call("GET", "/v1/audit/orphans", "/v1/audit/orphans?fresh=yes")).status).toBe(400);
    // A report needs a worker; this edge has none: it answers 503 with the queued audit's id before
    // the connection's inactivity limit (STACKRAIL_REQUEST_TIMEOUT_MS) would reset it.
    const started = Date.now();
    const waited = await call("GET", "/v1/audit/orphans", "/v1/audit/orphans?scope=server&fresh=1");
    expect(waited.status).toBe(503);
    expect(waited.body).toMatchObject({ error: "timeout", jobId: expect.stringMatching(/\S/) });
    expect(waited.headers.get("retry-after")).toBe("30");
    expect(Date.now() - started).toBeLessThan(REQUEST_TIMEOUT_MS);
  });

  it("covered every documented operation", () => {
    const documented = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
    expect(documented.filter((op) => !covered.has(op))).toEqual([]);
  });
});
