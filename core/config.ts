// Configuration: parsed once at start-up from the environment (brief, "Contract").
// A bad or missing value throws ConfigError naming the variable; main.ts prints it and exits.
import path from "node:path";
import { z } from "zod";
import { DEFAULT_DEPLOY_PATHS, parseDeployPaths, type DeployPaths } from "./deploy-paths.ts";
import { BlobUrlError, parseBlobUrl, type BlobLocation } from "./blob-url.ts";
import { ConfigError } from "./errors.ts";
import { parseRedisUrl, type RedisTarget } from "./redis.ts";
import { urlCredentials } from "./urls.ts";

export interface ApiToken {
  /** Recorded in the audit trail; never the token itself. */
  readonly name: string;
  readonly token: string;
}

export type GitHubCredentials =
  | { readonly kind: "token"; readonly token: string }
  | { readonly kind: "app"; readonly appId: string; readonly privateKey: string }
  | { readonly kind: "none" };

export interface Config {
  readonly port: number;
  readonly host: string;
  /** REDIS_URL as given: `redis://`, `rediss://`, or a cluster's `redis+cluster://host:port,…` (core/redis.ts). */
  readonly redisUrl: string;
  /** Every installation key starts with it; on a Redis Cluster it carries a hash tag (`{stackrail}`), see queuePrefixFor. */
  readonly queuePrefix: string;
  readonly webhookSecrets: readonly string[];
  readonly apiTokens: readonly ApiToken[];
  readonly dataDir: string;
  readonly pulumiBackendUrl: string;
  readonly pulumiPassphrase: string | undefined;
  /** STACKRAIL_BLOB_URL: bundles and backups, shared by every machine (core/blob-store.ts). */
  readonly blobStore: BlobLocation;
  readonly target: "local" | "aws";
  readonly gitopsRepo: string;
  /**
   * How changes reach the GitOps repository: `direct` commits to its branch, `pr` opens (or
   * updates) a pull request per subject against it (a `github:` GITOPS_REPO only), so a person
   * or a merge policy decides when Argo CD sees the change.
   */
  readonly gitopsMode: "direct" | "pr";
  readonly github: GitHubCredentials;
  readonly githubApiUrl: string;
  readonly localMysqlUrl: string;
  readonly localRedisUrl: string;
  readonly concurrency: number;
  readonly shutdownGraceMs: number;
  readonly logLevel: string;
  /**
   * Paths whose change on the default branch triggers a rollout: prefixes (`charts/`) or picomatch
   * globs, `!pattern` excluding, validated here (core/deploy-paths.ts).
   */
  readonly deployPaths: DeployPaths;
  readonly publicUrl: string;
  /** The application's git repository and chart path that tenant Applications deploy. */
  readonly appRepoUrl: string;
  readonly appChartPath: string;
  /** Kubernetes API server Argo CD deploys to, and the namespace Argo CD runs in. */
  readonly argocdDestination: string;
  readonly argocdNamespace: string;
  /** Rollout waves, in order: each a list of regions (`development` = the preview region). */
  readonly rolloutWaves: readonly (readonly string[])[];
  /** At most this many tenants of a wave change at once; the rest of the wave waits its turn. */
  readonly waveMaxParallel: number;
  /** A wave starts no more tenants once this many of them failed; later waves do not start. */
  readonly waveMaxFailures: number;
  /** Circuit breaker: at most this many tenant deletions within the window. */
  readonly deleteMaxPerWindow: number;
  readonly deleteWindowMs: number;
  /** After a tier move, the source is kept this long for a rollback (0: removed at once). */
  readonly moveRollbackWindowMs: number;
  /** BullMQ job lock: a worker that dies mid-job loses the job to another worker after this long. */
  readonly jobLockMs: number;
  /** How often workers look for jobs whose worker died (stalled jobs). */
  readonly stalledIntervalMs: number;
  /**
   * A job whose worker died this many times under it (BullMQ's stalled count) fails for good and
   * waits in the dead letters: a job that kills every worker that runs it must not kill them all.
   * Crash recovery is the normal path below it, so the default leaves room for a bad day.
   */
  readonly maxJobCrashes: number;
  /** aws: the role in the separate tenant-code account that tenant functions are deployed with. */
  readonly tenantCodeRoleArn: string | undefined;
  /** Per-kind time limits in ms (STACKRAIL_TIMEOUTS="tenant.provision=1800,release.rollout=7200", seconds). */
  readonly timeouts: Readonly<Record<string, number>>;
  /** How often the worker looks for scheduled work (idle previews, drift checks, the orphan audit). */
  readonly schedulerIntervalMs: number;
  /** A preview waits this long before it runs, so a burst of pushes runs once for the newest head. */
  readonly previewDebounceMs: number;
  /** Previews idle longer than this are destroyed by the reaper. */
  readonly previewTtlMs: number;
  /** At most this many live previews; more wait in the queue with a comment saying why. */
  readonly maxPreviews: number;
  /** Region PR previews and the development wave use. */
  readonly previewRegion: string;
  /** Every tenant stack gets a drift check (refresh preview) once per interval, at its own offset; 0: never. */
  readonly driftIntervalMs: number;
  /** Scheduled drift checks repair what they find (refresh + up); protected tenants are only reported. */
  readonly driftRepair: boolean;
  /** Repositories whose webhooks are acted on (`owner/name`, lower case); `any` when `*` is listed. */
  readonly repositories: { readonly any: boolean; readonly names: readonly string[] };
  /** Bearer token for `/metrics` on the main listener (API tokens are accepted too); see metricsPort. */
  readonly metricsToken: string | undefined;
  /** A separate listener that serves only `/metrics` without a token (bind it to a private interface). */
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  /** At most this many bytes of not-yet-verified webhook bodies are held in memory at once. */
  readonly unverifiedBytesMax: number;
  /** A request (headers and body) must arrive within this time; a connection idle this long is closed. */
  readonly requestTimeoutMs: number;
  /**
   * What the orphan audit reports by default on the MariaDB and cache servers: `server` everything in
   * the tenant name spaces (a dedicated server), `installation` only objects of tenant ids and preview
   * keys this installation knows (servers shared with other installations). See jobs/orphan-report.ts.
   */
  readonly orphanScope: "server" | "installation";
  /** Waves (1-based) that wait in `awaiting-approval` until approved; default every wave after the first. */
  readonly approvalWaves: readonly number[];
  /** Argo CD API for health gates (`ARGOCD_SERVER` + `ARGOCD_AUTH_TOKEN`); undefined when not set. */
  readonly argocd: { readonly server: string; readonly authToken: string } | undefined;
  /** Per-tenant health endpoint template (`{tenant}` replaced by the tenant id); used when Argo CD is not. */
  readonly healthUrl: string | undefined;
  /** A wave's health gate gives up after this long (STACKRAIL_HEALTH_TIMEOUT_S). */
  readonly healthTimeoutMs: number;
}

