// Per-stack lanes against a real Redis and a real BullMQ Worker: one job per stack at a time, in
// arrival order; different stacks side by side; superseding only what has not started.
import { DelayedError, Worker, type Job } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOBS_QUEUE } from "../core/jobs.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { enqueueStackOperation, stackOperationJob, type StackOperationJob } from "../test/support/stack-operation.ts";
import { deleteKeys } from "../webhooks/edge-fixture.ts";
import { JobQueue } from "./queue.ts";
import { StackLanes, type LaneWaker } from "./stack-lanes.ts";

let prefix: string;
let redis: Redis;
let lanes: StackLanes;

beforeAll(() => {
  prefix = uniqueName("lanes");
  redis = new Redis(TEST_REDIS_URL);
  lanes = new StackLanes(redis, prefix);
});

afterAll(async () => {
  await deleteKeys(prefix);
  redis.disconnect();
});

describe("StackLanes", () => {
  it("lets only the head of a lane acquire, in arrival order, and frees the stack on release", async () => {
    const stack = "tenant-alpha";
    for (const id of ["a1", "a2", "a3"]) await lanes.register(stack, id, { kind: "tenant.upgrade" });
    expect(await lanes.register(stack, "a1")).toBe(false); // idempotent
    expect(await lanes.entries(stack)).toEqual(["a1", "a2", "a3"]);
    // The BullMQ records exist (so that these are not taken for ghosts).
    for (const id of ["a1", "a2", "a3"]) await redis.hset(`${prefix}:${JOBS_QUEUE}:${id}`, "name", "x");

    expect(await lanes.tryAcquire(stack, "a2", 10_000)).toBe(false);
    expect(await lanes.tryAcquire(stack, "a1", 10_000)).toBe(true);
    expect(await lanes.tryAcquire(stack, "a1", 10_000)).toBe(true); // renews
    expect(await lanes.renewIfOwner(stack, "a1", 10_000)).toBe(true);
    expect(await lanes.renewIfOwner(stack, "a2", 10_000)).toBe(false);
    await lanes.release(stack, "a1");
    expect(await lanes.tryAcquire(stack, "a3", 10_000)).toBe(false);
    expect(await lanes.tryAcquire(stack, "a2", 10_000)).toBe(true);
    // Another stack is independent.
    await lanes.register("tenant-beta", "b1");
    await redis.hset(`${prefix}:${JOBS_QUEUE}:b1`, "name", "x");
    expect(await lanes.tryAcquire("tenant-beta", "b1", 10_000)).toBe(true);
  });

  it("waits for an expired lease's owner no longer: a head whose job finished without releasing is dropped", async () => {
    const stack = "tenant-gamma";
    await lanes.register(stack, "g1");
    await lanes.register(stack, "g2");
    await redis.hset(`${prefix}:${JOBS_QUEUE}:g1`, "finishedOn", String(Date.now()));
    await redis.hset(`${prefix}:${JOBS_QUEUE}:g2`, "name", "x");
    expect(await lanes.tryAcquire(stack, "g2", 10_000)).toBe(true);
    expect(await lanes.entries(stack)).toEqual(["g2"]);
  });

  it("never lets a second job take a lease that is still held", async () => {
    const stack = "tenant-delta";
    await lanes.register(stack, "d1");
    await lanes.register(stack, "d2");
    for (const id of ["d1", "d2"]) await redis.hset(`${prefix}:${JOBS_QUEUE}:${id}`, "name", "x");
    expect(await lanes.tryAcquire(stack, "d1", 200)).toBe(true);
    // d1 leaves the lane without its lease being freed (crash between steps): d2 waits for the lease to expire.
    await redis.lrem(lanes.laneKey(stack), 0, "d1");
    expect(await lanes.tryAcquire(stack, "d2", 10_000)).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(await lanes.tryAcquire(stack, "d2", 10_000)).toBe(true);
  });

  it("supersedes older waiting jobs of the same kind, never one that has started", async () => {
    const stack = "preview-app-pr-7";
    for (const id of ["u1", "u2", "x1", "u3"]) {
      await lanes.register(stack, id, { kind: id.startsWith("u") ? "preview.up" : "preview.destroy" });
      await redis.hset(`${prefix}:${JOBS_QUEUE}:${id}`, "name", "x");
    }
    expect(await lanes.tryAcquire(stack, "u1", 10_000)).toBe(true); // u1 is running
    expect(await lanes.supersedeOlder(stack, "u3", "preview.up")).toEqual(["u2"]);
    expect(await lanes.isSuperseded("u2")).toBe("u3");
    expect(await lanes.isSuperseded("u1")).toBeNull();
    expect(await lanes.entries(stack)).toEqual(["u1", "x1", "u3"]);
    // A superseded job never acquires, even if a worker tries.
    expect(await lanes.tryAcquire(stack, "u2", 10_000)).toBe(false);
  });
});

