import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { git } from "../../worker/gitops/git.ts";
import { clientFor, startDouble, TOKEN } from "./double.test-support.ts";
import { openApiChecker } from "./openapi.ts";
import { GitHubDouble } from "./server.ts";

let double: GitHubDouble;
beforeEach(async () => {
  double = await startDouble();
});
afterEach(async () => {
  await double.close();
});

describe("GitHub double", () => {
  it("writes git objects for real: a commit made through the API shows in git log", async () => {
    const gh = (await clientFor(double)).rest.git;
    const owner = "acme";
    const repo = "gitops";
    const head = (await gh.getRef({ owner, repo, ref: "heads/main" })).data.object.sha;
    const base = (await gh.getCommit({ owner, repo, commit_sha: head })).data.tree.sha;
    const blob = (await gh.createBlob({ owner, repo, content: "hello\n", encoding: "utf-8" })).data.sha;
    const tree = (await gh.createTree({ owner, repo, base_tree: base, tree: [{ path: "a/b.txt", mode: "100644", type: "blob", sha: blob }] })).data.sha;
    const commit = (await gh.createCommit({ owner, repo, message: "Add b", tree, parents: [head], author: { name: "T", email: "t@example.invalid" } })).data
      .sha;
    await gh.updateRef({ owner, repo, ref: "heads/main", sha: commit, force: false });
    const gitDir = double.gitDir(owner, repo);
    expect(await git(["log", "--format=%s", "main"], { gitDir })).toBe("Add b\nInitial commit");
    expect(await git(["show", "main:a/b.txt"], { gitDir })).toBe("hello");
    // A non-fast-forward update is refused, as on GitHub.
    await expect(gh.updateRef({ owner, repo, ref: "heads/main", sha: head, force: false })).rejects.toMatchObject({ status: 422 });
    expect(double.violations).toEqual([]);
  });

  it("checks requests against the OpenAPI description: wrong fields, wrong enums, unknown query parameters", async () => {
    const client = await clientFor(double);
    await expect(
      client.request("POST /repos/{owner}/{repo}/git/blobs", { owner: "acme", repo: "gitops", content: "x", encodng: "utf-8" }),
    ).rejects.toMatchObject({ status: 422 });
    await expect(
      client.request("POST /repos/{owner}/{repo}/statuses/{sha}", { owner: "acme", repo: "app", sha: "a".repeat(40), state: "ok" as "success" }),
    ).rejects.toMatchObject({ status: 422 });
    await expect(client.request("GET /repos/{owner}/{repo}/pulls", { owner: "acme", repo: "app", statee: "open" })).rejects.toMatchObject({ status: 422 });
    await expect(client.request("GET /repos/{owner}/{repo}/no-such-endpoint", { owner: "acme", repo: "app" })).rejects.toMatchObject({ status: 404 });
    expect(double.violations).toHaveLength(4);
    expect(double.violations.join("\n")).toMatch(/additional properties "encodng"[\s\S]*state[\s\S]*allowed values[\s\S]*"statee"[\s\S]*no such operation/);
  });

  it("checks responses against the OpenAPI description", () => {
    const checker = openApiChecker();
    const m = checker.match("POST", "/repos/a/b/git/commits");
    expect(m?.operation.operationId).toBe("git/create-commit");
    expect(checker.checkResponse(m!, 201, { sha: "x" }).join()).toMatch(/required property 'node_id'/);
    expect(checker.checkResponse(m!, 204, {}).join()).toMatch(/does not document status 204/);
  });

  it("answers faults on demand: 422 N times, 502 (retried by the client), secondary rate limit with retry-after", async () => {
    const client = await clientFor(double);
    double.inject({ kind: "bad-gateway", method: "GET", path: /\/git\/ref\/heads\/main$/, times: 2 });
    const ref = await client.rest.git.getRef({ owner: "acme", repo: "gitops", ref: "heads/main" });
    expect(ref.status).toBe(200);
    expect(double.requests.map((r) => r.status)).toEqual([502, 502, 200]);

    double.inject({ kind: "ref-conflict", method: "PATCH", path: /\/git\/refs\/heads\/main$/, times: 2 });
    for (let i = 0; i < 2; i++) {
      await expect(client.rest.git.updateRef({ owner: "acme", repo: "gitops", ref: "heads/main", sha: ref.data.object.sha })).rejects.toMatchObject({
        status: 422,
      });
    }
    expect((await client.rest.git.updateRef({ owner: "acme", repo: "gitops", ref: "heads/main", sha: ref.data.object.sha })).status).toBe(200);

    double.inject({ kind: "secondary-rate-limit", path: /\/pulls$/ });
    const raw = await fetch(`${double.url}/repos/acme/app/pulls`, { headers: { authorization: `token ${TOKEN}` } });
    expect(raw.status).toBe(403);
    expect(raw.headers.get("retry-after")).toBe("1");
    expect(((await raw.json()) as { message: string }).message).toMatch(/secondary rate limit/);
    expect(raw.headers.get("x-ratelimit-limit")).toBe("5000");
    expect(double.violations).toEqual([]);
  });

  it("paginates with Link headers and refuses bad credentials", async () => {
    const client = await clientFor(double);
    await double.push("acme", "app", "f", "x.txt", "1");
    const pr = await double.openPullRequest("acme", "app", { head: "f", title: "t" });
    for (let i = 0; i < 105; i++) await client.rest.issues.createComment({ owner: "acme", repo: "app", issue_number: pr.number, body: `c${i}` });
    const all = await client.paginate(client.rest.issues.listComments, { owner: "acme", repo: "app", issue_number: pr.number, per_page: 100 });
    expect(all).toHaveLength(105);
    const bad = await fetch(`${double.url}/repos/acme/app/pulls`, { headers: { authorization: "token nope" } });
    expect(bad.status).toBe(401);
    expect(double.violations).toEqual([]);
  });
});