const listOf = (raw: string | undefined): string[] =>
  (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

function parseTokens(raw: string | undefined): ApiToken[] {
  return listOf(raw).map((entry, index) => {
    const eq = entry.indexOf("=");
    // `name=token` names a token for the audit trail; a bare token gets a positional name.
    if (eq > 0) {
      const name = entry.slice(0, eq);
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
        throw new ConfigError("STACKRAIL_API_TOKENS", `token name #${index + 1} must match [A-Za-z0-9_.-]{1,64}`);
      }
      const token = entry.slice(eq + 1);
      if (token.length < 16) throw new ConfigError("STACKRAIL_API_TOKENS", `token "${name}" is shorter than 16 characters`);
      return { name, token };
    }
    if (entry.length < 16) throw new ConfigError("STACKRAIL_API_TOKENS", `token #${index + 1} is shorter than 16 characters`);
    return { name: `token-${index + 1}`, token: entry };
  });
}

function field<T>(variable: string, schema: z.ZodType<T>, raw: string | undefined): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(variable, issue?.message ?? "invalid value");
  }
  return parsed.data;
}

const urlWith = (protocols: string[]) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    `must be a URL with scheme ${protocols.join(" or ")}`,
  );

const intIn = (min: number, max: number) =>
  z.coerce.number().int(`must be a whole number`).min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

