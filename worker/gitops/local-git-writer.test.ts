import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManifestInvalidError, ValidationError } from "../../core/errors.ts";
import { SecretScrubber } from "../../core/logger.ts";
import { defaultCrdValidator } from "./crd-validator.ts";
import { git } from "./git.ts";
import { LocalGitWriter } from "./local-git-writer.ts";
import { renderRegionFiles, renderTenantFiles, tenantDeletion } from "./manifests.ts";
import { commitMessage, type GitOpsChange } from "./writer.ts";
import { CANARY, INFRA, SETTINGS, TENANT } from "./fixtures.test-support.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "stackrail-gitops-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const trigger = { type: "api", tokenName: "control-plane" } as const;
function provision(jobId: string, files = renderTenantFiles(TENANT, INFRA, SETTINGS)): GitOpsChange {
  return { jobId, message: commitMessage({ jobId, kind: "tenant.provision", subject: "tenant acme", trigger }), files, subject: "tenant-acme" };
}
const log = (gitDir: string) => git(["log", "--format=%H %an <%ae>%n%B%n--", "main"], { gitDir });
const count = async (gitDir: string) => Number(await git(["rev-list", "--count", "main"], { gitDir }));

describe("LocalGitWriter on a bare repository", () => {
  it("creates the repository, commits a provision job once, and makes no commit when run again", async () => {
    const repo = path.join(dir, "gitops.git");
    const writer = new LocalGitWriter({ repo, dataDir: dir });
    const first = await writer.commit(provision("job-1"));
    expect(first.sha).toMatch(/^[0-9a-f]{40}$/);
    expect(first.changed).toEqual(["tenants/acme/application.yaml", "tenants/acme/appproject.yaml", "tenants/acme/tenant.yaml"]);
    expect(await count(repo)).toBe(2); // initial commit + the job's
    const show = await git(["show", "--name-only", "--format=%an <%ae>%n%B", "main"], { gitDir: repo });
    expect(show).toContain("Stackrail <stackrail@users.noreply.github.com>");
    expect(show).toContain("Job: job-1");
    expect(show).toContain("Trigger: tenant API (token control-plane)");

    // Every committed file is valid against the CRDs, read back from git.
    const files = await writer.listFiles("tenants/acme");
    expect(files).toHaveLength(3);
    for (const f of files) defaultCrdValidator().validateText((await writer.readFile(f)) ?? "", f);

    const again = await new LocalGitWriter({ repo, dataDir: dir }).commit(provision("job-2"));
    expect(again).toEqual({ sha: null, changed: [] });
    expect(await count(repo)).toBe(2);
    expect(await git(["fsck", "--strict", "--no-dangling"], { gitDir: repo })).toBe("");
  });

  it("deletes files and lists by prefix", async () => {
    const repo = path.join(dir, "gitops.git");
    const writer = new LocalGitWriter({ repo, dataDir: dir });
    await writer.commit(provision("job-1"));
    const del = await writer.commit({ jobId: "job-3", message: "tenant.deprovision acme (job-3)", files: tenantDeletion("acme") });
    expect(del.changed).toHaveLength(3);
    expect(await writer.listFiles("tenants")).toEqual([]);
    expect(await writer.readFile("tenants/acme/tenant.yaml")).toBeNull();
    expect((await writer.commit({ jobId: "job-4", message: "again job-4", files: tenantDeletion("acme") })).sha).toBeNull();
  });

  it("concurrent writers on the same repository all land, no file lost", async () => {
    const repo = path.join(dir, "gitops.git");
    const ids = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    await new LocalGitWriter({ repo, dataDir: dir }).commit(provision("init"));
    await Promise.all(
      ids.map((id) =>
        new LocalGitWriter({ repo, dataDir: dir }).commit({
          jobId: `job-${id}`,
          message: `tenant.provision ${id} job-${id}`,
          files: renderTenantFiles({ ...TENANT, id }, INFRA, SETTINGS),
        }),
      ),
    );
    const writer = new LocalGitWriter({ repo, dataDir: dir });
    const files = await writer.listFiles("tenants");
    for (const id of [...ids, "acme"]) expect(files).toContain(`tenants/${id}/application.yaml`);
    expect(await count(repo)).toBe(2 + ids.length);
    expect(await git(["fsck", "--strict", "--no-dangling"], { gitDir: repo })).toBe("");
  });

  it("an invalid object fails with ManifestInvalidError and nothing is written", async () => {
    const repo = path.join(dir, "gitops.git");
    const writer = new LocalGitWriter({ repo, dataDir: dir });
    await writer.commit(provision("job-1"));
    const before = await git(["rev-parse", "main"], { gitDir: repo });
    const files = renderTenantFiles({ ...TENANT, id: "bravo" }, INFRA, SETTINGS);
    const broken = { ...files, "tenants/bravo/application.yaml": files["tenants/bravo/application.yaml"]!.replace(/^ {2}project: .*\n/m, "") };
    await expect(writer.commit(provision("job-bad", broken))).rejects.toThrow(ManifestInvalidError);
    await expect(writer.commit(provision("job-bad", { ...files, "tenants/bravo/../../x.yaml": "a: 1" }))).rejects.toThrow(ValidationError);
    expect(await git(["rev-parse", "main"], { gitDir: repo })).toBe(before);
    expect(await writer.listFiles("tenants/bravo")).toEqual([]);
  });

  it("refuses a change holding a known secret value, without echoing it, and writes nothing", async () => {
    const repo = path.join(dir, "gitops.git");
    const scrubber = new SecretScrubber();
    scrubber.add(CANARY);
    const writer = new LocalGitWriter({ repo, dataDir: dir, scrub: (t) => scrubber.scrub(t) });
    await writer.commit(provision("job-1"));
    const files = renderTenantFiles(TENANT, { ...INFRA, dbName: CANARY.replace(/-/g, "_") }, SETTINGS);
    scrubber.add(CANARY.replace(/-/g, "_"));
    const error = await writer.commit(provision("job-2", files)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ManifestInvalidError);
    expect(String((error as Error).message)).toMatch(/tenants\/acme\/application.yaml: contains a secret value/);
    expect(String((error as Error).message)).not.toContain(CANARY.replace(/-/g, "_"));
    await expect(writer.commit({ ...provision("job-3"), message: `job-3 ${CANARY}` })).rejects.toThrow(/commit message of job job-3 contains a secret value/);
    expect(await count(repo)).toBe(2);
  });

  it("a canary secret in the infra outputs reaches no file or commit", async () => {
    const repo = path.join(dir, "gitops.git");
    const writer = new LocalGitWriter({ repo, dataDir: dir });
    await writer.commit(provision("job-1", renderTenantFiles(TENANT, { ...INFRA, dbPassword: CANARY } as typeof INFRA, SETTINGS)));
    const everything = await git(["log", "-p", "--all", "--format=%B"], { gitDir: repo });
    expect(everything).toContain("tenants/acme/application.yaml");
    expect(everything).not.toContain(CANARY);
    expect(await log(repo)).not.toContain(CANARY);
  });
});

