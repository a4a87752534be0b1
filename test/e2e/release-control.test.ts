// Controlling a running release, end to end with the real engine: pause holds the rollout at its
// next wave boundary (nothing of the next wave starts until the resume), cancel stops it with what
// was committed recorded (Git and the API agree), and a newer release supersedes a waiting one
// while a running one hands over at its next wave boundary. The test holds a rollout in the wave's
// health gate (after the wave's commit). Approval is not the point here (STACKRAIL_APPROVAL_WAVES=none).
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HealthCheck } from "../../worker/health-check.ts";
import type { JobView } from "../../jobs/queue.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";

let h: Harness;
const tag = Math.random().toString(36).slice(2, 7);
const p1 = `pa-${tag}`;
const p2 = `pb-${tag}`;
const p3 = `pc-${tag}`;
const all = [p1, p2, p3];

/** A wave health gate that holds at one tenant until the test lets it go. */
let gate: { tenant: string; entered: boolean; open: () => void; opened: Promise<void> } | null = null;
function closeGate(tenant: string): NonNullable<typeof gate> {
  let open = (): void => undefined;
  const opened = new Promise<void>((r) => (open = r));
  gate = { tenant, entered: false, open, opened };
  return gate;
}
const healthCheck: HealthCheck = async (tenant) => {
  const g = gate;
  if (g && g.tenant === tenant.id) {
    g.entered = true;
    await g.opened;
  }
};

const stepId = (rolloutId: string, wave: number, round: number, tenant: string) => `${rolloutId}.w${wave}.r${round}.${tenant}`;

async function view(id: string): Promise<JobView | null> {
  return (await h.service.queue?.getJobView(id).catch(() => null)) ?? null;
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 360_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function gitVersion(id: string): string | null {
  const text = h.gitShow(`tenants/${id}/tenant.yaml`);
  return text === null ? null : String((parse(text) as { version?: unknown }).version);
}

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

beforeAll(async () => {
  h = await startHarness({
    env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1", STACKRAIL_WAVE_MAX_PARALLEL: "1", STACKRAIL_APPROVAL_WAVES: "none" },
    healthCheck,
  });
  const jobs: string[] = [];
  for (const [id, region] of [
    [p1, "eu-west-1"],
    [p2, "eu-west-1"],
    [p3, "us-east-1"],
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
  gate?.open();
  for (const id of all) {
    const res = await h?.request("DELETE", `/v1/tenants/${id}`);
    if (res?.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
  }
  await h?.close();
  await dropTenantLeftovers(all);
});

describe("release control", () => {
  it("pause holds the rollout at its next wave boundary; resume goes on where it stopped", async () => {
    const before = h.gitLog().length;
    const g = closeGate(p1);
    const rolloutId = await release("2.0.0");
    await waitFor("wave 1's gate", () => g.entered);
    expect((await h.request("POST", `/v1/releases/${rolloutId}/pause`)).status).toBe(202);
    g.open();
    await waitFor("the pause to show", async () => (await view(rolloutId))?.progress.some((l) => l.startsWith("paused before wave 2")) ?? false);
    // Wave 1 (p1, then p2: one at a time) is committed; nothing of wave 2 starts while paused.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await view(stepId(rolloutId, 1, 1, p1)))?.state).toBe("succeeded");
    expect((await view(stepId(rolloutId, 1, 1, p2)))?.state).toBe("succeeded");
    expect(await view(stepId(rolloutId, 2, 1, p3))).toBeNull();
    expect(h.gitLog().length - before).toBe(1);
    expect(await agree()).toEqual({ [p1]: "2.0.0", [p2]: "2.0.0", [p3]: "1.0.0" });

    expect((await h.request("POST", `/v1/releases/${rolloutId}/resume`)).status).toBe(202);
    const job = await h.waitForJob(rolloutId, 380_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.progress.some((l) => l.startsWith("resumed in wave 2"))).toBe(true);
    expect((await view(stepId(rolloutId, 2, 1, p3)))?.state).toBe("succeeded");
    const log = h.gitLog().slice(0, h.gitLog().length - before);
    expect(log).toHaveLength(2);
    expect(log[1]).toContain("wave-1");
    expect(log[0]).toContain("wave-2");
    expect(await agree()).toEqual({ [p1]: "2.0.0", [p2]: "2.0.0", [p3]: "2.0.0" });
  }, 900_000);

  it("cancel stops the rollout, keeps what was committed, and leaves Git and the API agreeing", async () => {
    const before = h.gitLog().length;
    const g = closeGate(p1);
    const rolloutId = await release("3.0.0");
    await waitFor("wave 1's gate", () => g.entered);
    const cancel = await h.request("POST", `/v1/jobs/${rolloutId}/cancel`);
    expect(cancel.status).toBe(202);
    g.open();
    const job = await h.waitForJob(rolloutId, 380_000);
    expect(job.state).toBe("cancelled");
    // Wave 1 was committed before the cancel took effect: the job says so, and wave 2 never started.
    expect(job.error).toContain(p1);
    expect(job.error).toContain(p2);
    expect(await view(stepId(rolloutId, 2, 1, p3))).toBeNull();
    const log = h.gitLog().slice(0, h.gitLog().length - before);
    expect(log).toHaveLength(1);
    expect(await agree()).toEqual({ [p1]: "3.0.0", [p2]: "3.0.0", [p3]: "2.0.0" });
  }, 900_000);

  it("a newer release supersedes a waiting one; a running one hands over at its wave boundary", async () => {
    const g = closeGate(p1);
    const first = await release("4.0.0");
    await waitFor("wave 1's gate", () => g.entered);
    const second = await release("5.0.0");
    const third = await release("6.0.0");
    g.open();
    const [a, b, c] = [await h.waitForJob(first, 380_000), await h.waitForJob(second, 380_000), await h.waitForJob(third, 380_000)];
    expect(b).toMatchObject({ state: "superseded", supersededBy: third });
    // The first finished its wave (p1, p2 at 4.0.0, committed), then handed over before wave 2.
    expect(a).toMatchObject({ state: "superseded", supersededBy: third });
    const waves = (a.result as { waves: { updated: string[] }[] }).waves;
    expect(waves.map((w) => [...w.updated].sort())).toEqual([[p1, p2].sort()]);
    expect(c.state, String(c.error)).toBe("succeeded");
    expect(await agree()).toEqual({ [p1]: "6.0.0", [p2]: "6.0.0", [p3]: "6.0.0" });
  }, 900_000);
});
