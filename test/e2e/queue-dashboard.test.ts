// Issue 11, finding 3 (a): the queue dashboard is not a write path. Bull Board runs read-only and
// the edge refuses every request under /admin/queues that is not GET or HEAD, so a token holder
// cannot add, retry, clean, promote, remove or edit jobs through it. Each write route answers an
// error and the queue is exactly as it was.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOBS_QUEUE } from "../../core/jobs.ts";
import type { JobQueue } from "../../jobs/queue.ts";
import { startHarness, type Harness } from "../support/harness.ts";

let h: Harness;
let queue: JobQueue;
const tag = Math.random().toString(36).slice(2, 7);
const ids = { failed: `dash-failed-${tag}`, delayed: `dash-delayed-${tag}`, completed: `dash-done-${tag}` };

async function until(check: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function snapshot(): Promise<Record<string, unknown>> {
  const counts = await queue.queue.getJobCounts("waiting", "active", "delayed", "completed", "failed", "prioritized");
  const states = Object.fromEntries(await Promise.all(Object.values(ids).map(async (id) => [id, await queue.queue.getJobState(id)] as const)));
  const data = Object.fromEntries(await Promise.all(Object.values(ids).map(async (id) => [id, (await queue.queue.getJob(id))?.data] as const)));
  return { counts, states, data, paused: await queue.queue.isPaused() };
}

beforeAll(async () => {
  h = await startHarness();
  if (!h.service.queue) throw new Error("harness has no queue");
  queue = h.service.queue;
  const now = new Date().toISOString();
  // A job of a kind no handler knows fails at once: a failed job to retry or clean.
  await queue.queue.add("evil.kind", { kind: "evil.kind", trigger: { type: "api", tokenName: "x" }, requestedAt: now }, { jobId: ids.failed, attempts: 3 });
  // A drift check of a tenant that does not exist succeeds without touching anything: a completed job.
  const drift = { kind: "tenant.drift", trigger: { type: "api", tokenName: "x" }, requestedAt: now, tenantId: `nx-${tag}`, repair: false } as const;
  await queue.enqueue(drift, { jobId: ids.completed });
  await queue.enqueue(drift, { jobId: ids.delayed, delayMs: 3_600_000 });
  await until(
    async () => (await queue.queue.getJobState(ids.failed)) === "failed" && (await queue.queue.getJobState(ids.completed)) === "completed",
    "jobs to settle",
  );
});

afterAll(async () => {
  await h?.close();
});

describe("finding 3: the queue dashboard is read-only", () => {
  it("still shows the queues, and says they are read-only", async () => {
    const api = await fetch(`${h.service.url}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${h.token}` } });
    expect(api.status).toBe(200);
    const body = (await api.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(body.queues.find((q) => q.name === JOBS_QUEUE)?.readOnlyMode).toBe(true);
  });

  it("answers an error to add, retry, clean, promote, remove, edit and queue-wide writes, and changes nothing", async () => {
    const before = await snapshot();
    const base = `${h.service.url}/admin/queues/api/queues/${JOBS_QUEUE}`;
    const destroy = {
      name: "stack.operation",
      data: {
        kind: "stack.operation",
        trigger: { type: "api", tokenName: "attacker" },
        requestedAt: new Date().toISOString(),
        stack: `tenant-victim-${tag}`,
        operation: "destroy",
        program: "tenant",
        args: { tenantId: `victim-${tag}`, tier: "pool", region: "eu-west-1" },
      },
      options: {},
    };
    const writes: [string, string, unknown?][] = [
      ["POST", `${base}/add`, destroy],
      ["PUT", `${base}/retry/failed`],
      ["PUT", `${base}/${ids.failed}/retry`],
      ["PUT", `${base}/clean/completed`],
      ["PUT", `${base}/clean/failed`],
      ["PUT", `${base}/${ids.completed}/clean`],
      ["PUT", `${base}/promote`],
      ["PUT", `${base}/${ids.delayed}/promote`],
      ["PUT", `${base}/${ids.delayed}/remove-unprocessed-children`],
      ["PATCH", `${base}/${ids.delayed}/update-data`, { data: destroy.data }],
      ["PATCH", `${base}/${ids.delayed}/delay`, { delay: 0 }],
      ["PATCH", `${base}/${ids.delayed}/priority`, { priority: 1 }],
      ["PUT", `${base}/pause`],
      ["PUT", `${base}/empty`],
      ["PUT", `${base}/obliterate`],
      ["PUT", `${base}/concurrency`, { concurrency: 100 }],
      ["PUT", `${h.service.url}/admin/queues/api/queues/pause`],
      ["DELETE", `${base}/${ids.completed}`],
    ];
    for (const [method, url, body] of writes) {
      const res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${h.token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      expect(res.status, `${method} ${url}`).toBeGreaterThanOrEqual(400);
    }
    // HTTP Basic (what a browser sends) is refused the same way.
    const basic = Buffer.from(`ops:${h.token}`).toString("base64");
    const viaBasic = await fetch(`${base}/add`, {
      method: "POST",
      headers: { authorization: `Basic ${basic}`, "content-type": "application/json" },
      body: JSON.stringify(destroy),
    });
    expect(viaBasic.status).toBeGreaterThanOrEqual(400);
    expect(await snapshot()).toEqual(before);
    const jobs = await queue.queue.getJobs(["waiting", "active", "delayed", "completed", "failed", "prioritized"]);
    expect(jobs.filter((j) => j.name === "stack.operation")).toEqual([]);
  });
});
