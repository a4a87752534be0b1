// The operator console (issue 17 §3): a static page at /console and the read-only lists it needs
// that the rest of the API lacks. Everything else the page shows comes from the existing routes
// (GET /v1/tenants, /v1/jobs, /v1/jobs/:id, /v1/jobs/:id/logs, /v1/releases/:jobId/plan,
// POST /v1/releases/:jobId/approve).
//
//   GET /console            the page (webhooks/console/): no data in it, no token in it. It asks the
//                           operator for an API token, keeps it in sessionStorage and sends it as
//                           `Authorization: Bearer` to the JSON API, never in a URL.
//   GET /v1/releases        release rollouts, newest first: state, waves, which tenants each wave
//                           brought to the version, the wave waiting for approval
//   GET /v1/releases/:jobId one of them (its diffs: GET /v1/releases/:jobId/plan)
//   GET /v1/previews        PR previews, newest activity first: repository, PR, title, head, URL,
//                           state, when the first and the last job of the preview were queued
//                           (`limit`, default 20: the preview jobs read grow with it, bounded)
//   GET /v1/last-jobs       the newest job of each tenant, a page of tenants (by id) at a time:
//                           `limit` (default 100, at most 500) and `cursor` (the last page's `next`)
//
// The page polls these every 15 s while its tab is visible: each request reads a bounded number of
// keys, in pipelines and batches of VIEW_BATCH job views.
//
// The lists are read from the job index (jobs/job-index.ts) and the rollout's keys (jobs/), so they
// cover what the job records cover: seven days after a job finished, it is gone from them.
// The page is served with a strict Content-Security-Policy: scripts and styles from this origin
// only, no inline script, no string-to-HTML sinks (Trusted Types), no framing, no form posts.
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply, FastifySchema } from "fastify";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis.ts";
import { z } from "zod";
import type { Config } from "../core/config.ts";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import { previewStackName, TENANT_ID_PATTERN } from "../core/ids.ts";
import { jobIdSchema } from "../core/jobs.ts";
import { JobIndex, type IndexEntry } from "../jobs/job-index.ts";
import { approvalsOf, awaitingWave, rejectionOf } from "../jobs/release-approval.ts";
import { loadPlan, type PlannedWave } from "../jobs/release-plan.ts";
import { rolloutWavesKey } from "../jobs/rollout-control.ts";
import type { JobQueue, JobView } from "../jobs/queue.ts";
import { jobStateSchema, jobTriggerSchema } from "../jobs/job-view-schema.ts";
import { approvalRecordSchema, rejectionRecordSchema } from "../jobs/release-plan-schema.ts";
import { BEARER, documented, errorBody, errorResponses } from "./openapi-schemas.ts";
import { authenticate } from "./tenant-api.ts";
import { limitParam, parseQuery } from "./query-params.ts";

export const CONSOLE_PATH = "/console";

/** Sent with every console asset. `require-trusted-types-for` makes any innerHTML of a string throw. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

const ASSETS = {
  "console.html": "text/html; charset=utf-8",
  "console.js": "text/javascript; charset=utf-8",
  "console.css": "text/css; charset=utf-8",
} as const;
type AssetName = keyof typeof ASSETS;

export const RELEASES_LIMIT_MAX = 100;
export const PREVIEWS_LIMIT_MAX = 200;
export const LAST_JOBS_LIMIT_MAX = 500;
/** Preview jobs looked at per list, per kind, for every `limit` previews asked (bounded below). */
const PREVIEW_SCAN_PER_ITEM = 4;
const PREVIEW_SCAN_MAX = 400;
/** Job views read at once (each is a few Redis reads): bounds one request's share of the connection. */
const VIEW_BATCH = 50;

const releasesQuerySchema = z.strictObject({
  limit: limitParam(RELEASES_LIMIT_MAX, 20),
});

const previewsQuerySchema = z.strictObject({
  limit: limitParam(PREVIEWS_LIMIT_MAX, 20),
  /** `1`: destroyed previews too. */
  closed: z.enum(["0", "1"], { message: "must be 1 or 0" }).default("0"),
});

const noQuerySchema = z.strictObject({});

const lastJobsQuerySchema = z.strictObject({
  limit: limitParam(LAST_JOBS_LIMIT_MAX, 100).describe("Tenants per page"),
  cursor: z.string().regex(TENANT_ID_PATTERN, "must be the `next` of a previous page").optional().describe("The previous page's `next`"),
});