const booleanFlag = z
  .enum(["true", "false", "1", "0", "yes", "no"], { message: "must be true or false" })
  .transform((v) => v === "true" || v === "1" || v === "yes");

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const dataDir = path.resolve(cwd, env.STACKRAIL_DATA_DIR ?? "./.stackrail");
  const redisUrl = env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const redisTarget = parseRedisUrl(redisUrl, "REDIS_URL");

  const backend = env.PULUMI_BACKEND_URL ?? `file://${path.join(dataDir, "state")}`;
  field("PULUMI_BACKEND_URL", z.string().regex(/^(file|s3|gs|azblob|https?):\/\//, "must be a Pulumi backend URL (file://, s3://, https://...)"), backend);

  const passphrase = env.PULUMI_CONFIG_PASSPHRASE ?? undefined;
  const hasOtherSecretsProvider = Boolean(env.PULUMI_CONFIG_PASSPHRASE_FILE || env.STACKRAIL_SECRETS_PROVIDER);
  if (!passphrase && !hasOtherSecretsProvider) {
    throw new ConfigError(
      "PULUMI_CONFIG_PASSPHRASE",
      "is required (it encrypts stack secrets); set it, or set PULUMI_CONFIG_PASSPHRASE_FILE or STACKRAIL_SECRETS_PROVIDER",
    );
  }

  let github: GitHubCredentials = { kind: "none" };
  if (env.GITHUB_APP_ID || env.GITHUB_APP_PRIVATE_KEY) {
    const appId = field("GITHUB_APP_ID", z.string().regex(/^\d+$/, "must be the numeric App id"), env.GITHUB_APP_ID);
    const privateKey = field(
      "GITHUB_APP_PRIVATE_KEY",
      z.string().includes("PRIVATE KEY", { message: "must be a PEM private key" }),
      env.GITHUB_APP_PRIVATE_KEY?.replace(/\\n/g, "\n"),
    );
    github = { kind: "app", appId, privateKey };
  } else if (env.GITHUB_TOKEN) {
    github = { kind: "token", token: env.GITHUB_TOKEN };
  }

  const port = field("PORT", intIn(0, 65535), env.PORT ?? "8080");
  // Argo CD clones GITOPS_REPO too (it is the repoURL of the committed objects): the git protocol
  // would pass here and fail the first job after its `up`.
  const gitopsRepo = field(
    "GITOPS_REPO",
    z
      .string()
      .min(1)
      .refine((v) => !/^git:\/\//i.test(v), "git:// cannot be an Argo CD repoURL: use https://, ssh:// or github:OWNER/REPO"),
    env.GITOPS_REPO ?? path.join(dataDir, "gitops.git"),
  );
  const rolloutWaves = parseWaves(env.STACKRAIL_ROLLOUT_WAVES ?? "eu-west-1;eu-central-1,us-east-1");
  return {
    port,
    host: field("HOST", z.string().min(1), env.HOST ?? "0.0.0.0"),
    redisUrl,
    queuePrefix: queuePrefixFor(env.STACKRAIL_QUEUE_PREFIX ?? "stackrail", redisTarget),
    webhookSecrets: parseWebhookSecrets(env.GITHUB_WEBHOOK_SECRET),
    apiTokens: parseTokens(env.STACKRAIL_API_TOKENS),
    dataDir,
    pulumiBackendUrl: backend,
    pulumiPassphrase: passphrase,
    blobStore: parseBlobLocation(env.STACKRAIL_BLOB_URL, dataDir),
    target: field("STACKRAIL_TARGET", z.enum(["local", "aws"], { message: "must be local or aws" }), env.STACKRAIL_TARGET ?? "local"),
    gitopsRepo,
    gitopsMode: parseGitopsMode(env.GITOPS_MODE, gitopsRepo),
    github,
    githubApiUrl: field("GITHUB_API_URL", urlWith(["https:", "http:"]), env.GITHUB_API_URL ?? "https://api.github.com").replace(/\/$/, ""),
    localMysqlUrl: field("LOCAL_MYSQL_URL", urlWith(["mysql:"]), env.LOCAL_MYSQL_URL ?? "mysql://root@127.0.0.1:3306"),
    localRedisUrl: localRedisUrlFor(env.LOCAL_REDIS_URL, redisTarget),
    concurrency: field("STACKRAIL_CONCURRENCY", intIn(1, 64), env.STACKRAIL_CONCURRENCY ?? "2"),
    shutdownGraceMs: field("STACKRAIL_SHUTDOWN_GRACE_MS", intIn(0, 3_600_000), env.STACKRAIL_SHUTDOWN_GRACE_MS ?? "30000"),
    logLevel: field("LOG_LEVEL", z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]), env.LOG_LEVEL ?? "info"),
    deployPaths: parseDeployPaths(env.STACKRAIL_DEPLOY_PATHS ?? DEFAULT_DEPLOY_PATHS),
    appRepoUrl: field(
      "STACKRAIL_APP_REPO_URL",
      urlWith(["https:", "http:", "ssh:", "file:"]),
      env.STACKRAIL_APP_REPO_URL ?? "https://github.com/example/app.git",
    ),
    appChartPath: field(
      "STACKRAIL_APP_CHART_PATH",
      z.string().regex(/^[A-Za-z0-9._/-]{1,200}$/, "must be a relative path"),
      env.STACKRAIL_APP_CHART_PATH ?? "charts/app",
    ),
    argocdDestination: field("STACKRAIL_ARGOCD_DESTINATION", urlWith(["https:"]), env.STACKRAIL_ARGOCD_DESTINATION ?? "https://kubernetes.default.svc"),
    argocdNamespace: field(
      "STACKRAIL_ARGOCD_NAMESPACE",
      z.string().regex(/^[a-z0-9-]{1,63}$/, "must be a namespace name"),
      env.STACKRAIL_ARGOCD_NAMESPACE ?? "argocd",
    ),
    deleteMaxPerWindow: field("STACKRAIL_DELETE_MAX", intIn(0, 10_000), env.STACKRAIL_DELETE_MAX ?? "3"),
    deleteWindowMs: field("STACKRAIL_DELETE_WINDOW_S", intIn(1, 30 * 24 * 3600), env.STACKRAIL_DELETE_WINDOW_S ?? "3600") * 1000,
    moveRollbackWindowMs: field("STACKRAIL_MOVE_ROLLBACK_WINDOW_S", intIn(0, 30 * 24 * 3600), env.STACKRAIL_MOVE_ROLLBACK_WINDOW_S ?? "86400") * 1000,
    jobLockMs: field("STACKRAIL_JOB_LOCK_MS", intIn(1000, 3_600_000), env.STACKRAIL_JOB_LOCK_MS ?? "60000"),
    stalledIntervalMs: field("STACKRAIL_STALLED_INTERVAL_MS", intIn(500, 3_600_000), env.STACKRAIL_STALLED_INTERVAL_MS ?? "30000"),
    maxJobCrashes: field("STACKRAIL_MAX_JOB_CRASHES", intIn(1, 1000), env.STACKRAIL_MAX_JOB_CRASHES ?? "10"),
    tenantCodeRoleArn:
      env.STACKRAIL_TENANT_CODE_ROLE_ARN === undefined
        ? undefined
        : field(
            "STACKRAIL_TENANT_CODE_ROLE_ARN",
            z.string().regex(/^arn:aws:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, "must be an IAM role ARN"),
            env.STACKRAIL_TENANT_CODE_ROLE_ARN,
          ),
    timeouts: parseTimeouts(env.STACKRAIL_TIMEOUTS ?? ""),
    schedulerIntervalMs: field("STACKRAIL_SCHEDULER_INTERVAL_MS", intIn(200, 3_600_000), env.STACKRAIL_SCHEDULER_INTERVAL_MS ?? "15000"),
    previewDebounceMs: field("STACKRAIL_PREVIEW_DEBOUNCE_MS", intIn(0, 600_000), env.STACKRAIL_PREVIEW_DEBOUNCE_MS ?? "2000"),
    previewTtlMs:
      field(
        "STACKRAIL_PREVIEW_TTL_HOURS",
        z.coerce
          .number()
          .positive("must be a positive number of hours")
          .max(24 * 365),
        env.STACKRAIL_PREVIEW_TTL_HOURS ?? "72",
      ) * 3_600_000,
    maxPreviews: field("STACKRAIL_MAX_PREVIEWS", intIn(1, 10_000), env.STACKRAIL_MAX_PREVIEWS ?? "10"),
    rolloutWaves,
    waveMaxParallel: field("STACKRAIL_WAVE_MAX_PARALLEL", intIn(1, 10_000), env.STACKRAIL_WAVE_MAX_PARALLEL ?? "10"),
    waveMaxFailures: field("STACKRAIL_WAVE_MAX_FAILURES", intIn(1, 1_000_000), env.STACKRAIL_WAVE_MAX_FAILURES ?? "1"),
    previewRegion: field(
      "STACKRAIL_PREVIEW_REGION",
      z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "must be a region name"),
      env.STACKRAIL_PREVIEW_REGION ?? "eu-west-1",
    ),
    driftIntervalMs: field("STACKRAIL_DRIFT_INTERVAL_S", intIn(0, 30 * 24 * 3600), env.STACKRAIL_DRIFT_INTERVAL_S ?? "21600") * 1000,
    driftRepair: field("STACKRAIL_DRIFT_REPAIR", booleanFlag, env.STACKRAIL_DRIFT_REPAIR ?? "false"),
    repositories: parseRepositories(env.STACKRAIL_REPOSITORIES),
    metricsToken:
      env.STACKRAIL_METRICS_TOKEN === undefined
        ? undefined
        : field("STACKRAIL_METRICS_TOKEN", z.string().min(16, "must be at least 16 characters"), env.STACKRAIL_METRICS_TOKEN),
    metricsPort: env.STACKRAIL_METRICS_PORT === undefined ? undefined : field("STACKRAIL_METRICS_PORT", intIn(0, 65535), env.STACKRAIL_METRICS_PORT),
    metricsHost: field("STACKRAIL_METRICS_HOST", z.string().min(1), env.STACKRAIL_METRICS_HOST ?? "127.0.0.1"),
    unverifiedBytesMax: field(
      "STACKRAIL_UNVERIFIED_BYTES_MAX",
      intIn(1024 * 1024, 4 * 1024 * 1024 * 1024),
      env.STACKRAIL_UNVERIFIED_BYTES_MAX ?? String(64 * 1024 * 1024),
    ),
    requestTimeoutMs: field("STACKRAIL_REQUEST_TIMEOUT_MS", intIn(1000, 3_600_000), env.STACKRAIL_REQUEST_TIMEOUT_MS ?? "30000"),
    orphanScope: field(
      "STACKRAIL_ORPHAN_SCOPE",
      z.enum(["server", "installation"], { message: "must be server or installation" }),
      env.STACKRAIL_ORPHAN_SCOPE ?? "server",
    ),
    approvalWaves: parseApprovalWaves(env.STACKRAIL_APPROVAL_WAVES, rolloutWaves.length),
    argocd: parseArgocd(env.ARGOCD_SERVER, env.ARGOCD_AUTH_TOKEN),
    healthUrl: env.STACKRAIL_HEALTH_URL === undefined || env.STACKRAIL_HEALTH_URL === "" ? undefined : parseHealthUrl(env.STACKRAIL_HEALTH_URL),
    healthTimeoutMs: field("STACKRAIL_HEALTH_TIMEOUT_S", intIn(1, 24 * 3600), env.STACKRAIL_HEALTH_TIMEOUT_S ?? "300") * 1000,
    publicUrl: field("STACKRAIL_PUBLIC_URL", urlWith(["https:", "http:"]), env.STACKRAIL_PUBLIC_URL ?? `http://127.0.0.1:${port}`).replace(/\/$/, ""),
  };
}

