import { generateKeyPairSync } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, ManifestInvalidError } from "../../core/errors.ts";
import { clientFor, startDouble, TOKEN } from "../../test/github-double/double.test-support.ts";
import { GitHubDouble } from "../../test/github-double/server.ts";
import { createGitHubClient } from "../github/octokit.ts";
import { defaultCrdValidator } from "./crd-validator.ts";
import { git } from "./git.ts";
import { gitBlobSha, GitHubWriter } from "./github-writer.ts";
import { renderTenantFiles } from "./manifests.ts";
import { createGitOpsWriter, parseGitHubTarget } from "./writer-factory.ts";
import { commitMessage, type GitOpsChange } from "./writer.ts";
import { INFRA, SETTINGS, TENANT } from "./fixtures.test-support.ts";

let double: GitHubDouble;
beforeEach(async () => {
  double = await startDouble();
});
afterEach(async () => {
  expect(double.violations).toEqual([]);
  await double.close();
});

const trigger = { type: "webhook", deliveryId: "d-1", event: "push" } as const;
const change = (jobId: string, id = "acme"): GitOpsChange => ({
  jobId,
  message: commitMessage({ jobId, kind: "tenant.provision", subject: `tenant ${id}`, trigger }),
  files: renderTenantFiles({ ...TENANT, id }, INFRA, SETTINGS),
  subject: `tenant-${id}`,
});
const commits = async () => Number(await git(["rev-list", "--count", "main"], { gitDir: double.gitDir("acme", "gitops") }));

describe("GitHubWriter through the GitHub double", () => {
  it("commits a provision job as one commit with the three files, then nothing when run again", async () => {
    const writer = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops" });
    const result = await writer.commit(change("job-1"));
    expect(result.changed).toEqual(["tenants/acme/application.yaml", "tenants/acme/appproject.yaml", "tenants/acme/tenant.yaml"]);
    const gitDir = double.gitDir("acme", "gitops");
    expect(await git(["rev-parse", "main"], { gitDir })).toBe(result.sha);
    expect(await commits()).toBe(2);
    expect(await git(["show", "--name-only", "--format=%an <%ae>%n%s%n%b", "main"], { gitDir })).toMatch(
      /Stackrail <stackrail@users.noreply.github.com>[\s\S]*Job: job-1[\s\S]*webhook push/,
    );
    for (const f of await writer.listFiles("tenants/acme")) defaultCrdValidator().validateText((await writer.readFile(f)) ?? "", f);

    expect(await writer.commit(change("job-2"))).toEqual({ sha: null, changed: [] });
    expect(await commits()).toBe(2);
    expect(double.requests.filter((r) => r.operationId === "git/create-commit")).toHaveLength(1);
  });

  it("two writers racing on the same branch both land with no lost file (422 path)", async () => {
    const a = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops", backoff: () => Promise.resolve() });
    const b = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops", backoff: () => Promise.resolve() });
    // The first ref update answers 422 whatever happens, and the two writers really race too.
    double.inject({ kind: "ref-conflict", method: "PATCH", path: /\/git\/refs\/heads\/main$/ });
    await Promise.all([a.commit(change("job-a", "alpha")), b.commit(change("job-b", "bravo")), a.commit(change("job-c", "charlie"))]);
    const files = await a.listFiles("tenants");
    for (const id of ["alpha", "bravo", "charlie"]) for (const f of ["tenant", "application", "appproject"]) expect(files).toContain(`tenants/${id}/${f}.yaml`);
    expect(await commits()).toBe(4);
    const updates = double.requests.filter((r) => r.operationId === "git/update-ref");
    expect(updates.filter((r) => r.status === 422).length).toBeGreaterThanOrEqual(1);
    expect(updates.filter((r) => r.status === 200)).toHaveLength(3);
    expect(await git(["fsck", "--strict", "--no-dangling"], { gitDir: double.gitDir("acme", "gitops") })).toBe("");
  });

  it("gives up after a bounded number of 422s with a transient error", async () => {
    const writer = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops", maxTries: 3, backoff: () => Promise.resolve() });
    double.inject({ kind: "ref-conflict", method: "PATCH", path: /\/git\/refs\/heads\/main$/, times: 5 });
    const settled = await writer.commit(change("job-1")).catch((e: unknown) => e);
    expect(settled).toMatchObject({ fate: "retry" });
    expect(double.requests.filter((r) => r.operationId === "git/update-ref")).toHaveLength(3);
  });

  it("a secondary rate limit delays and retries instead of failing; a 502 is retried", async () => {
    const writer = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops" });
    double.inject({ kind: "secondary-rate-limit", method: "POST", path: /\/git\/blobs$/, retryAfter: 2 });
    double.inject({ kind: "bad-gateway", method: "POST", path: /\/git\/trees$/ });
    double.inject({ kind: "primary-rate-limit", method: "POST", path: /\/git\/commits$/, retryAfter: 1 });
    const result = await writer.commit(change("job-1"));
    expect(result.sha).toMatch(/^[0-9a-f]{40}$/);
    const limited = double.requests.findIndex((r) => r.fault === "secondary-rate-limit");
    const retried = double.requests[limited + 1];
    expect(retried?.operationId).toBe("git/create-blob");
    expect(retried?.status).toBe(201);
    // retry-after 2 s at 100 ms per second in the test client: at least 200 ms later.
    expect((retried?.at ?? 0) - (double.requests[limited]?.at ?? 0)).toBeGreaterThanOrEqual(190);
    expect(double.requests.filter((r) => r.fault === "bad-gateway")).toHaveLength(1);
    expect(double.requests.filter((r) => r.fault === "primary-rate-limit")).toHaveLength(1);
    expect(await commits()).toBe(2);
  });

  it("validates before anything is sent: an invalid object writes nothing", async () => {
    const writer = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops" });
    const bad = change("job-bad");
    bad.files["tenants/acme/appproject.yaml"] = bad.files["tenants/acme/appproject.yaml"]!.replace("kind: AppProject", "kind: AppProjekt");
    await expect(writer.commit(bad)).rejects.toThrow(ManifestInvalidError);
    expect(double.requests).toEqual([]);
  });

  it("pull-request mode opens a PR, then updates it", async () => {
    const writer = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops", mode: "pull-request" });
    const first = await writer.commit(change("job-1"));
    expect(first.pullRequest?.number).toBe(1);
    expect(await commits()).toBe(1); // main untouched
    const second = await writer.commit({ ...change("job-2"), files: renderTenantFiles({ ...TENANT, version: "1.2.4" }, INFRA, SETTINGS) });
    expect(second.pullRequest?.number).toBe(1);
    expect(second.changed).toEqual(["tenants/acme/application.yaml", "tenants/acme/tenant.yaml"]);
    expect(double.pulls("acme", "gitops")).toHaveLength(1);
    expect(double.pulls("acme", "gitops")[0]).toMatchObject({ head: "stackrail/tenant-acme", base: "main", headSha: second.sha });
    expect((await writer.commit({ ...change("job-3"), files: renderTenantFiles({ ...TENANT, version: "1.2.4" }, INFRA, SETTINGS) })).sha).toBeNull();
  });

  it("the double refuses a wrong field (and would fail the test)", async () => {
    const client = await clientFor(double);
    const head = (await client.rest.git.getRef({ owner: "acme", repo: "gitops", ref: "heads/main" })).data.object.sha;
    await expect(
      client.request("PATCH /repos/{owner}/{repo}/git/refs/{ref}", { owner: "acme", repo: "gitops", ref: "heads/main", sha: head, forced: false }),
    ).rejects.toMatchObject({ status: 422 });
    expect(double.violations.join("\n")).toMatch(/must NOT have additional properties "forced"/);
    double.violations.length = 0;
  });

  it("computes git blob ids as git does", async () => {
    const gitDir = double.gitDir("acme", "gitops");
    expect(gitBlobSha("héllo\n")).toBe(await git(["hash-object", "--stdin"], { gitDir, input: "héllo\n" }));
  });
});

