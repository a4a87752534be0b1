// POST /webhooks/github: verify, dedupe, route, enqueue (issue 4).
// The route lives in its own Fastify scope whose only body parser hands over the raw bytes, so the
// signature is checked over exactly what GitHub signed, before any parsing; Fastify's bodyLimit
// stops reading at 25 MiB (413). A 202 is sent only once every job is in Redis.
import { Webhooks } from "@octokit/webhooks";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Redis } from "ioredis";
import type { Counter } from "prom-client";
import type { Config } from "../core/config.ts";
import { StackrailError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "../worker/queue.ts";
import { RedisPrHeadStore, routeGitHubEvent } from "./github-routing.ts";
import { OnceStore } from "./once.ts";
import { isRedisUnavailable } from "./redis-errors.ts";

/** GitHub caps payloads at 25 MB; we stop reading at 25 MiB. */
export const WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024;
/** Delivery ids are remembered at least 3 days (GitHub lets you redeliver for 3 days). */
const DELIVERY_TTL_SECONDS = 4 * 24 * 3600;

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
}

export interface DeliveryAnswer {
  deliveryId: string;
  jobs: string[];
  ignored?: string;
}

/** One @octokit/webhooks verifier per secret (its verify() compares HMAC-SHA256 digests in constant time). */
export function signatureVerifiers(secrets: readonly string[]): Webhooks[] {
  return secrets.map((secret) => new Webhooks({ secret }));
}

/** True when `body` carries a valid signature for any configured secret (rotation). Never throws. */
export async function verifyGitHubSignature(secrets: readonly string[] | readonly Webhooks[], body: string, signature: string | undefined): Promise<boolean> {
  if (secrets.length === 0 || !signature || !SIGNATURE.test(signature) || body.length === 0) return false;
  const verifiers = secrets.map((s) => (typeof s === "string" ? new Webhooks({ secret: s }) : s));
  let ok = false;
  // Every secret is tried, so the time taken does not say which one matched.
  for (const verifier of verifiers) {
    try {
      if (await verifier.verify(body, signature)) ok = true;
    } catch {
      // verify() throws on empty inputs only; treated as a mismatch.
    }
  }
  return ok;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function registerGitHubIngress(app: FastifyInstance, deps: GitHubIngressDeps): void {
  const prefix = deps.config.queuePrefix;
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
  const verifiers = signatureVerifiers(deps.config.webhookSecrets);

  const refuse = (reply: FastifyReply, status: number, error: string, message: string, extra: Record<string, unknown> = {}) =>
    reply.code(status).send({ error, message, ...extra });

  async function handle(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const count = (event: string, outcome: string) => deps.deliveries.inc({ event, outcome });
    if (deps.config.webhookSecrets.length === 0) {
      count("unknown", "unauthorized");
      return refuse(reply, 401, "unauthorized", "no webhook secret is configured; every delivery is refused");
    }
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const signature = req.headers["x-hub-signature-256"];
    let text: string;
    try {
      text = utf8.decode(raw);
    } catch {
      text = "";
    }
    if (!(await verifyGitHubSignature(verifiers, text, typeof signature === "string" ? signature : undefined))) {
      count("unknown", "unauthorized");
      return refuse(reply, 401, "unauthorized", "missing or invalid X-Hub-Signature-256");
    }

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

    const log = deps.logger.child({ deliveryId, event });
    try {
      const result = await once.run<DeliveryAnswer>(`${prefix}:delivery:${deliveryId}`, async () => {
        const requestedAt = new Date(deps.now()).toISOString();
        const outcome = await routeGitHubEvent(event, payload, { deliveryId, requestedAt, deployPaths: deps.config.deployPaths, prHeads });
        const jobs: string[] = [];
        for (const [i, planned] of outcome.jobs.entries()) {
          // Deterministic ids: a redelivery after a half-finished attempt re-adds the same jobs, not new ones.
          // A burst of pushes to one PR coalesces: each preview waits a moment, and a newer push supersedes it.
          const delayMs = planned.data.kind === "preview.up" ? deps.config.previewDebounceMs : 0;
          const { jobId, superseded } = await deps.queue.enqueue(planned.data, { jobId: `gh-${deliveryId}-${i}`, ...(delayMs > 0 ? { delayMs } : {}) });
          jobs.push(jobId);
          for (const old of superseded) log.info({ jobId: old, supersededBy: jobId }, "job superseded by a newer preview");
        }
        return { remember: true, value: { deliveryId, jobs, ...(outcome.ignored ? { ignored: outcome.ignored } : {}) } };
      });
      if (result.status === "busy") {
        count(event, "busy");
        log.warn("delivery is still being processed by another request");
        return refuse(reply, 503, "unavailable", "this delivery is being processed; redeliver later");
      }
      count(event, result.status === "replay" ? "redelivery" : "accepted");
      log.info({ jobIds: result.value.jobs, redelivery: result.status === "replay", ignored: result.value.ignored }, "webhook delivery accepted");
      return reply.code(202).send(result.value);
    } catch (err) {
      if (err instanceof ValidationError) {
        count(event, "invalid");
        log.info({ field: err.field }, "webhook payload refused");
        return refuse(reply, 400, "invalid", err.message, { field: err.field });
      }
      if ((err instanceof StackrailError && err.fate === "retry") || isRedisUnavailable(err)) {
        count(event, "unavailable");
        log.warn({ err }, "webhook delivery not enqueued: Redis unavailable");
        return refuse(reply, 503, "unavailable", "the job queue cannot take the delivery now; redeliver later");
      }
      throw err;
    }
  }

  void app.register((scope, _opts, done) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT }, (_req, body, next) => next(null, body));
    scope.post("/webhooks/github", { bodyLimit: WEBHOOK_BODY_LIMIT }, handle);
    done();
  });
}
