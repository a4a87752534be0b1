// GET /v1/jobs/:id/logs (issue 15 §4): a real tenant provision through the whole service, its
// log followed while it runs. The log holds the Pulumi engine's own output (what `pulumi up`
// prints, not only Stackrail's summarized progress lines), in order with the progress lines, and
// the followed response ends when the job does. A configured secret that shows up in the engine's
// output is scrubbed before it is stored.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blobStoreFor } from "../../core/blob-store.ts";
import { JOB_LOG_ARCHIVED_TTL_SECONDS, jobLogArchiveKey } from "../../jobs/job-log-archive.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_REDIS_URL } from "../support/services.ts";

const tag = Math.random().toString(36).slice(2, 8);
const tenant = `lg-${tag}`;
// A configured secret that the engine prints: the data dir holds it, and the stack's outputs show
// the tenant's attachments path under the data dir. (Any configured secret value is scrubbed; the
// metrics token is one that nothing else uses in this test.)
const CANARY = `canarylogs${tag}Qz71x`;
const dataDir = mkdtempSync(path.join(tmpdir(), `stackrail-logs-${CANARY}-`));
let h: Harness;
let jobId: string;
let followed: string;

async function logs(id: string, query = ""): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${h.service.url ?? ""}/v1/jobs/${id}/logs${query}`, { headers: { authorization: `Bearer ${h.token}` } });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

beforeAll(async () => {
  h = await startHarness({ dataDir, env: { STACKRAIL_METRICS_TOKEN: CANARY } });
});

afterAll(async () => {
  const d = await h?.request("DELETE", `/v1/tenants/${tenant}`);
  if (d?.status === 202) await h.waitForJob(d.body.jobId).catch(() => undefined);
  await h?.close();
  await dropTenantLeftovers([tenant]);
  rmSync(dataDir, { recursive: true, force: true });
});

describe("GET /v1/jobs/:id/logs", () => {
  it("follows a provision's full engine output while it runs, and ends when the job ends", async () => {
    const p = await h.request("POST", "/v1/tenants", { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect(p.status).toBe(202);
    jobId = p.body.jobId as string;
    const res = await fetch(`${h.service.url ?? ""}/v1/jobs/${jobId}/logs?follow=1`, { headers: { authorization: `Bearer ${h.token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    const chunks: { at: number; text: string }[] = [];
    const decoder = new TextDecoder();
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push({ at: Date.now(), text: decoder.decode(chunk, { stream: true }) });
    const ended = Date.now();
    const view = await h.waitForJob(jobId, 5_000);
    expect(view.state).toBe("succeeded");
    const finishedAt = Date.parse(view.finishedAt ?? "");
    // Streamed: output arrived well before the job finished, and the response ended once it had.
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks[0]?.at ?? Infinity).toBeLessThan(finishedAt - 1_000);
    expect(ended).toBeGreaterThanOrEqual(finishedAt);
    followed = chunks.map((c) => c.text).join("");

    // The engine's own output (the preview before the up, the up, the outputs and summary) ...
    expect(followed).toMatch(new RegExp(`Updating \\(tenant-${tenant}\\):`));
    expect(followed).toContain("Outputs:");
    expect(followed).toMatch(/databaseName\s*: "t_lg_/);
    expect(followed).toContain("Resources:");
    expect(followed).toContain("Duration:");
    // ... which the job view's progress lines only summarize.
    expect(view.progress.some((l) => l.includes("Outputs:") || l.includes("Duration:"))).toBe(false);
    // With the progress lines, in the order things happened, each on a line of its own.
    const order = [
      "[stackrail] attempt 1 of 3 started",
      "[stackrail] policy check passed",
      `Updating (tenant-${tenant}):`,
      "Duration:",
      "[stackrail] committed ",
      "[stackrail] job succeeded",
    ].map((s) => followed.indexOf(s));
    expect(order.every((at) => at >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    for (const line of view.progress) expect(followed).toContain(`\n[stackrail] ${line}\n`);
  });

  it("answers the same complete log once the job has ended, without follow", async () => {
    const res = await logs(jobId);
    expect(res.status).toBe(200);
    expect(res.type).toBe("text/plain; charset=utf-8");
    expect(res.text).toBe(followed);
    // follow=1 on a finished job answers the log and ends at once.
    const again = await logs(jobId, "?follow=1");
    expect(again.text).toBe(followed);
  });

  it("stores the engine output without the secret it printed", async () => {
    expect(followed).toMatch(/attachmentsPath\s*: ".*\[REDACTED\]/);
    expect(followed.includes(CANARY)).toBe(false);
    // Scrubbed before it was stored, not only when answered.
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const entries = await redis.xrange(`${h.config.queuePrefix}:joblog:${jobId}`, "-", "+");
      const stored = entries.map(([, fields]) => fields.join("\n")).join("\n");
      expect(stored).toContain("Outputs:");
      expect(stored.includes(CANARY)).toBe(false);
      // Archived to the blob store once the job ended (the text the API answers), the stream then
      // expiring within the hour instead of living as long as the job's record.
      const ttl = await redis.ttl(`${h.config.queuePrefix}:joblog:${jobId}`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(JOB_LOG_ARCHIVED_TTL_SECONDS);
      const archived = (await blobStoreFor(h.config.blobStore).get(jobLogArchiveKey(jobId)))?.toString("utf8");
      expect(archived).toBe(followed);
      expect(archived?.includes(CANARY)).toBe(false);
    } finally {
      redis.disconnect();
    }
  });

  it("answers the whole log from the archive once the stream has expired", async () => {
    const redis = new Redis(TEST_REDIS_URL);
    try {
      // The hour's TTL, run out.
      await redis.del(`${h.config.queuePrefix}:joblog:${jobId}`, `${h.config.queuePrefix}:joblog-size:${jobId}`);
    } finally {
      redis.disconnect();
    }
    const res = await logs(jobId);
    expect(res.status).toBe(200);
    expect(res.text).toBe(followed);
    expect((await logs(jobId, "?follow=1")).text).toBe(followed);
  });

  it("lists the job among the tenant's succeeded jobs (GET /v1/jobs)", async () => {
    const res = await h.request("GET", `/v1/jobs?tenant=${tenant}&state=succeeded`);
    expect(res.status).toBe(200);
    expect(res.body.jobs.map((j: { id: string }) => j.id)).toEqual([jobId]);
    expect(res.body.next).toBeNull();
  });

  it("answers 404 for an unknown job, 400 for a bad id or parameter, 401 without a token", async () => {
    expect((await logs("no-such-job")).status).toBe(404);
    const bad = await logs("bad%20id");
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text)).toMatchObject({ error: "invalid", field: "id" });
    for (const [query, field] of [
      ["?follow=yes", "follow"],
      ["?tail=10", "tail"],
      ["?follow=1&follow=0", "follow"],
    ] as const) {
      const r = await logs(jobId, query);
      expect(r.status, query).toBe(400);
      expect(JSON.parse(r.text), query).toMatchObject({ error: "invalid", field });
    }
    const anonymous = await fetch(`${h.service.url ?? ""}/v1/jobs/${jobId}/logs`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain("Outputs:");
  });
});
