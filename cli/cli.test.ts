// The `stackrail` CLI against a real running service (issue 17, section 2): each command runs as
// a child process on the project's Node, as an operator would run it, configured only by
// STACKRAIL_URL, STACKRAIL_TOKEN and the webhook secret. The engine work: one provision, and one
// rollout of that tenant (every wave waits for approval here, so a rollout stops at its first).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation, PROJECT_ROOT } from "../core/engine.ts";
import { dropTenantLeftovers } from "../test/support/cleanup.ts";
import { startHarness, type Harness } from "../test/support/harness.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let h: Harness;
let scratch: string;
const tag = Math.random().toString(36).slice(2, 7);
const tenant = `cli-${tag}`;
/** Everything every run printed: no token or secret may ever be in it. */
const printed: string[] = [];

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(engineLocation().node, [path.join(PROJECT_ROOT, "cli/main.ts"), ...args], {
      cwd: scratch,
      // Only what an operator would set: nothing of the developer's own STACKRAIL_* leaks in.
      env: {
        PATH: process.env.PATH ?? "",
        STACKRAIL_URL: h.service.url ?? "",
        STACKRAIL_TOKEN: h.token,
        GITHUB_WEBHOOK_SECRET: h.webhookSecret,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => {
      printed.push(stdout, stderr);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

function json(run: Run): any {
  try {
    return JSON.parse(run.stdout);
  } catch {
    throw new Error(`not JSON (exit ${run.code}): ${run.stdout}\n${run.stderr}`);
  }
}

beforeAll(async () => {
  h = await startHarness({ env: { STACKRAIL_APPROVAL_WAVES: "all" } });
  scratch = mkdtempSync(path.join(tmpdir(), "stackrail-cli-"));
});

afterAll(async () => {
  await h?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  await dropTenantLeftovers([tenant]);
});

describe("stackrail CLI", () => {
  it("a wrong token gets a 401 naming the route, and the token is never printed", async () => {
    const wrong = `wrong-${"x".repeat(24)}-${tag}`;
    for (const run of [await cli(["tenants", "list"], { STACKRAIL_TOKEN: wrong }), await cli(["tenants", "list", "--token", wrong])]) {
      expect(run.code).toBe(1);
      expect(run.stderr).toContain("GET /v1/tenants refused: 401 unauthorized");
      expect(run.stderr).toContain("STACKRAIL_TOKEN");
      expect(run.stdout + run.stderr).not.toContain(wrong);
    }
    const scripted = await cli(["tenants", "list", "--json"], { STACKRAIL_TOKEN: wrong });
    expect(scripted.code).toBe(1);
    expect(JSON.parse(scripted.stderr)).toMatchObject({ error: "unauthorized", status: 401, route: "GET /v1/tenants" });
  });

  it("an invalid tenant id is refused naming the field, and so is a provision the API refuses", async () => {
    const local = await cli(["tenants", "create", "Bad_Tenant", "--region", "eu-west-1", "--tier", "pool"]);
    expect(local.code).toBe(2);
    expect(local.stderr).toMatch(/^stackrail: id: must match/);
    const localJson = await cli(["tenants", "show", "x", "--json"]);
    expect(localJson.code).toBe(2);
    expect(JSON.parse(localJson.stderr)).toMatchObject({ error: "usage", field: "id" });

    // No release has been rolled out yet, so the API itself refuses a provision without a version.
    const api = await cli(["tenants", "create", tenant, "--region", "eu-west-1", "--tier", "pool", "--json"]);
    expect(api.code).toBe(2);
    expect(JSON.parse(api.stderr)).toMatchObject({ status: 400, route: "POST /v1/tenants", field: "version" });
  });

  it("webhook send signs a delivery: 202, and its job appears and is waited on to its exit code", async () => {
    const payload = path.join(scratch, "release.json");
    writeFileSync(
      payload,
      JSON.stringify({ action: "published", release: { tag_name: "1.0.0", draft: false, prerelease: false }, sender: { login: "octocat" } }),
    );
    const sent = await cli(["webhook", "send", "release", "--file", payload, "--repo", `acme-${tag}/app`, "--json"]);
    expect(sent.code, sent.stderr).toBe(0);
    const answer = json(sent);
    expect(answer.status).toBe(202);
    expect(answer.jobs).toHaveLength(1);
    const jobId = answer.jobs[0] as string;

    const shown = json(await cli(["jobs", "show", jobId, "--json"]));
    expect(shown).toMatchObject({ id: jobId, kind: "release.rollout", trigger: { type: "webhook", event: "release" } });

    // --wait: the outcome on stdout, the exit code from it.
    const waited = await cli(["jobs", "show", jobId, "--wait"]);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toMatch(new RegExp(`^job ${jobId} \\(release\\.rollout, releases\\) succeeded after `));

    // A delivery signed with another secret is refused by the route, and the secret is not printed.
    const forged = await cli(["webhook", "send", "ping"], { GITHUB_WEBHOOK_SECRET: `not-the-secret-${tag}-0123456789` });
    expect(forged.code).toBe(1);
    expect(forged.stderr).toContain("POST /webhooks/github refused: 401");
    expect(forged.stdout + forged.stderr).not.toContain(`not-the-secret-${tag}`);
  });

  it("tenants create, show and list, a waited job's exit code, and a cancelled one's", async () => {
    // The version comes from the release the webhook rolled out.
    const created = await cli(["tenants", "create", tenant, "--region", "eu-west-1", "--tier", "pool", "--json"]);
    expect(created.code, created.stderr).toBe(0);
    const provision = json(created).jobId as string;

    // An upgrade queued behind the provision waits for the tenant's stack. A worker may be looking at
    // it at that moment (then the API answers "cancelling" and the worker stops it); either way it ends cancelled.
    const upgrade = json(await cli(["tenants", "upgrade", tenant, "--version", "1.0.1", "--json"])).jobId as string;
    const cancelled = await cli(["jobs", "cancel", upgrade]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout, cancelled.stderr).toMatch(new RegExp(`^job ${upgrade}: (cancelled|cancelling)\n$`));
    const after = await cli(["jobs", "show", upgrade, "--wait"]);
    expect(after.code, after.stdout + after.stderr).toBe(1);
    expect(after.stdout).toContain(`job ${upgrade} (tenant.upgrade, tenant-${tenant}) cancelled`);

    // Progress lines on stderr as they come (no terminal here), the outcome on stdout.
    const done = await cli(["jobs", "show", provision, "--wait"]);
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.stdout).toContain(`job ${provision} (tenant.provision, tenant-${tenant}) succeeded after `);
    expect(done.stderr).toMatch(new RegExp(`^\\[\\d+m?\\d*s\\] ${provision}: `, "m"));

    const shown = await cli(["tenants", "show", tenant, "--json"]);
    expect(json(shown)).toMatchObject({ id: tenant, state: "active", tier: "pool", region: "eu-west-1", version: "1.0.0" });
    const human = await cli(["tenants", "show", tenant]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^id +${tenant}\nstate +active\ntier +pool\nregion +eu-west-1\nversion +1\\.0\\.0\n`));

    const listed = await cli(["tenants", "list", "--json"]);
    expect(json(listed).tenants.map((t: { id: string }) => t.id)).toContain(tenant);
    const table = (await cli(["tenants", "list"])).stdout.split("\n");
    const header = table[0] ?? "";
    const row = table.find((l) => l.startsWith(`${tenant} `)) ?? "";
    expect(header).toMatch(/^ID +STATE +TIER +REGION +VERSION +PROTECTED +UPDATED$/);
    // Aligned: every column starts where its header does.
    for (const [name, value] of [
      ["STATE", "active"],
      ["TIER", "pool"],
      ["REGION", "eu-west-1"],
      ["VERSION", "1.0.0"],
    ] as const) {
      expect(row.indexOf(` ${value}`) + 1, `${name} column`).toBe(header.indexOf(name));
    }

    const audit = await cli(["audit", "list"]);
    expect(audit.code).toBe(0);
    expect(audit.stdout).toContain(provision);
    expect(audit.stdout).toContain("api:e2e");
  });

  it("--wait stops where a rollout waits for approval (exit 3), and a rollout's time counts from when it was queued", async () => {
    const asked = Date.now();
    // Before the fix this polled forever: the bound makes that a failure instead of a hang.
    const created = await cli(["releases", "create", "1.0.1", "--wait", "--timeout", "150"]);
    expect(created.code, created.stdout + created.stderr).toBe(3);
    const rollout = /^rollout of 1\.0\.1 queued: job (\S+)$/m.exec(created.stderr)?.[1] ?? "";
    expect(rollout).not.toBe("");
    expect(created.stdout).toContain(`job ${rollout} (release.rollout, releases) awaiting-approval of wave 1 (eu-west-1), plan revision 1, `);
    expect(created.stdout).toContain(`\nwaiting for approval: stackrail releases approve ${rollout}\n`);
    // A script gets the view and the same exit code; --through-approval would wait on (bounded here).
    const scripted = await cli(["jobs", "show", rollout, "--wait", "--json"]);
    expect(scripted.code, scripted.stderr).toBe(3);
    expect(json(scripted)).toMatchObject({ id: rollout, kind: "release.rollout", state: "awaiting-approval" });
    const through = await cli(["jobs", "show", rollout, "--wait", "--through-approval", "--timeout", "2"]);
    expect(through.code).toBe(1);
    expect(through.stderr).toContain(`job ${rollout} is still awaiting-approval after 2s`);

    // Approved, the rollout runs the wave (a BullMQ parent: it runs again once its steps are done,
    // so its last start is seconds before its end). --wait follows it past the approved wave.
    const approving = Date.now();
    const approved = await cli(["releases", "approve", rollout, "--wait"]);
    const approveTook = Date.now() - approving;
    expect(approved.code, approved.stdout + approved.stderr).toBe(0);
    const outcome = new RegExp(`^job ${rollout} \\(release\\.rollout, releases\\) succeeded after (?:(\\d+)m)?(\\d+)s\n  counted from when it was queued `, "m").exec(
      approved.stdout,
    );
    expect(outcome, approved.stdout).not.toBeNull();
    const reported = (Number(outcome?.[1] ?? 0) * 60 + Number(outcome?.[2])) * 1000;
    // At least the approved part this command waited for (less its own start and the rounding down),
    // at most the time since the release was asked for.
    expect(reported, `approve --wait took ${approveTook} ms`).toBeGreaterThanOrEqual(approveTook - 3000);
    expect(reported).toBeLessThanOrEqual(Date.now() - asked + 1000);
    expect(json(await cli(["tenants", "show", tenant, "--json"]))).toMatchObject({ id: tenant, version: "1.0.1" });
  });

  it("a route the server refuses or lacks is named with its status", async () => {
    const approve = await cli(["releases", "approve", `nope-${tag}`]);
    expect(approve.code).toBe(1);
    expect(approve.stderr).toContain(`POST /v1/releases/nope-${tag}/approve refused: 404`);
    const plan = await cli(["releases", "plan", `nope-${tag}`, "--json"]);
    expect(plan.code).toBe(1);
    expect(JSON.parse(plan.stderr)).toMatchObject({ status: 404, route: `GET /v1/releases/nope-${tag}/plan` });
    const usage = await cli(["tenants", "lst"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("unknown command 'lst'");
    const usageJson = await cli(["tenants", "lst", "--json"]);
    expect(usageJson.code).toBe(2);
    expect(JSON.parse(usageJson.stderr)).toMatchObject({ error: "usage", message: expect.stringContaining("unknown command 'lst'") });
  });

  it("never printed the API token or the webhook secret", () => {
    expect(printed.length).toBeGreaterThan(10);
    for (const text of printed) {
      expect(text).not.toContain(h.token);
      expect(text).not.toContain(h.webhookSecret);
    }
  });
});