describe("StackLanes at the edge (issue 19)", () => {
  it("a job that left its lane supersedes nothing: supersedes that run out of order never reach a newer job", async () => {
    // The edge supersedes after its answer, so two deliveries' supersedes may run in either order.
    const stack = "preview-app-pr-8";
    for (const id of ["o1", "o2", "o3"]) {
      await lanes.register(stack, id, { kind: "preview.up" });
      await redis.hset(`${prefix}:${JOBS_QUEUE}:${id}`, "name", "x");
    }
    expect(await lanes.supersedeOlder(stack, "o3", "preview.up")).toEqual(["o1", "o2"]);
    expect(await lanes.supersedeOlder(stack, "o2", "preview.up")).toEqual([]);
    expect(await lanes.isSuperseded("o3")).toBeNull();
    expect(await lanes.entries(stack)).toEqual(["o3"]);
  });

  it("registers on the caller's connection only while the guard key holds the claim's value", async () => {
    const stack = "preview-app-pr-9";
    const guard = `${prefix}:guard-9`;
    await redis.set(guard, "pending:other");
    expect(await lanes.registerOn(redis, stack, "lost", { kind: "preview.up", onlyIf: { key: guard, value: "pending:mine" } })).toBe(false);
    expect(await lanes.entries(stack)).toEqual([]);
    expect((await lanes.meta("lost")).stack).toBeUndefined();

    await redis.set(guard, "pending:mine");
    expect(await lanes.registerOn(redis, stack, "won", { kind: "preview.up", onlyIf: { key: guard, value: "pending:mine" } })).toBe(true);
    expect(await lanes.registerOn(redis, stack, "won", { kind: "preview.up", onlyIf: { key: guard, value: "pending:mine" } })).toBe(false); // idempotent
    expect(await lanes.entries(stack)).toEqual(["won"]);
    expect(await lanes.meta("won")).toMatchObject({ stack, kind: "preview.up" });
  });
});

describe("parking and waking (issue 14 §4)", () => {
  /** A waker that records whom it was asked to wake; `gone` jobs answer as finished. */
  function recordingWaker(gone: Set<string> = new Set()): LaneWaker & { promoted: string[] } {
    const promoted: string[] = [];
    return {
      promoted,
      promote: (jobId) => {
        promoted.push(jobId);
        return Promise.resolve(gone.has(jobId) ? "gone" : "woken");
      },
      changeDelay: () => Promise.resolve(true),
    };
  }

  it("marks waiters parked with their place, answers the next waiter on acquire, and wakes only a parked head on release", async () => {
    const waker = recordingWaker();
    const parking = new StackLanes(redis, prefix, { safetyPollMs: 1_000, waker });
    const stack = "tenant-park";
    for (const id of ["p1", "p2", "p3", "p4"]) {
      await parking.register(stack, id);
      await redis.hset(`${prefix}:${JOBS_QUEUE}:${id}`, "name", "x");
    }
    expect(await parking.acquire(stack, "p1", 10_000)).toEqual({ acquired: true, next: "p2" });
    expect(await parking.acquire(stack, "p3", 10_000)).toEqual({ acquired: false, position: 2 });
    expect(await parking.meta("p3")).toMatchObject({ acquired: false });
    expect(await redis.hget(`${prefix}:jobmeta:p3`, "parked")).toBe("1");
    // tryAcquire (the polling way) marks nobody parked.
    expect(await parking.tryAcquire(stack, "p2", 10_000)).toBe(false);
    expect(await redis.hget(`${prefix}:jobmeta:p2`, "parked")).toBeNull();
    // p2 is not parked (say, delayed by its debounce): the release leaves it to run on its own.
    await parking.release(stack, "p1");
    expect(waker.promoted).toEqual([]);
    expect(await parking.acquire(stack, "p2", 10_000)).toEqual({ acquired: true, next: "p3" });
    // p3 is parked: p2's release wakes it; it finds the lane free once it looks after parking.
    expect(await parking.parked(stack, "p3", Date.now() + 1_000)).toEqual({ free: false, position: 1 });
    await parking.release(stack, "p2");
    expect(waker.promoted).toEqual(["p3"]);
    expect(await parking.parked(stack, "p3", Date.now() + 1_000)).toEqual({ free: true, position: 0 });
    expect(await parking.acquire(stack, "p3", 10_000)).toEqual({ acquired: true, next: "p4" });
    expect(await redis.hget(`${prefix}:jobmeta:p3`, "parked")).toBeNull();
  });

  it("drops a parked head whose job finished meanwhile and wakes the one behind it", async () => {
    const waker = recordingWaker(new Set(["q2"]));
    const parking = new StackLanes(redis, prefix, { safetyPollMs: 1_000, waker });
    const stack = "tenant-park-dead";
    for (const id of ["q1", "q2", "q3"]) {
      await parking.register(stack, id);
      await redis.hset(`${prefix}:${JOBS_QUEUE}:${id}`, "name", "x");
    }
    expect((await parking.acquire(stack, "q1", 10_000)).acquired).toBe(true);
    expect(await parking.acquire(stack, "q2", 10_000)).toEqual({ acquired: false, position: 1 });
    expect(await parking.acquire(stack, "q3", 10_000)).toEqual({ acquired: false, position: 2 });
    await redis.hset(`${prefix}:${JOBS_QUEUE}:q2`, "finishedOn", String(Date.now()));
    await parking.release(stack, "q1");
    expect(waker.promoted).toEqual(["q2", "q3"]);
    expect(await parking.entries(stack)).toEqual(["q3"]);
  });

  it("parks deeper waiters longer (quadratically with their place), never beyond the cap", () => {
    const parking = new StackLanes(redis, prefix, { safetyPollMs: 30_000, maxParkMs: 3_600_000 });
    expect([0, 1, 2, 3, 10, 11, 1000].map((k) => parking.parkDelayMs(k))).toEqual([30_000, 30_000, 120_000, 270_000, 3_000_000, 3_600_000, 3_600_000]);
  });
});

