// The variables of the tenant-isolation issue (11): which repositories' webhooks act, who may read
// /metrics and where, how many unverified bytes the edge holds, how long a request may take, and
// the minimum webhook secret length. Every refusal names its variable.
import { describe, expect, it } from "vitest";
import { loadConfig, secretValues } from "./config.ts";
import { ConfigError } from "./errors.ts";
import { parseRedisUrl } from "./redis.ts";

const base = { PULUMI_CONFIG_PASSPHRASE: "config-test-passphrase", STACKRAIL_DATA_DIR: "/tmp/stackrail-config-test" };
const load = (env: Record<string, string>) => loadConfig({ ...base, ...env }, "/tmp");

function refusal(env: Record<string, string>): ConfigError {
  try {
    load(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(env)}`);
}

describe("STACKRAIL_REPOSITORIES (finding 8)", () => {
  it("acts on no repository when unset", () => {
    expect(load({}).repositories).toEqual({ any: false, names: [] });
    expect(load({ STACKRAIL_REPOSITORIES: "" }).repositories).toEqual({ any: false, names: [] });
  });

  it("lower-cases owner/name entries and allows any repository only for an explicit *", () => {
    expect(load({ STACKRAIL_REPOSITORIES: "Acme/App, octo-org/infra.repo_1" }).repositories).toEqual({
      any: false,
      names: ["acme/app", "octo-org/infra.repo_1"],
    });
    expect(load({ STACKRAIL_REPOSITORIES: "*" }).repositories).toEqual({ any: true, names: [] });
  });

  it.each(["acme", "acme/app/extra", "*/app", "acme/*", "-acme/app", "ac me/app", "acme/"])("refuses %j, naming the variable", (value) => {
    const err = refusal({ STACKRAIL_REPOSITORIES: value });
    expect(err.variable).toBe("STACKRAIL_REPOSITORIES");
    expect(err.message).toMatch(/^STACKRAIL_REPOSITORIES: /);
  });
});

describe("GITHUB_WEBHOOK_SECRET (finding 12)", () => {
  it("accepts secrets of 16 characters or more, comma-separated for rotation", () => {
    expect(load({ GITHUB_WEBHOOK_SECRET: "0123456789abcdef,fedcba9876543210-new" }).webhookSecrets).toEqual(["0123456789abcdef", "fedcba9876543210-new"]);
    expect(load({}).webhookSecrets).toEqual([]);
  });

  it("refuses a secret shorter than 16 characters without printing it", () => {
    const err = refusal({ GITHUB_WEBHOOK_SECRET: "0123456789abcdef,short-secret" });
    expect(err.variable).toBe("GITHUB_WEBHOOK_SECRET");
    expect(err.message).not.toContain("short-secret");
  });
});

describe("/metrics access (finding 12)", () => {
  it("has no metrics token and no separate listener by default; the listener binds to loopback", () => {
    const c = load({});
    expect(c.metricsToken).toBeUndefined();
    expect(c.metricsPort).toBeUndefined();
    expect(c.metricsHost).toBe("127.0.0.1");
  });

  it("reads the token, port and host", () => {
    const c = load({ STACKRAIL_METRICS_TOKEN: "metrics-token-0123456789", STACKRAIL_METRICS_PORT: "9464", STACKRAIL_METRICS_HOST: "10.0.0.5" });
    expect(c).toMatchObject({ metricsToken: "metrics-token-0123456789", metricsPort: 9464, metricsHost: "10.0.0.5" });
  });

  it.each([
    ["STACKRAIL_METRICS_TOKEN", "short"],
    ["STACKRAIL_METRICS_PORT", "70000"],
    ["STACKRAIL_METRICS_PORT", "metrics"],
    ["STACKRAIL_METRICS_HOST", ""],
  ])("refuses %s=%j, naming the variable", (variable, value) => {
    expect(refusal({ [variable]: value }).variable).toBe(variable);
  });
});

describe("unauthenticated resource limits (finding 9)", () => {
  it("defaults to 64 MiB of unverified bodies and 30 s per request", () => {
    const c = load({});
    expect(c.unverifiedBytesMax).toBe(64 * 1024 * 1024);
    expect(c.requestTimeoutMs).toBe(30_000);
  });

  it("reads both", () => {
    const c = load({ STACKRAIL_UNVERIFIED_BYTES_MAX: String(8 * 1024 * 1024), STACKRAIL_REQUEST_TIMEOUT_MS: "1500" });
    expect(c.unverifiedBytesMax).toBe(8 * 1024 * 1024);
    expect(c.requestTimeoutMs).toBe(1500);
  });

  it.each([
    ["STACKRAIL_UNVERIFIED_BYTES_MAX", "1000"],
    ["STACKRAIL_UNVERIFIED_BYTES_MAX", "lots"],
    ["STACKRAIL_REQUEST_TIMEOUT_MS", "0"],
    ["STACKRAIL_REQUEST_TIMEOUT_MS", "1.5"],
    ["STACKRAIL_REQUEST_TIMEOUT_MS", String(2 * 3_600_000)],
  ])("refuses %s=%j, naming the variable", (variable, value) => {
    expect(refusal({ [variable]: value }).variable).toBe(variable);
  });
});

describe("approval waves and health gates (issue 13)", () => {
  it("waits for approval on every wave after the first by default, with no health source", () => {
    const c = load({ STACKRAIL_ROLLOUT_WAVES: "eu-west-1;eu-central-1;us-east-1" });
    expect(c.approvalWaves).toEqual([2, 3]);
    expect(c.argocd).toBeUndefined();
    expect(c.healthUrl).toBeUndefined();
    expect(c.healthTimeoutMs).toBe(300_000);
  });

  it("reads wave numbers, none and all", () => {
    const waves = { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;eu-central-1;us-east-1" };
    expect(load({ ...waves, STACKRAIL_APPROVAL_WAVES: "3,2,3" }).approvalWaves).toEqual([2, 3]);
    expect(load({ ...waves, STACKRAIL_APPROVAL_WAVES: "none" }).approvalWaves).toEqual([]);
    expect(load({ ...waves, STACKRAIL_APPROVAL_WAVES: "all" }).approvalWaves).toEqual([1, 2, 3]);
  });

  it("reads the Argo CD server (scheme optional) and keeps its token out of every log", () => {
    const token = "argocd-canary-token-0123456789";
    const c = load({ ARGOCD_SERVER: "argocd.example.com", ARGOCD_AUTH_TOKEN: token, STACKRAIL_HEALTH_URL: "https://{tenant}.example.com/healthz" });
    expect(c.argocd).toEqual({ server: "https://argocd.example.com", authToken: token });
    expect(c.healthUrl).toBe("https://{tenant}.example.com/healthz");
    expect(secretValues(c)).toContain(token);
  });

  it.each([
    ["STACKRAIL_APPROVAL_WAVES", { STACKRAIL_APPROVAL_WAVES: "4" }],
    ["STACKRAIL_APPROVAL_WAVES", { STACKRAIL_APPROVAL_WAVES: "first" }],
    ["ARGOCD_AUTH_TOKEN", { ARGOCD_SERVER: "https://argocd.example.com" }],
    ["ARGOCD_SERVER", { ARGOCD_AUTH_TOKEN: "argocd-canary-token-0123456789" }],
    ["ARGOCD_SERVER", { ARGOCD_SERVER: "https://user:pw@argocd.example.com", ARGOCD_AUTH_TOKEN: "argocd-canary-token-0123456789" }],
    ["ARGOCD_AUTH_TOKEN", { ARGOCD_SERVER: "https://argocd.example.com", ARGOCD_AUTH_TOKEN: "short" }],
    ["STACKRAIL_HEALTH_URL", { STACKRAIL_HEALTH_URL: "https://tenant.example.com/healthz" }],
    ["STACKRAIL_HEALTH_URL", { STACKRAIL_HEALTH_URL: "ftp://{tenant}.example.com/" }],
    ["STACKRAIL_HEALTH_TIMEOUT_S", { STACKRAIL_HEALTH_TIMEOUT_S: "0" }],
  ])("refuses a bad %s, naming it", (variable, env) => {
    const err = refusal({ STACKRAIL_ROLLOUT_WAVES: "eu-west-1;eu-central-1;us-east-1", ...env });
    expect(err.variable).toBe(variable);
    expect(err.message).not.toContain("argocd-canary-token");
  });
});

describe("STACKRAIL_MAX_JOB_CRASHES (issue 12)", () => {
  it("lets a job lose its worker 10 times by default before it fails for good", () => {
    expect(load({}).maxJobCrashes).toBe(10);
    expect(load({ STACKRAIL_MAX_JOB_CRASHES: "3" }).maxJobCrashes).toBe(3);
    expect(refusal({ STACKRAIL_MAX_JOB_CRASHES: "0" }).variable).toBe("STACKRAIL_MAX_JOB_CRASHES");
  });
});

describe("GITOPS_REPO", () => {
  it("refuses the git protocol, which Argo CD would be given as the repoURL, naming GITOPS_REPO", () => {
    const err = refusal({ GITOPS_REPO: "git://127.0.0.1:9418/gitops.git" });
    expect(err.variable).toBe("GITOPS_REPO");
    expect(err.message).toMatch(/^GITOPS_REPO: .*git:\/\/ cannot be an Argo CD repoURL/);
  });

  it("accepts https, ssh, github: and a path", () => {
    for (const repo of ["https://git.example.com/gitops.git", "ssh://git@git.example.com/gitops.git", "github:acme/gitops", "/srv/gitops.git"]) {
      expect(load({ GITOPS_REPO: repo }).gitopsRepo).toBe(repo);
    }
  });
});

describe("GITOPS_MODE (issue 15 §4)", () => {
  it("commits directly unless told otherwise", () => {
    expect(load({}).gitopsMode).toBe("direct");
    expect(load({ GITOPS_MODE: "" }).gitopsMode).toBe("direct");
    expect(load({ GITOPS_MODE: "direct", GITOPS_REPO: "github:acme/gitops" }).gitopsMode).toBe("direct");
  });

  it("opens pull requests on a GitHub GitOps repository", () => {
    expect(load({ GITOPS_MODE: "pr", GITOPS_REPO: "github:acme/gitops@live" })).toMatchObject({ gitopsMode: "pr", gitopsRepo: "github:acme/gitops@live" });
  });

  it.each([
    [{ GITOPS_MODE: "pull-request", GITOPS_REPO: "github:acme/gitops" }, /must be direct or pr/],
    [{ GITOPS_MODE: "PR", GITOPS_REPO: "github:acme/gitops" }, /must be direct or pr/],
    // A pull request needs GitHub: a local or plain git repository would otherwise get direct commits.
    [{ GITOPS_MODE: "pr" }, /GITOPS_REPO=github:/],
    [{ GITOPS_MODE: "pr", GITOPS_REPO: "https://git.example.com/gitops.git" }, /GITOPS_REPO=github:/],
  ])("refuses %j, naming GITOPS_MODE", (env, message) => {
    const err = refusal(env);
    expect(err.variable).toBe("GITOPS_MODE");
    expect(err.message).toMatch(/^GITOPS_MODE: /);
    expect(err.message).toMatch(message);
  });
});

describe("REDIS_URL: one server or a Redis Cluster (issue 14, §3)", () => {
  const LOCAL = { LOCAL_REDIS_URL: "redis://127.0.0.1:6379/1" };

  it("keeps a server's URL as given, and its queue prefix", () => {
    const config = load({ REDIS_URL: "redis://127.0.0.1:6380/2" });
    expect(config.redisUrl).toBe("redis://127.0.0.1:6380/2");
    expect(config.queuePrefix).toBe("stackrail");
    expect(config.localRedisUrl).toBe("redis://127.0.0.1:6380/0");
    expect(parseRedisUrl(config.redisUrl)).toEqual({ kind: "standalone", url: "redis://127.0.0.1:6380/2" });
  });

  it("parses a cluster's seed nodes, TLS and credentials", () => {
    expect(parseRedisUrl("redis+cluster://10.0.0.1:7000,node-2.example.internal:7001,[::1]:7002,node-4")).toEqual({
      kind: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "node-2.example.internal", port: 7001 },
        { host: "::1", port: 7002 },
        { host: "node-4", port: 6379 },
      ],
      tls: false,
      username: undefined,
      password: undefined,
    });
    expect(parseRedisUrl("rediss+cluster://app:p%40ss@a:7000,b:7000/")).toMatchObject({ kind: "cluster", tls: true, username: "app", password: "p@ss" });
    expect(parseRedisUrl("redis+cluster://:secret-pw@a:7000/0?")).toMatchObject({ username: undefined, password: "secret-pw" });
  });

  it("wraps a cluster's queue prefix in a hash tag unless it has one, and scrubs the cluster's password", () => {
    const config = load({ ...LOCAL, REDIS_URL: "redis+cluster://:cluster-secret@127.0.0.1:7000,127.0.0.1:7001" });
    expect(config.queuePrefix).toBe("{stackrail}");
    expect(secretValues(config)).toContain("cluster-secret");
    expect(load({ ...LOCAL, REDIS_URL: "redis+cluster://a:7000", STACKRAIL_QUEUE_PREFIX: "acme-prod" }).queuePrefix).toBe("{acme-prod}");
    expect(load({ ...LOCAL, REDIS_URL: "redis+cluster://a:7000", STACKRAIL_QUEUE_PREFIX: "acme:{prod}" }).queuePrefix).toBe("acme:{prod}");
    // On one server a hash tag is allowed and kept; nothing is wrapped.
    expect(load({ STACKRAIL_QUEUE_PREFIX: "{acme}" }).queuePrefix).toBe("{acme}");
    expect(load({ STACKRAIL_QUEUE_PREFIX: "acme" }).queuePrefix).toBe("acme");
  });

  it.each([
    ["http://127.0.0.1:6379", /scheme redis:, rediss:, redis\+cluster: or rediss\+cluster:/],
    ["not a url", /scheme redis:/],
    ["redis+cluster://", /needs at least one node/],
    ["redis+cluster:///", /needs at least one node/],
    ["redis+cluster://a:7000,,b:7001", /node #2 is empty/],
    ["redis+cluster://a:0", /node #1 has an invalid port/],
    ["redis+cluster://a:70000", /node #1 has an invalid port/],
    ["redis+cluster://a:7000,b:x", /node #2 has an invalid port/],
    ["redis+cluster://a:7000,b:", /node #2 has an invalid port/],
    ["redis+cluster://a:7000,:7001", /node #2 has no valid host name/],
    ["redis+cluster://a_b:7000", /node #1 has no valid host name/],
    ["redis+cluster://a:7000/3", /database 0 only/],
    ["redis+cluster://a:7000?tls=1", /unknown Redis Cluster URL option "tls"/],
    ["redis+cluster://a:7000#x", /no #fragment/],
    ["redis+cluster://u:%zz@a:7000", /password is not valid percent-encoding/],
    ["redis+cluster:/a:7000", /scheme redis:/],
  ])("refuses REDIS_URL=%j, naming the variable", (value, message) => {
    const err = refusal({ ...LOCAL, REDIS_URL: value });
    expect(err.variable).toBe("REDIS_URL");
    expect(err.message).toMatch(/^REDIS_URL: /);
    expect(err.message).toMatch(message);
  });

  it("never repeats a refused URL's password", () => {
    const err = refusal({ ...LOCAL, REDIS_URL: "redis+cluster://u:hunter2-secret@a:7000/5" });
    expect(err.message).not.toContain("hunter2-secret");
  });

  it.each([
    ["{}", /one hash tag/],
    ["{stackrail", /one hash tag/],
    ["stackrail}", /one hash tag/],
    ["{a}{b}", /one hash tag/],
    ["{a{b}}", /one hash tag/],
    ["stack rail", /must match/],
    ["t:{x}", /tenant cache key spaces/],
  ])("refuses STACKRAIL_QUEUE_PREFIX=%j", (value, message) => {
    for (const REDIS_URL of ["redis://127.0.0.1:6379", "redis+cluster://a:7000"]) {
      const err = refusal({ ...LOCAL, REDIS_URL, STACKRAIL_QUEUE_PREFIX: value });
      expect(err.variable).toBe("STACKRAIL_QUEUE_PREFIX");
      expect(err.message).toMatch(message);
    }
  });

  it("requires LOCAL_REDIS_URL, a server URL, when REDIS_URL is a cluster (tenant caches need a standalone server)", () => {
    const err = refusal({ REDIS_URL: "redis+cluster://a:7000" });
    expect(err.variable).toBe("LOCAL_REDIS_URL");
    expect(err.message).toMatch(/required when REDIS_URL is a Redis Cluster/);
    const cluster = refusal({ REDIS_URL: "redis+cluster://a:7000", LOCAL_REDIS_URL: "redis+cluster://b:7000" });
    expect(cluster.variable).toBe("LOCAL_REDIS_URL");
    expect(load({ REDIS_URL: "redis+cluster://a:7000", LOCAL_REDIS_URL: "redis://cache:6379/2" }).localRedisUrl).toBe("redis://cache:6379/2");
  });
});
