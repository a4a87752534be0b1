// The queue's Redis restarted in the middle of a tenant's `up` (a private redis-server: the shared
// one on 6379 serves other tests). Without losing data (SHUTDOWN SAVE): the processes live on and
// the job finishes. Losing everything (SHUTDOWN NOSAVE): the processes live on, the lost job's
// operation stops and leaves the stack unlocked, and the same provision asked again completes,
// adopting what the lost one had made.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanCase } from "../support/fault-expect.ts";
import { startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, progressStep, workerRunning } from "../support/fault-steps.ts";
import { waitUntil } from "../support/private-services.ts";
import { processesMatching } from "../support/worker-process.ts";

let inst: FaultInstallation;

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "redis" });
});

afterAll(async () => {
  await inst?.close();
});

// Data loss first: the index of tenants made before it would be gone too (it is rebuilt from the
// GitOps repository when the edge starts), which is not what this case is about.
describe("Redis restarted mid-job", () => {
  it("SHUTDOWN NOSAVE mid-up: nothing crashes, the lost job stops cleanly, asking again completes the tenant", async () => {
    await ensureWorkers(inst, 1);
    const id = inst.tenantId("lost");
    const lostJob = await inst.provision(id);
    await progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))).reach(inst, lostJob);
    const worker = workerRunning(inst, lostJob);
    await inst.redis.restart({ keepData: false, downMs: 1000 });
    const restartedAt = Date.now();

    // The worker survives the loss of its job's record and stops that job's operation.
    await waitUntil("the lost job's engine to stop", () => processesMatching(`tenant-${id}`).length === 0, 90_000, 200);
    const stoppedMs = Date.now() - restartedAt;
    expect(worker.alive(), "the worker process survives").toBe(true);
    expect(inst.locks(), "the stopped operation left the stack unlocked").toEqual([]);
    expect(await inst.job(lostJob), "the job's record went with Redis's data").toBeNull();
    inst.jobIds.delete(lostJob);
    expect(
      inst.commits().filter((c) => c.jobId === lostJob),
      "the lost job committed nothing",
    ).toEqual([]);

    // The edge still answers, and the same request completes the tenant.
    const again = await inst.provision(id);
    const view = await inst.waitForFinal(again);
    expect(view.state, String(view.error)).toBe("succeeded");
    expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
    expect(inst.commits().filter((c) => c.jobId === again)).toHaveLength(1);
    expect(worker.alive()).toBe(true);
    process.stdout.write(`faults-detail: redis-nosave lost_job_stopped_ms=${stoppedMs}\n`);
    await expectCleanCase(inst, "redis-restart-nosave", [again], null);
  });

  it("SHUTDOWN SAVE mid-up, down 2 s: the job finishes, once", async () => {
    await ensureWorkers(inst, 1);
    const id = inst.tenantId("kept");
    const jobId = await inst.provision(id);
    await progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))).reach(inst, jobId);
    const worker = workerRunning(inst, jobId);
    await inst.redis.restart({ keepData: true, downMs: 2000 });
    const view = await inst.waitForFinal(jobId);
    expect(view.state, String(view.error)).toBe("succeeded");
    expect(worker.alive(), "the worker process survives").toBe(true);
    expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
    expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    await expectCleanCase(inst, "redis-restart-save", [jobId], null);
  });
});
