// Issue 12, finding 3: "The whole service dies when a running job's record disappears." A worker
// process runs a tenant provision whose `up` hangs inside a provider (the tenant cache server is
// stopped); the job's BullMQ record is deleted under it (as a Redis restart that lost data, or a
// removal from the dashboard, would), then the provider answers again. The process must stay up,
// end the job as lost (in its log: there is no record to put it in), leave the stack unlocked, and
// run the next job on that stack.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOBS_QUEUE } from "../core/jobs.ts";
import { startHarness, type Harness } from "../test/support/harness.ts";
import { dropTenantLeftovers } from "../test/support/cleanup.ts";
import { acceptedJob, privateRedis, startMainWorker, until, type WorkerProcess } from "../test/support/lock-fixtures.ts";
import { TEST_REDIS_URL } from "../test/support/services.ts";
import { killTree } from "./process-tree.ts";

let h: Harness;
let cache: Awaited<ReturnType<typeof privateRedis>>;
let worker: WorkerProcess | undefined;
const id = `lost-${Math.random().toString(36).slice(2, 7)}`;

beforeAll(async () => {
  h = await startHarness({ role: "api" });
  cache = await privateRedis();
});

afterAll(async () => {
  cache?.process.kill("SIGCONT");
  const pid = worker?.child.pid;
  if (pid !== undefined && worker?.child.exitCode === null) killTree(pid);
  cache?.process.kill("SIGKILL");
  await h?.close();
  await dropTenantLeftovers([id]);
});

describe("a running job whose record disappears", () => {
  it("is cancelled as lost without crashing the process, and leaves its stack unlocked and usable", async () => {
    cache.process.kill("SIGSTOP");
    const w = startMainWorker({ ...h.env, LOCAL_REDIS_URL: cache.url, LOG_LEVEL: "info" });
    worker = w;
    await w.waitForLine("worker started");

    const jobId = await acceptedJob(h, "POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    await until(
      "the up to reach the cache user's create (where it hangs)",
      async () => ((await h.service.queue?.getJobView(jobId).catch(() => null))?.progress ?? []).some((l) => /^create .*cache-user/.test(l)),
      120_000,
    );

    // The record goes while the operation runs; then the engine moves again and reports progress.
    const redis = new Redis(TEST_REDIS_URL);
    try {
      expect(await redis.del(`${h.config.queuePrefix}:${JOBS_QUEUE}:${jobId}`)).toBe(1);
    } finally {
      redis.disconnect();
    }
    cache.process.kill("SIGCONT");

    const lost = await w.waitForLine("job lost: its record is gone, its operation was cancelled", { jobId }, 120_000);
    expect(lost.state).toBe("lost");
    expect(w.child.exitCode).toBeNull();
    expect(w.child.signalCode).toBeNull();
    expect(w.find("unhandled promise rejection (the process keeps running)")).toBeUndefined();

    // The engine stopped its own way: no lock is left on the stack.
    const locks = path.join(fileURLToPath(h.config.pulumiBackendUrl), ".pulumi", "locks", "organization", "stackrail-pool", `tenant-${id}`);
    await until("the stack's lock to be released", () => !existsSync(locks) || readdirSync(locks).filter((f) => f.endsWith(".json")).length === 0, 60_000);

    // The same process runs the next job on that stack: the tenant (left "failed") is deprovisioned.
    const next = await h.waitForJob(await acceptedJob(h, "DELETE", `/v1/tenants/${id}`), 170_000);
    expect(next.state, String(next.error)).toBe("succeeded");
    expect(w.child.exitCode).toBeNull();
  });
});
