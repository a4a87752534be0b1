// Release rollouts end to end, with the real engine: a wave fans out into one step job per tenant,
// each in its tenant's own lane (a tenant upgrade enqueued meanwhile waits for it), one commit per
// wave; a failing tenant stops its wave (STACKRAIL_WAVE_MAX_FAILURES=1) with the tenant records and
// the GitOps repository agreeing (issue 13 §4), and a resume finishes exactly the remaining tenants.
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgramError } from "../../core/errors.ts";
import type { HealthCheck } from "../../worker/health-check.ts";
import type { JobView } from "../../worker/queue.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";

let h: Harness;
const tag = Math.random().toString(36).slice(2, 7);
// Wave 1 is eu-west-1 (three tenants, at most two at a time), wave 2 is us-east-1.
const a = `ra-${tag}`;
const b = `rb-${tag}`;
const c = `rc-${tag}`;
const d = `rd-${tag}`;
const all = [a, b, c, d];

/** Tenants whose health check fails, and a tenant whose check waits until another one's step has failed. */
const failing = new Set<string>();
let holdUntilFailed: { tenant: string; failedStep: () => string | null } | null = null;

const stepId = (rolloutId: string, wave: number, round: number, tenant: string) => `${rolloutId}.w${wave}.r${round}.${tenant}`;

