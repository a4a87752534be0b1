// Issue 11, finding 10: a GITOPS_REPO with `user:token@` put the token into the committed
// ApplicationSet and AppProject. A whole provision runs against a GitOps remote whose URL carries
// a canary token; the token must then be in no committed file, no commit message, no job record,
// no file of the data dir and no log line — and a line that quotes the URL anyway is scrubbed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const tag = Math.random().toString(36).slice(2, 8);
const CANARY = `canary-gitops-${tag}-Qv77`;
const tenant = `gc-${tag}`;
const originDir = mkdtempSync(path.join(tmpdir(), "stackrail-gitops-origin-"));
const origin = path.join(originDir, "gitops.git");
const remote = `file://stackrail:${CANARY}@localhost${origin}`;
const lines: string[] = [];
const jobIds: string[] = [];
let h: Harness;

function files(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const full = path.join(dir, entry);
    const s = statSync(full, { throwIfNoEntry: false });
    if (s?.isDirectory()) out.push(...files(full));
    else if (s?.isFile()) out.push(full);
  }
  return out;
}

beforeAll(async () => {
  execFileSync("git", ["init", "--quiet", "--bare", "--initial-branch=main", origin]);
  const capture = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  h = await startHarness({ logDestination: capture, env: { GITOPS_REPO: remote, LOG_LEVEL: "debug" } });
  const p = await h.request("POST", "/v1/tenants", { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect(p.status).toBe(202);
  jobIds.push(p.body.jobId);
  const done = await h.waitForJob(p.body.jobId);
  expect(done.state, JSON.stringify(done.error ?? null)).toBe("succeeded");
  const up = await h.request("POST", `/v1/tenants/${tenant}/upgrade`, { version: "1.1.0" });
  jobIds.push(up.body.jobId);
  expect((await h.waitForJob(up.body.jobId)).state).toBe("succeeded");
});

afterAll(async () => {
  const d = await h?.request("DELETE", `/v1/tenants/${tenant}`);
  if (d?.status === 202) await h.waitForJob(d.body.jobId).catch(() => undefined);
  await h?.close();
  await dropTenantLeftovers([tenant]);
  rmSync(originDir, { recursive: true, force: true });
});

describe("finding 10: GitOps repository credentials are never written", () => {
  it("the committed ApplicationSet and AppProject name the repository without its credentials", () => {
    const appset = execFileSync("git", ["--git-dir", origin, "show", "main:regions/eu-west-1/tenants.yaml"], { encoding: "utf8" });
    expect(appset).toContain(`repoURL: file://localhost${origin}`);
    const project = execFileSync("git", ["--git-dir", origin, "show", "main:regions/eu-west-1/appproject.yaml"], { encoding: "utf8" });
    expect(project).toContain(`file://localhost${origin}`);
  });

  it("no committed file and no commit message holds the token", () => {
    const all = execFileSync("git", ["--git-dir", origin, "log", "-p", "--all", "--format=%H%n%an %ae%n%B"], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    expect(all).toContain(`tenants/${tenant}/application.yaml`);
    expect(all.includes(CANARY)).toBe(false);
  });

  it("no job record holds the token", async () => {
    for (const id of jobIds) {
      const view = JSON.stringify((await h.request("GET", `/v1/jobs/${id}`)).body);
      expect(view).toContain(id);
      expect(view.includes(CANARY), `job ${id}`).toBe(false);
    }
  });

  it("no file in the data dir holds it (the clone's git config included)", () => {
    const all = files(h.dataDir);
    expect(all.some((f) => f.includes("gitops-clones"))).toBe(true);
    for (const f of all) expect(readFileSync(f).includes(CANARY), f).toBe(false);
  });

  it("no log line holds it, and a line quoting the URL is scrubbed", async () => {
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.join("\n").includes(CANARY)).toBe(false);
    h.service.logger.error({ detail: `git fetch ${remote} failed` }, "gitops canary line");
    await new Promise<void>((resolve) => {
      const poll = () => (lines.some((l) => l.includes("gitops canary line")) ? resolve() : setTimeout(poll, 20));
      poll();
    });
    const line = lines.find((l) => l.includes("gitops canary line")) ?? "";
    expect(line).toContain("[REDACTED]");
    expect(line.includes(CANARY)).toBe(false);
  });
});