describe("createGitOpsWriter", () => {
  it("parses github: targets and refuses malformed ones", () => {
    expect(parseGitHubTarget("github:acme/gitops")).toEqual({ owner: "acme", repo: "gitops", branch: "main" });
    expect(parseGitHubTarget("github:acme/gitops@env/prod")).toEqual({ owner: "acme", repo: "gitops", branch: "env/prod" });
    expect(parseGitHubTarget("/var/lib/gitops.git")).toBeNull();
    for (const bad of ["github:acme", "github:acme/../x", "github:acme/gitops@../../x", "github:-x/y z"])
      expect(() => parseGitHubTarget(bad)).toThrow(ConfigError);
  });

  it("builds a GitHub writer from config with a token", async () => {
    const writer = await createGitOpsWriter(
      { gitopsRepo: "github:acme/gitops@main", dataDir: "/nonexistent", github: { kind: "token", token: TOKEN }, githubApiUrl: double.url },
      { clientOptions: { retryAfterBaseMs: 100, spaceWrites: false } },
    );
    expect(writer).toBeInstanceOf(GitHubWriter);
    expect((await writer.commit(change("job-1"))).changed).toHaveLength(3);
    await expect(createGitOpsWriter({ gitopsRepo: "github:acme/gitops", dataDir: "/x", github: { kind: "none" }, githubApiUrl: double.url })).rejects.toThrow(
      ConfigError,
    );
  });
});

describe("GitHub App authentication", () => {
  it("finds the installation, mints an installation token and commits with it", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const appDouble = await GitHubDouble.start({ app: { appId: 4242, publicKey, installationId: 77 } });
    try {
      await appDouble.createRepo("acme", "gitops");
      const client = await createGitHubClient({
        credentials: { kind: "app", appId: "4242", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString() },
        baseUrl: appDouble.url,
        repo: { owner: "acme", name: "gitops" },
        retryAfterBaseMs: 100,
        spaceWrites: false,
      });
      const writer = new GitHubWriter({ client, owner: "acme", repo: "gitops" });
      expect((await writer.commit(change("job-1"))).sha).toMatch(/^[0-9a-f]{40}$/);
      expect(appDouble.requests.map((r) => r.operationId).slice(0, 3)).toEqual([
        "apps/get-repo-installation",
        "apps/create-installation-access-token",
        "git/get-ref",
      ]);
      expect(appDouble.violations).toEqual([]);
    } finally {
      await appDouble.close();
    }
  });
});
