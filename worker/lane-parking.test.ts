// Issue 14 §4, waiting costs nothing: a job behind a held stack lane parks (no polling) and the
// lane's release wakes the next one at once, in arrival order; a wake-up that is lost costs one
// safety poll, never the job. Real Redis and BullMQ, the real job worker; the jobs hold their
// lane until the test lets them go.
import { Queue, type Job } from "bullmq";
import { Redis } from "ioredis";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOBS_QUEUE } from "../core/jobs.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { StackLanes, type LaneWaker } from "../jobs/stack-lanes.ts";
import { until } from "../test/support/lock-fixtures.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { createJobWorker, extraJobKind, type JobWorker } from "./job-worker.ts";

const HOLD_KIND = "test.lane-hold";
const holdSchema = z.object({ kind: z.literal(HOLD_KIND), stack: z.string(), name: z.string() });

/** A worker whose jobs hold their lane until let go, recording when each started and ended. */
class Harness {
  readonly prefix = uniqueName("park");
  readonly redis = new Redis(TEST_REDIS_URL);
  readonly queue: Queue;
  readonly lanes: StackLanes;
  readonly started = new Map<string, number>();
  readonly ended = new Map<string, number>();
  readonly #letGo = new Map<string, () => void>();
  readonly #gates = new Map<string, Promise<void>>();
  readonly #worker: JobWorker;

  constructor(lanes: { safetyPollMs: number; waker?: LaneWaker }) {
    this.queue = new Queue(JOBS_QUEUE, { connection: this.redis, prefix: this.prefix });
    this.lanes = new StackLanes(this.redis, this.prefix, lanes);
    this.#worker = createJobWorker({
      connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }),
      prefix: this.prefix,
      concurrency: 4,
      lanes: this.lanes,
      handlers: {},
      extraKinds: {
        [HOLD_KIND]: extraJobKind(
          holdSchema,
          async (ctx) => {
            this.started.set(ctx.data.name, Date.now());
            await this.#gate(ctx.data.name);
            this.ended.set(ctx.data.name, Date.now());
            return { ok: true };
          },
          { stackOf: (d) => d.stack },
        ),
      },
      logger: createLogger({ level: "silent" }),
      metrics: createMetrics({ defaultMetrics: false }),
      scrubber: new SecretScrubber(),
      stackOf: () => undefined,
      timeoutMs: () => 120_000,
    });
  }

  #gate(name: string): Promise<void> {
    let gate = this.#gates.get(name);
    if (!gate) {
      gate = new Promise<void>((resolve) => this.#letGo.set(name, resolve));
      this.#gates.set(name, gate);
    }
    return gate;
  }

  /** Registered in the lane first, then added: what the edge does. */
  async enqueue(stack: string, name: string): Promise<string> {
    const jobId = `${name}-${uniqueName("j")}`;
    await this.lanes.register(stack, jobId, { kind: HOLD_KIND });
    await this.queue.add(HOLD_KIND, { kind: HOLD_KIND, stack, name }, { jobId, attempts: 1 });
    return jobId;
  }

  /** Lets a running job finish (its lane is released); returns when that was asked. */
  release(name: string): number {
    void this.#gate(name);
    const at = Date.now();
    this.#letGo.get(name)?.();
    return at;
  }

  async isParked(jobId: string): Promise<boolean> {
    return (await this.redis.hget(`${this.prefix}:jobmeta:${jobId}`, "parked")) === "1" && (await this.queue.getJobState(jobId)) === "delayed";
  }

  async close(): Promise<void> {
    for (const name of this.#gates.keys()) this.release(name);
    await this.#worker.close(2_000);
    await this.lanes.close();
    await this.queue.close();
    const keys = await this.redis.keys(`${this.prefix}:*`);
    if (keys.length > 0) await this.redis.del(...keys);
    this.redis.disconnect();
  }
}

