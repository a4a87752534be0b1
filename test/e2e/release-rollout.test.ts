// Release rollouts in waves, end to end: one commit per wave, the gate between waves, a failed
// wave that stops the rollout and says where, and pause/resume through the API.
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";

let h: Harness;
let db: mysql.Connection;
const tag = Math.random().toString(36).slice(2, 7);
const eu = `ro-eu-${tag}`;
const us1 = `ro-us1-${tag}`;
const us2 = `ro-us2-${tag}`;

async function provision(id: string, region: string): Promise<void> {
  const res = await h.request("POST", "/v1/tenants", { id, region, tier: "pool", version: "1.0.0" });
  expect(res.status).toBe(202);
  const job = await h.waitForJob(res.body.jobId);
  expect(job.state, String(job.error)).toBe("succeeded");
}

beforeAll(async () => {
  h = await startHarness({ env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1" } });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await provision(eu, "eu-west-1");
  await provision(us1, "us-east-1");
});

afterAll(async () => {
  for (const id of [eu, us1, us2]) {
    const res = await h.request("DELETE", `/v1/tenants/${id}`);
    if (res.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
    await db.query(`DROP DATABASE IF EXISTS \`t_${id.replace(/-/g, "_")}\``);
  }
  await db?.end();
  await h?.close();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers([eu, us1, us2]);
});

describe("release rollout", () => {
  it("rolls a version out wave by wave, one commit per wave, and can be paused and resumed", async () => {
    const before = h.gitLog().length;
    const res = await h.request("POST", "/v1/releases", { version: "2.0.0" });
    expect(res.status).toBe(202);
    const jobId = res.body.jobId as string;
    const paused = await h.request("POST", `/v1/releases/${jobId}/pause`);
    expect(paused.status).toBe(202);
    // The flag is checked before each wave: the rollout stops at the next wave boundary.
    let view = (await h.request("GET", `/v1/jobs/${jobId}`)).body;
    for (let i = 0; i < 200 && !view.progress.some((l: string) => l.startsWith("paused before wave")); i++) {
      await new Promise((r) => setTimeout(r, 150));
      view = (await h.request("GET", `/v1/jobs/${jobId}`)).body;
    }
    const pausedAt = view.progress.find((l: string) => l.startsWith("paused before wave")) as string;
    expect(pausedAt).toBeDefined();
    await new Promise((r) => setTimeout(r, 1500));
    // Still paused: running, and no commit for the waves after the pause.
    view = (await h.request("GET", `/v1/jobs/${jobId}`)).body;
    expect(view.state).toBe("running");
    const wavesBefore = Number(/wave (\d)/.exec(pausedAt)?.[1]) - 1;
    expect(h.gitLog().length).toBe(before + wavesBefore);
    expect((await h.request("POST", `/v1/releases/${jobId}/resume`)).status).toBe(202);

    const job = await h.waitForJob(jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
    const log = h.gitLog();
    expect(log.length).toBe(before + 2);
    expect(log[1]).toContain("wave-1");
    expect(log[0]).toContain("wave-2");
    expect(h.gitShow(`tenants/${eu}/application.yaml`)).toContain("targetRevision: 2.0.0");
    expect(h.gitShow(`tenants/${us1}/application.yaml`)).toContain("targetRevision: 2.0.0");
    expect(job.progress.some((l) => l.startsWith("resumed before wave"))).toBe(true);
    expect((await h.request("GET", `/v1/tenants/${eu}`)).body.version).toBe("2.0.0");
  });

  it("stops at a failed wave, says where, and commits nothing of that wave", async () => {
    await provision(us2, "us-east-1");
    // Break us2: its database disappears behind the stack's back, so its health check fails.
    await db.query(`DROP DATABASE \`t_${us2.replace(/-/g, "_")}\``);
    const before = h.gitLog().length;
    const res = await h.request("POST", "/v1/releases", { version: "3.0.0" });
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state).toBe("failed");
    expect(job.error).toContain("wave 2");
    expect(job.error).toContain(us2);
    // Wave 1 landed; wave 2 did not, for any of its tenants.
    expect(h.gitLog().length).toBe(before + 1);
    expect(h.gitShow(`tenants/${eu}/application.yaml`)).toContain("targetRevision: 3.0.0");
    expect(h.gitShow(`tenants/${us1}/application.yaml`)).toContain("targetRevision: 2.0.0");
  });
});
