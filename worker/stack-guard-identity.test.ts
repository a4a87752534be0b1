// Which locks a dead worker's owner record lets another worker clear (real Redis, real lock files):
// only the lock its own Pulumi processes wrote (their pids on their host, within its lifetime), never
// an operator's `pulumi up` that came after it; and a worker whose pid looks gone is forgotten at
// once only by a worker in the same pid space (boot id and pid namespace), not by one that merely
// shares its host name.
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StackLockedError } from "../core/errors.ts";
import { until } from "../test/support/lock-fixtures.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { RedisStackGuard } from "./stack-guard.ts";
import { lockStoreFor } from "./stack-locks.ts";
import { newWorkerIdentity, OWNER_RECORD_TTL_S, stackOwnerKey, WorkerPresence, workerKey } from "./worker-identity.ts";

const prefix = uniqueName("guard-id");
const dir = mkdtempSync(path.join(tmpdir(), "stackrail-guard-id-"));
const backendUrl = `file://${path.join(dir, "state")}`;
const project = "p";
let redis: Redis;
let presence: WorkerPresence;
let guard: RedisStackGuard;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  presence = new WorkerPresence(redis, prefix, newWorkerIdentity({ host: "host-b" }));
  await presence.start();
  guard = new RedisStackGuard(redis, presence, lockStoreFor(backendUrl));
});

