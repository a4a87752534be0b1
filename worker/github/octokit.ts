// The one way Stackrail talks to the GitHub API: Octokit with @octokit/plugin-retry (5xx and
// network errors, bounded) and @octokit/plugin-throttling (primary and secondary rate limits
// obeyed: wait `retry-after` or until the reset, then retry, a bounded number of times; writes
// spaced as GitHub recommends). Authenticates with a token or as a GitHub App installation.
import { createAppAuth } from "@octokit/auth-app";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import { Octokit } from "@octokit/rest";
import type { GitHubCredentials } from "../../core/config.ts";
import { ConfigError } from "../../core/errors.ts";
import type { Logger } from "../../core/logger.ts";

export const GitHubClient = Octokit.plugin(retry, throttling);
export type GitHubClient = InstanceType<typeof GitHubClient>;

export interface GitHubClientOptions {
  credentials: Exclude<GitHubCredentials, { kind: "none" }>;
  baseUrl: string;
  /** GitHub App installation; looked up from `repo` when absent. */
  installationId?: number;
  repo?: { owner: string; name: string };
  logger?: Logger;
  /** Rate-limit retries before the request fails (default 3). */
  maxRateLimitRetries?: number;
  /** Retries of 5xx / network errors (default 3). */
  retries?: number;
  /** Milliseconds per `retry-after` second and per retry step; tests shrink it (default 1000). */
  retryAfterBaseMs?: number;
  /** Longest wait accepted for a rate limit, in seconds; a longer one fails the request (default 900). */
  maxRateLimitWaitSeconds?: number;
  /** Space writes ≥1 s apart as GitHub asks (default true); tests against the double turn it off. */
  spaceWrites?: boolean;
  userAgent?: string;
  fetch?: typeof fetch;
  /** Called for every answer (status, remaining primary rate limit): feeds the metrics. */
  onResponse?: (status: number, rateLimitRemaining: number | undefined) => void;
}

type ThrottleOptions = NonNullable<NonNullable<ConstructorParameters<typeof GitHubClient>[0]>["throttle"]>;
type LimiterGroup = NonNullable<Extract<ThrottleOptions, { write?: unknown }>["write"]>;

/** A Bottleneck-compatible group that does not delay (for the write/notification limiters). */
const unthrottledImpl = {
  key: () => ({
    schedule: <T>(...args: unknown[]): Promise<T> => {
      const fn = args.find((a): a is (...x: unknown[]) => T => typeof a === "function");
      const rest = args.slice(args.indexOf(fn) + 1);
      return Promise.resolve(fn ? fn(...rest) : (undefined as T));
    },
  }),
};
// The plugin only calls `key(id).schedule(options, fn)` on its groups.
const unthrottled = unthrottledImpl as unknown as LimiterGroup;

/** An authenticated client. With App credentials, resolves the installation of `repo` first. */
export async function createGitHubClient(options: GitHubClientOptions): Promise<GitHubClient> {
  const logger = options.logger;
  const maxRetries = options.maxRateLimitRetries ?? 3;
  const maxWait = options.maxRateLimitWaitSeconds ?? 900;
  const base = options.retryAfterBaseMs ?? 1000;
  const onLimit =
    (kind: string) =>
    (retryAfter: number, request: { method: string; url: string }, _octokit: unknown, retryCount: number): boolean => {
      const retrying = retryCount < maxRetries && retryAfter <= maxWait;
      logger?.warn({ kind, retryAfter, method: request.method, url: request.url, retryCount, retrying }, "GitHub rate limit");
      return retrying;
    };
  const common = {
    baseUrl: options.baseUrl.replace(/\/$/, ""),
    userAgent: options.userAgent ?? "stackrail",
    retry: { retries: options.retries ?? 3, retryAfterBaseValue: base },
    throttle: {
      onRateLimit: onLimit("primary"),
      onSecondaryRateLimit: onLimit("secondary"),
      retryAfterBaseValue: base,
      // Distinct id: limiter state is per client (the plugin keeps groups per process).
      id: `stackrail-${Math.random().toString(36).slice(2)}`,
      ...(options.spaceWrites === false ? { write: unthrottled, notifications: unthrottled } : {}),
    },
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (msg: string) => logger?.warn({ source: "octokit" }, msg),
      error: (msg: string) => logger?.error({ source: "octokit" }, msg),
    },
    request: options.fetch ? { fetch: options.fetch } : {},
  };
  const creds = options.credentials;
  if (creds.kind === "token") return observed(new GitHubClient({ ...common, auth: creds.token }), options.onResponse);

  const appAuth = { appId: Number(creds.appId), privateKey: creds.privateKey };
  let installationId = options.installationId;
  if (installationId === undefined) {
    if (!options.repo) throw new ConfigError("GITHUB_APP_ID", "a GitHub App needs the repository (or installation id) it acts on");
    const asApp = new GitHubClient({ ...common, authStrategy: createAppAuth, auth: appAuth });
    const { data } = await asApp.rest.apps.getRepoInstallation({ owner: options.repo.owner, repo: options.repo.name });
    installationId = data.id;
  }
  return observed(new GitHubClient({ ...common, authStrategy: createAppAuth, auth: { ...appAuth, installationId } }), options.onResponse);
}

/** Reports every answer's status and remaining rate limit (metrics), errors included. */
function observed(client: GitHubClient, onResponse: GitHubClientOptions["onResponse"]): GitHubClient {
  if (!onResponse) return client;
  const report = (status: number, headers: Record<string, unknown> | undefined): void => {
    const remaining = Number(headers?.["x-ratelimit-remaining"]);
    onResponse(status, Number.isFinite(remaining) ? remaining : undefined);
  };
  client.hook.after("request", (response) => report(response.status, response.headers));
  client.hook.error("request", (error) => {
    const e = error as { status?: number; response?: { headers?: Record<string, unknown> } };
    report(e.status ?? 0, e.response?.headers);
    throw error;
  });
  return client;
}