/** Field `w<n>` of a rollout's waves hash (worker/handlers/release-rollout.ts WaveSummary): only what the console shows. */
const waveSummarySchema = z.object({
  wave: z.number().int(),
  regions: z.array(z.string()).default([]),
  updated: z.array(z.string()).default([]),
  failed: z.array(z.object({ tenantId: z.string(), error: z.string().optional() })).default([]),
  notStarted: z.array(z.string()).default([]),
  skipped: z.array(z.object({ tenantId: z.string(), reason: z.string().optional() })).default([]),
  commit: z.string().nullable().default(null),
});
type WaveSummary = z.infer<typeof waveSummarySchema>;

export type TenantWaveStatus = "done" | "failed" | "skipped" | "not-started" | "pending";

export interface ConsoleWave {
  wave: number;
  regions: string[];
  needsApproval: boolean;
  /** Each tenant of the wave and how far this rollout brought it. */
  tenants: { id: string; from: string | null; to: string | null; status: TenantWaveStatus; error?: string }[];
  /** The wave's GitOps commit, once committed. */
  commit: string | null;
  approval: unknown;
}

/** A job as lists show it: no progress lines, no result (GET /v1/jobs/:id has both). */
export interface JobSummary {
  id: string;
  kind: string;
  state: string;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  error?: string;
}

function summary(view: JobView): JobSummary {
  return {
    id: view.id,
    kind: view.kind,
    state: view.state,
    createdAt: view.createdAt,
    startedAt: view.startedAt,
    finishedAt: view.finishedAt,
    ...(view.error ? { error: view.error.slice(0, 500) } : {}),
  };
}

function waveOf(planned: PlannedWave | undefined, done: WaveSummary | undefined, approval: unknown): ConsoleWave {
  const failed = new Map((done?.failed ?? []).map((f) => [f.tenantId, f.error]));
  const skipped = new Set((done?.skipped ?? []).map((s) => s.tenantId));
  const updated = new Set(done?.updated ?? []);
  const notStarted = new Set(done?.notStarted ?? []);
  const status = (id: string): TenantWaveStatus => {
    if (updated.has(id)) return "done";
    if (failed.has(id)) return "failed";
    if (skipped.has(id)) return "skipped";
    if (notStarted.has(id)) return "not-started";
    return "pending";
  };
  const ids = planned ? planned.tenants.map((t) => t.tenantId) : [...updated, ...failed.keys(), ...skipped, ...notStarted];
  const plannedOf = new Map((planned?.tenants ?? []).map((t) => [t.tenantId, t]));
  return {
    wave: planned?.wave ?? done?.wave ?? 0,
    regions: [...(planned?.regions ?? done?.regions ?? [])],
    needsApproval: planned?.needsApproval ?? false,
    tenants: ids.map((id) => {
      const error = failed.get(id);
      return {
        id,
        from: plannedOf.get(id)?.from ?? null,
        to: plannedOf.get(id)?.to ?? null,
        status: status(id),
        ...(error ? { error: error.slice(0, 500) } : {}),
      };
    }),
    commit: done?.commit ?? null,
    approval: approval ?? null,
  };
}