afterAll(async () => {
  await presence.stop();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

const startedAt = Date.now() - 60_000;
/** What a worker on host-a left when it died: its operation's Pulumi processes ran on node-a as 4343 (the child) and 4344 (the CLI). */
const deadRecord = {
  workerId: "dead0000dead0000",
  host: "host-a",
  workerPid: 4242,
  jobId: "job-of-the-dead",
  childPid: 4343,
  childHost: "node-a",
  enginePids: [4344, 4345],
  startedAt,
};

async function deadOwner(stack: string, lastBeatAgoMs: number): Promise<void> {
  await redis.set(stackOwnerKey(prefix, project, stack), JSON.stringify(deadRecord), "PX", OWNER_RECORD_TTL_S * 1000 - lastBeatAgoMs);
}

function lockFile(stack: string, lock: Record<string, unknown>): string {
  const d = path.join(dir, "state", ".pulumi", "locks", "organization", project, stack);
  mkdirSync(d, { recursive: true });
  const file = path.join(d, `${randomUUID()}.json`);
  writeFileSync(file, JSON.stringify({ username: "someone", ...lock }));
  return file;
}

const claim = (stack: string, progress: string[] = []) => guard.claim({ projectName: project, stack }, { jobId: "job-now", progress: (l) => progress.push(l) });

describe("a dead worker's owner record clears only the lock its own operation wrote", () => {
  const others: [string, Record<string, unknown>, RegExp][] = [
    ["an operator's CLI on a laptop", { pid: 777, hostname: "laptop.example", timestamp: new Date().toISOString() }, /process 777 on laptop\.example/],
    ["the child's pid on another host", { pid: 4343, hostname: "node-c", timestamp: new Date(startedAt + 5_000).toISOString() }, /process 4343 on node-c/],
    ["another pid on the owner's host", { pid: 999, hostname: "node-a", timestamp: new Date(startedAt + 5_000).toISOString() }, /process 999 on node-a/],
    ["the owner's CLI pid without a timestamp", { pid: 4344, hostname: "node-a" }, /process 4344 on node-a/],
    [
      "the owner's CLI pid written before its operation",
      { pid: 4344, hostname: "node-a", timestamp: new Date(startedAt - 600_000).toISOString() },
      /process 4344 on node-a/,
    ],
    // The worker last beat 10 minutes ago; the lock is 10 s old: a later process that got the same pid.
    [
      "the owner's CLI pid written after its worker was gone",
      { pid: 4344, hostname: "node-a", timestamp: new Date(Date.now() - 10_000).toISOString() },
      /process 4344 on node-a/,
    ],
  ];
  for (const [what, lock, holder] of others) {
    it(`keeps ${what}: the job waits naming the holder`, async () => {
      const stack = `s-${randomUUID().slice(0, 8)}`;
      await deadOwner(stack, 600_000);
      const file = lockFile(stack, lock);
      const progress: string[] = [];
      const attempt = claim(stack, progress);
      await expect(attempt).rejects.toBeInstanceOf(StackLockedError);
      await expect(attempt).rejects.toThrow(holder);
      expect(existsSync(file)).toBe(true);
      expect(progress.filter((l) => l.startsWith("cleared"))).toEqual([]);
      // The dead owner's record is still there for the next look.
      expect(JSON.parse((await redis.get(stackOwnerKey(prefix, project, stack))) ?? "{}")).toMatchObject({ workerId: deadRecord.workerId });
    });
  }

  it("clears the lock of the dead owner's own Pulumi process, and then one left beside an operator's once that goes", async () => {
    const stack = `s-${randomUUID().slice(0, 8)}`;
    // Died 20 s into its operation, 40 s ago.
    await deadOwner(stack, 40_000);
    const own = lockFile(stack, { pid: 4344, hostname: "node-a", timestamp: new Date(startedAt + 5_000).toISOString() });
    const operator = lockFile(stack, { pid: 777, hostname: "laptop.example", timestamp: new Date().toISOString() });
    await expect(claim(stack)).rejects.toThrow(/process 777 on laptop\.example/);
    expect(existsSync(own)).toBe(true);
    rmSync(operator);

    const progress: string[] = [];
    const c = await claim(stack, progress);
    await c.release();
    expect(existsSync(own)).toBe(false);
    expect(progress).toEqual([
      `cleared a stale lock left by worker ${deadRecord.workerId} on host-a (job job-of-the-dead, Pulumi process 4344 on node-a): its heartbeat is gone`,
    ]);
  });

  it("records the OS host name and the pids of the child's processes while an operation runs", async () => {
    const stack = `s-${randomUUID().slice(0, 8)}`;
    const c = await claim(stack);
    const child = spawn("sh", ["-c", "sleep 60 & wait"], { stdio: "ignore" });
    try {
      c.started(child.pid);
      const record = async (): Promise<{ childPid?: number; childHost?: string; enginePids?: number[] }> =>
        JSON.parse((await redis.get(stackOwnerKey(prefix, project, stack))) ?? "{}") as { childPid?: number; childHost?: string; enginePids?: number[] };
      await until("the child's sleep in the owner record", async () => ((await record()).enginePids ?? []).length > 0, 10_000);
      const r = await record();
      expect(r).toMatchObject({ childPid: child.pid, childHost: hostname() });
      const sleeper = r.enginePids?.[0] as number;
      expect(spawnSync("ps", ["-o", "comm=", "-p", String(sleeper)], { encoding: "utf8" }).stdout.trim()).toBe("sleep");
      await c.release();
      expect(await redis.get(stackOwnerKey(prefix, project, stack))).toBeNull();
      process.kill(sleeper, "SIGKILL");
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("a worker whose pid looks gone", () => {
  /** A pid that was just used and is gone. */
  function deadPid(): number {
    const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
    return Number(r.stdout.trim());
  }

  async function ghost(stack: string, pidNs: number | undefined): Promise<string> {
    const id = randomUUID().replace(/-/g, "").slice(0, 16);
    const me = presence.identity;
    const identity = { id, host: me.host, pid: deadPid(), startedAt: Date.now(), bootId: me.bootId, ...(pidNs !== undefined ? { pidNs } : {}) };
    await redis.set(workerKey(prefix, id), JSON.stringify(identity), "PX", 60_000);
    await redis.sadd(`${workerKey(prefix, id)}:stacks`, `${project}/${stack}`);
    await redis.set(
      stackOwnerKey(prefix, project, stack),
      JSON.stringify({ workerId: id, host: me.host, workerPid: identity.pid, jobId: "job-of-the-ghost", startedAt: Date.now() }),
      "EX",
      3600,
    );
    return id;
  }

  it("in another pid namespace under the same host name is left to its heartbeat's expiry", async () => {
    expect(presence.identity.bootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(presence.identity.pidNs).toBeGreaterThan(0);
    const stack = `s-${randomUUID().slice(0, 8)}`;
    const id = await ghost(stack, (presence.identity.pidNs as number) + 1);
    await expect(claim(stack)).rejects.toThrow(new RegExp(`locked by worker ${id} on host-b`));
    expect(await redis.exists(workerKey(prefix, id))).toBe(1);
  });

  it("with an identity that does not say its pid space is left to its heartbeat's expiry", async () => {
    const stack = `s-${randomUUID().slice(0, 8)}`;
    const id = await ghost(stack, undefined);
    await expect(claim(stack)).rejects.toBeInstanceOf(StackLockedError);
    expect(await redis.exists(workerKey(prefix, id))).toBe(1);
  });

  it("in this pid space is forgotten at once and its stack claimed", async () => {
    const stack = `s-${randomUUID().slice(0, 8)}`;
    const id = await ghost(stack, presence.identity.pidNs);
    const c = await claim(stack);
    await c.release();
    expect(await redis.exists(workerKey(prefix, id))).toBe(0);
  });
});
