// What operators read about jobs (issue 15 §4), behind the API tokens:
//   GET /v1/jobs            jobs newest first, filtered by kind, state, tenant and creation time,
//                           a page at a time (`limit`, and `next` to pass back as `cursor`)
//   GET /v1/jobs/:id/logs   the job's full log: the engine's own output with the job's progress
//                           lines (`[stackrail] …`), as text/plain; `?follow=1` keeps the response
//                           open and streams what comes until the job has ended
// Every query parameter is validated (zod); an unknown one is refused too, so a typo is not
// silently an unfiltered answer.
import { Readable } from "node:stream";
import type { FastifyInstance, FastifySchema } from "fastify";
import { z } from "zod";
import { ValidationError } from "../core/errors.ts";
import { tenantIdSchema } from "../core/ids.ts";
import { JOB_KINDS, jobIdSchema, type JobKind, type JobState } from "../core/jobs.ts";
import { JobIndex, type IndexEntry } from "../jobs/job-index.ts";
import type { BlobStore } from "../core/blob-store.ts";
import { ArchivedJobLogStore } from "../jobs/job-log-archive.ts";
import { logRenderer, type JobLogStore } from "../jobs/job-logs.ts";
import type { JobQueue, JobView } from "../jobs/queue.ts";
import { jobListItemSchema } from "../jobs/job-view-schema.ts";
import { BEARER_OR_BASIC, documented, errorBody, errorResponses, textResponse } from "./openapi-schemas.ts";
import { limitParam, parseQuery } from "./query-params.ts";

/** Every state a job view shows (core/jobs.ts JobState); the compiler keeps the two equal. */
export const JOB_STATES = ["waiting", "running", "awaiting-approval", "succeeded", "failed", "superseded", "cancelled"] as const satisfies readonly JobState[];
const everyState: Record<Exclude<JobState, (typeof JOB_STATES)[number]>, never> = {};
void everyState;

export const LIST_LIMIT_MAX = 200;
export const LIST_LIMIT_DEFAULT = 50;
/**
 * A page looks at no more than this many indexed jobs: a filter that few jobs match (a rare state)
 * answers a short page with a `next` cursor rather than reading the whole retention window at once.
 */
export const LIST_SCAN_BUDGET = 1_000;
const VIEW_BATCH = 50;

/** `next`/`cursor`: the last job a page looked at (creation time, id), base64url JSON; opaque to clients. */
const cursorSchema = z.string().transform((raw, ctx): IndexEntry => {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
    const parsed = z.tuple([z.number().int().nonnegative(), jobIdSchema]).parse(decoded);
    return { t: parsed[0], id: parsed[1] };
  } catch {
    ctx.addIssue({ code: "custom", message: "not a cursor this API handed out (pass `next` back as it is)" });
    return z.NEVER;
  }
});

function encodeCursor(entry: IndexEntry): string {
  return Buffer.from(JSON.stringify([entry.t, entry.id]), "utf8").toString("base64url");
}

const listQuerySchema = z.strictObject({
  kind: z.enum(JOB_KINDS as [JobKind, ...JobKind[]], { message: `must be one of ${JOB_KINDS.join(", ")}` }).optional(),
  state: z.enum(JOB_STATES, { message: `must be one of ${JOB_STATES.join(", ")}` }).optional(),
  tenant: tenantIdSchema.optional(),
  since: z.iso.datetime({ offset: true, message: "must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z" }).optional(),
  limit: limitParam(LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT),
  cursor: cursorSchema.optional(),
});

const logsQuerySchema = z.strictObject({
  follow: z.enum(["1", "true", "0", "false"], { message: "must be 1 or 0" }).optional(),
});

// The routes' OpenAPI description (webhooks/openapi.ts): the query schemas above, which the
// handlers parse with; documentation only, the handlers validate.
const docs = {
  list: {
    tags: ["jobs"],
    summary: "Jobs, newest first, filtered by kind, state, tenant and creation time, a page at a time",
    security: BEARER_OR_BASIC,
    querystring: listQuerySchema,
    response: {
      200: z
        .object({
          jobs: z.array(jobListItemSchema),
          next: z.string().nullable().meta({ description: "Pass back as `cursor` for the next page; null: nothing more matches" }),
        })
        .describe("A page of jobs"),
      ...errorResponses(400, 401, 500, 503),
    },
  },
  logs: {
    tags: ["jobs"],
    summary: "A job's full log: the engine's output and the job's progress lines (`?follow=1` streams until the job ends)",
    security: BEARER_OR_BASIC,
    params: z.object({ id: jobIdSchema }),
    querystring: logsQuerySchema,
    response: { 200: textResponse("The log, as text"), ...errorResponses(400, 401, 500, 503), 404: errorBody(404, "No such job") },
  },
} satisfies Record<string, FastifySchema>;

