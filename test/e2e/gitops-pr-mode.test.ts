// GITOPS_MODE=pr (issue 15 §4): the whole service, configured only through its environment, writes
// a tenant's manifests through a pull request on the GitHub double instead of committing to the
// branch Argo CD reads. A later job of the same tenant updates that pull request; once it is
// merged, the next job opens a fresh one. GitHub's side is the double, checked against GitHub's
// OpenAPI description.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitHubDouble } from "../github-double/server.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const tag = Math.random().toString(36).slice(2, 8);
const tenant = `pr-${tag}`;
const branch = `stackrail/tenant-${tenant}`;
const token = `ghp_prmode${randomBytes(12).toString("hex")}`;
let gh: GitHubDouble;
let h: Harness;

const show = (ref: string, file: string): string | null => {
  try {
    return execFileSync("git", ["--git-dir", gh.gitDir("acme", "gitops"), "show", `${ref}:${file}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return null;
  }
};

beforeAll(async () => {
  gh = await GitHubDouble.start({ tokens: [token] });
  await gh.createRepo("acme", "gitops");
  h = await startHarness({ env: { GITOPS_REPO: "github:acme/gitops", GITOPS_MODE: "pr", GITHUB_TOKEN: token, GITHUB_API_URL: gh.url } });
});

afterAll(async () => {
  await h?.close();
  await gh?.close();
  await dropTenantLeftovers([tenant]);
});

describe("GITOPS_MODE=pr", () => {
  it("is read from the environment", () => {
    expect(h.config.gitopsMode).toBe("pr");
  });

  it("a provision opens a pull request with the tenant's manifests and leaves the branch alone", async () => {
    const mainBefore = execFileSync("git", ["--git-dir", gh.gitDir("acme", "gitops"), "rev-parse", "main"], { encoding: "utf8" }).trim();
    const p = await h.request("POST", "/v1/tenants", { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect(p.status).toBe(202);
    const done = await h.waitForJob(p.body.jobId);
    expect(done.state, JSON.stringify(done.error ?? null)).toBe("succeeded");

    const pulls = gh.pulls("acme", "gitops");
    expect(pulls).toHaveLength(1);
    expect(pulls[0]).toMatchObject({ head: branch, base: "main", state: "open" });
    expect(pulls[0]?.body).toContain(`tenants/${tenant}/tenant.yaml`);
    expect(show(branch, `tenants/${tenant}/tenant.yaml`)).toContain("version: 1.0.0");
    // Argo CD reads main: nothing reaches it before the pull request is merged.
    expect(execFileSync("git", ["--git-dir", gh.gitDir("acme", "gitops"), "rev-parse", "main"], { encoding: "utf8" }).trim()).toBe(mainBefore);
    expect(show("main", `tenants/${tenant}/tenant.yaml`)).toBeNull();
    // No direct write to the base branch was even attempted.
    expect(gh.requests.filter((r) => r.operationId === "git/update-ref" && r.path.endsWith("/heads/main"))).toEqual([]);
    expect(gh.violations).toEqual([]);
  });

  it("the next job of the tenant updates the same pull request", async () => {
    const up = await h.request("POST", `/v1/tenants/${tenant}/upgrade`, { version: "1.1.0" });
    expect(up.status).toBe(202);
    const done = await h.waitForJob(up.body.jobId);
    expect(done.state, JSON.stringify(done.error ?? null)).toBe("succeeded");
    const pulls = gh.pulls("acme", "gitops");
    expect(pulls).toHaveLength(1);
    expect(pulls[0]?.state).toBe("open");
    expect(show(branch, `tenants/${tenant}/tenant.yaml`)).toContain("version: 1.1.0");
    expect(show("main", `tenants/${tenant}/tenant.yaml`)).toBeNull();
    expect(gh.violations).toEqual([]);
  });

  it("once that pull request is merged, the next job opens a fresh one", async () => {
    const first = gh.pulls("acme", "gitops")[0];
    expect(first).toBeDefined();
    await gh.mergePullRequest("acme", "gitops", first?.number ?? 0);
    expect(show("main", `tenants/${tenant}/tenant.yaml`)).toContain("version: 1.1.0");
    const d = await h.request("DELETE", `/v1/tenants/${tenant}`);
    expect(d.status).toBe(202);
    const done = await h.waitForJob(d.body.jobId);
    expect(done.state, JSON.stringify(done.error ?? null)).toBe("succeeded");
    const open = gh.pulls("acme", "gitops").filter((p) => p.state === "open");
    expect(open).toHaveLength(1);
    expect(open[0]?.head).not.toBe(branch);
    expect(open[0]?.head.startsWith(`${branch}-`)).toBe(true);
    // The deletion waits in the pull request; main still deploys the tenant until it is merged.
    expect(show(open[0]?.head ?? "", `tenants/${tenant}/tenant.yaml`)).toBeNull();
    expect(show("main", `tenants/${tenant}/tenant.yaml`)).toContain("version: 1.1.0");
    expect(gh.violations).toEqual([]);
  });
});
