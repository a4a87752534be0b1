// PR preview environments end to end: signed webhooks (real example payloads) in; the preview
// database, GitOps commits and GitHub feedback (through the OpenAPI-checked double) out.
import { createRequire } from "node:module";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitHubDouble } from "../github-double/server.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];
const TOKEN = "ghp_previewtoken00000000000000000000000";
const repoName = `app-${Math.random().toString(36).slice(2, 6)}`;
let pr = 0;
let dbName = "";
/** Head commits pushed to the PR's branch in the double's real git repository. */
const heads: string[] = [];
const sha = (n: number): string => heads[n - 1] as string;

let h: Harness;
let gh: GitHubDouble;
let db: mysql.Connection;

function pullRequestEvent(action: string, headSha: string): Record<string, any> {
  const example = examples.find((e) => e.name === "pull_request")?.examples.find((e) => (e as { action?: string }).action === action);
  const payload = structuredClone(example ?? examples.find((e) => e.name === "pull_request")?.examples[0]) as Record<string, any>;
  payload.action = action;
  payload.number = pr;
  const repo = { ...payload.repository, name: repoName, full_name: `acme/${repoName}`, owner: { ...payload.repository.owner, login: "acme" } };
  payload.repository = repo;
  payload.pull_request = {
    ...payload.pull_request,
    number: pr,
    title: "Add invoices `rm -rf /` $(whoami) <script>",
    head: { ...payload.pull_request.head, sha: headSha, repo },
    base: { ...payload.pull_request.base, repo },
    merged: action === "closed",
  };
  return payload;
}

async function deliverAndWait(action: string, headSha: string) {
  const res = await h.deliver("pull_request", pullRequestEvent(action, headSha));
  expect(res.status).toBe(202);
  expect(res.body.jobs).toHaveLength(1);
  return h.waitForJob(res.body.jobs[0]);
}

async function dbExists(): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [dbName]);
  return rows.length === 1;
}

beforeAll(async () => {
  gh = await GitHubDouble.start({ tokens: [TOKEN] });
  await gh.createRepo("acme", repoName);
  heads.push(await gh.push("acme", repoName, "feature", "src/invoices.ts", "export const v = 1;\n"));
  pr = (await gh.openPullRequest("acme", repoName, { head: "feature", title: "Add invoices" })).number;
  heads.push(await gh.push("acme", repoName, "feature", "src/invoices.ts", "export const v = 2;\n"));
  dbName = `p_${repoName.replace(/-/g, "_")}_pr_${pr}`;
  h = await startHarness({ env: { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: gh.url } });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  await h?.close();
  await gh?.close();
  await db?.query(`DROP DATABASE IF EXISTS \`${dbName}\``);
  await db?.end();
});

describe("PR preview environments", () => {
  it("opened: stack up, manifest committed, sticky comment, status and deployment report the URL", async () => {
    const job = await deliverAndWait("opened", sha(1));
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(await dbExists()).toBe(true);
    expect(h.gitShow(`previews/${repoName}-pr-${pr}/application.yaml`)).toContain(sha(1));
    expect(h.gitShow("regions/eu-west-1/previews.yaml")).toContain("path: previews");

    const comments = gh.comments("acme", repoName, pr);
    expect(comments).toHaveLength(1);
    expect(comments[0]?.body).toContain("<!-- stackrail:preview -->");
    expect(comments[0]?.body).toContain("Preview environment is ready");
    expect(comments[0]?.body).toContain(`${repoName}-pr-${pr}.preview.localhost`);
    // The PR title is user text: it appears only inside a code span, where markdown renders it inert.
    expect(comments[0]?.body).toContain("``Add invoices `rm -rf /` $(whoami) <script>``");
    expect(comments[0]?.body.split("<script>")).toHaveLength(2);
    expect(gh.statuses("acme", repoName, sha(1)).map((s) => s.state)).toEqual(["pending", "success"]);
    // Issue 13 §1: the plan the `up` applied (its policy-checked preview), per resource, before the outputs.
    const body = comments[0]?.body ?? "";
    expect(body).toContain("**Plan:** 8 to create");
    for (const [name, type] of [
      [`${dbName}-database`, "MysqlDatabase"],
      [`${dbName}-db-user`, "MysqlUser"],
      [`${dbName}-db-grant`, "MysqlGrant"],
      [`p-${repoName}-pr-${pr}-cache-user`, "RedisAclUser"],
      [`${repoName}-pr-${pr}-attachments`, "Directory"],
    ]) {
      expect(body).toContain(`| ➕ create | \`${name}\` | \`${type}\` |  |`);
    }
    expect(body.indexOf("**Plan:**")).toBeLessThan(body.indexOf("Outputs"));
    expect(body).not.toContain("Policy violations");
    expect(job.progress.some((l) => l.startsWith("policy check passed"))).toBe(true);
    expect((job.result as { diff?: unknown[] }).diff).toHaveLength(8);
    const deployment = gh.deployments("acme", repoName).find((d) => d.environment === `preview/pr-${pr}`);
    expect(deployment?.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
  });

  it("synchronize: updates the same preview; the comment is edited, not duplicated", async () => {
    const job = await deliverAndWait("synchronize", sha(2));
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(h.gitShow(`previews/${repoName}-pr-${pr}/application.yaml`)).toContain(sha(2));
    const comments = gh.comments("acme", repoName, pr);
    expect(comments).toHaveLength(1);
    expect(comments[0]?.body).toContain(sha(2).slice(0, 12));
    // A new head changes the preview's labels (outputs), no resource: the plan says so.
    expect(comments[0]?.body).toContain("**Plan:** no resource changes.");
  });

  it("closed: manifest removed first, stack destroyed, deployment inactive, comment updated", async () => {
    const job = await deliverAndWait("closed", sha(2));
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(h.gitShow(`previews/${repoName}-pr-${pr}/application.yaml`)).toBeNull();
    expect(await dbExists()).toBe(false);
    const comments = gh.comments("acme", repoName, pr);
    expect(comments).toHaveLength(1);
    expect(comments[0]?.body).toContain("Preview environment destroyed");
    for (const d of gh.deployments("acme", repoName).filter((x) => x.environment === `preview/pr-${pr}`)) {
      expect(d.statuses.at(-1)?.state).toBe("inactive");
    }
    const metrics = await fetch(`${h.service.url}/metrics`, { headers: { authorization: `Bearer ${h.token}` } }).then((r) => r.text());
    expect(metrics).toMatch(/stackrail_github_api_calls_total\{status="20[01]"\} [1-9]/);
    expect(metrics).toMatch(/stackrail_github_rate_limit_remaining \d+/);
    const order = ["removing the preview's manifest", "stack destroy"].map((s) => job.progress.findIndex((l) => l.includes(s)));
    expect(order[0]).toBeGreaterThanOrEqual(0);
    expect(order[1]).toBeGreaterThan(order[0] as number);
  });
});