/** A list entry: the job's view without its progress lines (GET /v1/jobs/:id and …/logs have them). */
export type JobListItem = Omit<JobView, "progress">;

function listItem(view: JobView): JobListItem {
  const item: Partial<JobView> = { ...view };
  delete item.progress;
  return item as JobListItem;
}

export interface JobsApiDeps {
  /** A connection for reads that may take longer than the edge's fail-fast budget (a sweep, a page). */
  readonly reader: () => { queue: JobQueue; logs: JobLogStore; index: JobIndex };
  /** How often a followed log looks for more (ms). */
  readonly followPollMs?: number;
  /** Where finished jobs' logs are archived (jobs/job-log-archive.ts): read once their stream has expired. */
  readonly logArchive?: BlobStore;
}

const FINAL_BULL_STATES = new Set(["completed", "failed", "unknown"]);

export function registerJobsApi(app: FastifyInstance, deps: JobsApiDeps): void {
  const pollMs = deps.followPollMs ?? 300;

  app.get("/v1/jobs", documented(docs.list), async (req) => {
    const q = parseQuery(listQuerySchema, req.query);
    const { queue, index } = deps.reader();
    // Jobs queued by any client but not yet taken by a worker are indexed here, so a page never
    // misses a waiting job.
    await index.sweep(queue.queue);
    const filter = { ...(q.kind ? { kind: q.kind } : {}), ...(q.tenant ? { tenant: q.tenant } : {}) };
    const key = index.keyFor(filter);
    const sinceMs = q.since === undefined ? undefined : Date.parse(q.since);
    const jobs: JobListItem[] = [];
    let after: IndexEntry | undefined = q.cursor;
    let looked = 0;
    let exhausted = false;
    while (jobs.length < q.limit && looked < LIST_SCAN_BUDGET) {
      const batch = await index.range(key, { ...(after ? { after } : {}), ...(sinceMs !== undefined ? { sinceMs } : {}), count: VIEW_BATCH });
      if (batch.length === 0) {
        exhausted = true;
        break;
      }
      const views = await Promise.all(batch.map((e) => queue.getJobView(e.id, { progress: false })));
      const gone: string[] = [];
      for (const [i, entry] of batch.entries()) {
        looked += 1;
        after = entry;
        const view = views[i];
        if (!view) gone.push(entry.id);
        else if ((!q.kind || view.kind === q.kind) && (!q.state || view.state === q.state)) {
          jobs.push(listItem(view));
        }
        if (jobs.length >= q.limit || looked >= LIST_SCAN_BUDGET) break;
      }
      await index.forget(gone, [key, index.allKey()]);
    }
    // A short page with a `next` means the scan budget ran out, not that nothing more matches.
    return { jobs, next: exhausted || after === undefined ? null : encodeCursor(after) };
  });

  app.get<{ Params: { id: string } }>("/v1/jobs/:id/logs", documented(docs.logs), async (req, reply) => {
    const id = req.params.id;
    if (!jobIdSchema.safeParse(id).success) throw new ValidationError("id", "not a job id");
    const follow = parseQuery(logsQuerySchema, req.query).follow;
    const following = follow === "1" || follow === "true";
    const reader = deps.reader();
    const queue = reader.queue;
    const logs = deps.logArchive ? new ArchivedJobLogStore(reader.logs, deps.logArchive) : reader.logs;
    if ((await queue.queue.getJobState(id)) === "unknown") return reply.code(404).send({ error: "not_found", message: `no job ${id}` });

    let closed = false;
    let wake: (() => void) | undefined;
    req.raw.on("close", () => {
      closed = true;
      wake?.();
    });
    const pause = (): Promise<void> =>
      new Promise((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });

    async function* text(): AsyncGenerator<string> {
      let after: string | undefined;
      let ended = false;
      const render = logRenderer();
      for (;;) {
        // The job's state before the read: a job seen final has flushed its whole log already.
        if (following && !ended) ended = FINAL_BULL_STATES.has(await queue.queue.getJobState(id));
        const batch = await logs.read(id, { ...(after ? { after } : {}), count: 1000 });
        if (batch.length > 0) {
          after = batch[batch.length - 1]?.id;
          // Engine output may stop mid-line (progress dots); a Stackrail line starts on its own.
          yield render(batch);
          if (batch.length === 1000) continue;
        }
        if (!following || ended || closed) return;
        await pause();
        if (closed) return;
      }
    }

    if (following) {
      // A followed job may print nothing for minutes (it waits for its stack): the connection's
      // inactivity limit does not apply to this response. A proxy's idle limit still may.
      req.raw.socket.setTimeout(0);
    }
    return reply
      .header("content-type", "text/plain; charset=utf-8")
      .header("cache-control", "no-store")
      .header("x-content-type-options", "nosniff")
      .send(Readable.from(text()));
  });
}
