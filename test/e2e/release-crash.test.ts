// A worker process SIGKILLed in the middle of a rollout wave loses nothing: the tenant step it was
// running is taken over by another worker process like any other job, the rollout (waiting for
// its steps, on no worker) goes on, commits the wave once, and Git and the API agree.
import { spawn, type ChildProcess } from "node:child_process";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation, PROJECT_ROOT } from "../../core/engine.ts";
import { killTree } from "../../worker/process-tree.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";

let h: Harness;
const workers: ChildProcess[] = [];
const tag = Math.random().toString(36).slice(2, 7);
const ids = [`kx-${tag}`, `ky-${tag}`];

function startWorker(): ChildProcess {
  const child = spawn(engineLocation().node, ["main.ts", "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...h.env, STACKRAIL_JOB_LOCK_MS: "10000", STACKRAIL_STALLED_INTERVAL_MS: "1000", LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  workers.push(child);
  return child;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  h = await startHarness({ role: "api", env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1", STACKRAIL_WAVE_MAX_PARALLEL: "2" } });
});

afterAll(async () => {
  for (const w of workers) if (w.pid && w.exitCode === null) killTree(w.pid);
  await h?.close();
  await dropTenantLeftovers(ids);
});

describe("rollout crash safety", () => {
  it("recovers a wave whose worker was SIGKILLed during a tenant step", async () => {
    const first = startWorker();
    const provisions: string[] = [];
    for (const id of ids) {
      const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      provisions.push(res.body.jobId as string);
    }
    for (const jobId of provisions) {
      const job = await h.waitForJob(jobId);
      expect(job.state, String(job.error)).toBe("succeeded");
    }

    const before = h.gitLog().length;
    const res = await h.request("POST", "/v1/releases", { version: "2.0.0" });
    expect(res.status).toBe(202);
    const rolloutId = res.body.jobId as string;
    const step = `${rolloutId}.w1.r1.${ids[0]}`;
    // Kill the worker (and the Pulumi processes under it) once the first step's `up` is under way.
    await waitFor("the first step's up", async () => {
      const view = await h.service.queue?.getJobView(step).catch(() => undefined);
      return view?.progress.some((l) => l.includes("stack up")) ?? false;
    });
    killTree(first.pid as number, "SIGKILL");
    await new Promise((r) => first.once("exit", r));

    startWorker();
    const job = await h.waitForJob(rolloutId, 300_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect((await h.service.queue?.getJobView(step))?.state).toBe("succeeded");
    expect(h.gitLog().length).toBe(before + 1);
    for (const id of ids) {
      const git = parse(h.gitShow(`tenants/${id}/tenant.yaml`) ?? "") as { version?: string };
      expect(git.version).toBe("2.0.0");
      expect((await h.request("GET", `/v1/tenants/${id}`)).body.version).toBe("2.0.0");
    }
  }, 600_000);
});