// The /v1 routes' OpenAPI description (webhooks/openapi.ts): the query schemas above, which the
// handlers parse with; documentation only, the handlers validate. The page's own routes are not API.
const jobSummarySchema = z.object({
  id: z.string(),
  kind: z.string(),
  state: jobStateSchema,
  createdAt: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  error: z.string().optional(),
});
const consoleWaveSchema = z.object({
  wave: z.number().int(),
  regions: z.array(z.string()),
  needsApproval: z.boolean(),
  tenants: z.array(
    z.object({
      id: z.string(),
      from: z.string().nullable(),
      to: z.string().nullable(),
      status: z.enum(["done", "failed", "skipped", "not-started", "pending"]),
      error: z.string().optional(),
    }),
  ),
  commit: z.string().nullable(),
  approval: approvalRecordSchema.nullable(),
});
const consoleReleaseSchema = z.object({
  ...jobSummarySchema.shape,
  version: z.string().nullable(),
  resumes: z.string().optional(),
  supersededBy: z.string().optional(),
  trigger: jobTriggerSchema.nullable(),
  planned: z.boolean(),
  awaitingApproval: z.object({ wave: z.number().int(), revision: z.number().int() }).nullable(),
  rejection: rejectionRecordSchema.optional(),
  waves: z.array(consoleWaveSchema),
});
const consoleErrors = errorResponses(400, 401, 500, 503);
const consoleDocs = {
  releases: {
    tags: ["releases"],
    summary: "Release rollouts, newest first: state, waves, which tenants each wave brought to the version",
    security: BEARER,
    querystring: releasesQuerySchema,
    response: { 200: z.object({ releases: z.array(consoleReleaseSchema) }).describe("The rollouts"), ...consoleErrors },
  },
  release: {
    tags: ["releases"],
    summary: "One release rollout (its diffs: GET /v1/releases/{jobId}/plan)",
    security: BEARER,
    params: z.object({ jobId: jobIdSchema }),
    querystring: noQuerySchema,
    response: { 200: consoleReleaseSchema.describe("The rollout"), ...consoleErrors, 404: errorBody(404, "No release rollout with this job id") },
  },
  previews: {
    tags: ["jobs"],
    summary: "PR previews, newest activity first: repository, PR, title, head, URL, state",
    security: BEARER,
    querystring: previewsQuerySchema,
    response: {
      200: z
        .object({
          previews: z.array(
            z.object({
              stack: z.string(),
              repo: z.string(),
              pr: z.number().int(),
              title: z.string().nullable(),
              headSha: z.string().nullable(),
              url: z.string().nullable(),
              state: z.string(),
              openedAt: z.string().nullable(),
              updatedAt: z.string().nullable(),
              lastJob: jobSummarySchema,
            }),
          ),
        })
        .describe("The previews"),
      ...consoleErrors,
    },
  },
  lastJobs: {
    tags: ["jobs"],
    summary: "The newest job of each tenant, a page of tenants (by id) at a time",
    security: BEARER,
    querystring: lastJobsQuerySchema,
    response: {
      200: z
        .object({
          lastJobs: z.record(z.string(), jobSummarySchema.nullable()),
          next: z.string().nullable().describe("The cursor of the next page; null on the last"),
        })
        .describe("By tenant id (null: no job kept)"),
      ...consoleErrors,
    },
  },
} satisfies Record<string, FastifySchema>;
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
const consoleShapes: [SameKeys<JobSummary, z.infer<typeof jobSummarySchema>>, SameKeys<ConsoleWave, z.infer<typeof consoleWaveSchema>>] = [true, true];
void consoleShapes;

export interface ConsoleDeps {
  readonly config: Config;
  /** The edge's queue client: job views through it are scrubbed of secret values. */
  readonly queue: JobQueue;
  /** Where the page's files are (tests); defaults to webhooks/console/. */
  readonly assetsDir?: URL;
}