async function view(id: string): Promise<JobView | null> {
  return (await h.service.queue?.getJobView(id).catch(() => null)) ?? null;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const healthCheck: HealthCheck = async (tenant) => {
  const hold = holdUntilFailed;
  if (hold && hold.tenant === tenant.id) {
    // Bounded: on code without step jobs there is nothing to wait for.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const id = hold.failedStep();
      if (id && (await view(id))?.state === "failed") break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (failing.has(tenant.id)) throw new ProgramError(`tenant ${tenant.id}: application answered 503`);
};

function gitVersion(id: string): string | null {
  const text = h.gitShow(`tenants/${id}/tenant.yaml`);
  return text === null ? null : String((parse(text) as { version?: unknown }).version);
}

async function apiVersion(id: string): Promise<string> {
  return (await h.request("GET", `/v1/tenants/${id}`)).body.version as string;
}

async function provision(id: string, region: string): Promise<string> {
  const res = await h.request("POST", "/v1/tenants", { id, region, tier: "pool", version: "1.0.0" });
  expect(res.status).toBe(202);
  return res.body.jobId as string;
}

beforeAll(async () => {
  h = await startHarness({
    env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1", STACKRAIL_WAVE_MAX_PARALLEL: "2", STACKRAIL_WAVE_MAX_FAILURES: "1" },
    healthCheck,
  });
  const jobs = [await provision(a, "eu-west-1"), await provision(b, "eu-west-1"), await provision(c, "eu-west-1"), await provision(d, "us-east-1")];
  for (const jobId of jobs) {
    const job = await h.waitForJob(jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
  }
}, 400_000);

afterAll(async () => {
  for (const id of all) {
    const res = await h?.request("DELETE", `/v1/tenants/${id}`);
    if (res?.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
  }
  await h?.close();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers(all);
});

describe("release rollout", () => {
  it("fans a wave out into one step job per tenant in the tenant's lane, one commit per wave", async () => {
    const before = h.gitLog().length;
    const res = await h.request("POST", "/v1/releases", { version: "2.0.0" });
    expect(res.status).toBe(202);
    const rolloutId = res.body.jobId as string;

    // While a's step is queued or running in a's lane, an upgrade of a arrives: it waits its turn.
    await waitFor("a's rollout step", async () => (await view(stepId(rolloutId, 1, 1, a))) !== null);
    const upgrade = await h.request("POST", `/v1/tenants/${a}/upgrade`, { version: "2.1.0" });
    expect(upgrade.status).toBe(202);

    const job = await h.waitForJob(rolloutId);
    expect(job.state, String(job.error)).toBe("succeeded");
    const up = await h.waitForJob(upgrade.body.jobId as string);
    expect(up.state, String(up.error)).toBe("succeeded");

    // Every tenant had its own step job, in its own lane; c waited for a slot (at most two at a time).
    const result = job.result as { waves: { wave: number; updated: string[]; commit: string | null; steps: string[] }[] };
    expect(result.waves.map((w) => [...w.updated].sort())).toEqual([[a, b, c].sort(), [d]]);
    for (const [wave, id] of [
      [1, a],
      [1, b],
      [1, c],
      [2, d],
    ] as const) {
      const step = await view(stepId(rolloutId, wave, 1, id));
      expect(step).toMatchObject({ kind: "release.tenant-step", stack: `tenant-${id}`, state: "succeeded", data: { rolloutJobId: rolloutId, tenantId: id } });
    }
    const stepA = await view(stepId(rolloutId, 1, 1, a));
    // The upgrade started only after a's step was done (and its wave committed).
    expect(Date.parse(up.startedAt ?? "")).toBeGreaterThanOrEqual(Date.parse(stepA?.finishedAt ?? ""));

    // One commit per wave, and the upgrade's own commit after the first wave's.
    const log = h.gitLog().slice(0, h.gitLog().length - before);
    expect(log.filter((l) => l.includes("wave-1"))).toHaveLength(1);
    expect(log.filter((l) => l.includes("wave-2"))).toHaveLength(1);
    const wave1At = log.findIndex((l) => l.includes("wave-1"));
    const upgradeAt = log.findIndex((l) => l.includes(`tenant-${a}`));
    expect(upgradeAt).toBeGreaterThanOrEqual(0);
    expect(upgradeAt).toBeLessThan(wave1At);
    expect(result.waves[0]?.commit).toMatch(/^[0-9a-f]{40}$/);

    expect(gitVersion(a)).toBe("2.1.0");
    expect(await apiVersion(a)).toBe("2.1.0");
    for (const id of [b, c, d]) {
      expect(gitVersion(id)).toBe("2.0.0");
      expect(await apiVersion(id)).toBe("2.0.0");
    }
  }, 400_000);

  it("a failed tenant stops its wave; Git and the API agree; resume finishes only the remaining tenants", async () => {
    const before = h.gitLog().length;
    failing.add(b);
    let rolloutId = "";
    // a passes only once b's step has failed: the wave stops with a done, b failed and c never started.
    holdUntilFailed = { tenant: a, failedStep: () => (rolloutId ? stepId(rolloutId, 1, 1, b) : null) };
    const res = await h.request("POST", "/v1/releases", { version: "3.0.0" });
    expect(res.status).toBe(202);
    rolloutId = res.body.jobId as string;
    const job = await h.waitForJob(rolloutId);
    holdUntilFailed = null;
    expect(job.state).toBe("failed");
    expect(job.error).toContain("wave 1");
    expect(job.error).toContain(b);

    // The tenant records and the GitOps repository agree on every tenant (issue 13 §4).
    const versions: Record<string, [string | null, string]> = {};
    for (const id of all) versions[id] = [gitVersion(id), await apiVersion(id)];
    for (const id of all) expect(versions[id]?.[0], `${id}: Git ${versions[id]?.[0]}, API ${versions[id]?.[1]}`).toBe(versions[id]?.[1]);
    // a passed and was committed with its wave; b failed; c and wave 2 were left untouched.
    expect(versions[a]).toEqual(["3.0.0", "3.0.0"]);
    expect(versions[b]).toEqual(["2.0.0", "2.0.0"]);
    expect(versions[c]).toEqual(["2.0.0", "2.0.0"]);
    expect(versions[d]).toEqual(["2.0.0", "2.0.0"]);
    expect(await view(stepId(rolloutId, 1, 1, b))).toMatchObject({ state: "failed" });
    expect(await view(stepId(rolloutId, 1, 1, c))).toBeNull();
    expect(await view(stepId(rolloutId, 2, 1, d))).toBeNull();
    const log = h.gitLog().slice(0, h.gitLog().length - before);
    expect(log).toHaveLength(1);
    expect(log[0]).toContain("wave-1");

    // b is healthy again: resume continues with exactly the tenants not yet at 3.0.0.
    failing.delete(b);
    const resumed = await h.request("POST", `/v1/releases/${rolloutId}/resume`);
    expect(resumed.status).toBe(202);
    const resumeId = resumed.body.jobId as string;
    expect(resumeId).not.toBe(rolloutId);
    const second = await h.waitForJob(resumeId);
    expect(second.state, String(second.error)).toBe("succeeded");
    const result = second.result as { waves: { wave: number; updated: string[]; steps: string[] }[] };
    expect(result.waves.map((w) => [...w.updated].sort())).toEqual([[b, c].sort(), [d]]);
    // From the job records: which tenants had a step in the resumed rollout.
    const ran: string[] = [];
    for (const w of result.waves) {
      for (const id of w.steps) {
        const step = await view(id);
        expect(step?.kind).toBe("release.tenant-step");
        ran.push(String(step?.data.tenantId));
      }
    }
    expect(ran.sort()).toEqual([b, c, d].sort());
    for (const id of all) {
      expect(gitVersion(id)).toBe("3.0.0");
      expect(await apiVersion(id)).toBe("3.0.0");
    }
    const after = h.gitLog().slice(0, h.gitLog().length - before);
    expect(after.filter((l) => l.includes("wave-1"))).toHaveLength(2);
    expect(after.filter((l) => l.includes("wave-2"))).toHaveLength(1);
  }, 400_000);
});
