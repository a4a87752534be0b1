// Release plans, approvals and health gates end to end (issue 13 §1–4), with the real engine,
// signed webhooks and the GitHub double: a release computes its plan before applying anything,
// waits for approval before wave 2 (the default STACKRAIL_APPROVAL_WAVES), goes on when approved
// through the API or by a member's `/stackrail approve` (the permission checked through the
// GitHub API, an outsider refused with a reply), stops when rejected; a wave whose gate reports a
// tenant unhealthy stops the release with Git and the API agreeing, and a resume finishes only the
// remaining tenants; a diff that changed after the plan was approved asks for approval again.
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgramError } from "../../core/errors.ts";
import { GitHubDouble } from "../github-double/server.ts";
import type { HealthCheck } from "../../worker/health-check.ts";
import type { JobView } from "../../jobs/queue.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { enqueueStackOperation, stackOperationJob, stackOperationKinds } from "../support/stack-operation.ts";

const TOKEN = "ghp_approvaltoken0000000000000000000000";
const OWNER = "acme";
let h: Harness;
let gh: GitHubDouble;
const tag = Math.random().toString(36).slice(2, 7);
const repoName = `app-${tag}`;
// Wave 1 is eu-west-1 (no approval), wave 2 is us-east-1 (waits for approval).
const e1 = `ea-${tag}`;
const e2 = `eb-${tag}`;
const u1 = `ua-${tag}`;
const all = [e1, e2, u1];

/** Tenants the scripted gate reports Degraded. */
const degraded = new Set<string>();
const healthCheck: HealthCheck = (tenant) => {
  if (degraded.has(tenant.id)) return Promise.reject(new ProgramError(`Application tenant-${tenant.id} is Degraded`));
  return Promise.resolve();
};

async function view(id: string): Promise<JobView | null> {
  return (await h.service.queue?.getJobView(id).catch(() => null)) ?? null;
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 360_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

const awaiting = (id: string, wave: number) =>
  waitFor(`rollout ${id} to await approval of wave ${wave}`, async () => {
    const v = await view(id);
    if (v && ["failed", "succeeded", "cancelled", "superseded"].includes(v.state)) throw new Error(`rollout ended ${v.state}: ${String(v.error)}`);
    const plan = await h.request("GET", `/v1/releases/${id}/plan`);
    return (
      v?.state === "awaiting-approval" && v.progress.some((l) => l.startsWith(`awaiting-approval: wave ${wave}`)) && plan.body.awaitingApproval?.wave === wave
    );
  });

function gitVersion(id: string): string | null {
  const text = h.gitShow(`tenants/${id}/tenant.yaml`);
  return text === null ? null : String((parse(text) as { version?: unknown }).version);
}

/** Every tenant's version, after checking that Git and the API agree on it. */
async function agree(): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const id of all) {
    const api = (await h.request("GET", `/v1/tenants/${id}`)).body.version as string;
    expect(gitVersion(id), `${id}: Git and API`).toBe(api);
    out[id] = api;
  }
  return out;
}

async function release(version: string): Promise<string> {
  const res = await h.request("POST", "/v1/releases", { version });
  expect(res.status).toBe(202);
  return res.body.jobId as string;
}

function commentEvent(pr: number, login: string, association: string, body: string): Record<string, unknown> {
  return {
    action: "created",
    repository: { name: repoName, full_name: `${OWNER}/${repoName}`, owner: { login: OWNER } },
    issue: { number: pr, pull_request: { url: `${gh.url}/repos/${OWNER}/${repoName}/pulls/${pr}` } },
    comment: { body, author_association: association, user: { login, type: "User" } },
    sender: { login },
  };
}

function pushEvent(sha: string): Record<string, unknown> {
  return {
    ref: "refs/heads/main",
    after: sha,
    repository: { name: repoName, full_name: `${OWNER}/${repoName}`, default_branch: "main", owner: { login: OWNER, name: OWNER } },
    sender: { login: "octocat" },
    commits: [{ added: [], modified: ["src/billing.ts"], removed: [] }],
  };
}

async function deliverOne(event: string, payload: unknown): Promise<string> {
  const res = await h.deliver(event, payload);
  expect(res.status).toBe(202);
  expect(res.body.jobs).toHaveLength(1);
  return res.body.jobs[0] as string;
}

