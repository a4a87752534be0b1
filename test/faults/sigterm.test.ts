// SIGTERM of the worker at each step of a provision: the process finishes the job or hands it
// back within STACKRAIL_SHUTDOWN_GRACE_MS (and exits 0), the job completes (on this worker or
// another), and the GitOps history holds whole commits only: the tenant's files together, once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanCase } from "../support/fault-expect.ts";
import { FINAL_STATES, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, progressStep, pushStep, workerRunning, type StepPoint } from "../support/fault-steps.ts";

const GRACE_MS = 5000;
/** Closing connections and the process's own exit, beyond the grace period. */
const EXIT_MARGIN_MS = 5000;
let inst: FaultInstallation;

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "term", env: { STACKRAIL_SHUTDOWN_GRACE_MS: String(GRACE_MS) } });
  await ensureWorkers(inst, 2);
});

afterAll(async () => {
  await inst?.close();
});

const steps: StepPoint[] = [
  progressStep("before-up", (lines) => lines.some((l) => l.startsWith("stack up ")) && !lines.some((l) => l.startsWith("create "))),
  progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))),
  pushStep("before-commit", "pre"),
  pushStep("after-commit-before-record", "post"),
];

describe("SIGTERM of the worker during a provision", () => {
  steps.forEach((step, i) => {
    it(`${step.name}: exits within the grace period, the job completes, whole commits only`, async () => {
      await ensureWorkers(inst, 2);
      const id = inst.tenantId(`s${i}`);
      const jobId = await inst.provision(id);
      const reached = await step.reach(inst, jobId);
      const worker = workerRunning(inst, jobId);
      worker.signal("SIGTERM");
      const termAt = Date.now();
      // A held push is a slow remote: it answers a second later, well within the grace period.
      setTimeout(() => void reached.release(), 1000);
      const exit = await worker.exited;
      const exitMs = exit.at - termAt;
      expect(exit.code, `exit status (signal ${exit.signal})`).toBe(0);
      // Soft: the rest of the case (the job's fate, the commits) is checked even when the exit is late.
      expect.soft(exitMs, "the worker exits within the grace period").toBeLessThanOrEqual(GRACE_MS + EXIT_MARGIN_MS);

      await ensureWorkers(inst, 2);
      const view = await inst.waitForFinal(jobId);
      expect(view.state, String(view.error)).toBe("succeeded");
      expect(FINAL_STATES.has(view.state)).toBe(true);
      const takeoverMs = view.startedAt !== reached.view.startedAt && view.startedAt !== null ? Date.parse(view.startedAt) - termAt : null;

      // Whole commits: the job's one commit carries the tenant's three files together.
      const mine = inst.commits().filter((c) => c.jobId === jobId);
      expect(mine).toHaveLength(1);
      expect(mine[0]?.files.filter((f) => f.startsWith(`tenants/${id}/`)).sort()).toEqual([
        `tenants/${id}/application.yaml`,
        `tenants/${id}/appproject.yaml`,
        `tenants/${id}/tenant.yaml`,
      ]);
      expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
      process.stdout.write(`faults-detail: sigterm-${step.name} exit_ms=${exitMs} handed_back=${takeoverMs !== null}\n`);
      await expectCleanCase(inst, `sigterm-${step.name}`, [jobId], takeoverMs);
    });
  });
});