describe("a job behind a held lane parks and is woken by the release", () => {
  const SAFETY_MS = 20_000;
  let h: Harness;

  beforeAll(() => {
    h = new Harness({ safetyPollMs: SAFETY_MS });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("hands the lane over promptly, in arrival order across four waiters, never two at once", async () => {
    const stack = "tenant-parking";
    await h.enqueue(stack, "holder");
    await until("the holder to run", () => h.started.has("holder"), 20_000);
    const names = ["w1", "w2", "w3", "w4"];
    const ids: string[] = [];
    for (const n of names) ids.push(await h.enqueue(stack, n));
    // Every waiter looked once, found the lane held and parked (delayed, nobody polling).
    await until("the waiters to park", async () => (await Promise.all(ids.map((id) => h.isParked(id)))).every(Boolean), 20_000);
    expect(h.started.size).toBe(1);

    let previous = "holder";
    for (const n of names) {
      const releasedAt = h.release(previous);
      await until(`${n} to run`, () => h.started.has(n), SAFETY_MS);
      const handOverMs = (h.started.get(n) as number) - releasedAt;
      // Woken by the release, not by its safety poll (a generous bound: the machine is shared).
      expect(handOverMs, `hand-over ${previous} → ${n}`).toBeLessThan(SAFETY_MS / 4);
      // Never two jobs of the stack at once, and nobody behind it started early.
      expect(h.started.get(n) as number).toBeGreaterThanOrEqual(h.ended.get(previous) as number);
      for (const later of names.slice(names.indexOf(n) + 1)) expect(h.started.has(later), `${later} ran before its turn`).toBe(false);
      previous = n;
    }
    h.release(previous);
    await until("the lane to empty", async () => (await h.lanes.entries(stack)).length === 0, 10_000);
  });

  it("a cancelled waiter ends at once and does not hold up the one behind it", async () => {
    const stack = "tenant-parking-cancel";
    await h.enqueue(stack, "c-holder");
    await until("the holder to run", () => h.started.has("c-holder"), 20_000);
    const cancelled = await h.enqueue(stack, "c1");
    const next = await h.enqueue(stack, "c2");
    await until("the waiters to park", async () => (await h.isParked(cancelled)) && (await h.isParked(next)), 20_000);
    const cancelledAt = Date.now();
    expect(await h.lanes.cancel(stack, cancelled)).toBe(true);
    // Woken to end as cancelled, not left parked until its next look.
    await until("the cancelled job to end", async () => (await h.queue.getJobState(cancelled)) === "completed", SAFETY_MS / 4);
    expect(Date.now() - cancelledAt).toBeLessThan(SAFETY_MS / 4);
    expect(h.started.has("c1")).toBe(false);
    const releasedAt = h.release("c-holder");
    await until("c2 to run", () => h.started.has("c2"), SAFETY_MS);
    expect((h.started.get("c2") as number) - releasedAt).toBeLessThan(SAFETY_MS / 4);
    h.release("c2");
  });
});

describe("a lost wake-up", () => {
  const SAFETY_MS = 1_500;
  let h: Harness;
  const dropped: string[] = [];

  beforeAll(() => {
    // Every promote is lost (as if the releaser died right after its release); changing a delay works.
    h = new Harness({
      safetyPollMs: SAFETY_MS,
      waker: {
        promote: (jobId) => {
          dropped.push(jobId);
          return Promise.resolve("not-delayed");
        },
        changeDelay: async (jobId, delayMs) => {
          const job = (await h.queue.getJob(jobId)) as Job | undefined;
          if (!job) return false;
          return job.changeDelay(delayMs).then(
            () => true,
            () => false,
          );
        },
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("still runs the waiter, after its safety poll", async () => {
    const stack = "tenant-lost-wake";
    await h.enqueue(stack, "holder");
    await until("the holder to run", () => h.started.has("holder"), 20_000);
    const waiter = await h.enqueue(stack, "waiter");
    await until("the waiter to park", async () => h.isParked(waiter), 20_000);
    const releasedAt = h.release("holder");
    await until("the waiter to run", () => h.started.has("waiter"), 30_000);
    // Its wake-up was asked for and lost: it ran on its own look, within a few safety polls.
    expect(dropped).toContain(waiter);
    expect((h.started.get("waiter") as number) - releasedAt).toBeLessThan(SAFETY_MS * 10);
    expect(h.started.get("waiter") as number).toBeGreaterThanOrEqual(h.ended.get("holder") as number);
    h.release("waiter");
  });
});
