// Issue 12, finding 4: "Stale-lock recovery works only for the file backend and the same
// hostname." Two worker processes that say they run on different machines (host-a, host-b): the
// first is SIGKILLed in the middle of an `up` that hangs inside a provider, and its Pulumi child,
// left on its own, is killed before the engine could release the lock. The second worker takes
// the job over, waits while the dead worker's heartbeat may still be alive, then clears the lock
// because its recorded owner's identity is provably dead (not by comparing host names or pids),
// and completes the job. Prints the time from the worker's death to the takeover.
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../test/support/harness.ts";
import { dropTenantLeftovers } from "../test/support/cleanup.ts";
import { acceptedJob, privateRedis, processAlive, startWorkerOnHost, until, type WorkerProcess } from "../test/support/lock-fixtures.ts";
import { descendants, killTree } from "./process-tree.ts";

let h: Harness;
let cache: Awaited<ReturnType<typeof privateRedis>>;
const workers: WorkerProcess[] = [];
const orphans: number[] = [];
const scratch = mkdtempSync(path.join(tmpdir(), "stackrail-identity-"));
const id = `ident-${Math.random().toString(36).slice(2, 7)}`;

beforeAll(async () => {
  // A dead worker's job is handed over after 10 s (BullMQ's lock), as the crash-safety test does.
  h = await startHarness({ role: "api", env: { STACKRAIL_JOB_LOCK_MS: "10000", STACKRAIL_STALLED_INTERVAL_MS: "1000" } });
  cache = await privateRedis();
});

afterAll(async () => {
  cache?.process.kill("SIGCONT");
  for (const w of workers) if (w.child.pid !== undefined && w.child.exitCode === null) killTree(w.child.pid);
  for (const pid of orphans) killTree(pid);
  cache?.process.kill("SIGKILL");
  await h?.close();
  await dropTenantLeftovers([id]);
  rmSync(scratch, { recursive: true, force: true });
});

const progressOf = async (jobId: string): Promise<string[]> => (await h.service.queue?.getJobView(jobId).catch(() => null))?.progress ?? [];

describe("a stack lock left by a worker on another machine", () => {
  it("is cleared by another worker once the owner's identity is provably dead, and the job completes there", async () => {
    const env = { ...h.env, LOCAL_REDIS_URL: cache.url };
    cache.process.kill("SIGSTOP");
    const a = startWorkerOnHost(scratch, env, "host-a");
    workers.push(a);
    const aId = (await a.waitForLine("worker started")).workerId as string;

    const jobId = await acceptedJob(h, "POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    await until("the up to hang in the cache user's create", async () => (await progressOf(jobId)).some((l) => /^create .*cache-user/.test(l)), 120_000);

    // The second machine's worker is up before the first one dies.
    const b = startWorkerOnHost(scratch, env, "host-b");
    workers.push(b);
    const bId = (await b.waitForLine("worker started")).workerId as string;

    const tree = descendants(a.child.pid as number);
    orphans.push(...tree);
    const killedAt = Date.now();
    a.child.kill("SIGKILL");
    // Its child notices, cannot finish the hung step, and is killed with the engine: the lock stays.
    await until("the dead worker's Pulumi processes to exit", () => tree.every((pid) => !processAlive(pid)), 60_000);
    cache.process.kill("SIGCONT");
    const locks = path.join(fileURLToPath(h.config.pulumiBackendUrl), ".pulumi", "locks", "organization", "stackrail-pool", `tenant-${id}`);
    expect(existsSync(locks) && readdirSync(locks).filter((f) => f.endsWith(".json")).length).toBe(1);

    const job = await h.waitForJob(jobId, 170_000);
    expect(job.state, String(job.error)).toBe("succeeded");

    // Worker B ran it, after waiting on A by name while A's heartbeat could still be alive.
    const redelivered = await b.waitForLine("job started", { jobId }, 1_000);
    // Cleared by the owner's identity, not by comparing the lock's host and pid with this machine's.
    const clearedLines = job.progress.filter((l) => l.startsWith("cleared a stale lock"));
    expect(clearedLines).toHaveLength(1);
    expect(clearedLines[0]).toMatch(/^cleared a stale lock left by worker [0-9a-f]{16} on host-a .*its heartbeat is gone$/);
    expect(aId).toMatch(/^[0-9a-f]{16}$/);
    const waited = job.progress.filter((l) => l.startsWith("waiting:"));
    expect(waited.length).toBeGreaterThan(0);
    expect(waited[0]).toContain(`locked by worker ${aId} on host-a`);
    const cleared = job.progress.filter((l) => l.startsWith("cleared a stale lock"));
    expect(cleared).toHaveLength(1);
    expect(cleared[0]).toContain(`left by worker ${aId} on host-a (job ${jobId}`);
    expect(cleared[0]).toContain("its heartbeat is gone");
    expect(job.progress.some((l) => l.includes("which is gone"))).toBe(false);
    expect(readdirSync(locks).filter((f) => f.endsWith(".json"))).toEqual([]);
    expect((await h.request("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });

    const clearedLogged = b.lines.find((l) => l.msg === "progress" && l.jobId === jobId && String(l.line).startsWith("cleared a stale lock"));
    const takeoverJobMs = Number(redelivered.time) - killedAt;
    const takeoverStackMs = Number(clearedLogged?.time) - killedAt;
    console.log(
      `takeover: worker ${aId} (host-a) SIGKILLed; worker ${bId} (host-b) took its job after ${takeoverJobMs} ms (BullMQ lock 10 s) ` +
        `and cleared its lock and started the engine after ${takeoverStackMs} ms (heartbeat TTL 30 s); the job succeeded after ${Date.now() - killedAt} ms`,
    );
    expect(takeoverStackMs).toBeGreaterThan(0);

    expect((await h.waitForJob(await acceptedJob(h, "DELETE", `/v1/tenants/${id}`), 170_000)).state).toBe("succeeded");
  });
});
