// POST /webhooks/github: verify, dedupe, route, enqueue (issues 4 and 11).
// Nobody without the secret makes this route hold more than its headers until it is accounted for:
//  1. onRequest (headers only): no secret configured, or a missing or malformed X-Hub-Signature-256,
//     is a 401; a declared length over the per-request limit a 413; a body that would take the
//     unverified bytes held by this process over STACKRAIL_UNVERIFIED_BYTES_MAX a 503 with
//     Retry-After. These refusals close the connection, so an unread body is not drained either.
//  2. The route's only body parser streams the raw bytes through one HMAC per secret (rotation)
//     and a SHA-256 digest. It keeps the chunks, but copies or decodes nothing before the signature
//     matched: what GitHub signed is exactly what is checked, before any parsing.
//  3. The handler: headers, JSON, the repository allowlist (STACKRAIL_REPOSITORIES: one App secret
//     signs every repository it is installed on), then dedupe on the delivery id AND the body's
//     digest (the signature does not cover X-GitHub-Delivery, so a captured body replayed under a
//     new id is the same delivery), route, enqueue. A 202 is sent only once every job is in Redis.
// Per delivery the edge spends CPU on: one HMAC and one SHA-256 pass over the bytes, one UTF-8
// check and decode, one JSON.parse, zod on the few fields routing uses (never the whole payload),
// the claim's round trip (claim, PR head and lane places in it), the adds, one log line. A job
// carries only what the worker needs (a preview.up is ~330 bytes, not the 21 KB payload).
// Measurements: bench/README.md, "Ingest profile (issue 19)".
import { isUtf8 } from "node:buffer";
import { createHash, createHmac, createSecretKey, timingSafeEqual, type Hmac, type KeyObject } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from "fastify";
import { z } from "zod";
import type { Redis } from "ioredis";
import type { Counter, Gauge } from "prom-client";
import type { Config } from "../core/config.ts";
import { StackrailError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue, PreparedJob } from "../jobs/queue.ts";
import type { RepoRef } from "../core/jobs.ts";
import { deliveryRepository, RedisPrHeadStore, repositoryAllowed, routeGitHubEvent, type PrHead, type PrHeadStore } from "./github-routing.ts";
import { OnceStore, type ClaimSet } from "./once.ts";
import { PUBLIC, documented, errorBody, errorResponses } from "./openapi-schemas.ts";
import { redisWriteBatcher } from "./redis-batch.ts";
import { isRedisUnavailable } from "./redis-errors.ts";

/** The route's path. */
export const WEBHOOK_ROUTE = "/webhooks/github";

/** GitHub caps payloads at 25 MB; we stop reading at 25 MiB. */
export const WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024;
/** Delivery ids and body digests are remembered at least 3 days (GitHub lets you redeliver for 3 days). */
const DELIVERY_TTL_SECONDS = 4 * 24 * 3600;
/** What a 503 for a full unverified-bytes budget suggests; GitHub itself does not retry, an operator redelivers. */
const RETRY_AFTER_SECONDS = 5;

const SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const EVENT = /^[a-z_]{1,64}$/;
const DELIVERY = /^[A-Za-z0-9-]{1,100}$/;

export interface GitHubIngressDeps {
  config: Config;
  logger: Logger;
  queue: JobQueue;
  redis: Redis;
  now: () => number;
  deliveries: Counter<"event" | "outcome">;
  /** Bytes of webhook bodies held before their signature was checked (the budget's use). */
  unverifiedBytes?: Gauge;
}

export interface DeliveryAnswer {
  deliveryId: string;
  jobs: string[];
  ignored?: string;
  /** A body seen before under another delivery id: that delivery's id (its jobs are the ones answered). */
  duplicateOf?: string;
}

/** The secrets as key objects, made once: an HMAC keyed with a string imports the key on every call. */
export function webhookKeys(secrets: readonly string[]): KeyObject[] {
  return secrets.map((secret) => createSecretKey(Buffer.from(secret, "utf8")));
}