describe("GitHub double: permissions, merged pulls, check runs", () => {
  it("answers a collaborator's permission as set by the test; an unknown user is 404", async () => {
    const client = await clientFor(double);
    const roles = ["admin", "maintain", "write", "triage", "read", "none"] as const;
    for (const role of roles) double.setPermission("acme", "app", `user-${role}`, role);
    const answers = [];
    for (const role of roles) {
      const { data } = await client.rest.repos.getCollaboratorPermissionLevel({ owner: "acme", repo: "app", username: `user-${role}` });
      answers.push(`${data.permission}/${data.role_name}/${String(data.user?.permissions?.push)}`);
    }
    // GitHub's legacy `permission` folds maintain into write and triage into read; role_name keeps them.
    expect(answers).toEqual(["admin/admin/true", "write/maintain/true", "write/write/true", "read/triage/false", "read/read/false", "none/none/false"]);
    await expect(client.rest.repos.getCollaboratorPermissionLevel({ owner: "acme", repo: "app", username: "stranger" })).rejects.toMatchObject({
      status: 404,
    });
    expect(double.violations).toEqual([]);
  });

  it("answers merged, merged_at and merge_commit_sha of a merged pull request (a real merge commit on the base)", async () => {
    const client = await clientFor(double);
    await double.push("acme", "app", "feature", "src/a.ts", "v1");
    const pr = await double.openPullRequest("acme", "app", { head: "feature", title: "t" });
    const open = (await client.rest.pulls.get({ owner: "acme", repo: "app", pull_number: pr.number })).data;
    expect([open.merged, open.merged_at, open.merge_commit_sha]).toEqual([false, null, null]);
    await double.mergePullRequest("acme", "app", pr.number, { mergedAt: "2026-01-02T03:04:05Z", mergedBy: "octocat" });
    const merged = (await client.rest.pulls.get({ owner: "acme", repo: "app", pull_number: pr.number })).data;
    expect(merged).toMatchObject({ merged: true, state: "closed", merged_at: "2026-01-02T03:04:05Z", merged_by: { login: "octocat" } });
    const gitDir = double.gitDir("acme", "app");
    expect(merged.merge_commit_sha).toBe(await git(["rev-parse", "main"], { gitDir }));
    expect(await git(["show", "main:src/a.ts"], { gitDir })).toBe("v1");
    // A test may also name the merge commit itself.
    await double.push("acme", "app", "other", "b.txt", "b");
    const pr2 = await double.openPullRequest("acme", "app", { head: "other", title: "t2" });
    await double.mergePullRequest("acme", "app", pr2.number, { mergeCommitSha: "f".repeat(40) });
    expect((await client.rest.pulls.get({ owner: "acme", repo: "app", pull_number: pr2.number })).data.merge_commit_sha).toBe("f".repeat(40));
    expect(double.violations).toEqual([]);
  });

  it("creates, updates, gets and lists check runs; annotations append; conclusion completes the run", async () => {
    const client = await clientFor(double);
    const sha = await git(["rev-parse", "main"], { gitDir: double.gitDir("acme", "app") });
    const annotation = (i: number) => ({ path: "stackrail", start_line: 1, end_line: 1, annotation_level: "failure" as const, message: `violation ${i}` });
    const created = await client.rest.checks.create({
      owner: "acme",
      repo: "app",
      name: "stackrail/release",
      head_sha: sha,
      status: "in_progress",
      external_id: "job-1",
      output: { title: "Plan", summary: "3 waves", annotations: Array.from({ length: 50 }, (_, i) => annotation(i)) },
    });
    expect(created.status).toBe(201);
    expect(created.data).toMatchObject({ status: "in_progress", conclusion: null, head_sha: sha, external_id: "job-1" });
    const id = created.data.id;
    await client.rest.checks.update({
      owner: "acme",
      repo: "app",
      check_run_id: id,
      output: { title: "Plan", summary: "wave 1 done", annotations: [annotation(50)] },
    });
    const done = await client.rest.checks.update({
      owner: "acme",
      repo: "app",
      check_run_id: id,
      conclusion: "success",
      output: { title: "Released", summary: "all waves done", text: "details" },
    });
    expect(done.data).toMatchObject({
      status: "completed",
      conclusion: "success",
      output: { title: "Released", summary: "all waves done", text: "details", annotations_count: 51 },
    });
    expect(done.data.completed_at).not.toBeNull();
    expect((await client.rest.checks.get({ owner: "acme", repo: "app", check_run_id: id })).data.output.summary).toBe("all waves done");
    const annotations = await client.paginate(client.rest.checks.listAnnotations, { owner: "acme", repo: "app", check_run_id: id, per_page: 100 });
    expect(annotations.map((a) => a.message)).toEqual(Array.from({ length: 51 }, (_, i) => `violation ${i}`));

    // A second run of the same name: filter=latest (the default) answers only the newest; by branch name too.
    await client.rest.checks.create({ owner: "acme", repo: "app", name: "stackrail/release", head_sha: sha, status: "queued" });
    await client.rest.checks.create({ owner: "acme", repo: "app", name: "other", head_sha: sha, conclusion: "neutral", output: { title: "o", summary: "o" } });
    const latest = (await client.rest.checks.listForRef({ owner: "acme", repo: "app", ref: sha, check_name: "stackrail/release" })).data;
    expect(latest.total_count).toBe(1);
    expect(latest.check_runs[0]?.status).toBe("queued");
    const all = (await client.rest.checks.listForRef({ owner: "acme", repo: "app", ref: "main", filter: "all" })).data;
    expect(all.check_runs.map((c) => `${c.name}:${c.status}`)).toEqual(["other:completed", "stackrail/release:queued", "stackrail/release:completed"]);
    expect(double.checkRuns("acme", "app", sha)).toHaveLength(3);
    await expect(client.rest.checks.get({ owner: "acme", repo: "app", check_run_id: 999_999 })).rejects.toMatchObject({ status: 404 });
    await expect(
      client.rest.checks.create({ owner: "acme", repo: "app", name: "x", head_sha: "0".repeat(40), output: { title: "t", summary: "s" } }),
    ).rejects.toMatchObject({ status: 422 });
    await expect(client.rest.checks.create({ owner: "acme", repo: "app", name: "x", head_sha: sha, status: "completed" })).rejects.toMatchObject({
      status: 422,
    });
    expect(double.violations).toEqual([]);
  });

  it("refuses GitHub's check run limits with 422: 51 annotations in one request, a summary over 65,535 characters", async () => {
    const client = await clientFor(double);
    const sha = await git(["rev-parse", "main"], { gitDir: double.gitDir("acme", "app") });
    const id = (await client.rest.checks.create({ owner: "acme", repo: "app", name: "c", head_sha: sha, status: "in_progress" })).data.id;
    const annotations = Array.from({ length: 51 }, () => ({ path: "p", start_line: 1, end_line: 1, annotation_level: "warning" as const, message: "m" }));
    await expect(
      client.rest.checks.update({ owner: "acme", repo: "app", check_run_id: id, output: { title: "t", summary: "s", annotations } }),
    ).rejects.toMatchObject({
      status: 422,
    });
    await expect(
      client.rest.checks.update({ owner: "acme", repo: "app", check_run_id: id, output: { title: "t", summary: "x".repeat(65_536) } }),
    ).rejects.toMatchObject({ status: 422 });
    await expect(
      client.rest.checks.create({ owner: "acme", repo: "app", name: "c", head_sha: sha, output: { title: "t", summary: "s", text: "x".repeat(65_536) } }),
    ).rejects.toMatchObject({ status: 422 });
    // Exactly at the limits is accepted.
    await client.rest.checks.update({
      owner: "acme",
      repo: "app",
      check_run_id: id,
      output: { title: "t", summary: "x".repeat(65_535), annotations: annotations.slice(0, 50) },
    });
    expect(double.checkRuns("acme", "app")[0]?.annotations).toHaveLength(50);
    expect(double.checkRuns("acme", "app")).toHaveLength(1);
    // Over-limit requests are client bugs: the double records them as violations of the description.
    expect(double.violations).toHaveLength(3);
    expect(double.violations.join("\n")).toMatch(
      /annotations must NOT have more than 50 items[\s\S]*summary must NOT have more than 65535 characters[\s\S]*text must NOT have more than 65535/,
    );
  });

  it("refuses check run writes with a personal access token when checksNeedApp is set, as GitHub does", async () => {
    const strict = await GitHubDouble.start({ tokens: [TOKEN], checksNeedApp: true });
    try {
      await strict.createRepo("acme", "app");
      const client = await clientFor(strict);
      const sha = await git(["rev-parse", "main"], { gitDir: strict.gitDir("acme", "app") });
      await expect(client.rest.checks.create({ owner: "acme", repo: "app", name: "c", head_sha: sha, status: "in_progress" })).rejects.toMatchObject({
        status: 403,
      });
      expect(strict.checkRuns("acme", "app")).toEqual([]);
      expect(strict.violations).toEqual([]);
    } finally {
      await strict.close();
    }
  });
});
