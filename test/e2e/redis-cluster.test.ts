// Issue 14, §3: the whole ingress → worker → lanes path on a real Redis Cluster (three masters,
// started by test/support/redis-cluster.ts). REDIS_URL=redis+cluster://…; the queue prefix gets
// its hash tag, so every key of the installation lives in one slot on one master, and every
// script and transaction stays local to it. Tenant caches stay on the standalone test server.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TransientError } from "../../core/errors.ts";
import { connectRedis, scanAll } from "../../core/redis.ts";
import { JOB_OPTIONS } from "../../jobs/queue.ts";
import { StackLanes } from "../../jobs/stack-lanes.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { startRedisCluster, type RedisClusterFixture } from "../support/redis-cluster.ts";
import { TEST_REDIS_URL, uniqueName } from "../support/services.ts";
import { STACK_OPERATION, enqueueStackOperation, stackOperationJob, stackOperationKindWith, stackOperationSchema } from "../support/stack-operation.ts";
import type { Redis } from "ioredis";

let cluster: RedisClusterFixture;
let h: Harness;

/** What the test kind's runs did, by job name (args.name): start and end times. */
const runs = new Map<string, { start: number; end?: number }>();
/** Jobs whose run waits until the test opens their gate. */
const gates = new Map<string, () => void>();
const gated = new Map<string, Promise<void>>();
function gate(name: string): () => void {
  let open: () => void = () => undefined;
  gated.set(name, new Promise<void>((r) => (open = r)));
  gates.set(name, open);
  return open;
}

/** The two jobs of the lane test, for the list and log test after it. */
const laneJobs: string[] = [];
/** Runs of the job named `dl` that fail (a transient failure) before one succeeds. */
let deadLetterFailures = 3;

const testKind = stackOperationKindWith(async (ctx) => {
  const name = String(ctx.data.args.name ?? "");
  if (name === "dl" && deadLetterFailures-- > 0) throw new TransientError("the test's dependency is away");
  runs.set(name, { start: Date.now() });
  await ctx.progress(`cluster step ${name} started`);
  await gated.get(name);
  await ctx.progress(`cluster step ${name} done`);
  const run = runs.get(name);
  if (run) run.end = Date.now();
  return { name };
});

beforeAll(async () => {
  cluster = await startRedisCluster();
  h = await startHarness({
    env: {
      REDIS_URL: cluster.url,
      // Tenant caches need a standalone server; the queue is on the cluster.
      LOCAL_REDIS_URL: `${TEST_REDIS_URL.replace(/\/\d*$/, "")}/1`,
      STACKRAIL_QUEUE_PREFIX: uniqueName("cluster"),
      STACKRAIL_APPROVAL_WAVES: "none",
    },
    extraKinds: () => ({ [STACK_OPERATION]: testKind }),
  });
}, 120_000);

afterAll(async () => {
  for (const open of gates.values()) open();
  await h?.close();
  await cluster?.stop();
}, 60_000);

