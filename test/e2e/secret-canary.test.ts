// No secret leaves its place. Canary values are configured as every kind of secret Stackrail
// holds (webhook secret, API token, state passphrase, GitHub token, the MariaDB password in
// LOCAL_MYSQL_URL), whole jobs run through them, and then every place a secret could leak is
// searched: log lines, job records, the GitOps repository, GitHub comments/statuses/deployments,
// and the Pulumi state files.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitHubDouble } from "../github-double/server.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";

const tag = Math.random().toString(36).slice(2, 8);
const CANARY = {
  webhook: `canary-webhook-${tag}-Zq81`,
  apiToken: `canary-apitoken-${tag}-Xk22`,
  passphrase: `canary-passphrase-${tag}-Wm93`,
  github: `ghp_canary${tag}000000000000000000000000`,
  mysql: `Canary-Mysql-${tag}-Pw44`,
};
const mysqlUser = `canary_${tag}`;
const tenant = `cn-${tag}`;
const repo = `canary-${tag}`;
const lines: string[] = [];
let h: Harness;
let gh: GitHubDouble;
let root: mysql.Connection;

function files(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...files(full));
    else out.push(full);
  }
  return out;
}

beforeAll(async () => {
  root = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await root.query(`CREATE USER '${mysqlUser}'@'%' IDENTIFIED BY '${CANARY.mysql}'`);
  await root.query(`GRANT ALL PRIVILEGES ON *.* TO '${mysqlUser}'@'%' WITH GRANT OPTION`);
  gh = await GitHubDouble.start({ tokens: [CANARY.github] });
  await gh.createRepo("acme", repo);
  const head = await gh.push("acme", repo, "feature", "src/a.ts", "export {};\n");
  const pr = await gh.openPullRequest("acme", repo, { head: "feature", title: `leak ${CANARY.apiToken}?` });
  const capture = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  h = await startHarness({
    token: CANARY.apiToken,
    passphrase: CANARY.passphrase,
    webhookSecret: CANARY.webhook,
    logDestination: capture,
    env: {
      GITHUB_TOKEN: CANARY.github,
      GITHUB_API_URL: gh.url,
      LOCAL_MYSQL_URL: `mysql://${mysqlUser}:${encodeURIComponent(CANARY.mysql)}@127.0.0.1:3306`,
      LOG_LEVEL: "debug",
    },
  });

  // A whole tenant lifecycle and a whole preview lifecycle, through the canaries.
  const p = await h.request("POST", "/v1/tenants", { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect((await h.waitForJob(p.body.jobId)).state).toBe("succeeded");
  const event = (action: string) => ({
    action,
    number: pr.number,
    repository: { id: 1, name: repo, full_name: `acme/${repo}`, owner: { login: "acme", id: 1, type: "Organization" }, default_branch: "main" },
    sender: { login: "octocat", id: 2, type: "User" },
    pull_request: {
      number: pr.number,
      title: `leak ${CANARY.apiToken}?`,
      state: action === "closed" ? "closed" : "open",
      user: { login: "octocat", id: 2, type: "User" },
      head: { ref: "feature", sha: head, repo: { full_name: `acme/${repo}`, name: repo } },
      base: { ref: "main", sha: head, repo: { full_name: `acme/${repo}`, name: repo } },
    },
  });
  for (const action of ["opened", "closed"]) {
    const res = await h.deliver("pull_request", event(action));
    expect(res.status).toBe(202);
    for (const id of res.body.jobs as string[]) expect((await h.waitForJob(id)).state).toBe("succeeded");
  }
  const d = await h.request("DELETE", `/v1/tenants/${tenant}`);
  expect((await h.waitForJob(d.body.jobId)).state).toBe("succeeded");
});

afterAll(async () => {
  await h?.close();
  await gh?.close();
  await root?.query(`DROP USER IF EXISTS '${mysqlUser}'@'%'`);
  await root?.query(`DROP DATABASE IF EXISTS \`t_${tenant.replace(/-/g, "_")}\``);
  await root?.end();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers([tenant]);
});

describe("secret canaries", () => {
  const secrets = (): [string, string][] => Object.entries(CANARY);
  // The PR title deliberately carries the API token as user text; that one is expected where the
  // title is shown inert (a comment), so the token is checked everywhere but there.

  it("appear in no log line (and the logs did record the work)", () => {
    expect(lines.length).toBeGreaterThan(20);
    const text = lines.join("\n");
    for (const [name, value] of secrets()) expect(text.includes(value), `${name} in logs`).toBe(false);
  });

  it("are scrubbed from a line that carries one anyway (a driver error quoting a URL, say)", async () => {
    h.service.logger.error({ detail: `connect failed: mysql://${mysqlUser}:${CANARY.mysql}@127.0.0.1` }, "canary line");
    await new Promise((r) => setTimeout(r, 100));
    const line = lines.find((l) => l.includes("canary line")) ?? "";
    expect(line).toContain("[REDACTED]");
    expect(line.includes(CANARY.mysql)).toBe(false);
  });

  it("appear in no job record", async () => {
    const audit = await h.request("GET", "/v1/audit?limit=100");
    expect(audit.body.entries.length).toBeGreaterThanOrEqual(4);
    for (const e of audit.body.entries as { jobId: string }[]) {
      const view = JSON.stringify((await h.request("GET", `/v1/jobs/${e.jobId}`)).body);
      for (const [name, value] of secrets()) expect(view.includes(value), `${name} in job ${e.jobId}`).toBe(false);
    }
  });

  it("appear in no file or commit of the GitOps repository", () => {
    const all = execFileSync("git", ["--git-dir", h.config.gitopsRepo, "log", "-p", "--all", "--format=%H%n%B"], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(all).toContain(`tenants/${tenant}/application.yaml`);
    for (const [name, value] of secrets()) expect(all.includes(value), `${name} in git`).toBe(false);
  });

  it("appear in no GitHub comment, status or deployment except the PR title's own inert text", () => {
    const comments = gh
      .comments("acme", repo)
      .map((c) => c.body)
      .join("\n");
    expect(comments).toContain("stackrail:preview");
    const statuses = JSON.stringify(gh.statuses("acme", repo));
    const deployments = JSON.stringify(gh.deployments("acme", repo));
    for (const [name, value] of secrets()) {
      if (name !== "apiToken") expect(comments.includes(value), `${name} in comments`).toBe(false);
      expect(statuses.includes(value) || deployments.includes(value), `${name} in statuses/deployments`).toBe(false);
    }
  });

  it("appear in no Pulumi state file in plaintext", () => {
    const state = fileURLToPath(h.config.pulumiBackendUrl);
    const text = files(state)
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    expect(text).toContain(`tenant-${tenant}`);
    for (const [name, value] of secrets()) expect(text.includes(value), `${name} in state`).toBe(false);
  });
});
