// The drift scheduler against a real Redis: stable, spread offsets; one deterministic job id per
// stack and period; nothing enqueued outside a stack's window or for a tenant that is not active.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../core/logger.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { deleteKeys } from "../webhooks/edge-fixture.ts";
import { TenantIndex } from "../core/tenant-index.ts";
import { driftJobId, driftOffsetMs, driftSlot, driftWindowMs, enqueueDueDriftChecks } from "./drift-scheduler.ts";
import { JobQueue, stackFor } from "../jobs/queue.ts";

const HOUR = 3_600_000;
const logger = createLogger({ level: "silent" });
let prefix: string;
let redis: Redis;
let queue: JobQueue;
let tenants: TenantIndex;

beforeAll(async () => {
  prefix = uniqueName("drift");
  redis = new Redis(TEST_REDIS_URL);
  queue = new JobQueue({ connection: redis, prefix });
  tenants = new TenantIndex(redis, prefix);
  await tenants.rebuild([
    { id: "alpha", region: "eu-west-1", tier: "pool", version: "1.0.0" },
    { id: "bravo", region: "eu-west-1", tier: "silo", version: "1.0.0", protected: true },
  ]);
});

afterAll(async () => {
  await queue.close();
  await deleteKeys(prefix);
  redis.disconnect();
});

describe("drift schedule", () => {
  it("gives every stack a stable offset inside the interval, spread across it", () => {
    const offsets = Array.from({ length: 200 }, (_, i) => driftOffsetMs(`tenant-t${i}`, 6 * HOUR));
    expect(offsets.every((o) => o >= 0 && o < 6 * HOUR)).toBe(true);
    expect(driftOffsetMs("tenant-t7", 6 * HOUR)).toBe(offsets[7]);
    // Spread: every sixth of the interval holds some of the 200 stacks, none holds most of them.
    const buckets = new Array<number>(6).fill(0);
    for (const o of offsets) buckets[Math.floor(o / HOUR)] = (buckets[Math.floor(o / HOUR)] ?? 0) + 1;
    expect(Math.min(...buckets)).toBeGreaterThan(10);
    expect(Math.max(...buckets)).toBeLessThan(70);
  });

  it("numbers periods from the stack's own offset", () => {
    const offset = driftOffsetMs("tenant-alpha", HOUR);
    const t = 1_000 * HOUR + offset;
    expect(driftSlot("tenant-alpha", HOUR, t)).toEqual({ period: 1000, dueAt: t });
    expect(driftSlot("tenant-alpha", HOUR, t - 1).period).toBe(999);
    expect(driftSlot("tenant-alpha", HOUR, t + HOUR - 1).period).toBe(1000);
    expect(driftWindowMs(6 * HOUR, 15_000)).toBe(5 * 60_000);
    expect(driftWindowMs(20_000, 300)).toBe(20_000);
  });

  it("enqueues each due check once, in the tenant's lane, with a deterministic id; nothing outside the window", async () => {
    const schedule = { intervalMs: HOUR, repair: true, windowMs: 5 * 60_000 };
    const dueAlpha = 1_000 * HOUR + driftOffsetMs("tenant-alpha", HOUR);
    const added = await enqueueDueDriftChecks(tenants, queue, schedule, logger, dueAlpha + 1_000);
    expect(added).toContain(driftJobId("tenant-alpha", 1000));
    const job = await queue.queue.getJob(driftJobId("tenant-alpha", 1000));
    expect(job?.data).toMatchObject({ kind: "tenant.drift", tenantId: "alpha", repair: true, trigger: { type: "schedule", name: "drift-check" } });
    expect(stackFor(job?.data)).toBe("tenant-alpha");

    // Another tick (or another worker) in the same period adds nothing.
    expect(await enqueueDueDriftChecks(tenants, queue, schedule, logger, dueAlpha + 2_000)).not.toContain(driftJobId("tenant-alpha", 1000));
    // Past the window of this period: missed, left to the next period.
    expect(await enqueueDueDriftChecks(tenants, queue, schedule, logger, dueAlpha + 10 * 60_000)).not.toContain(driftJobId("tenant-alpha", 1000));
    // The next period gets its own job.
    expect(await enqueueDueDriftChecks(tenants, queue, schedule, logger, dueAlpha + HOUR)).toContain(driftJobId("tenant-alpha", 1001));
  });

  it("skips tenants that are not active, and does nothing when the interval is 0", async () => {
    await tenants.transition("bravo", [], "deprovisioning");
    const dueBravo = 2_000 * HOUR + driftOffsetMs("tenant-bravo", HOUR);
    const schedule = { intervalMs: HOUR, repair: false, windowMs: 5 * 60_000 };
    expect(await enqueueDueDriftChecks(tenants, queue, schedule, logger, dueBravo)).not.toContain(driftJobId("tenant-bravo", 2000));
    expect(await enqueueDueDriftChecks(tenants, queue, { ...schedule, intervalMs: 0 }, logger, dueBravo)).toEqual([]);
  });
});
