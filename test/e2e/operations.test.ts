// Operating Stackrail: cancel a running Pulumi operation and a waiting job, per-kind time limits,
// the audit trail, the dashboard behind the token, and the metrics operators read.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";

let h: Harness;
const tag = Math.random().toString(36).slice(2, 7);
const ids = { cancel: `op-c-${tag}`, wait: `op-w-${tag}`, slow: `op-t-${tag}`, ok: `op-ok-${tag}` };

async function until(check: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  h = await startHarness({ env: { STACKRAIL_CONCURRENCY: "1", STACKRAIL_TIMEOUTS: "tenant.upgrade=1" } });
});

afterAll(async () => {
  const db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  for (const id of Object.values(ids)) {
    const res = await h.request("DELETE", `/v1/tenants/${id}`);
    if (res.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
    await db.query(`DROP DATABASE IF EXISTS \`t_${id.replace(/-/g, "_")}\``);
  }
  await db.end();
  await h?.close();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers(Object.values(ids));
});

describe("operations", () => {
  it("cancels a running up through the engine, releases the stack lock, and cancels a waiting job before it runs", async () => {
    const running = await h.request("POST", "/v1/tenants", { id: ids.cancel, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    // Concurrency 1: this one waits behind the first.
    const waiting = await h.request("POST", "/v1/tenants", { id: ids.wait, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    await until(
      async () => (await h.service.queue?.getJobView(running.body.jobId).catch(() => undefined))?.progress.some((l) => l.startsWith("create ")) ?? false,
      "the up to start",
    );

    const w = await h.request("POST", `/v1/jobs/${waiting.body.jobId}/cancel`);
    expect(w.status).toBe(202);
    expect(w.body.state).toBe("cancelled");
    const r = await h.request("POST", `/v1/jobs/${running.body.jobId}/cancel`);
    expect(r.status).toBe(202);
    expect(r.body.state).toBe("cancelling");

    const job = await h.waitForJob(running.body.jobId);
    expect(job.state).toBe("cancelled");
    expect(job.error).toMatch(/^cancelled: /);
    const locks = path.join(fileURLToPath(h.config.pulumiBackendUrl), ".pulumi", "locks", "organization", "stackrail-pool", `tenant-${ids.cancel}`);
    expect(existsSync(locks) ? readdirSync(locks).filter((f) => f.endsWith(".json")) : []).toEqual([]);

    const skipped = await h.waitForJob(waiting.body.jobId);
    expect(skipped.state).toBe("cancelled");
    expect(skipped.progress).toEqual([]); // it never ran
    expect((await h.request("POST", `/v1/jobs/${waiting.body.jobId}/cancel`)).status).toBe(409);
  });

  it("ends an operation that exceeds its kind's time limit as cancelled, saying so", async () => {
    const p = await h.request("POST", "/v1/tenants", { id: ids.slow, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect((await h.waitForJob(p.body.jobId)).state).toBe("succeeded");
    const up = await h.request("POST", `/v1/tenants/${ids.slow}/upgrade`, { version: "1.0.1" });
    const job = await h.waitForJob(up.body.jobId);
    expect(job.state).toBe("cancelled");
    expect(job.error).toContain("timeout: tenant.upgrade exceeded its time limit of 1s");
  });

  it("records who asked and what changed in the audit trail, and shows queue and Pulumi metrics", async () => {
    const p = await h.request("POST", "/v1/tenants", { id: ids.ok, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    const job = await h.waitForJob(p.body.jobId);
    expect(job.state).toBe("succeeded");
    const audit = await h.request("GET", "/v1/audit?limit=50");
    expect(audit.status).toBe(200);
    const entry = audit.body.entries.find((e: { jobId: string }) => e.jobId === p.body.jobId);
    expect(entry).toMatchObject({ kind: "tenant.provision", requestedBy: { type: "api", tokenName: "e2e" }, state: "succeeded" });
    expect(entry.changed.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(entry.changed.resourceChanges.create).toBeGreaterThan(0);
    expect((await h.request("GET", "/v1/audit", undefined, { authorization: "Bearer wrong-token-wrong-token" })).status).toBe(401);

    const metrics = await fetch(`${h.service.url}/metrics`, { headers: { authorization: `Bearer ${h.token}` } }).then((r) => r.text());
    expect(metrics).toMatch(/stackrail_pulumi_operation_seconds_count\{operation="up",result="succeeded"\} [1-9]/);
    expect(metrics).toMatch(/stackrail_jobs_total\{kind="tenant.provision",state="succeeded"\} [1-9]/);
    expect(metrics).toMatch(/stackrail_queue_jobs\{state="completed"\} [1-9]/);
    expect(metrics).toContain("stackrail_queue_oldest_waiting_seconds");
  });

  it("serves the queue dashboard only with the API token", async () => {
    const anonymous = await fetch(`${h.service.url}/admin/queues`);
    expect(anonymous.status).toBe(401);
    const basic = Buffer.from(`ops:${h.token}`).toString("base64");
    const page = await fetch(`${h.service.url}/admin/queues`, { headers: { authorization: `Basic ${basic}` } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<html");
    const api = await fetch(`${h.service.url}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${h.token}` } });
    expect(api.status).toBe(200);
    expect(JSON.stringify(await api.json())).toContain("jobs");
  });
});
