// The scheduled orphan audit: once per drift interval per installation, whichever of several
// workers claims the period first; its counts become every process's `stackrail_orphans` values.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../core/logger.ts";
import { createMetrics } from "../../core/metrics.ts";
import { TEST_REDIS_URL, uniqueName } from "../../test/support/services.ts";
import { deleteKeys } from "../../webhooks/edge-fixture.ts";
import { driftSlot, ORPHAN_AUDIT_SLOT, runDueOrphanAudit } from "../drift-scheduler.ts";
import { readOrphanCounts, storeOrphanCounts } from "../../jobs/last-audit.ts";
import { finding, type OrphanReport } from "../../jobs/orphan-report.ts";

const HOUR = 3_600_000;
let prefix: string;
let redis: Redis;

function report(findings = [finding("database", "t_x", "unowned", "DROP DATABASE `t_x`")]): OrphanReport {
  return { scope: "server", checkedAt: new Date().toISOString(), durationMs: 5, findings, retained: [], failed: [], skipped: [], incomplete: [] };
}

beforeAll(() => {
  prefix = uniqueName("orphsched");
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  await deleteKeys(prefix);
  redis.disconnect();
});

describe("scheduled orphan audit", () => {
  it("runs once per period whichever worker ticks, only inside the window, never when the schedule is off", async () => {
    let runs = 0;
    const audit = (): Promise<OrphanReport> => {
      runs += 1;
      return Promise.resolve(report());
    };
    const logger = createLogger({ level: "silent" });
    const schedule = { intervalMs: HOUR, windowMs: 5 * 60_000 };
    const { dueAt } = driftSlot(ORPHAN_AUDIT_SLOT, HOUR, 1000 * HOUR);
    const two = [
      runDueOrphanAudit({ redis, prefix, schedule, audit, logger }, dueAt + 1_000),
      runDueOrphanAudit({ redis, prefix, schedule, audit, logger }, dueAt + 2_000),
    ];
    expect((await Promise.all(two)).filter((r) => r !== null)).toHaveLength(1);
    expect(runs).toBe(1);
    expect(await runDueOrphanAudit({ redis, prefix, schedule, audit, logger }, dueAt + 10 * 60_000)).toBeNull();
    expect(await runDueOrphanAudit({ redis, prefix, schedule, audit, logger }, dueAt + HOUR + 1_000)).not.toBeNull();
    expect(await runDueOrphanAudit({ redis, prefix, schedule: { ...schedule, intervalMs: 0 }, audit, logger }, dueAt + 2 * HOUR + 1_000)).toBeNull();
    expect(runs).toBe(2);
  });

  it("exports the last audit's counts by kind from any process, and nothing before the first audit", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.setOrphanSource(() => readOrphanCounts(redis, `${prefix}-fresh`));
    expect(await metrics.registry.metrics()).not.toMatch(/stackrail_orphans\{/);

    await storeOrphanCounts(redis, prefix, report(), 1_700_000_000_000);
    const other = createMetrics({ defaultMetrics: false });
    other.setOrphanSource(() => readOrphanCounts(redis, prefix));
    const text = await other.registry.metrics();
    expect(text).toMatch(/stackrail_orphans\{kind="database"\} 1/);
    expect(text).toMatch(/stackrail_orphans\{kind="stack"\} 0/);
    expect(text).toMatch(/stackrail_orphan_audit_timestamp_seconds 1700000000/);
  });
});
