// A worker cut off from the queue's Redis mid-`up` (a network partition: its connections stay
// open, nothing goes through; test/support/fault-proxy.ts between that worker and the private
// redis-server). Its job's lock runs out and another worker takes the job over, so the cut-off
// worker must stop acting: its operation is cancelled the engine's way before the lock runs out
// (its Pulumi processes end), and it commits nothing, records nothing and reports nothing, even
// once the partition heals. The other worker completes the job: one commit, an active tenant, no
// two operations on the stack at once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanCase } from "../support/fault-expect.ts";
import { engineHistory, overlappingUpdates, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { startFaultProxy, type FaultProxy } from "../support/fault-proxy.ts";
import { progressStep } from "../support/fault-steps.ts";
import { waitUntil } from "../support/private-services.ts";
import { operationChildren } from "../support/worker-process.ts";
import { descendants } from "../../worker/process-tree.ts";

const LOCK_MS = 5_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
let inst: FaultInstallation;
let proxy: FaultProxy;

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "part", env: { STACKRAIL_JOB_LOCK_MS: String(LOCK_MS), STACKRAIL_STALLED_INTERVAL_MS: "1000" } });
  proxy = await startFaultProxy({ port: inst.redis.port });
});

afterAll(async () => {
  proxy?.heal();
  await inst?.close();
  await proxy?.close();
});

describe("a worker partitioned from the queue's Redis mid-up", () => {
  it("cancels its operation before its lock runs out, writes nothing after, and another worker completes the job", async () => {
    // Worker A reaches Redis only through the proxy; it is the only worker when the job starts.
    const cut = await inst.startWorker({ REDIS_URL: proxy.url("redis") });
    const id = inst.tenantId("cut");
    const jobId = await inst.provision(id);
    const reached = await progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create ")), 600_000).reach(inst, jobId);
    const children = operationChildren(cut.pid);
    expect(children.length, "worker A's running Pulumi child").toBeGreaterThan(0);
    // The child, the CLI under it, the language host and the providers.
    const engine = [...children, ...children.flatMap((c) => descendants(c))];
    const commitsBefore = inst.commits().filter((c) => c.jobId === jobId).length;

    proxy.sever("blackhole");
    const severedAt = Date.now();
    await inst.startWorker();

    // A notices it cannot keep its lock and cancels: its log says so, and its Pulumi processes end.
    await waitUntil(
      "worker A to give up the job's lock",
      () => cut.logs().some((l) => l.msg === "job lock lost; cancelling its operation, writing nothing more for it" && l.jobId === jobId),
      LOCK_MS * 4,
      100,
    );
    const fencedMs = Date.now() - severedAt;
    await waitUntil("worker A's Pulumi processes to end", () => engine.every((p) => !alive(p)), 60_000, 100);
    const stoppedMs = Date.now() - severedAt;

    // B takes the job over and completes it.
    const again = await inst.watch(jobId, "another worker to take the job over", (v) => v.startedAt !== reached.view.startedAt, 180_000);
    const takeoverMs = Date.parse(again.startedAt ?? "") - severedAt;
    // A had stopped acting before anyone else started the job (both workers' own log times, one clock).
    const fencedAt = cut.logs().find((l) => l.msg === "job lock lost; cancelling its operation, writing nothing more for it" && l.jobId === jobId)?.time;
    const startedElsewhere = (): unknown =>
      inst.workers
        .filter((w) => w !== cut)
        .flatMap((w) => w.logs())
        .find((l) => l.msg === "job started" && l.jobId === jobId)?.time;
    // The line comes after BullMQ's start time the API shows (lane and guards first).
    await waitUntil("the new owner's log to show the job's start", () => startedElsewhere() !== undefined, 120_000, 200);
    const restartedAt = startedElsewhere();
    expect(
      typeof fencedAt === "number" && typeof restartedAt === "number" && fencedAt < restartedAt,
      `A fenced (${String(fencedAt)}) before B started (${String(restartedAt)})`,
    ).toBe(true);
    const view = await inst.waitForFinal(jobId, 300_000);
    expect(view.state, String(view.error)).toBe("succeeded");

    // The partition heals: whatever A had queued finds the job no longer its own.
    proxy.heal();
    await new Promise((r) => setTimeout(r, 3 * LOCK_MS));
    expect(cut.alive(), "the cut-off worker survives the partition").toBe(true);
    expect(commitsBefore, "nothing was committed before the cut").toBe(0);
    expect(
      inst.commits().filter((c) => c.jobId === jobId),
      "one commit for the job, the new owner's",
    ).toHaveLength(1);
    expect((await inst.job(jobId))?.state).toBe("succeeded");
    expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
    expect(overlappingUpdates(engineHistory(inst, "stackrail-pool", `tenant-${id}`)), "operations on the stack never overlapped").toEqual([]);
    expect(
      cut.logs().filter((l) => l.jobId === jobId && (l.msg === "job succeeded" || l.msg === "gitops commit pushed")),
      "A neither committed nor completed the job",
    ).toEqual([]);
    process.stdout.write(`faults-detail: redis-partition fenced_ms=${fencedMs} engine_stopped_ms=${stoppedMs} takeover_ms=${takeoverMs}\n`);
    await expectCleanCase(inst, "redis-partition", [jobId], takeoverMs);
  });
});
