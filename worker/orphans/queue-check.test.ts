// The queue part of the orphan audit against a real Redis and real BullMQ: a job active without
// any worker's lock, lane entries whose jobs are gone or finished (and only those), a lease no live
// job holds, and tenant records left in a transitional state with no job on them.
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOBS_QUEUE } from "../../core/jobs.ts";
import { TEST_REDIS_URL, uniqueName } from "../../test/support/services.ts";
import { deleteKeys } from "../../webhooks/edge-fixture.ts";
import { TenantIndex } from "../../core/tenant-index.ts";
import { JobQueue } from "../../jobs/queue.ts";
import { AuditContext } from "./context.ts";
import { checkQueue, deadLaneEntries, staleLease } from "./queue-check.ts";
import { readRecords } from "./records.ts";

let prefix: string;
let redis: Redis;
let queue: JobQueue;

const job = (id: string): string => `${prefix}:${JOBS_QUEUE}:${id}`;

async function audit(): Promise<AuditContext & { failedTenants: Awaited<ReturnType<typeof checkQueue>> }> {
  const ctx = new AuditContext("installation", await readRecords(redis, prefix, queue), []);
  const failedTenants = await checkQueue(ctx, redis, prefix, Date.now());
  return Object.assign(ctx, { failedTenants });
}

beforeAll(() => {
  prefix = uniqueName("orphq");
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  queue = new JobQueue({ connection: redis, prefix });
});

afterAll(async () => {
  await queue.close();
  await deleteKeys(prefix);
  redis.disconnect();
});

describe("orphan audit: the queue", () => {
  it("reports a job BullMQ shows active without a worker's lock, and not one whose worker holds it", async () => {
    const worker = new Worker(JOBS_QUEUE, null, { connection: redis.duplicate(), prefix, autorun: false, lockDuration: 60_000 });
    try {
      await queue.queue.add("x", {}, { jobId: "held" });
      await queue.queue.add("x", {}, { jobId: "abandoned" });
      expect((await worker.getNextJob("token-1"))?.id).toBe("held");
      expect((await worker.getNextJob("token-2"))?.id).toBe("abandoned");
      // The worker that had it died: its lock ran out.
      await redis.del(`${job("abandoned")}:lock`);

      const ctx = await audit();
      const stuck = ctx.findings.filter((f) => f.kind === "job");
      expect(stuck.map((f) => [f.name, f.problem])).toEqual([["abandoned", "stuck-active"]]);
      expect(stuck[0]?.repair).toMatch(/STACKRAIL_STALLED_INTERVAL_MS/);
    } finally {
      await worker.close(true);
    }
  });

  it("finds lane entries whose job is finished or long gone, keeps fresh and live ones, and removes only the dead", async () => {
    const stack = "tenant-lanes";
    const lane = `${prefix}:lane:${stack}`;
    await redis.rpush(lane, "finished", "long-gone", "just-registered", "live");
    await redis.hset(job("finished"), { name: "x", finishedOn: String(Date.now()) });
    await redis.hset(`${prefix}:jobmeta:long-gone`, { stack, registeredAt: String(Date.now() - 120_000) });
    // Its add may be in flight: not dead within the grace.
    await redis.hset(`${prefix}:jobmeta:just-registered`, { stack, registeredAt: String(Date.now()) });
    await redis.hset(job("live"), { name: "x" });

    const ctx = await audit();
    const f = ctx.findings.find((x) => x.kind === "lane" && x.name === stack);
    expect(f).toMatchObject({ problem: "dead-entries", repair: expect.stringContaining(`--repair lane:${stack}`) });
    expect(f?.detail).toMatch(/2 of 4 .*the head is one of them/);

    expect((await deadLaneEntries(redis, prefix, stack, true)).sort()).toEqual(["finished", "long-gone"]);
    expect(await redis.lrange(lane, 0, -1)).toEqual(["just-registered", "live"]);
    expect((await audit()).findings.filter((x) => x.kind === "lane")).toEqual([]);
  });

  it("finds a lease whose job is finished, not one a live job holds", async () => {
    await redis.set(`${prefix}:lane-lease:tenant-done`, "done-job", "PX", 60_000);
    await redis.hset(job("done-job"), { name: "x", finishedOn: String(Date.now()) });
    await redis.set(`${prefix}:lane-lease:tenant-busy`, "busy-job", "PX", 60_000);
    await redis.hset(job("busy-job"), { name: "x" });

    const leases = (await audit()).findings.filter((x) => x.kind === "lane-lease");
    expect(leases.map((x) => [x.name, x.problem, x.owner])).toEqual([["tenant-done", "stale-lease", "job done-job"]]);
    expect(await staleLease(redis, prefix, "tenant-busy", true)).toBeNull();
    expect(await staleLease(redis, prefix, "tenant-done", true)).toMatchObject({ holder: "done-job" });
    expect(await redis.exists(`${prefix}:lane-lease:tenant-done`, `${prefix}:lane-lease:tenant-busy`)).toBe(1);
  });

  it("reports a record left deprovisioning with no job, lists a failed tenant apart, and leaves one with a job alone", async () => {
    const longAgo = Date.now() - 10 * 60_000;
    const old = new TenantIndex(redis, prefix, () => longAgo);
    for (const id of ["stuck-one", "working-one", "failed-one"]) {
      await old.claimProvision({ id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    }
    await old.transition("stuck-one", [], "deprovisioning");
    await old.transition("working-one", [], "deprovisioning");
    await old.markFailed("failed-one", { job: "tenant.provision", jobId: "p-1", stack: "tenant-failed-one", tier: "pool", error: "program: boom" });
    await queue.enqueue({
      kind: "tenant.deprovision",
      trigger: { type: "api", tokenName: "t" },
      requestedAt: new Date().toISOString(),
      tenantId: "working-one",
    });

    const ctx = await audit();
    const records = ctx.findings.filter((x) => x.kind === "tenant-record");
    expect(records.map((x) => [x.name, x.problem])).toEqual([["stuck-one", "stuck-record"]]);
    expect(records[0]?.repair).toContain("--repair tenant-record:stuck-one");
    expect(ctx.failedTenants).toEqual([expect.objectContaining({ tenant: "failed-one", repair: "DELETE /v1/tenants/failed-one" })]);
  });
});