beforeAll(async () => {
  gh = await GitHubDouble.start({ tokens: [TOKEN] });
  await gh.createRepo(OWNER, repoName);
  h = await startHarness({
    env: {
      STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1",
      STACKRAIL_WAVE_MAX_PARALLEL: "2",
      GITHUB_TOKEN: TOKEN,
      GITHUB_API_URL: gh.url,
    },
    healthCheck,
    extraKinds: stackOperationKinds,
  });
  const jobs: string[] = [];
  for (const [id, region] of [
    [e1, "eu-west-1"],
    [e2, "eu-west-1"],
    [u1, "us-east-1"],
  ] as const) {
    const res = await h.request("POST", "/v1/tenants", { id, region, tier: "pool", version: "1.0.0" });
    expect(res.status).toBe(202);
    jobs.push(res.body.jobId as string);
  }
  for (const jobId of jobs) {
    const job = await h.waitForJob(jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
  }
}, 900_000);

afterAll(async () => {
  for (const id of all) {
    const res = await h?.request("DELETE", `/v1/tenants/${id}`);
    if (res?.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
  }
  await h?.close();
  await gh?.close();
  await dropTenantLeftovers(all);
});

describe("release plan and approval", () => {
  it("plans before applying, waits for approval of wave 2, and an API approve continues it", async () => {
    expect((await h.request("GET", "/v1/releases/no-such-release/plan")).status).toBe(404);
    const before = h.gitLog().length;
    const id = await release("2.0.0");
    await awaiting(id, 2);

    // Wave 1 went through; wave 2 has not started.
    expect(await agree()).toEqual({ [e1]: "2.0.0", [e2]: "2.0.0", [u1]: "1.0.0" });
    expect(h.gitLog().length - before).toBe(1);
    expect(await view(`${id}.w2.r1.${u1}`)).toBeNull();

    const plan = await h.request("GET", `/v1/releases/${id}/plan`);
    expect(plan.status).toBe(200);
    expect(plan.body).toMatchObject({ jobId: id, version: "2.0.0", planned: true });
    const [w1, w2] = plan.body.waves as any[];
    expect(w1).toMatchObject({ wave: 1, regions: ["eu-west-1"], needsApproval: false });
    expect(w2).toMatchObject({ wave: 2, regions: ["us-east-1"], needsApproval: true, revision: 1, approval: null });
    expect(w1.tenants.map((t: any) => t.tenantId).sort()).toEqual([e1, e2].sort());
    expect(w2.tenants).toHaveLength(1);
    expect(w2.tenants[0]).toMatchObject({ tenantId: u1, from: "1.0.0", to: "2.0.0" });
    // The Argo CD manifest diff is a unified diff of the tenant's files; the Pulumi diff is the stack's preview.
    expect(w2.tenants[0].manifestDiff).toContain(`--- a/tenants/${u1}/tenant.yaml`);
    expect(w2.tenants[0].manifestDiff).toMatch(/^-.*1\.0\.0/m);
    expect(w2.tenants[0].manifestDiff).toMatch(/^\+.*2\.0\.0/m);
    expect(Array.isArray(w2.tenants[0].infra.diff)).toBe(true);
    expect(w2.tenants[0].infra.digest).toMatch(/^[0-9a-f]{64}$/);
    // Every tenant had a plan step (a preview in its own lane) before anything was applied.
    for (const t of all) expect((await view(`${id}.plan.${t}`))?.state).toBe("succeeded");

    const approve = await h.request("POST", `/v1/releases/${id}/approve`);
    expect(approve.status).toBe(202);
    expect(approve.body).toMatchObject({ jobId: id, wave: 2 });
    const job = await h.waitForJob(id, 380_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.progress.some((l) => l.startsWith(`wave 2 approved by ${String(approve.body.by)} (api)`))).toBe(true);
    expect(await agree()).toEqual({ [e1]: "2.0.0", [e2]: "2.0.0", [u1]: "2.0.0" });
    // The approver is audited in the plan too; nothing waits any more.
    const after = await h.request("GET", `/v1/releases/${id}/plan`);
    expect(after.body.waves[1].approval).toMatchObject({ by: approve.body.by, via: "api", wave: 2, revision: 1 });
    expect((await h.request("POST", `/v1/releases/${id}/approve`)).status).toBe(409);
  }, 900_000);

  it("reject stops the release before the waiting wave; Git and the API agree", async () => {
    const id = await release("3.0.0");
    await awaiting(id, 2);
    const reject = await h.request("POST", `/v1/releases/${id}/reject`, { reason: "error budget spent" });
    expect(reject.status).toBe(202);
    const job = await h.waitForJob(id, 380_000);
    expect(job.state).toBe("cancelled");
    expect(job.error).toContain("rejected at wave 2");
    expect(job.error).toContain("error budget spent");
    expect(await agree()).toEqual({ [e1]: "3.0.0", [e2]: "3.0.0", [u1]: "2.0.0" });
    expect((await h.request("POST", `/v1/releases/${id}/reject`)).status).toBe(409);
  }, 900_000);

  it("a /stackrail approve from an outsider is refused; a member's approves the release of the PR's merge commit", async () => {
    const headSha = await gh.push(OWNER, repoName, "billing", "src/billing.ts", "export const v = 1;\n");
    expect(headSha).toMatch(/^[0-9a-f]{40}$/);
    const pr = (await gh.openPullRequest(OWNER, repoName, { head: "billing", title: "Billing" })).number;
    const merged = await gh.mergePullRequest(OWNER, repoName, pr);
    const sha = merged.mergeCommitSha as string;
    gh.setPermission(OWNER, repoName, "outsider", "read");
    gh.setPermission(OWNER, repoName, "maintainer", "write");

    const id = await deliverOne("push", pushEvent(sha));
    expect((await view(id))?.data).toMatchObject({ kind: "release.rollout", version: sha, source: { repo: { owner: OWNER, name: repoName }, sha } });
    await awaiting(id, 2);

    // The payload claims a collaborator; the GitHub API says read only: refused, with a reply on the PR.
    const refused = await h.waitForJob(await deliverOne("issue_comment", commentEvent(pr, "outsider", "COLLABORATOR", "/stackrail approve")));
    expect(refused).toMatchObject({ kind: "release.command", state: "succeeded", result: { refused: true } });
    expect(gh.comments(OWNER, repoName, pr).some((c) => c.body.includes("Command not run") && c.body.includes("write, maintain or admin"))).toBe(true);
    // No association at all: refused at the edge already.
    const stranger = await h.waitForJob(await deliverOne("issue_comment", commentEvent(pr, "stranger", "NONE", "/stackrail approve")));
    expect(stranger).toMatchObject({ kind: "comment.refusal", state: "succeeded" });
    await new Promise((r) => setTimeout(r, 2000));
    expect((await view(id))?.progress.some((l) => l.startsWith("wave 2 approved"))).toBe(false);
    // The rejected 3.0.0 never reached wave 2: u1 is still at 2.0.0, and its step has not started.
    expect(gitVersion(u1)).toBe("2.0.0");
    expect(await view(`${id}.w2.r1.${u1}`)).toBeNull();

    const accepted = await h.waitForJob(await deliverOne("issue_comment", commentEvent(pr, "maintainer", "MEMBER", "/stackrail approve")));
    expect(accepted).toMatchObject({ kind: "release.command", state: "succeeded", result: { applied: true, releaseJobId: id, wave: 2 } });
    const job = await h.waitForJob(id, 380_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.progress.some((l) => l.startsWith("wave 2 approved by maintainer (comment)"))).toBe(true);
    expect(await agree()).toEqual({ [e1]: sha, [e2]: sha, [u1]: sha });
    expect(gh.comments(OWNER, repoName, pr).some((c) => c.body.includes("Wave 2 approved"))).toBe(true);
    // The release from a commit is reported there: the plan's check run, completed, and a Deployment per wave.
    const checks = gh.checkRuns(OWNER, repoName, sha).filter((c) => c.name === "stackrail/release");
    expect(checks).toHaveLength(1);
    expect(checks[0]).toMatchObject({ status: "completed", conclusion: "success" });
    const environments = gh.deployments(OWNER, repoName).map((d) => d.environment);
    expect(environments).toEqual(expect.arrayContaining(["eu-west-1", "us-east-1"]));
    // Every request to the double matched GitHub's API description.
    expect(gh.violations).toEqual([]);
  }, 900_000);

  it("a wave whose gate reports a tenant Degraded stops the release; Git and the API agree; a resume finishes only the rest", async () => {
    const before = await agree();
    degraded.add(e2);
    const id = await release("4.0.0");
    const job = await h.waitForJob(id, 380_000);
    degraded.delete(e2);
    expect(job.state).toBe("failed");
    expect(job.error).toContain("health gate");
    expect(job.error).toContain(`${e2} (Application tenant-${e2} is Degraded)`);
    // The wave was deployed before its gate looked: its tenants are at 4.0.0 in Git and in the API.
    expect(await agree()).toEqual({ [e1]: "4.0.0", [e2]: "4.0.0", [u1]: before[u1] });

    const resumed = await h.request("POST", `/v1/releases/${id}/resume`);
    expect(resumed.status).toBe(202);
    const resumeId = resumed.body.jobId as string;
    await awaiting(resumeId, 2);
    expect((await h.request("POST", `/v1/releases/${resumeId}/approve`)).status).toBe(202);
    const second = await h.waitForJob(resumeId, 380_000);
    expect(second.state, String(second.error)).toBe("succeeded");
    const result = second.result as { waves: { wave: number; updated: string[]; steps: string[] }[] };
    expect(result.waves.map((w) => w.updated)).toEqual([[], [u1]]);
    expect(result.waves.flatMap((w) => w.steps)).toEqual([`${resumeId}.w2.r1.${u1}`]);
    // Only the remaining tenant was even planned.
    const plan = await h.request("GET", `/v1/releases/${resumeId}/plan`);
    expect((plan.body.waves as any[]).map((w) => w.tenants.map((t: any) => t.tenantId))).toEqual([[], [u1]]);
    expect(await agree()).toEqual({ [e1]: "4.0.0", [e2]: "4.0.0", [u1]: "4.0.0" });
  }, 900_000);

  it("a stack diff that changed after the approval stops the wave and asks again, naming the difference", async () => {
    const id = await release("5.0.0");
    await awaiting(id, 2);
    const plan = await h.request("GET", `/v1/releases/${id}/plan`);
    const approved = plan.body.waves[1].tenants[0].infra;
    // Another change lands on u1's stack meanwhile: its database grants become read-only.
    const op = await enqueueStackOperation(
      h.service.queue as NonNullable<typeof h.service.queue>,
      stackOperationJob({
        stack: `tenant-${u1}`,
        project: "stackrail-pool",
        operation: "up",
        program: "tenant",
        args: { tenantId: u1, tier: "pool", region: "us-east-1", version: "4.0.0", readOnly: true },
      }),
    );
    const changed = await h.waitForJob(op.jobId);
    expect(changed.state, String(changed.error)).toBe("succeeded");

    expect((await h.request("POST", `/v1/releases/${id}/approve`)).status).toBe(202);
    await waitFor("the wave to ask again", async () => (await view(id))?.progress.some((l) => l.includes("asks for approval again (revision 2)")) ?? false);
    await awaiting(id, 2);
    const revised = await h.request("GET", `/v1/releases/${id}/plan`);
    const w2 = revised.body.waves[1];
    expect(w2.revision).toBe(2);
    expect(w2.changes).toHaveLength(1);
    expect(w2.changes[0].tenantId).toBe(u1);
    expect(w2.changes[0].added.length + w2.changes[0].removed.length).toBeGreaterThan(0);
    expect(w2.tenants[0].infra.digest).not.toBe(approved.digest);
    // Nothing of the new diff was applied: u1 is untouched until the new revision is approved.
    expect(gitVersion(u1)).toBe("4.0.0");

    expect((await h.request("POST", `/v1/releases/${id}/approve`)).status).toBe(202);
    const job = await h.waitForJob(id, 380_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.progress.some((l) => l.startsWith("wave 2 approved") && l.includes("plan revision 2"))).toBe(true);
    expect(await agree()).toEqual({ [e1]: "5.0.0", [e2]: "5.0.0", [u1]: "5.0.0" });
  }, 900_000);
});
