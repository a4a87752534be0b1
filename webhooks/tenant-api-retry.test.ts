// POST /v1/tenants answered 503 after its claim was taken (issue 12, found by the fault suite's
// soak): the client's retry with the same Idempotency-Key must get the answer the first request
// should have had (202 with one job), never 409 for its own tenant nor a second provision job.
// A real edge on a real Redis; the fault is injected into the edge's own queue and tenant index
// the way a slow Redis produces it (an add that outlived its bound yet ran; an undo that failed).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TransientError } from "../core/errors.ts";
import type { JobQueue } from "../jobs/queue.ts";
import { api, startEdge, type Edge } from "./edge-fixture.ts";

let edge: Edge;
beforeAll(async () => {
  edge = await startEdge({ label: "tenant-api-retry" });
});
afterAll(async () => {
  await edge?.close();
});

const provision = (id: string) => ({ id, region: "eu-west-1", tier: "pool", version: "1.4.0" });

/** The provision jobs for `tenantId` in the queue, in every state. */
async function provisionJobs(tenantId: string): Promise<string[]> {
  const jobs = await edge.queue.queue.getJobs(["waiting", "active", "delayed", "prioritized", "completed", "failed"]);
  return jobs.filter((j) => j.name === "tenant.provision" && (j.data as { tenantId?: string }).tenantId === tenantId).map((j) => j.id as string);
}

/** Makes the queue's next enqueue fail like JobQueue's bounded add does (`when`: after the add ran, or before it). */
function failNextEnqueue(queue: JobQueue, when: "after-add" | "before-add"): void {
  const real = queue.enqueue.bind(queue);
  let armed = true;
  queue.enqueue = async (...args: Parameters<JobQueue["enqueue"]>) => {
    if (!armed) return real(...args);
    armed = false;
    if (when === "after-add") await real(...args);
    throw new TransientError("the queue cannot take the job now", { cause: new TransientError("Redis did not answer within 800 ms") });
  };
}

describe("POST /v1/tenants retried after a 503", () => {
  it("an add that timed out yet ran: the retry answers 202 with that job, and there is one job", async () => {
    const headers = { "idempotency-key": "retry-after-timeout" };
    failNextEnqueue(edge.queue, "after-add");
    const first = await api(edge, "POST", "/v1/tenants", provision("retry-timeout"), { headers });
    // Either answer is honest for the first request (the job does exist); what matters is the retry.
    expect([202, 503]).toContain(first.status);
    const jobs = await provisionJobs("retry-timeout");
    expect(jobs).toHaveLength(1);

    const retry = await api(edge, "POST", "/v1/tenants", provision("retry-timeout"), { headers });
    expect(retry.status).toBe(202);
    expect(await retry.json()).toEqual({ jobId: jobs[0] });
    expect(await provisionJobs("retry-timeout")).toEqual(jobs);
    expect(await edge.tenants.get("retry-timeout")).toMatchObject({ state: "provisioning" });

    // And the answer is remembered from then on.
    const again = await api(edge, "POST", "/v1/tenants", provision("retry-timeout"), { headers });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ jobId: jobs[0] });
    expect(await provisionJobs("retry-timeout")).toEqual(jobs);
  });

  it("an add that failed and a claim that could not be undone: the retry enqueues the job instead of 409", async () => {
    const headers = { "idempotency-key": "retry-after-failed-undo" };
    failNextEnqueue(edge.queue, "before-add");
    const realAbandon = edge.tenants.abandonProvision.bind(edge.tenants);
    edge.tenants.abandonProvision = () => Promise.reject(new TransientError("Redis did not answer within 500 ms"));
    let first: Response;
    try {
      first = await api(edge, "POST", "/v1/tenants", provision("retry-undo"), { headers });
    } finally {
      edge.tenants.abandonProvision = realAbandon;
    }
    expect(first.status).toBe(503);
    expect(await provisionJobs("retry-undo")).toEqual([]);
    expect(await edge.tenants.get("retry-undo")).toMatchObject({ state: "provisioning" });

    const retry = await api(edge, "POST", "/v1/tenants", provision("retry-undo"), { headers });
    expect(retry.status).toBe(202);
    const { jobId } = (await retry.json()) as { jobId: string };
    expect(await provisionJobs("retry-undo")).toEqual([jobId]);

    // Someone else's request for that tenant is still refused.
    const other = await api(edge, "POST", "/v1/tenants", provision("retry-undo"), { headers: { "idempotency-key": "someone-else" } });
    expect(other.status).toBe(409);
    const plain = await api(edge, "POST", "/v1/tenants", provision("retry-undo"));
    expect(plain.status).toBe(409);
    expect(await provisionJobs("retry-undo")).toEqual([jobId]);
  });

  it("without a key, a failed add still leaves nothing behind", async () => {
    failNextEnqueue(edge.queue, "before-add");
    const first = await api(edge, "POST", "/v1/tenants", provision("retry-nokey"));
    expect(first.status).toBe(503);
    expect(await edge.tenants.get("retry-nokey")).toBeNull();
    const retry = await api(edge, "POST", "/v1/tenants", provision("retry-nokey"));
    expect(retry.status).toBe(202);
    expect(await provisionJobs("retry-nokey")).toHaveLength(1);
  });
});
