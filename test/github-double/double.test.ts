import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { git } from "../../worker/gitops/git.ts";
import { clientFor, startDouble, TOKEN } from "./double.test-support.ts";
import { openApiChecker } from "./openapi.ts";
import type { GitHubDouble } from "./server.ts";

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