/** STACKRAIL_BLOB_URL: `file://…` (default `file://$STACKRAIL_DATA_DIR/blobs`) or `s3://bucket/prefix?endpoint=…`. */
function parseBlobLocation(raw: string | undefined, dataDir: string): BlobLocation {
  if (raw === undefined || raw === "") return { kind: "file", root: path.join(dataDir, "blobs") };
  try {
    return parseBlobUrl(field("STACKRAIL_BLOB_URL", z.string().trim().min(1), raw));
  } catch (err) {
    if (err instanceof BlobUrlError) throw new ConfigError("STACKRAIL_BLOB_URL", err.message);
    throw err;
  }
}

/** Webhook secrets: each at least 16 characters (shorter ones are guessable and cannot be scrubbed from logs reliably). */
function parseWebhookSecrets(raw: string | undefined): string[] {
  const secrets = listOf(raw);
  secrets.forEach((s, i) => {
    if (s.length < 16) throw new ConfigError("GITHUB_WEBHOOK_SECRET", `secret #${i + 1} is shorter than 16 characters`);
  });
  return secrets;
}

/** `owner/name,owner/name` or `*`; unset means no repository's webhooks are acted on. */
function parseRepositories(raw: string | undefined): { any: boolean; names: string[] } {
  const entries = listOf(raw);
  const names: string[] = [];
  let any = false;
  for (const entry of entries) {
    if (entry === "*") {
      any = true;
      continue;
    }
    if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/.test(entry)) {
      throw new ConfigError("STACKRAIL_REPOSITORIES", `"${entry}" must be owner/name or *`);
    }
    names.push(entry.toLowerCase());
  }
  return { any, names };
}