describe("lanes with a real BullMQ worker", () => {
  it("runs jobs of one stack one after the other in arrival order, while other stacks overlap", async () => {
    const qprefix = uniqueName("lanes-worker");
    const edge = new Redis(TEST_REDIS_URL);
    const workerConn = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = new JobQueue({ connection: edge, prefix: qprefix });
    const workerLanes = new StackLanes(edge, qprefix);
    const spans: { id: string; stack: string; start: number; end: number }[] = [];

    const op = (stack: string, n: number): StackOperationJob =>
      stackOperationJob({ trigger: { type: "schedule", name: "test" }, stack, operation: "up", program: "test", args: { n } });

    const worker = new Worker(
      JOBS_QUEUE,
      async (job: Job, token?: string) => {
        const id = job.id ?? "";
        const data = job.data as { stack: string };
        if (await workerLanes.isSuperseded(id)) return { superseded: true };
        if (!(await workerLanes.tryAcquire(data.stack, id, 10_000))) {
          await job.moveToDelayed(Date.now() + 30, token);
          throw new DelayedError();
        }
        try {
          const start = Date.now();
          await new Promise((r) => setTimeout(r, 150));
          spans.push({ id, stack: data.stack, start, end: Date.now() });
          return { ok: true };
        } finally {
          await workerLanes.release(data.stack, id);
        }
      },
      { connection: workerConn, prefix: qprefix, concurrency: 6 },
    );

    try {
      const a: string[] = [];
      for (let i = 0; i < 4; i++) a.push((await enqueueStackOperation(queue, op("tenant-aaa", i))).jobId);
      const b = (await enqueueStackOperation(queue, op("tenant-bbb", 0))).jobId;
      const c = (await enqueueStackOperation(queue, op("tenant-ccc", 0))).jobId;

      const deadline = Date.now() + 20_000;
      while (spans.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(spans).toHaveLength(6);

      const aSpans = a.map((id) => spans.find((s) => s.id === id)!);
      for (let i = 1; i < aSpans.length; i++) {
        // Arrival order, and never two at once.
        expect(aSpans[i]!.start).toBeGreaterThanOrEqual(aSpans[i - 1]!.end);
      }
      const bSpan = spans.find((s) => s.id === b)!;
      const cSpan = spans.find((s) => s.id === c)!;
      // Other stacks ran while stack A was still busy.
      expect(bSpan.start).toBeLessThan(aSpans[3]!.start);
      expect(cSpan.start).toBeLessThan(aSpans[3]!.start);
      expect(bSpan.start).toBeLessThan(cSpan.end);
      expect(await workerLanes.entries("tenant-aaa")).toEqual([]);
      for (const id of [...a, b, c]) expect((await queue.getJobView(id))?.state).toBe("succeeded");
    } finally {
      await worker.close();
      await queue.close();
      await deleteKeys(qprefix);
      edge.disconnect();
      workerConn.disconnect();
    }
  });
});
