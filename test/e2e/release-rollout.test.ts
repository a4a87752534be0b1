// Release rollouts end to end, with the real engine: a wave fans out into one step job per tenant,
// each in its tenant's own lane (a tenant upgrade enqueued meanwhile waits for it), one commit per
// wave; a wave whose health gate (after its commit) finds a tenant unhealthy stops the release with
// the tenant records and the GitOps repository agreeing (issue 13 §4), and a resume finishes exactly
// the remaining tenants. Approval is not the point here (STACKRAIL_APPROVAL_WAVES=none). Each
// apply step's `up` is constrained by the update plan of the tenant's plan step (issue 18).
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBlobStore } from "../../core/blob-store.ts";
import { ProgramError } from "../../core/errors.ts";
import { rolloutPlansPrefix } from "../../jobs/rollout-control.ts";
import type { HealthCheck } from "../../worker/health-check.ts";
import type { JobView } from "../../jobs/queue.ts";
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

/** Tenants the wave's health gate finds unhealthy. */
const failing = new Set<string>();

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

const healthCheck: HealthCheck = (tenant) =>
  failing.has(tenant.id) ? Promise.reject(new ProgramError(`tenant ${tenant.id}: application answered 503`)) : Promise.resolve();

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
    env: {
      STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1",
      STACKRAIL_WAVE_MAX_PARALLEL: "2",
      STACKRAIL_WAVE_MAX_FAILURES: "1",
      STACKRAIL_APPROVAL_WAVES: "none",
    },
    healthCheck,
  });
  const jobs = [await provision(a, "eu-west-1"), await provision(b, "eu-west-1"), await provision(c, "eu-west-1"), await provision(d, "us-east-1")];
  for (const jobId of jobs) {
    const job = await h.waitForJob(jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
  }
}, 800_000);

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

    const job = await h.waitForJob(rolloutId, 380_000);
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
    // Each apply step's `up` was constrained by the update plan its plan step saved: one engine run,
    // no second policy preview (issue 18); the rollout deleted its plans when it ended.
    for (const [wave, id] of [
      [1, a],
      [1, b],
      [1, c],
      [2, d],
    ] as const) {
      const step = await view(stepId(rolloutId, wave, 1, id));
      expect(step?.result).toMatchObject({ outcome: "passed", planUse: "constrained", engineRuns: 1 });
      expect(step?.progress.some((l) => l.startsWith("up constrained by the saved update plan"))).toBe(true);
      expect(step?.progress.filter((l) => l.startsWith("policy check"))).toEqual([]);
    }
    expect(await createBlobStore(h.config.blobStore).list(rolloutPlansPrefix(rolloutId))).toEqual([]);
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
  }, 800_000);

  it("a failed gate stops the release after its wave's commit; Git and the API agree; resume finishes only the remaining tenants", async () => {
    const before = h.gitLog().length;
    failing.add(b);
    const res = await h.request("POST", "/v1/releases", { version: "3.0.0" });
    expect(res.status).toBe(202);
    const rolloutId = res.body.jobId as string;
    const job = await h.waitForJob(rolloutId, 380_000);
    failing.delete(b);
    expect(job.state).toBe("failed");
    expect(job.error).toContain("stopped after wave 1");
    expect(job.error).toContain(`${b} (tenant ${b}: application answered 503)`);

    // The tenant records and the GitOps repository agree on every tenant (issue 13 §4).
    const versions: Record<string, [string | null, string]> = {};
    for (const id of all) versions[id] = [gitVersion(id), await apiVersion(id)];
    for (const id of all) expect(versions[id]?.[0], `${id}: Git ${versions[id]?.[0]}, API ${versions[id]?.[1]}`).toBe(versions[id]?.[1]);
    // Wave 1 was committed (and so deployed) before its gate looked: its tenants are at 3.0.0; wave 2 was left untouched.
    expect(versions[a]).toEqual(["3.0.0", "3.0.0"]);
    expect(versions[b]).toEqual(["3.0.0", "3.0.0"]);
    expect(versions[c]).toEqual(["3.0.0", "3.0.0"]);
    expect(versions[d]).toEqual(["2.0.0", "2.0.0"]);
    expect(await view(stepId(rolloutId, 2, 1, d))).toBeNull();
    const log = h.gitLog().slice(0, h.gitLog().length - before);
    expect(log).toHaveLength(1);
    expect(log[0]).toContain("wave-1");
    const failedResult = await h.request("GET", `/v1/releases/${rolloutId}/plan`);
    expect(failedResult.status).toBe(200);

    // The application is healthy again: resume continues with exactly the tenants not yet at 3.0.0.
    const resumed = await h.request("POST", `/v1/releases/${rolloutId}/resume`);
    expect(resumed.status).toBe(202);
    const resumeId = resumed.body.jobId as string;
    expect(resumeId).not.toBe(rolloutId);
    const second = await h.waitForJob(resumeId, 380_000);
    expect(second.state, String(second.error)).toBe("succeeded");
    const result = second.result as { waves: { wave: number; updated: string[]; steps: string[]; gate?: { passed: boolean } }[] };
    expect(result.waves.map((w) => [...w.updated].sort())).toEqual([[], [d]]);
    expect(result.waves[1]?.gate?.passed).toBe(true);
    // From the job records: which tenants had a step in the resumed rollout.
    const ran: string[] = [];
    for (const w of result.waves) {
      for (const id of w.steps) {
        const step = await view(id);
        expect(step?.kind).toBe("release.tenant-step");
        ran.push(String(step?.data.tenantId));
      }
    }
    expect(ran).toEqual([d]);
    for (const id of all) {
      expect(gitVersion(id)).toBe("3.0.0");
      expect(await apiVersion(id)).toBe("3.0.0");
    }
    const after = h.gitLog().slice(0, h.gitLog().length - before);
    expect(after.filter((l) => l.includes("wave-1"))).toHaveLength(1);
    expect(after.filter((l) => l.includes("wave-2"))).toHaveLength(1);
  }, 800_000);
});