/** HMAC-SHA256 of a body fed in pieces, under every configured secret at once (rotation). */
export class SignatureCheck {
  readonly #macs: Hmac[];

  constructor(secrets: readonly (string | KeyObject)[]) {
    this.#macs = secrets.map((secret) => createHmac("sha256", secret));
  }

  update(chunk: Buffer): this {
    for (const mac of this.#macs) mac.update(chunk);
    return this;
  }

  /** True when `signature` (`sha256=<hex>`) matches under any secret. Every secret is compared, in constant time, so the time taken does not say which one matched. */
  matches(signature: string | undefined): boolean {
    if (this.#macs.length === 0 || !signature || !SIGNATURE.test(signature)) return false;
    const presented = Buffer.from(signature.slice("sha256=".length), "hex");
    let ok = false;
    for (const mac of this.#macs) {
      if (timingSafeEqual(mac.digest(), presented)) ok = true;
    }
    return ok;
  }
}

/** True when `body` carries a valid signature for any configured secret (rotation). Never throws. */
export function verifyGitHubSignature(secrets: readonly string[], body: string | Buffer, signature: string | undefined): Promise<boolean> {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  if (bytes.length === 0) return Promise.resolve(false);
  return Promise.resolve(new SignatureCheck(secrets).update(bytes).matches(signature));
}

/** A fixed number of bytes shared by all requests whose sender is not yet authenticated. */
export class ByteBudget {
  readonly max: number;
  #used = 0;
  readonly #onChange: (used: number) => void;

  constructor(max: number, onChange: (used: number) => void = () => undefined) {
    this.max = max;
    this.#onChange = onChange;
  }

  get used(): number {
    return this.#used;
  }

  /** Takes `bytes` if they fit; returns the function that gives them back (safe to call more than once), or null. */
  take(bytes: number): (() => void) | null {
    if (this.#used + bytes > this.max) return null;
    this.#used += bytes;
    this.#onChange(this.#used);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#used -= bytes;
      this.#onChange(this.#used);
    };
  }
}

/** How long a PR head is remembered: RedisPrHeadStore's TTL. */
const PR_HEAD_TTL_SECONDS = 30 * 24 * 3600;

/**
 * The PR heads routing reads and writes, for one delivery: reads go to Redis at once (a comment
 * command needs the head), a write is held and set by the delivery's claim script (claimSets), so
 * that only the claim's winner records it: a redelivered old `synchronize` never moves a head back.
 * The key and value are RedisPrHeadStore's (github-ingress.test.ts reads one through the other).
 */
export class ClaimedPrHeads implements PrHeadStore {
  readonly #store: PrHeadStore;
  readonly #prefix: string;
  readonly #writes: ClaimSet[] = [];

  constructor(store: PrHeadStore, prefix: string) {
    this.#store = store;
    this.#prefix = prefix;
  }

  get(repo: RepoRef, pr: number): Promise<PrHead | null> {
    return this.#store.get(repo, pr);
  }

  set(repo: RepoRef, pr: number, head: PrHead): Promise<void> {
    this.#writes.push({
      key: `${this.#prefix}:pr-head:${repo.owner.toLowerCase()}/${repo.name.toLowerCase()}#${pr}`,
      value: JSON.stringify(head),
      ttlSeconds: PR_HEAD_TTL_SECONDS,
    });
    return Promise.resolve();
  }

  /** The held writes, for OnceStore.run's setOnClaim: set only by the claim that wins. */
  claimSets(): readonly ClaimSet[] {
    return this.#writes;
  }
}

/** A body whose signature matched, with the digest deliveries are deduplicated on. */
interface VerifiedBody {
  readonly verified: true;
  readonly raw: Buffer;
  readonly sha256: string;
}

const isVerified = (body: unknown): body is VerifiedBody => typeof body === "object" && body !== null && (body as VerifiedBody).verified === true;