/** The queue's hash tag, `{…}` with something inside (Redis hashes only that part of a key to a slot). */
const HASH_TAG = /\{([^{}]+)\}/;

/**
 * STACKRAIL_QUEUE_PREFIX. On a Redis Cluster every key of the installation must live in one slot
 * (BullMQ's scripts and the lanes' touch many keys at once), so the prefix carries a hash tag: one
 * given as `{…}` (anywhere in it) is kept; a prefix without one is wrapped whole, `stackrail`
 * becoming `{stackrail}`. On a single server the prefix is used as given (braces allowed).
 */
export function queuePrefixFor(raw: string, redis: RedisTarget): string {
  const prefix = field(
    "STACKRAIL_QUEUE_PREFIX",
    z
      .string()
      .regex(/^[A-Za-z0-9:_{}-]{1,64}$/, "must match [A-Za-z0-9:_{}-]{1,64}")
      // At most one hash tag, well formed: `a{b}c`, never `{}`, `{a`, `a}` or `{a}{b}`.
      .refine((v) => /^[^{}]*(\{[^{}]+\}[^{}]*)?$/.test(v), "may hold one hash tag {…} with something inside, and no other braces")
      // Tenant and preview cache users own `t:<id>:*` and `p:<key>:*`: a queue prefix of `t` would
      // put the queue's keys inside a tenant's key pattern (and its deprovision purge).
      .refine((v) => !/^[tps](:|$)/i.test(v), "must not be t, s or p (or start with t:, s:, p:), the tenant cache key spaces"),
    raw,
  );
  return redis.kind === "cluster" && !HASH_TAG.test(prefix) ? `{${prefix}}` : prefix;
}

