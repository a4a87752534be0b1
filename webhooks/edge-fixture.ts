// Test support for the edge: a real Fastify server on 127.0.0.1:0 over a real Redis, under a
// queue prefix no other test uses, plus helpers to sign deliveries the way GitHub does.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Webhooks } from "@octokit/webhooks";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { Registry } from "prom-client";
import { loadConfig, type Config } from "../core/config.ts";
import { createLogger } from "../core/logger.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { JobQueue } from "../jobs/queue.ts";
import { buildHttpServer, createEdgeRedis, type Readiness } from "./http-server.ts";
import { TenantIndex } from "../core/tenant-index.ts";

export const WEBHOOK_SECRET = "edge-test-webhook-secret";
export const API_TOKEN = "ci-token-0123456789abcdef";
export const OTHER_TOKEN = "other-token-0123456789abcdef";

export interface Edge {
  url: string;
  app: FastifyInstance;
  config: Config;
  prefix: string;
  redis: Redis;
  queue: JobQueue;
  tenants: TenantIndex;
  readiness: { value: Readiness };
  close(): Promise<void>;
}

export async function waitReady(redis: Redis): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("Redis did not become ready")), 10_000);
    redis.once("ready", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export async function startEdge(options: { env?: Record<string, string>; redisUrl?: string; label?: string } = {}): Promise<Edge> {
  const prefix = uniqueName(options.label ?? "edge");
  const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-edge-"));
  const redisUrl = options.redisUrl ?? TEST_REDIS_URL;
  const config = loadConfig(
    {
      PULUMI_CONFIG_PASSPHRASE: "edge-test-passphrase",
      GITHUB_WEBHOOK_SECRET: `old-rotated-secret,${WEBHOOK_SECRET}`,
      STACKRAIL_API_TOKENS: `ci=${API_TOKEN},other=${OTHER_TOKEN}`,
      STACKRAIL_QUEUE_PREFIX: prefix,
      STACKRAIL_DATA_DIR: dataDir,
      REDIS_URL: redisUrl,
      LOG_LEVEL: "silent",
      STACKRAIL_REPOSITORIES: "*",
      ...options.env,
    },
    dataDir,
  );
  const redis = createEdgeRedis(redisUrl);
  await waitReady(redis);
  const queue = new JobQueue({ connection: redis, prefix });
  const tenants = new TenantIndex(redis, prefix);
  const readiness = { value: { redis: true, engine: true } };
  const app = await buildHttpServer({
    config,
    logger: createLogger({ level: "silent" }),
    queue,
    redis,
    tenants,
    registry: new Registry(),
    readiness: () => Promise.resolve(readiness.value),
  });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  return {
    url,
    app,
    config,
    prefix,
    redis,
    queue,
    tenants,
    readiness,
    async close() {
      await app.close();
      await queue.close().catch(() => undefined);
      redis.disconnect();
      if (redisUrl === TEST_REDIS_URL) await deleteKeys(prefix);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function deleteKeys(prefix: string): Promise<void> {
  const admin = new Redis(TEST_REDIS_URL);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await admin.del(...keys);
    } while (cursor !== "0");
  } finally {
    admin.disconnect();
  }
}

/** X-Hub-Signature-256 for `text`, computed by @octokit/webhooks like GitHub computes it. */
export async function signBody(secret: string, text: string): Promise<string> {
  return new Webhooks({ secret }).sign(text);
}

export interface DeliveryOptions {
  event: string;
  deliveryId?: string;
  secret?: string;
  signature?: string | null;
  contentType?: string;
}

/** POSTs a delivery signed like GitHub does (HMAC-SHA256 of the exact bytes sent). */
export async function deliver(edge: Edge, body: string | Buffer, options: DeliveryOptions): Promise<Response> {
  const text = typeof body === "string" ? body : body.toString("utf8");
  const headers: Record<string, string> = {
    "content-type": options.contentType ?? "application/json",
    "x-github-event": options.event,
    "x-github-delivery": options.deliveryId ?? crypto.randomUUID(),
    "user-agent": "GitHub-Hookshot/test",
  };
  if (options.signature !== null) headers["x-hub-signature-256"] = options.signature ?? (await signBody(options.secret ?? WEBHOOK_SECRET, text));
  return fetch(`${edge.url}/webhooks/github`, { method: "POST", headers, body });
}

/** Calls the tenant API with the CI token (or the given one; null for none). */
export async function api(
  edge: Edge,
  method: string,
  route: string,
  body?: unknown,
  options: { token?: string | null; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? API_TOKEN}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(`${edge.url}${route}`, { method, headers, ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}) });
}

/** Every job in the queue, any state (to prove that nothing was enqueued). */
export async function jobCount(edge: Edge): Promise<number> {
  const counts = await edge.queue.queue.getJobCounts();
  return Object.values(counts).reduce((a, b) => a + b, 0);
}
