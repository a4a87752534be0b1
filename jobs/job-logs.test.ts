// The job log's write side against a real Redis: engine output arriving in arbitrary chunks is
// stored by whole lines and scrubbed (a secret cut in two by a chunk boundary included), entries
// keep their order, the byte cap ends in one `[truncated]` line, and the keys expire with the job.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REDACTED, SecretScrubber } from "../core/logger.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { JOB_LOG_TTL_SECONDS, jobLogWriter, RedisJobLogStore, renderEntry } from "./job-logs.ts";

const CANARY = `canary-joblog-${Math.random().toString(36).slice(2, 8)}-Secret`;
const prefix = uniqueName("joblogs");
let redis: Redis;
const scrubber = new SecretScrubber();
scrubber.add(CANARY);

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const text = async (store: RedisJobLogStore, jobId: string): Promise<string> => (await store.read(jobId)).map(renderEntry).join("");

describe("job log writer", () => {
  it("scrubs a secret that arrives cut across chunks, and keeps output and progress lines in order", async () => {
    const store = new RedisJobLogStore(redis, prefix);
    const log = jobLogWriter(store, "job-1", { scrubber, flushMs: 20 });
    const line = `password: ${CANARY} (from the provider)\n`;
    // One character at a time: every boundary inside the secret is a chunk boundary once.
    for (const c of `Updating (tenant-x):\n${line}`) log.output(c);
    log.progress(`policy check passed; ${CANARY}`);
    log.output("Resources:\n    + 9 created\n");
    log.output("Duration: 4s");
    await log.flush();
    const stored = await text(store, "job-1");
    expect(stored).toBe(
      `Updating (tenant-x):\npassword: ${REDACTED} (from the provider)\n[stackrail] policy check passed; ${REDACTED}\nResources:\n    + 9 created\nDuration: 4s`,
    );
    const raw = JSON.stringify(await redis.xrange(store.streamKey("job-1"), "-", "+"));
    expect(raw.includes(CANARY)).toBe(false);
    expect(raw.includes(CANARY.slice(0, 20))).toBe(false);
  });

  it("sends a partial line after it sat unchanged for a flush interval (progress dots)", async () => {
    const store = new RedisJobLogStore(redis, prefix);
    const log = jobLogWriter(store, "job-dots", { scrubber, flushMs: 20 });
    log.output("@ updating....");
    const deadline = Date.now() + 5_000;
    while ((await store.read("job-dots")).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(await text(store, "job-dots")).toBe("@ updating....");
    await log.flush();
  });

  it("reads on from a cursor", async () => {
    const store = new RedisJobLogStore(redis, prefix);
    await store.append("job-2", [
      { kind: "output", text: "a\n" },
      { kind: "progress", text: "b" },
      { kind: "output", text: "c\n" },
    ]);
    const [first, ...rest] = await store.read("job-2", { count: 1 });
    expect(first?.text).toBe("a\n");
    expect(rest).toEqual([]);
    expect((await store.read("job-2", { after: first?.id ?? "" })).map((e) => [e.kind, e.text])).toEqual([
      ["progress", "b"],
      ["output", "c\n"],
    ]);
  });

  it("stops storing output at the cap with one [truncated] line, keeps later progress lines, and expires with the job", async () => {
    const store = new RedisJobLogStore(redis, prefix, { maxBytes: 1024 });
    const log = jobLogWriter(store, "job-3", { scrubber, flushMs: 5 });
    for (let i = 0; i < 200; i++) log.output(`line ${i} of the engine's output\n`);
    await log.flush();
    log.progress("job succeeded");
    await log.flush();
    const entries = await store.read("job-3");
    const output = entries.filter((e) => e.kind === "output").reduce((n, e) => n + Buffer.byteLength(e.text), 0);
    expect(output).toBeLessThanOrEqual(1024);
    expect(output).toBeGreaterThan(0);
    expect(entries.filter((e) => e.kind === "truncated")).toHaveLength(1);
    expect(entries.filter((e) => e.kind === "truncated")[0]?.text).toMatch(/^\[truncated\] /);
    expect(entries.at(-1)).toMatchObject({ kind: "progress", text: "job succeeded" });
    expect(await text(store, "job-3")).not.toContain("line 199");
    for (const key of await redis.keys(`${prefix}:joblog*:job-3`)) {
      const ttl = await redis.ttl(key);
      expect(ttl, key).toBeGreaterThan(JOB_LOG_TTL_SECONDS - 60);
      expect(ttl, key).toBeLessThanOrEqual(JOB_LOG_TTL_SECONDS);
    }
    expect(JOB_LOG_TTL_SECONDS).toBe(7 * 24 * 3600);
  });
});
