// Faults of the processes under a job: the Pulumi child SIGKILLed mid-`up` (the worker survives,
// the engine under the dead child does not run on, the job runs again), and the worker frozen
// (SIGSTOP) for longer than the job lock, then thawed (SIGCONT): another worker takes the job
// over, and the engine's own timestamps show that no two operations ran on the stack at once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanCase } from "../support/fault-expect.ts";
import { engineHistory, overlappingUpdates, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, progressStep, workerRunning } from "../support/fault-steps.ts";
import { waitUntil } from "../support/private-services.ts";
import { commandLine, operationChildren, processesMatching } from "../support/worker-process.ts";
import { descendants } from "../../worker/process-tree.ts";

let inst: FaultInstallation;
const LOCK_MS = 5000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "stall", env: { STACKRAIL_JOB_LOCK_MS: String(LOCK_MS), STACKRAIL_STALLED_INTERVAL_MS: "1000" } });
});

afterAll(async () => {
  await inst?.close();
});

describe("process faults under a running job", () => {
  it("SIGKILL of the Pulumi child mid-up: the worker lives, nothing runs on, the job runs again and succeeds", async () => {
    await ensureWorkers(inst, 1);
    const id = inst.tenantId("child");
    const jobId = await inst.provision(id);
    await progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))).reach(inst, jobId);
    const worker = workerRunning(inst, jobId);
    const [child] = operationChildren(worker.pid);
    expect(child, "the worker's running Pulumi child").toBeDefined();
    const under = descendants(child as number);
    process.kill(child as number, "SIGKILL");
    const killedAt = Date.now();

    // What ran under the dead child (the CLI, plugins, provider hosts) stops within seconds.
    await waitUntil("the processes under the killed child to end", () => under.every((p) => !alive(p)), 30_000, 100).catch(() => undefined);
    const left = under.filter(alive).map((p) => `${p}: ${commandLine(p).slice(0, 160)}`);
    expect.soft(left, "nothing the killed child started runs on 30 s later").toEqual([]);
    const endedMs = Date.now() - killedAt;
    const view = await inst.waitForFinal(jobId);
    expect(view.state, String(view.error)).toBe("succeeded");
    expect(view.attempts, "the killed attempt counts as a transient failure").toBeGreaterThanOrEqual(1);
    expect(worker.alive(), "the worker survives its child's death").toBe(true);
    expect(processesMatching(`tenant-${id}`), "no engine process of the stack is left").toEqual([]);
    expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ state: "active" });
    process.stdout.write(`faults-detail: pulumi-child-kill processes_under_child_ended_ms=${endedMs}\n`);
    await expectCleanCase(inst, "pulumi-child-kill", [jobId], null);
  });

  for (const scope of ["tree", "worker-only"] as const) {
    it(`SIGSTOP of the ${scope === "tree" ? "worker and its whole tree" : "worker process only"} beyond the lock, then SIGCONT: never two operations on one stack`, async () => {
      await ensureWorkers(inst, 2);
      const id = inst.tenantId(scope === "tree" ? "frz" : "frw");
      const jobId = await inst.provision(id);
      const reached = await progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))).reach(inst, jobId);
      const frozen = workerRunning(inst, jobId);
      const pids = scope === "tree" ? frozen.freezeAll() : [frozen.pid];
      if (scope === "worker-only") frozen.signal("SIGSTOP");
      const frozenAt = Date.now();
      let takeoverMs: number | null;
      try {
        // Another worker takes the job over once the frozen worker's lock has expired.
        const again = await inst.watch(jobId, "another worker to take the job over", (v) => v.startedAt !== reached.view.startedAt, 60_000);
        takeoverMs = Date.parse(again.startedAt ?? "") - frozenAt;
        // Stay frozen a while longer: the other worker meets the stack's lock meanwhile.
        await new Promise((r) => setTimeout(r, 2 * LOCK_MS));
      } finally {
        frozen.thawAll(pids);
      }
      const view = await inst.waitForFinal(jobId);
      expect(view.state, String(view.error)).toBe("succeeded");
      const updates = engineHistory(inst, "stackrail-pool", `tenant-${id}`);
      expect(updates.length, "the engine recorded the operations").toBeGreaterThan(0);
      expect(overlappingUpdates(updates), "operations on the stack never overlapped").toEqual([]);
      expect(
        inst.commits().filter((c) => c.jobId === jobId),
        "the job's manifests committed once",
      ).toHaveLength(1);
      expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ state: "active" });
      await expectCleanCase(inst, `sigstop-${scope}`, [jobId], takeoverMs);
    });
  }
});
