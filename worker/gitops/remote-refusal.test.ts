// A GitOps remote that refuses pushes for a while (its pre-receive hook declines: an outage, a
// branch protection being changed): the commit waits with a growing delay, says so through
// onWait, spends none of its race tries, and lands once, when the remote takes pushes again.
// Before (issue 12's fault suite), a refusal counted as a lost race: twelve quick tries gave up
// within seconds, and a one-minute refusal failed the job.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGitOpsRemote } from "../../test/support/gitops-remote.ts";
import { waitUntil } from "../../test/support/private-services.ts";
import { INFRA, SETTINGS, TENANT } from "./fixtures.test-support.ts";
import { LocalGitWriter } from "./local-git-writer.ts";
import { renderTenantFiles } from "./manifests.ts";
import { commitMessage } from "./writer.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "stackrail-gitops-refusal-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("LocalGitWriter and a remote refusing pushes", () => {
  it("waits while the remote refuses, says why, and commits once afterwards", async () => {
    const remote = createGitOpsRemote(dir);
    // A small race budget: a refusal must not spend it.
    const writer = new LocalGitWriter({ repo: remote.url, dataDir: path.join(dir, "data"), maxTries: 2 });
    const jobId = "refused-1";
    const waits: string[] = [];
    remote.refuse(true);
    const committing = writer.commit({
      jobId,
      message: commitMessage({ jobId, kind: "tenant.provision", subject: "tenant acme", trigger: { type: "api", tokenName: "ci" } }),
      files: renderTenantFiles(TENANT, INFRA, SETTINGS),
      subject: "tenant-acme",
      onWait: (line) => waits.push(line),
    });
    // Refused more times than the race budget allows before the remote takes pushes again.
    await waitUntil("three refused pushes", () => remote.refusals() >= 3, 60_000, 50);
    remote.refuse(false);
    const result = await committing;
    expect(result.sha).toMatch(/^[0-9a-f]{40}$/);
    expect(waits.length).toBeGreaterThanOrEqual(3);
    expect(waits[0]).toMatch(/^waiting: the GitOps remote refused the push \(pre-receive hook declined\); trying again in 1s$/);
    expect(remote.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
  });
});