/** An answer the Fastify error handler turns into `{error: code, message}` with `statusCode`. */
class EdgeRefusal extends Error {
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string) {
    super(message);
    this.statusCode = statusCode;
    this.code = code;
  }
}

/** The declared body length: a number, `chunked` (a body of unknown length), or 0 (no body). */
function declaredLength(req: FastifyRequest): number | "chunked" {
  if (req.headers["transfer-encoding"] !== undefined) return "chunked";
  const raw = req.headers["content-length"];
  // Node's HTTP parser has already refused a malformed Content-Length.
  return raw === undefined ? 0 : Number(raw);
}

// The route's OpenAPI description (webhooks/openapi.ts); documentation only: the checks above and
// in the handler run in their own order (signature before the body is read).
const ingressDocs = {
  tags: ["webhooks"],
  summary: "A GitHub webhook delivery: verified, deduplicated, routed, queued",
  description:
    "The body must be signed with a GITHUB_WEBHOOK_SECRET (X-Hub-Signature-256, HMAC-SHA256 of the exact bytes). A redelivery, or the same " +
    "body under another delivery id, answers the first delivery's job ids and queues nothing. A repository outside STACKRAIL_REPOSITORIES " +
    "is answered 202 with `ignored`.",
  security: PUBLIC,
  consumes: ["application/json", "application/x-www-form-urlencoded"],
  headers: z.object({
    "x-hub-signature-256": z.string().regex(SIGNATURE).meta({ description: "sha256=<hex HMAC-SHA256 of the body>" }),
    "x-github-event": z.string().regex(EVENT).meta({ description: "push, pull_request, release, issue_comment, ping, …" }),
    "x-github-delivery": z.string().regex(DELIVERY).meta({ description: "The delivery's id: deliveries are deduplicated on it (and on the body)" }),
  }),
  body: z.record(z.string(), z.unknown()).meta({ description: "GitHub's event payload (JSON, or form-encoded with the JSON in `payload`); at most 25 MiB" }),
  response: {
    202: z
      .object({
        deliveryId: z.string(),
        jobs: z.array(z.string()).meta({ description: "The ids of the queued jobs" }),
        ignored: z.string().optional().meta({ description: "Why nothing was queued" }),
        duplicateOf: z.string().optional().meta({ description: "The delivery this body was first seen under" }),
      })
      .describe("Accepted: the jobs are in the queue"),
    ...errorResponses(400, 401, 413, 500),
    503: errorBody(503, "Redis cannot take the jobs now, the delivery is being processed, or too many unverified bodies are in flight: redeliver later"),
  },
} satisfies FastifySchema;

