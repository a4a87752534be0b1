// GET /v1/jobs (issue 15 §4): many jobs in a real Redis behind the real edge (the API role, so
// every job stays queued unless the test moves it), listed newest first a page at a time, filtered
// by kind, state, tenant and creation time; every query parameter validated; a page reads about
// as many jobs as it shows.
import { Job } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { JobData } from "../core/jobs.ts";
import { startHarness, type Harness } from "../test/support/harness.ts";
import { TEST_REDIS_URL } from "../test/support/services.ts";
import { JobIndex } from "../jobs/job-index.ts";
import type { JobQueue } from "../jobs/queue.ts";

const tag = Math.random().toString(36).slice(2, 6);
const TENANTS = [`ja-${tag}`, `jb-${tag}`, `jc-${tag}`];
const trigger = { type: "api", tokenName: "test" } as const;
let h: Harness;
let queue: JobQueue;
let redis: Redis;
/** Every job the test made, oldest first, with what it is. */
const made: { id: string; kind: string; tenant: string | null }[] = [];

interface Page {
  jobs: { id: string; kind: string; state: string; createdAt: string; data: Record<string, unknown>; progress?: unknown }[];
  next: string | null;
}

async function list(query: Record<string, string> = {}): Promise<{ status: number; body: Page & { error?: string; field?: string } }> {
  return h.request("GET", `/v1/jobs?${new URLSearchParams(query).toString()}`);
}

/** Follows `next` to the end; every page answered 200. */
async function all(query: Record<string, string>): Promise<Page["jobs"]> {
  const out: Page["jobs"] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const res = await list({ ...query, ...(cursor ? { cursor } : {}) });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    out.push(...res.body.jobs);
    cursor = res.body.next;
    if (!cursor) return out;
  }
  throw new Error("more than 100 pages");
}

const job = (i: number): JobData => {
  const tenantId = TENANTS[i % 3] ?? "";
  const requestedAt = new Date().toISOString();
  if (i % 4 === 0) return { kind: "tenant.upgrade", trigger, requestedAt, tenantId, version: `1.${i}.0` };
  if (i % 4 === 1) return { kind: "tenant.drift", trigger, requestedAt, tenantId, repair: false };
  if (i % 4 === 2) return { kind: "tenant.move", trigger, requestedAt, tenantId, tier: "silo" };
  return { kind: "release.rollout", trigger, requestedAt, version: `2.${i}.0` };
};

beforeAll(async () => {
  h = await startHarness({ role: "api" });
  queue = h.service.queue as JobQueue;
  redis = new Redis(TEST_REDIS_URL);
  // 130 jobs, several created within the same millisecond (ties in the index).
  for (let i = 0; i < 130; i++) {
    const data = job(i);
    const { jobId } = await queue.enqueue(data);
    made.push({ id: jobId, kind: data.kind, tenant: "tenantId" in data ? data.tenantId : null });
  }
}, 60_000);

afterAll(async () => {
  redis?.disconnect();
  await h?.close();
});

