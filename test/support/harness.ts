// Starts the whole service in-process for end-to-end tests and the demo: a fresh data dir,
// a fresh file backend, a fresh bare GitOps repo, a unique Redis prefix, real MariaDB.
// Everything it made is removed by close() unless asked to keep it.
import { createHmac, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import type { DestinationStream } from "pino";
import { loadConfig, type Config } from "../../core/config.ts";
import { createLogger, type Logger } from "../../core/logger.ts";
import type { JobView } from "../../jobs/queue.ts";
import { startService, type Service, type ServiceOptions } from "../../service.ts";
import type { GitOpsWriter } from "../../worker/gitops/writer.ts";
import { TEST_REDIS_URL, localServiceEnv, uniqueName } from "./services.ts";

export interface Harness {
  readonly service: Service;
  readonly config: Config;
  readonly token: string;
  readonly webhookSecret: string;
  readonly dataDir: string;
  /** The environment the service was configured from (to start more processes of it). */
  readonly env: Record<string, string>;
  request(method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  /** Sends a signed GitHub webhook delivery. */
  deliver(event: string, payload: unknown, deliveryId?: string): Promise<{ status: number; body: any }>;
  waitForJob(jobId: string, timeoutMs?: number): Promise<JobView>;
  /** `git log` of the GitOps repository's main branch: one line per commit, newest first. */
  gitLog(): string[];
  gitShow(file: string): string | null;
  close(options?: { keep?: boolean }): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  logger?: Logger;
  /** Capture the service's own (scrubbing) logger output here instead. */
  logDestination?: DestinationStream;
  dataDir?: string;
  /** Reuse a Redis prefix (a restart of the same installation). */
  prefix?: string;
  token?: string;
  passphrase?: string;
  webhookSecret?: string;
  /** "api" starts only the HTTP edge (tests that run workers as separate processes). */
  role?: "all" | "api";
  /** Job kinds beyond the job model, e.g. test/support/stack-operation.ts's stackOperationKinds. */
  extraKinds?: ServiceOptions["extraKinds"];
  /** A GitOps writer instead of the one GITOPS_REPO names (tests inject failures through it). */
  writer?: GitOpsWriter;
  /** The rollout's per-tenant health check (tests make a tenant's gate fail through it). */
  healthCheck?: ServiceOptions["healthCheck"];
}

const FINAL = new Set(["succeeded", "failed", "superseded", "cancelled"]);

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), "stackrail-e2e-"));
  const token = options.token ?? randomBytes(24).toString("hex");
  const webhookSecret = options.webhookSecret ?? randomBytes(24).toString("hex");
  const prefix = options.prefix ?? uniqueName("e2e");
  const env: Record<string, string> = {
    ...localServiceEnv({ dataDir, prefix, apiToken: token, passphrase: options.passphrase ?? randomBytes(16).toString("hex") }),
    LOG_LEVEL: "warn",
    // Scheduled drift checks would add jobs to tenants' lanes at times a test does not choose.
    STACKRAIL_DRIFT_INTERVAL_S: "0",
    // Tests delete many tenants; the breaker's own test sets a low limit.
    STACKRAIL_DELETE_MAX: "1000",
    STACKRAIL_SHUTDOWN_GRACE_MS: "10000",
    // Every repository's webhooks act unless a test narrows it (finding 8 of issue 11).
    STACKRAIL_REPOSITORIES: "*",
    ...options.env,
    GITHUB_WEBHOOK_SECRET: webhookSecret,
  };
  const config = loadConfig(env);
  // Without a logger of its own the service builds one as production does (secrets scrubbed).
  const service = await startService(config, {
    role: options.role ?? "all",
    ...(options.extraKinds ? { extraKinds: options.extraKinds } : {}),
    ...(options.writer ? { writer: options.writer } : {}),
    ...(options.healthCheck ? { healthCheck: options.healthCheck } : {}),
    ...(options.logger
      ? { logger: options.logger }
      : options.logDestination
        ? { logDestination: options.logDestination }
        : { logger: createLogger({ level: "warn" }) }),
  });
  const base = service.url ?? "";

  const request: Harness["request"] = async (method, url, body, headers = {}) => {
    const send = (): Promise<Response> =>
      fetch(`${base}${url}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    // A 503 means "the queue could not answer in time, retry": the edge gives up on Redis after a
    // short timeout so that it always answers fast. On a loaded machine a client retries, as
    // GitHub does; so does the harness (bounded, with the same Idempotency-Key if one was sent).
    let res = await send();
    for (let attempt = 1; res.status === 503 && attempt <= 8; attempt++) {
      await res.body?.cancel();
      await new Promise((r) => setTimeout(r, 250 * attempt));
      res = await send();
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed };
  };

  const git = (args: string[]): string =>
    execFileSync("git", ["--git-dir", config.gitopsRepo, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });

  return {
    service,
    config,
    token,
    webhookSecret,
    dataDir,
    env,
    request,
    async deliver(event, payload, deliveryId = crypto.randomUUID()) {
      const raw = JSON.stringify(payload);
      const signature = `sha256=${createHmac("sha256", webhookSecret).update(raw).digest("hex")}`;
      const res = await fetch(`${base}/webhooks/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": event,
          "x-github-delivery": deliveryId,
          "x-hub-signature-256": signature,
          "user-agent": "GitHub-Hookshot/e2e",
        },
        body: raw,
      });
      return { status: res.status, body: await res.json() };
    },
    async waitForJob(jobId, timeoutMs = 170_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        // The edge's Redis connection gives up on slow commands (it must answer webhooks fast);
        // on a loaded machine a poll may time out, which is no reason to fail the test.
        const view = await service.queue?.getJobView(jobId).catch(() => undefined);
        if (view && FINAL.has(view.state)) return view;
        if (Date.now() > deadline) throw new Error(`job ${jobId} did not finish in ${timeoutMs}ms (state ${view?.state ?? "missing"})`);
        await new Promise((r) => setTimeout(r, 150));
      }
    },
    gitLog() {
      try {
        return git(["log", "--format=%H %s", "main"]).trim().split("\n").filter(Boolean);
      } catch {
        return [];
      }
    },
    gitShow(file) {
      try {
        return git(["show", `main:${file}`]);
      } catch {
        return null;
      }
    },
    async close({ keep = false } = {}) {
      await service.close(10_000);
      if (!keep) {
        const redis = new Redis(TEST_REDIS_URL);
        const keys = await redis.keys(`${prefix}:*`);
        if (keys.length > 0) await redis.del(...keys);
        redis.disconnect();
        if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