export function registerConsole(app: FastifyInstance, deps: ConsoleDeps): void {
  const { config, queue } = deps;
  const prefix = config.queuePrefix;

  // Read once at start-up: a missing file stops the service instead of a broken page later.
  const dir = deps.assetsDir ?? new URL("./console/", import.meta.url);
  const assets = new Map<AssetName, Buffer>();
  for (const name of Object.keys(ASSETS) as AssetName[]) assets.set(name, readFileSync(new URL(name, dir)));

  const sendAsset = (reply: FastifyReply, name: AssetName): FastifyReply =>
    reply
      .header("content-type", ASSETS[name])
      .header("content-security-policy", CONSOLE_CSP)
      .header("x-content-type-options", "nosniff")
      .header("x-frame-options", "DENY")
      .header("referrer-policy", "no-referrer")
      .header("cross-origin-opener-policy", "same-origin")
      .header("cache-control", "no-store")
      .send(assets.get(name));

  app.get(CONSOLE_PATH, (_req, reply) => sendAsset(reply, "console.html"));
  app.get(`${CONSOLE_PATH}/`, (_req, reply) => reply.redirect(CONSOLE_PATH, 308));
  app.get(`${CONSOLE_PATH}/console.js`, (_req, reply) => sendAsset(reply, "console.js"));
  app.get(`${CONSOLE_PATH}/console.css`, (_req, reply) => sendAsset(reply, "console.css"));

  // The lists read many keys: their own connection, without the edge's fail-fast command limit,
  // made on first use and closed with the app.
  type Reader = { redis: Redis; index: JobIndex };
  let reader: Reader | undefined;
  const read = (): Reader => {
    if (!reader) {
      const redis = connectRedis(config.redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5_000 });
      redis.on("error", () => undefined);
      reader = { redis, index: new JobIndex(redis, prefix) };
    }
    return reader;
  };
  app.addHook("onClose", () => {
    reader?.redis.disconnect();
  });

  /** Job views for index entries, in order, in batches; entries whose record is gone are skipped. */
  const viewsOf = async (entries: readonly IndexEntry[]): Promise<JobView[]> => {
    const out: JobView[] = [];
    for (let i = 0; i < entries.length; i += VIEW_BATCH) {
      const batch = entries.slice(i, i + VIEW_BATCH);
      const views = await Promise.all(batch.map((e) => queue.getJobView(e.id, { progress: false })));
      for (const v of views) if (v) out.push(v);
    }
    return out;
  };

  void app.register((scope, _options, done) => {
    // The edge's root hook refuses /v1 without a token already; each route authorizes for itself too.
    scope.addHook("onRequest", async (req, reply) => {
      if (authenticate(req.headers.authorization, config.apiTokens) !== null) return undefined;
      return reply.code(401).header("www-authenticate", 'Bearer realm="stackrail"').send({ error: "unauthorized", message: "missing or invalid bearer token" });
    });

    /** A rollout as the console shows it: its job, its waves and which tenants each has brought to the version. */
    const releaseOf = async (view: JobView) => {
      const { redis } = read();
      const [plan, approvals, rejection, waiting, rawWaves] = await Promise.all([
        loadPlan(redis, prefix, view.id),
        approvalsOf(redis, prefix, view.id),
        rejectionOf(redis, prefix, view.id),
        awaitingWave(redis, prefix, view.id),
        redis.hgetall(rolloutWavesKey(prefix, view.id)),
      ]);
      const done = new Map<number, WaveSummary>();
      for (const [field, raw] of Object.entries(rawWaves)) {
        if (!/^w\d+$/.test(field)) continue;
        try {
          const parsed = waveSummarySchema.safeParse(JSON.parse(raw));
          if (parsed.success) done.set(parsed.data.wave, parsed.data);
        } catch {
          // An unreadable summary shows the wave as planned only.
        }
      }
      const numbers = [...new Set([...(plan?.waves.map((w) => w.wave) ?? []), ...done.keys()])].sort((a, b) => a - b);
      const waves = numbers.map((n) =>
        waveOf(
          plan?.waves.find((w) => w.wave === n),
          done.get(n),
          approvals.get(n),
        ),
      );
      const underWay = view.state === "waiting" || view.state === "running" || view.state === "awaiting-approval";
      return {
        ...summary(view),
        version: typeof view.data.version === "string" ? view.data.version : null,
        ...(typeof view.data.resumes === "string" ? { resumes: view.data.resumes } : {}),
        ...(view.supersededBy ? { supersededBy: view.supersededBy } : {}),
        trigger: view.trigger,
        planned: plan !== null,
        awaitingApproval: underWay && waiting ? waiting : null,
        ...(rejection ? { rejection } : {}),
        waves,
      };
    };

    scope.get("/v1/releases", documented(consoleDocs.releases), async (req) => {
      const q = parseQuery(releasesQuerySchema, req.query);
      const { index } = read();
      // A release queued but not yet taken by a worker is listed too.
      await index.sweep(queue.queue);
      const views = await viewsOf(await index.range(index.kindKey("release.rollout"), { count: q.limit }));
      return { releases: await Promise.all(views.filter((v) => v.kind === "release.rollout").map(releaseOf)) };
    });

    scope.get<{ Params: { jobId: string } }>("/v1/releases/:jobId", documented(consoleDocs.release), async (req) => {
      parseQuery(noQuerySchema, req.query);
      const { jobId } = req.params;
      if (!jobIdSchema.safeParse(jobId).success) throw new ValidationError("jobId", "not a job id");
      const view = await queue.getJobView(jobId, { progress: false });
      if (!view || view.kind !== "release.rollout") throw new NotFoundError(`no release rollout ${jobId}`);
      return releaseOf(view);
    });

    scope.get("/v1/previews", documented(consoleDocs.previews), async (req) => {
      const q = parseQuery(previewsQuerySchema, req.query);
      const { index } = read();
      await index.sweep(queue.queue);
      // A preview is a few jobs (opened, pushed to, closed): a bounded scan per preview asked for.
      const scan = Math.min(PREVIEW_SCAN_MAX, q.limit * PREVIEW_SCAN_PER_ITEM);
      const [ups, destroys] = await Promise.all([
        index.range(index.kindKey("preview.up"), { count: scan }),
        index.range(index.kindKey("preview.destroy"), { count: scan }),
      ]);
      // Newest first across both kinds: the first job met for a stack is its latest.
      const entries = [...ups, ...destroys].sort((a, b) => b.t - a.t || (a.id < b.id ? 1 : -1));
      const byStack = new Map<string, JobView[]>();
      for (const view of await viewsOf(entries)) {
        const repo = view.data.repo as { owner?: unknown; name?: unknown } | undefined;
        if (typeof repo?.name !== "string" || typeof view.data.pr !== "number") continue;
        let stack = view.stack;
        if (!stack) {
          try {
            stack = previewStackName(repo.name, view.data.pr);
          } catch {
            continue;
          }
        }
        const jobs = byStack.get(stack) ?? [];
        jobs.push(view);
        byStack.set(stack, jobs);
      }
      const previews: Record<string, unknown>[] = [];
      for (const [stack, jobs] of byStack) {
        const latest = jobs[0] as JobView;
        const latestUp = jobs.find((j) => j.kind === "preview.up");
        const built = jobs.find((j) => j.kind === "preview.up" && j.state === "succeeded");
        const destroyed = latest.kind === "preview.destroy" && latest.state === "succeeded";
        if (destroyed && q.closed === "0") continue;
        const state =
          latest.kind === "preview.destroy"
            ? ({ succeeded: "destroyed", failed: "destroy-failed" }[latest.state as string] ?? "destroying")
            : ({ succeeded: "live", running: "updating", waiting: "queued" }[latest.state as string] ?? latest.state);
        const repo = latest.data.repo as { owner?: unknown; name?: unknown };
        const url = (built?.result as { url?: unknown } | undefined)?.url;
        previews.push({
          stack,
          repo: `${String(repo.owner)}/${String(repo.name)}`,
          pr: latest.data.pr,
          title: typeof latestUp?.data.title === "string" ? latestUp.data.title : null,
          headSha: typeof latestUp?.data.headSha === "string" ? latestUp.data.headSha : null,
          url: !destroyed && typeof url === "string" ? url : null,
          state,
          openedAt: jobs.at(-1)?.createdAt ?? null,
          updatedAt: latest.createdAt,
          lastJob: summary(latest),
        });
        if (previews.length >= q.limit) break;
      }
      return { previews };
    });

    scope.get("/v1/last-jobs", documented(consoleDocs.lastJobs), async (req) => {
      const q = parseQuery(lastJobsQuerySchema, req.query);
      const { redis, index } = read();
      await index.sweep(queue.queue);
      // A page of tenant ids, in id order after the cursor. The ids only (TenantIndex's set of
      // ids, core/tenant-index.ts), not every tenant's record: those are /v1/tenants's to read.
      const all = (await redis.smembers(`${prefix}:tenants`)).filter((id) => TENANT_ID_PATTERN.test(id)).sort();
      const from = q.cursor === undefined ? 0 : all.findIndex((id) => id > (q.cursor ?? ""));
      const ids = from < 0 ? [] : all.slice(from, from + q.limit);
      const next = from >= 0 && from + q.limit < all.length ? (ids.at(-1) ?? null) : null;
      // The newest entry of each tenant's index key: one pipeline for the page, not a read per tenant.
      const newest: (IndexEntry | undefined)[] = [];
      if (ids.length > 0) {
        const pipe = redis.pipeline();
        for (const id of ids) pipe.zrange(index.tenantKey(id), 0, 0, "REV", "WITHSCORES");
        for (const [err, raw] of (await pipe.exec()) ?? []) {
          const [id, t] = (err ? [] : (raw as string[])) as (string | undefined)[];
          newest.push(id !== undefined && t !== undefined ? { id, t: Number(t) } : undefined);
        }
      }
      const entries = newest.filter((e): e is IndexEntry => e !== undefined);
      const views = new Map((await viewsOf(entries)).map((v) => [v.id, v]));
      const lastJobs: Record<string, JobSummary | null> = {};
      ids.forEach((id, i) => {
        const entry = newest[i];
        const view = entry ? views.get(entry.id) : undefined;
        lastJobs[id] = view ? summary(view) : null;
      });
      return { lastJobs, next };
    });

    done();
  });
}