export function registerGitHubIngress(app: FastifyInstance, deps: GitHubIngressDeps): void {
  const prefix = deps.config.queuePrefix;
  const secrets = deps.config.webhookSecrets;
  const keys = webhookKeys(secrets);
  // The answer is stored in the background: a delivery's jobs have deterministic ids and adding or
  // registering one twice is a no-op, so if the stored answer were lost, a redelivery after the
  // 30 s marker would re-add the same jobs and answer the same ids. The jobs themselves are durable
  // before the 202.
  const once = new OnceStore(deps.redis, {
    pendingTtlMs: 30_000,
    doneTtlSeconds: DELIVERY_TTL_SECONDS,
    waitMs: 600,
    storeInBackground: { onStoreError: (err) => deps.logger.warn({ err }, "webhook delivery answer not stored; a redelivery will re-add the same jobs") },
  });
  const prHeads = new RedisPrHeadStore(deps.redis, prefix);
  const batchWrites = redisWriteBatcher(deps.redis);
  const perRequestLimit = Math.min(WEBHOOK_BODY_LIMIT, deps.config.unverifiedBytesMax);
  const budget = new ByteBudget(deps.config.unverifiedBytesMax, (used) => deps.unverifiedBytes?.set(used));
  deps.unverifiedBytes?.set(0);
  /** The budget each admitted request holds until its body is verified, refused, or the request ends. */
  const reservations = new WeakMap<FastifyRequest, () => void>();
  const count = (event: string, outcome: string) => deps.deliveries.inc({ event, outcome });

  const refuse = (reply: FastifyReply, status: number, error: string, message: string, extra: Record<string, unknown> = {}) => {
    // The route logs one line per delivery itself (Fastify's per-request lines are off for it: http-server.ts).
    deps.logger.info({ reqId: reply.request.id, status, error }, "webhook delivery refused");
    return reply.code(status).send({ error, message, ...extra });
  };

  /** A refusal from the headers alone: the connection is closed rather than the unread body drained. */
  const refuseUnread = (req: FastifyRequest, reply: FastifyReply, status: number, error: string, message: string) => {
    if (declaredLength(req) !== 0) void reply.header("connection", "close");
    return refuse(reply, status, error, message);
  };

  async function admit(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    if (secrets.length === 0) {
      count("unknown", "unauthorized");
      return refuseUnread(req, reply, 401, "unauthorized", "no webhook secret is configured; every delivery is refused");
    }
    const signature = req.headers["x-hub-signature-256"];
    if (typeof signature !== "string" || !SIGNATURE.test(signature)) {
      count("unknown", "unauthorized");
      return refuseUnread(req, reply, 401, "unauthorized", "missing or invalid X-Hub-Signature-256");
    }
    const declared = declaredLength(req);
    if (declared !== "chunked" && declared > perRequestLimit) {
      count("unknown", "too_large");
      return refuseUnread(req, reply, 413, "FST_ERR_CTP_BODY_TOO_LARGE", `Request body is too large (limit ${perRequestLimit} bytes)`);
    }
    // A body of unknown length is charged the most it may grow to.
    const release = budget.take(declared === "chunked" ? perRequestLimit : declared);
    if (!release) {
      count("unknown", "over_budget");
      req.log.warn({ unverifiedBytes: budget.used, max: budget.max }, "webhook delivery refused: unverified bodies fill the budget");
      void reply.header("retry-after", String(RETRY_AFTER_SECONDS));
      return refuseUnread(req, reply, 503, "unavailable", "too many unverified deliveries in flight; redeliver later");
    }
    reservations.set(req, release);
    // Whatever happens to the request (answered, timed out, aborted), its bytes leave the budget.
    reply.raw.once("close", release);
    return undefined;
  }

  /** Reads the body through the signature check; resolves only a body whose signature matched. */
  function readVerified(req: FastifyRequest, payload: NodeJS.ReadableStream, done: (err: Error | null, body?: VerifiedBody) => void): void {
    const check = new SignatureCheck(keys);
    const digest = createHash("sha256");
    let chunks: Buffer[] = [];
    let received = 0;
    let finished = false;
    const finish = (err: Error | null, body?: VerifiedBody) => {
      if (finished) return;
      finished = true;
      payload.removeListener("data", onData);
      payload.removeListener("end", onEnd);
      payload.removeListener("error", onError);
      payload.removeListener("close", onClose);
      chunks = [];
      reservations.get(req)?.();
      done(err, body);
    };
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      received += bytes.length;
      if (received > perRequestLimit) {
        count("unknown", "too_large");
        finish(new EdgeRefusal(413, "FST_ERR_CTP_BODY_TOO_LARGE", `Request body is too large (limit ${perRequestLimit} bytes)`));
        return;
      }
      check.update(bytes);
      digest.update(bytes);
      chunks.push(bytes);
    };
    const onEnd = () => {
      const signature = req.headers["x-hub-signature-256"];
      if (received === 0 || !check.matches(typeof signature === "string" ? signature : undefined)) {
        count("unknown", "unauthorized");
        finish(new EdgeRefusal(401, "unauthorized", "missing or invalid X-Hub-Signature-256"));
        return;
      }
      // A body that came in one chunk (most do) is used as it is, not copied.
      const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received);
      finish(null, { verified: true, raw, sha256: digest.digest("hex") });
    };
    const onError = (err: Error) => finish(Object.assign(err, { statusCode: 400 }));
    const onClose = () => finish(new EdgeRefusal(400, "aborted", "the request ended before its body"));
    payload.on("data", onData);
    payload.on("end", onEnd);
    payload.on("error", onError);
    payload.on("close", onClose);
    payload.resume();
  }

  async function handle(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    // A request with no body at all never reached the parser.
    if (!isVerified(req.body)) {
      count("unknown", "unauthorized");
      return refuse(reply, 401, "unauthorized", "missing or invalid X-Hub-Signature-256");
    }
    const body = req.body;

    // Signed by GitHub from here on; still validated, never trusted to be well-formed.
    const event = req.headers["x-github-event"];
    const deliveryId = req.headers["x-github-delivery"];
    if (typeof event !== "string" || !EVENT.test(event)) {
      count("unknown", "invalid");
      return refuse(reply, 400, "invalid", "X-GitHub-Event: missing or malformed", { field: "X-GitHub-Event" });
    }
    if (typeof deliveryId !== "string" || !DELIVERY.test(deliveryId)) {
      count(event, "invalid");
      return refuse(reply, 400, "invalid", "X-GitHub-Delivery: missing or malformed", { field: "X-GitHub-Delivery" });
    }
    let payload: unknown;
    try {
      // Bytes that are not UTF-8 are refused, not decoded with replacement characters. A BOM is
      // kept (and refused by JSON.parse), as GitHub sends none.
      if (!isUtf8(body.raw)) throw new SyntaxError("body is not UTF-8");
      const text = body.raw.toString("utf8");
      const contentType = String(req.headers["content-type"] ?? "");
      const json = contentType.startsWith("application/x-www-form-urlencoded") ? (new URLSearchParams(text).get("payload") ?? "") : text;
      payload = JSON.parse(json);
    } catch {
      count(event, "invalid");
      return refuse(reply, 400, "invalid", "body: not valid JSON", { field: "body" });
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      count(event, "invalid");
      return refuse(reply, 400, "invalid", "body: must be a JSON object", { field: "body" });
    }

    // The delivery's fields are written into each line: a child logger per request costs more
    // than the one or two lines it would carry.
    const log = deps.logger;
    try {
      const repository = deliveryRepository(payload);
      if (repository === null || !repositoryAllowed(repository, deps.config.repositories)) {
        const ignored = repository === null ? "delivery names no repository" : "repository is not in STACKRAIL_REPOSITORIES";
        count(event, repository === null ? "no_repository" : "ignored_repository");
        log.info({ deliveryId, event, repository, ignored }, "webhook delivery ignored");
        return reply.code(202).send({ deliveryId, jobs: [], ignored } satisfies DeliveryAnswer);
      }

      // Routed before the claim (routing reads Redis only for a comment command's PR head); its
      // writes and the jobs' lane places go out with the claim, in its round trip, and take
      // effect only if this request's claim is the one that won.
      const requestedAt = new Date(deps.now()).toISOString();
      const heads = new ClaimedPrHeads(prHeads, prefix);
      let planned: { jobs: PreparedJob[]; ignored?: string } | undefined;
      let refusal: unknown;
      try {
        const outcome = await routeGitHubEvent(event, payload, { deliveryId, requestedAt, deployPaths: deps.config.deployPaths, prHeads: heads });
        // Deterministic ids: a redelivery after a half-finished attempt re-adds the same jobs, not new ones.
        // A burst of pushes to one PR coalesces: each preview waits a moment, and a newer push supersedes it.
        const jobs = outcome.jobs.map((job, i) =>
          deps.queue.prepare(job.data, {
            jobId: `gh-${deliveryId}-${i}`,
            ...(job.data.kind === "preview.up" && deps.config.previewDebounceMs > 0 ? { delayMs: deps.config.previewDebounceMs } : {}),
          }),
        );
        planned = { jobs, ...(outcome.ignored ? { ignored: outcome.ignored } : {}) };
      } catch (err) {
        // Refused only if this is not a copy of a delivery already answered: a captured body
        // replayed under another X-GitHub-Event header still answers the first delivery's jobs.
        refusal = err;
      }
      const jobs = planned?.jobs ?? [];
      const claimKeys = [`${prefix}:delivery:${deliveryId}`, `${prefix}:delivery-body:${body.sha256}`];
      batchWrites();
      const result = await once.run<DeliveryAnswer>(
        claimKeys,
        async () => {
          if (!planned) throw refusal;
          batchWrites();
          // One job after the other, in the order routing planned them (the lane order).
          for (const job of jobs) await deps.queue.addPrepared(job);
          // The stored answer (sent by once.run right after this) and the supersede's first
          // command leave in one write.
          batchWrites();
          return { remember: true, value: { deliveryId, jobs: jobs.map((j) => j.jobId), ...(planned.ignored ? { ignored: planned.ignored } : {}) } };
        },
        planned
          ? {
              setOnClaim: heads.claimSets(),
              ...(jobs.some((job) => job.stack)
                ? {
                    alsoOnClaim: (redis: Redis, guard: { key: string; value: string }) =>
                      jobs.flatMap((job) =>
                        job.stack ? [deps.queue.lanes.registerOn(redis, job.stack, job.jobId, { kind: job.data.kind, onlyIf: guard })] : [],
                      ),
                  }
                : {}),
            }
          : {},
      );
      batchWrites();
      if (result.status === "first") {
        // Superseding older waiting previews (or releases) need not hold the answer: it is best
        // effort, and an older job only ever runs first, never instead of the newer one.
        for (const job of jobs) {
          void deps.queue.supersedeFor(job).then((superseded) => {
            // Debug: the job's record says supersededBy, and the worker logs it when it meets the job.
            for (const old of superseded) log.debug({ deliveryId, event, jobId: old, supersededBy: job.jobId }, "job superseded by a newer preview");
          });
        }
      }
      if (result.status === "busy") {
        count(event, "busy");
        log.warn({ deliveryId, event }, "delivery is still being processed by another request");
        return refuse(reply, 503, "unavailable", "this delivery is being processed; redeliver later");
      }
      // The same body under another delivery id answers that delivery's jobs (and enqueues nothing).
      const first = result.value;
      const duplicate = result.status === "replay" && first.deliveryId !== deliveryId;
      const answer: DeliveryAnswer = duplicate ? { ...first, deliveryId, duplicateOf: first.deliveryId } : first;
      count(event, duplicate ? "duplicate_body" : result.status === "replay" ? "redelivery" : "accepted");
      log.info(
        { deliveryId, event, jobIds: answer.jobs, redelivery: result.status === "replay", duplicateOf: answer.duplicateOf, ignored: answer.ignored },
        "webhook delivery accepted",
      );
      return reply.code(202).send(answer);
    } catch (err) {
      if (err instanceof ValidationError) {
        count(event, "invalid");
        log.info({ deliveryId, event, field: err.field }, "webhook payload refused");
        return refuse(reply, 400, "invalid", err.message, { field: err.field });
      }
      if ((err instanceof StackrailError && err.fate === "retry") || isRedisUnavailable(err)) {
        count(event, "unavailable");
        log.warn({ deliveryId, event, err }, "webhook delivery not enqueued: Redis unavailable");
        return refuse(reply, 503, "unavailable", "the job queue cannot take the delivery now; redeliver later");
      }
      throw err;
    }
  }

  void app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (req, payload, next) => readVerified(req, payload, next));
    // One log line per delivery, the handler's own (delivery id, event, outcome, job ids), instead
    // of Fastify's two per request (incoming, completed; left out by http-server.ts's logController):
    // on a busy edge each line is a write.
    scope.post(WEBHOOK_ROUTE, { onRequest: admit, ...documented(ingressDocs) }, handle);
    done();
  });
}