describe("GET /v1/jobs", () => {
  it("pages through every job, newest first, 50 by default", async () => {
    const first = await list();
    expect(first.status).toBe(200);
    expect(first.body.jobs).toHaveLength(50);
    expect(first.body.next).toEqual(expect.any(String));
    // The list carries job views without their progress lines.
    expect(first.body.jobs[0]).toMatchObject({ id: expect.any(String), kind: expect.any(String), state: expect.any(String) });
    expect(first.body.jobs[0]?.progress).toBeUndefined();

    const jobs = await all({ limit: "7" });
    // Superseded rollouts are still jobs; every job is listed once.
    expect(jobs.map((j) => j.id).sort()).toEqual(made.map((m) => m.id).sort());
    const created = jobs.map((j) => Date.parse(j.createdAt));
    expect(created).toEqual([...created].sort((a, b) => b - a));
  });

  it("filters by tenant, kind, state and creation time", async () => {
    const tenant = TENANTS[1] ?? "";
    const ofTenant = await all({ tenant, limit: "5" });
    expect(ofTenant.map((j) => j.id).sort()).toEqual(
      made
        .filter((m) => m.tenant === tenant)
        .map((m) => m.id)
        .sort(),
    );
    expect(ofTenant.every((j) => j.data.tenantId === tenant)).toBe(true);

    const drift = await all({ kind: "tenant.drift", tenant, limit: "200" });
    expect(drift.map((j) => j.id).sort()).toEqual(
      made
        .filter((m) => m.tenant === tenant && m.kind === "tenant.drift")
        .map((m) => m.id)
        .sort(),
    );

    // A newer rollout supersedes the older ones still waiting: only the newest is waiting.
    const rollouts = made.filter((m) => m.kind === "release.rollout");
    const waitingRollouts = await all({ kind: "release.rollout", state: "waiting" });
    expect(waitingRollouts.map((j) => j.id)).toEqual([rollouts.at(-1)?.id]);
    const superseded = await all({ state: "superseded", limit: "3" });
    expect(superseded.map((j) => j.id).sort()).toEqual(
      rollouts
        .slice(0, -1)
        .map((m) => m.id)
        .sort(),
    );

    // Cancelled waiting jobs show as cancelled.
    const cancel = made.filter((m) => m.kind === "tenant.move").slice(0, 4);
    for (const m of cancel) expect((await h.request("POST", `/v1/jobs/${m.id}/cancel`)).status).toBe(202);
    const cancelled = await all({ state: "cancelled" });
    expect(cancelled.map((j) => j.id).sort()).toEqual(cancel.map((m) => m.id).sort());
    expect(cancelled.every((j) => j.state === "cancelled")).toBe(true);

    const mid = made[100]?.id ?? "";
    const since = (await queue.getJobView(mid))?.createdAt ?? "";
    const recent = await all({ since });
    expect(recent.length).toBeGreaterThanOrEqual(30);
    expect(recent.every((j) => j.createdAt >= since)).toBe(true);
    expect(recent.map((j) => j.id)).toContain(mid);
    expect((await list({ since: new Date(Date.now() + 60_000).toISOString() })).body).toEqual({ jobs: [], next: null });
  });

  it("reads about as many jobs as a page shows, not the whole queue", async () => {
    const views = vi.spyOn(queue, "getJobView");
    try {
      const page = await list({ limit: "10" });
      expect(page.body.jobs).toHaveLength(10);
      expect(views.mock.calls.length).toBeLessThanOrEqual(50);
      views.mockClear();
      // A tenant's page reads that tenant's jobs only, from its own index.
      const tenant = await list({ tenant: TENANTS[2] ?? "", limit: "200" });
      expect(tenant.body.jobs.length).toBe(made.filter((m) => m.tenant === TENANTS[2]).length);
      expect(views.mock.calls.length).toBe(tenant.body.jobs.length);
    } finally {
      views.mockRestore();
    }
  });

  it("lists a job queued by another client before any worker took it, and forgets one whose record is gone", async () => {
    // Added by BullMQ directly (not through JobQueue): the sweep before each page indexes it.
    const direct = await queue.queue.add(
      "tenant.drift",
      { kind: "tenant.drift", trigger, requestedAt: new Date().toISOString(), tenantId: TENANTS[0], repair: false },
      { jobId: `direct-${tag}` },
    );
    const page = await list({ limit: "1" });
    expect(page.body.jobs.map((j) => j.id)).toEqual([direct.id]);

    const index = new JobIndex(redis, h.config.queuePrefix);
    await (await Job.fromId(queue.queue, direct.id ?? ""))?.remove();
    const after = await list({ tenant: TENANTS[0] ?? "", limit: "200" });
    expect(after.body.jobs.map((j) => j.id)).not.toContain(direct.id);
    expect(await redis.zscore(index.tenantKey(TENANTS[0] ?? ""), direct.id ?? "")).toBeNull();
    expect(await redis.zscore(index.allKey(), direct.id ?? "")).toBeNull();
    // Bounded by the retention: every index key expires.
    for (const key of [index.allKey(), index.tenantKey(TENANTS[1] ?? ""), index.kindKey("tenant.drift")]) {
      const ttl = await redis.pttl(key);
      expect(ttl, key).toBeGreaterThan(0);
      expect(ttl, key).toBeLessThanOrEqual(14 * 24 * 3600 * 1000);
    }
  });

  it.each([
    [{ limit: "0" }, "limit"],
    [{ limit: "201" }, "limit"],
    [{ limit: "ten" }, "limit"],
    [{ limit: "2.5" }, "limit"],
    [{ state: "done" }, "state"],
    [{ kind: "tenant.destroy" }, "kind"],
    [{ tenant: "Not_A_Tenant" }, "tenant"],
    [{ since: "yesterday" }, "since"],
    [{ since: "2026-13-01T00:00:00Z" }, "since"],
    [{ cursor: "not-a-cursor" }, "cursor"],
    [{ cursor: Buffer.from(JSON.stringify([1, "../x"])).toString("base64url") }, "cursor"],
    [{ stat: "failed" }, "stat"],
  ])("refuses %j with 400 naming %s", async (query, field) => {
    const res = await list(query);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: "invalid", field });
    expect(res.body.jobs).toBeUndefined();
  });

  it("refuses a parameter given twice, and answers 401 without a token", async () => {
    const twice = await h.request("GET", "/v1/jobs?state=waiting&state=failed");
    expect(twice.status).toBe(400);
    expect(twice.body).toMatchObject({ error: "invalid", field: "state" });
    const anonymous = await fetch(`${h.service.url ?? ""}/v1/jobs`);
    expect(anonymous.status).toBe(401);
  });
});