/**
 * LOCAL_REDIS_URL: tenant caches need a standalone server (ACL users confined to a key prefix,
 * a database of their own, a purge that scans the server). With REDIS_URL a cluster there is no
 * such default: the variable must be set (main.ts also refuses a server with cluster mode on).
 */
function localRedisUrlFor(raw: string | undefined, redis: RedisTarget): string {
  if (raw === undefined && redis.kind === "cluster") {
    throw new ConfigError(
      "LOCAL_REDIS_URL",
      "is required when REDIS_URL is a Redis Cluster: tenant caches need a standalone Redis server (redis://host:port/db)",
    );
  }
  return field("LOCAL_REDIS_URL", urlWith(["redis:", "rediss:"]), raw ?? tenantCacheDefault(redis.kind === "standalone" ? redis.url : ""));
}

/**
 * Tenant caches default to the queue's Redis server but never the queue's database: the queue's
 * database + 1 (database 0 when the queue is elsewhere). Tenant users may only touch their own key
 * prefix wherever they are, and the deprovision purge scans every database of the server.
 */
export function tenantCacheDefault(redisUrl: string): string {
  const u = new URL(redisUrl);
  const queueDb = Number(u.pathname.replace(/^\//, "") || "0");
  u.pathname = `/${queueDb === 0 ? 1 : 0}`;
  return u.toString();
}

function parseTimeouts(raw: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of listOf(raw)) {
    const m = /^([a-z]+\.[a-z]+(?:-[a-z]+)*)=(\d{1,7})$/.exec(entry);
    if (!m?.[1] || !m[2]) throw new ConfigError("STACKRAIL_TIMEOUTS", `"${entry}" must look like kind=seconds (tenant.provision=1800)`);
    out[m[1]] = Number(m[2]) * 1000;
  }
  return out;
}

/**
 * `2,3` (wave numbers, 1-based), `none` or `all`; unset: every wave after the first. A number past
 * the last wave is refused: an approval that can never be asked for is a typo, not a policy.
 */
function parseApprovalWaves(raw: string | undefined, waveCount: number): number[] {
  const all = Array.from({ length: waveCount }, (_, i) => i + 1);
  if (raw === undefined) return all.slice(1);
  const value = raw.trim().toLowerCase();
  if (value === "none" || value === "") return [];
  if (value === "all") return all;
  const waves = new Set<number>();
  for (const entry of listOf(value)) {
    if (!/^\d{1,4}$/.test(entry)) throw new ConfigError("STACKRAIL_APPROVAL_WAVES", `"${entry}" must be a wave number, none or all`);
    const n = Number(entry);
    if (n < 1 || n > waveCount) {
      throw new ConfigError("STACKRAIL_APPROVAL_WAVES", `wave ${n} does not exist (STACKRAIL_ROLLOUT_WAVES has ${waveCount})`);
    }
    waves.add(n);
  }
  return [...waves].sort((a, b) => a - b);
}

/**
 * `direct` (the default) or `pr`. Pull requests exist on GitHub only: `pr` with any other
 * GITOPS_REPO is refused rather than silently committing directly.
 */
function parseGitopsMode(raw: string | undefined, gitopsRepo: string): "direct" | "pr" {
  const mode = field("GITOPS_MODE", z.enum(["direct", "pr"], { message: "must be direct or pr" }), raw === undefined || raw === "" ? "direct" : raw);
  if (mode === "pr" && !gitopsRepo.startsWith("github:")) {
    throw new ConfigError("GITOPS_MODE", "pr needs a GitHub GitOps repository: set GITOPS_REPO=github:OWNER/REPO[@BRANCH]");
  }
  return mode;
}

/** Both or neither: a server without a token (or the reverse) is a half-made configuration. */
function parseArgocd(server: string | undefined, token: string | undefined): { server: string; authToken: string } | undefined {
  const s = server === "" ? undefined : server;
  const t = token === "" ? undefined : token;
  if (s === undefined && t === undefined) return undefined;
  if (s === undefined) throw new ConfigError("ARGOCD_SERVER", "is required when ARGOCD_AUTH_TOKEN is set");
  if (t === undefined) throw new ConfigError("ARGOCD_AUTH_TOKEN", "is required when ARGOCD_SERVER is set");
  const url = field("ARGOCD_SERVER", urlWith(["https:", "http:"]), /^[a-z]+:\/\//i.test(s) ? s : `https://${s}`);
  if (new URL(url).username || new URL(url).password) throw new ConfigError("ARGOCD_SERVER", "must not carry credentials (use ARGOCD_AUTH_TOKEN)");
  if (t.length < 16) throw new ConfigError("ARGOCD_AUTH_TOKEN", "is shorter than 16 characters");
  return { server: url.replace(/\/$/, ""), authToken: t };
}

/** `https://{tenant}.example.com/healthz`: an http(s) URL with `{tenant}` somewhere in it. */
function parseHealthUrl(raw: string): string {
  if (!raw.includes("{tenant}")) throw new ConfigError("STACKRAIL_HEALTH_URL", "must contain {tenant}");
  return field("STACKRAIL_HEALTH_URL", urlWith(["https:", "http:"]), raw.replaceAll("{tenant}", "tenant-id")) && raw;
}

/** `eu-west-1;eu-central-1,us-east-1`: waves separated by `;`, regions in a wave by `,`. */
function parseWaves(raw: string): string[][] {
  const waves = raw.split(";").map((w) => listOf(w));
  if (waves.length === 0 || waves.some((w) => w.length === 0)) {
    throw new ConfigError("STACKRAIL_ROLLOUT_WAVES", "must be waves separated by ';', each a comma-separated list of regions");
  }
  for (const region of waves.flat()) {
    if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) throw new ConfigError("STACKRAIL_ROLLOUT_WAVES", `"${region}" is not a region name`);
  }
  return waves;
}

/** Every configured secret value, so that the logger and job records can scrub them wherever they appear. */
export function secretValues(config: Config): string[] {
  const values = [
    ...config.webhookSecrets,
    ...config.apiTokens.map((t) => t.token),
    config.pulumiPassphrase,
    config.github.kind === "token" ? config.github.token : undefined,
    config.github.kind === "app" ? config.github.privateKey : undefined,
    passwordOf(config.localMysqlUrl),
    passwordOf(config.localRedisUrl),
    redisPasswordOf(config.redisUrl),
    // User information of every configured URL (file:// included, which WHATWG URL cannot parse).
    ...[config.gitopsRepo, config.appRepoUrl, config.githubApiUrl, config.pulumiBackendUrl, config.publicUrl, config.argocdDestination].flatMap(urlCredentials),
    config.metricsToken,
    config.argocd?.authToken,
    ...(config.healthUrl === undefined ? [] : urlCredentials(config.healthUrl)),
  ];
  return values.filter((v): v is string => typeof v === "string" && v.length >= 4);
}

/** REDIS_URL's password, a cluster URL's included (WHATWG URL cannot parse a list of nodes). */
function redisPasswordOf(url: string): string | undefined {
  try {
    const target = parseRedisUrl(url);
    return target.kind === "cluster" ? target.password : passwordOf(target.url);
  } catch {
    return passwordOf(url);
  }
}

function passwordOf(url: string): string | undefined {
  try {
    const p = decodeURIComponent(new URL(url).password);
    return p.length > 0 ? p : undefined;
  } catch {
    return undefined;
  }
}