function push(after: string): Record<string, unknown> {
  return {
    ref: "refs/heads/main",
    before: "0".repeat(39) + "1",
    after,
    deleted: false,
    repository: { id: 7, name: "shop", full_name: "acme/shop", default_branch: "main", owner: { login: "acme", name: "acme" } },
    sender: { login: "octocat" },
    commits: [{ id: after, added: [], removed: [], modified: ["src/app.ts"] }],
  };
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("Stackrail on a Redis Cluster (issue 14, §3)", () => {
  it("hash-tags the queue prefix", () => {
    expect(h.config.queuePrefix).toMatch(/^\{t-cluster-[0-9a-f]{8}\}$/);
  });

  it("a signed delivery through the edge is enqueued once, run by the worker and read back through the job API", async () => {
    const deliveryId = crypto.randomUUID();
    const first = await h.deliver("push", push("c".repeat(40)), deliveryId);
    expect(first.status).toBe(202);
    expect(first.body.jobs).toHaveLength(1);
    const jobId = String(first.body.jobs[0]);
    // A redelivery answers the same job ids and enqueues nothing.
    const again = await h.deliver("push", push("c".repeat(40)), deliveryId);
    expect(again.status).toBe(202);
    expect(again.body.jobs).toEqual(first.body.jobs);

    const view = await h.waitForJob(jobId, 120_000);
    expect(view).toMatchObject({ id: jobId, kind: "release.rollout", state: "succeeded" });
    const res = await h.request("GET", `/v1/jobs/${jobId}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: jobId, kind: "release.rollout", state: "succeeded" });
  }, 180_000);

  it("two jobs on one stack run in order, never overlap, and the parked one is woken on release", async () => {
    const queue = h.service.queue;
    if (!queue) throw new Error("no queue");
    const stack = `tenant-${uniqueName("lane").slice(2)}`;
    const openA = gate("a");
    gate("b")(); // b runs through once it may start
    const a = await enqueueStackOperation(queue, stackOperationJob({ stack, operation: "up", program: "noop", args: { name: "a" } }));
    const b = await enqueueStackOperation(queue, stackOperationJob({ stack, operation: "up", program: "noop", args: { name: "b" } }));
    await waitUntil("job a started", () => Promise.resolve(runs.has("a")));
    // b waits behind a without running: parked (a delayed BullMQ job), never started.
    await waitUntil("job b parked", async () => (await queue.queue.getJobState(b.jobId)) === "delayed");
    expect(runs.has("b")).toBe(false);
    expect(await queue.lanes.entries(stack)).toEqual([a.jobId, b.jobId]);

    openA();
    const released = Date.now();
    const [va, vb] = await Promise.all([h.waitForJob(a.jobId, 60_000), h.waitForJob(b.jobId, 60_000)]);
    expect(va.state).toBe("succeeded");
    expect(vb.state).toBe("succeeded");
    const ra = runs.get("a");
    const rb = runs.get("b");
    expect(ra?.end).toBeDefined();
    expect(rb?.start).toBeGreaterThanOrEqual(ra?.end ?? Infinity);
    // Woken by the release, not by its safety poll (30 s).
    expect((rb?.start ?? Infinity) - released).toBeLessThan(15_000);
    expect(await queue.lanes.entries(stack)).toEqual([]);
    laneJobs.push(a.jobId, b.jobId);
  }, 120_000);

  it("the job list (job index) and a job's log read back through the API", async () => {
    const [a, b] = laneJobs;
    if (!a || !b) throw new Error("the lane test did not run");
    // One try each (the harness retries a 503 for a while): the list and logs read on the
    // operations API's own connection, which must be a cluster connection too.
    const get = async (url: string): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${h.service.url ?? ""}${url}`, { headers: { authorization: `Bearer ${h.token}` } });
      const text = await res.text();
      try {
        return { status: res.status, body: JSON.parse(text) };
      } catch {
        return { status: res.status, body: text };
      }
    };
    const list = await get("/v1/jobs?limit=50");
    expect(list.status).toBe(200);
    const listed = (list.body.jobs as { id: string }[]).map((j) => j.id);
    expect(listed).toEqual(expect.arrayContaining([a, b]));
    const logs = await get(`/v1/jobs/${a}/logs`);
    expect(logs.status).toBe(200);
    expect(String(logs.body)).toContain("cluster step a done");
  });

  it("a newer job supersedes the older waiting ones of its kind (the script is given every record it touches)", async () => {
    const redis = connectRedis(cluster.url, { maxRetriesPerRequest: 2 });
    const lanes = new StackLanes(redis, h.config.queuePrefix);
    try {
      const stack = `preview-shop-pr-${Math.floor(Math.random() * 100000)}`;
      for (const id of ["s1", "s2", "s3", "s4"]) await lanes.register(stack, `${stack}-${id}`, { kind: "preview.up" });
      // s1 holds the lane: it is not superseded.
      expect(await lanes.tryAcquire(stack, `${stack}-s1`, 60_000)).toBe(true);
      expect(await lanes.supersedeOlder(stack, `${stack}-s4`, "preview.up")).toEqual([`${stack}-s2`, `${stack}-s3`]);
      expect(await lanes.entries(stack)).toEqual([`${stack}-s1`, `${stack}-s4`]);
      expect(await lanes.isSuperseded(`${stack}-s2`)).toBe(`${stack}-s4`);
      await lanes.release(stack, `${stack}-s1`);
      await lanes.release(stack, `${stack}-s4`);
    } finally {
      await lanes.close();
      redis.disconnect();
    }
  });

  it("a job whose transient failures use up its attempts is dead-lettered, listed and sent back to run", async () => {
    const queue = h.service.queue;
    if (!queue) throw new Error("no queue");
    const stack = `tenant-${uniqueName("dl").slice(2)}`;
    const data = stackOperationSchema.parse(stackOperationJob({ stack, operation: "up", program: "noop", args: { name: "dl" } }));
    const jobId = crypto.randomUUID();
    await queue.lanes.register(stack, jobId, { kind: data.kind });
    // The production attempts (3), with a short backoff.
    await queue.queue.add(data.kind, data, { ...JOB_OPTIONS, backoff: { type: "fixed", delay: 50 }, jobId });
    expect((await h.waitForJob(jobId, 60_000)).state).toBe("failed");
    const dead = await h.request("GET", "/v1/dead-letters");
    expect(dead.status).toBe(200);
    expect((dead.body.jobs as { id: string }[]).map((j) => j.id)).toContain(jobId);

    const retried = await h.request("POST", `/v1/dead-letters/${jobId}/retry`);
    expect(retried.status).toBe(202);
    await waitUntil("the retried job succeeded", async () => (await queue.getJobView(jobId))?.state === "succeeded");
    expect(((await h.request("GET", "/v1/dead-letters")).body.jobs as { id: string }[]).map((j) => j.id)).not.toContain(jobId);
  }, 90_000);

  it("scans every master of the cluster for keys (a cluster connection's own SCAN reads one node)", async () => {
    const redis = connectRedis(cluster.url, { maxRetriesPerRequest: 2 });
    try {
      await new Promise<void>((resolve) => (redis.status === "ready" ? resolve() : redis.once("ready", () => resolve())));
      // One key in each master's slots (tags chosen to land on different nodes).
      const written: string[] = [];
      for (let i = 0; written.length < 12 && i < 200; i++) {
        const key = `scan-probe-${uniqueName("k")}:{${i}}`;
        await redis.set(key, "1", "EX", 60);
        written.push(key);
      }
      const found: string[] = [];
      for await (const keys of scanAll(redis, "scan-probe-*", 5)) found.push(...keys);
      expect(found.sort()).toEqual([...written].sort());
      // One DEL per key: keys of different slots cannot share a command on a cluster.
      for (const k of written) await redis.del(k);
    } finally {
      redis.disconnect();
    }
  });

  it("keeps every key of the installation in the prefix's one slot, on one master; the other masters hold nothing", async () => {
    const prefix = h.config.queuePrefix;
    const nodes = cluster.ports.map((p) => ({ port: p, redis: cluster.node(p) }));
    const slot = await nodes[0]?.redis.cluster("KEYSLOT", prefix);
    const byNode = await Promise.all(nodes.map(async (n) => ({ port: n.port, keys: await n.redis.keys("*") })));
    const holders = byNode.filter((n) => n.keys.length > 0);
    expect(holders).toHaveLength(1);
    const keys = holders[0]?.keys ?? [];
    expect(keys.length).toBeGreaterThan(10);
    expect(keys.filter((k) => !k.startsWith(`${prefix}:`))).toEqual([]);
    const owner = nodes.find((n) => n.port === holders[0]?.port)?.redis as Redis;
    const slots = new Set(await Promise.all(keys.map((k) => owner.cluster("KEYSLOT", k))));
    expect([...slots]).toEqual([slot]);
    // That master serves the slot.
    expect(await owner.cluster("COUNTKEYSINSLOT", Number(slot))).toBe(keys.length);
  });
});