describe("LocalGitWriter on a remote", () => {
  it("clones, pushes without force, and re-applies when the remote moved", async () => {
    const origin = path.join(dir, "origin.git");
    await new LocalGitWriter({ repo: origin, dataDir: dir }).commit(provision("seed"));
    const url = `file://${origin}`;
    const a = new LocalGitWriter({ repo: url, dataDir: path.join(dir, "a") });
    const b = new LocalGitWriter({ repo: url, dataDir: path.join(dir, "b") });
    // b's clone is fetched, then a moves the remote: b's first push is refused and re-applied.
    expect(await b.listFiles("tenants")).toHaveLength(3);
    await a.commit({ jobId: "job-a", message: "job-a", files: renderTenantFiles({ ...TENANT, id: "alpha" }, INFRA, SETTINGS) });
    await Promise.all([
      b.commit({ jobId: "job-b", message: "job-b", files: renderTenantFiles({ ...TENANT, id: "bravo" }, INFRA, SETTINGS) }),
      a.commit({ jobId: "job-c", message: "job-c", files: renderTenantFiles({ ...TENANT, id: "charlie" }, INFRA, SETTINGS) }),
    ]);
    const files = await new LocalGitWriter({ repo: origin, dataDir: dir }).listFiles("tenants");
    expect(files.filter((f) => f.endsWith("tenant.yaml"))).toEqual([
      "tenants/acme/tenant.yaml",
      "tenants/alpha/tenant.yaml",
      "tenants/bravo/tenant.yaml",
      "tenants/charlie/tenant.yaml",
    ]);
    expect(await count(origin)).toBe(5);
    expect((await b.commit({ jobId: "job-b2", message: "job-b2", files: renderTenantFiles({ ...TENANT, id: "bravo" }, INFRA, SETTINGS) })).sha).toBeNull();
  });

  it("issue 11 finding 10: a remote URL with user:token@ keeps the token out of source, clone config, commits and manifests", async () => {
    const origin = path.join(dir, "private.git");
    await git(["init", "--bare", "--quiet", origin]);
    const url = `file://stackrail:${CANARY}@localhost${origin}`;
    const w = new LocalGitWriter({ repo: url, dataDir: dir });
    expect(w.source.repoURL).toBe(`file://localhost${origin}`);
    const files = {
      ...renderTenantFiles(TENANT, INFRA, SETTINGS),
      ...renderRegionFiles({ region: "eu-west-1", previews: true }, { ...SETTINGS, gitopsRepoUrl: w.source.repoURL }),
    };
    const r = await w.commit({ ...provision("job-cred"), files });
    expect(await git(["rev-parse", "refs/heads/main"], { gitDir: origin })).toBe(r.sha);
    const everything = await git(["log", "-p", "--all", "--format=%H%n%B"], { gitDir: origin });
    expect(everything).toContain(`repoURL: file://localhost${origin}`);
    expect(everything).not.toContain(CANARY);
    // The clone's config names the public URL; the credentials reach git through its environment only.
    expect(await readFile(path.join(w.gitDir, "config"), "utf8")).not.toContain(CANARY);
    // A renderer handed a credentialed URL refuses it instead of writing it.
    expect(() => renderRegionFiles({ region: "eu-west-1", previews: false }, { ...SETTINGS, gitopsRepoUrl: url })).toThrow(ManifestInvalidError);
    expect(() => renderTenantFiles(TENANT, INFRA, { ...SETTINGS, appRepoUrl: `https://${CANARY}@github.com/a/b.git` })).toThrow(ManifestInvalidError);
  });

  it("pushes to an empty remote repository", async () => {
    const origin = path.join(dir, "empty.git");
    await git(["init", "--bare", "--quiet", origin]);
    const w = new LocalGitWriter({ repo: `file://${origin}`, dataDir: dir });
    expect(await w.listFiles("tenants")).toEqual([]);
    const r = await w.commit(provision("job-1"));
    expect(await git(["rev-parse", "refs/heads/main"], { gitDir: origin })).toBe(r.sha);
  });
});
