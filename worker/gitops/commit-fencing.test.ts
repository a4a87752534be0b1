// Fencing before a GitOps commit (issue 12): a job whose worker lost its lock publishes nothing.
// The writers check the running job's lock (worker/job-scope.ts assertJobOwned) right before the
// branch moves: on a bare repository (update-ref) and through a remote (push).
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LeaseLostError, runInJobScope } from "../job-scope.ts";
import { clientFor, startDouble } from "../../test/github-double/double.test-support.ts";
import { git } from "./git.ts";
import { GitHubWriter } from "./github-writer.ts";
import { LocalGitWriter } from "./local-git-writer.ts";
import { renderTenantFiles } from "./manifests.ts";
import { commitMessage, type GitOpsChange } from "./writer.ts";
import { INFRA, SETTINGS, TENANT } from "./fixtures.test-support.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "stackrail-gitops-fence-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const trigger = { type: "api", tokenName: "control-plane" } as const;
const change = (jobId: string): GitOpsChange => ({
  jobId,
  message: commitMessage({ jobId, kind: "tenant.provision", subject: "tenant acme", trigger }),
  files: renderTenantFiles(TENANT, INFRA, SETTINGS),
  subject: "tenant-acme",
});
const count = async (gitDir: string) => Number(await git(["rev-list", "--count", "main"], { gitDir }));

describe("a GitOps commit of a job whose worker lost its lock", () => {
  for (const where of ["bare", "remote"] as const) {
    it(`is refused before the branch moves (${where} repository), and goes through while the lock is held`, async () => {
      const bare = path.join(dir, "gitops.git");
      // A remote: the writer works in a clone of it and pushes.
      if (where === "remote")
        await new LocalGitWriter({ repo: bare, dataDir: path.join(dir, "init") }).commit({
          ...change("job-0"),
          files: renderTenantFiles({ ...TENANT, version: "0.0.1" }, INFRA, SETTINGS),
        });
      const repo = where === "remote" ? `file://${bare}` : bare;
      const writer = new LocalGitWriter({ repo, dataDir: dir });
      let checks = 0;
      const lost = runInJobScope(
        {
          jobId: "job-1",
          assertOwned: () => {
            checks += 1;
            return Promise.reject(new LeaseLostError("this worker lost the job's lock (test)"));
          },
        },
        () => writer.commit(change("job-1")),
      );
      await expect(lost).rejects.toBeInstanceOf(LeaseLostError);
      expect(checks).toBe(1);
      const before = where === "remote" ? 2 : 0;
      if (where === "remote") expect(await count(bare)).toBe(before);
      else expect(await git(["rev-list", "--count", "--all"], { gitDir: bare }).catch(() => "1")).toBe("1"); // the initial commit only

      const owned = await runInJobScope({ jobId: "job-2", assertOwned: () => Promise.resolve() }, () =>
        writer.commit({ ...change("job-2"), files: renderTenantFiles({ ...TENANT, version: "9.9.9" }, INFRA, SETTINGS) }),
      );
      expect(owned.sha).toMatch(/^[0-9a-f]{40}$/);
    });
  }

  it("is refused before the branch ref moves on GitHub (git data API), and goes through while the lock is held", async () => {
    const double = await startDouble();
    try {
      const writer = new GitHubWriter({ client: await clientFor(double), owner: "acme", repo: "gitops" });
      const lost = runInJobScope({ jobId: "job-1", assertOwned: () => Promise.reject(new LeaseLostError("lost (test)")) }, () =>
        writer.commit(change("job-1")),
      );
      await expect(lost).rejects.toBeInstanceOf(LeaseLostError);
      expect(double.requests.filter((r) => r.operationId === "git/update-ref")).toEqual([]);
      expect(Number(await git(["rev-list", "--count", "main"], { gitDir: double.gitDir("acme", "gitops") }))).toBe(1);
      const owned = await runInJobScope({ jobId: "job-2", assertOwned: () => Promise.resolve() }, () => writer.commit(change("job-2")));
      expect(owned.sha).toMatch(/^[0-9a-f]{40}$/);
      expect(double.violations).toEqual([]);
    } finally {
      await double.close();
    }
  });
});