describe("Lua scripts declare every key they touch", () => {
  // A key name built inside a script (`ARGV[n] .. id`) is a key the cluster cannot see coming.
  // Every source file with a script on the queue's Redis is checked, found by its `redis.call`.
  const root = path.join(import.meta.dirname, "../..");
  const files = ["core", "jobs", "webhooks", "worker"]
    .flatMap((dir) => readdirSync(path.join(root, dir), { recursive: true, encoding: "utf8" }).map((f) => `${dir}/${f}`))
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .filter((f) => readFileSync(path.join(root, f), "utf8").includes("redis.call"))
    .sort();

  it("finds the scripts", () => {
    expect(files).toEqual(expect.arrayContaining(["jobs/stack-lanes.ts", "jobs/queue.ts", "webhooks/once.ts", "core/tenant-index.ts"]));
  });

  it.each(files)("%s builds no key name inside a script", (file) => {
    const source = readFileSync(path.join(root, file), "utf8");
    const scripts = [...source.matchAll(/`([^`]*redis\.call[^`]*)`/g)].map((m) => m[1] ?? "");
    expect(scripts.length).toBeGreaterThan(0);
    for (const script of scripts) {
      // A concatenation inside redis.call(…), or a local built from a prefix argument.
      expect(script).not.toMatch(/redis\.call\([^)]*\.\./);
      expect(script).not.toMatch(/local \w+ = (ARGV|KEYS)\[\d+\] \.\./);
    }
  });
});
