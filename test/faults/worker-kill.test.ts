// SIGKILL of the worker (and everything under it, as when its container is killed) at each step of
// a tenant's provision, move and deprovision: another worker takes the job over and completes it
// (or, for a move before its cut-over, rolls it back). Each case ends with the tenant as the API
// says, one commit per job at most, no lock left, and an orphan audit that finds nothing.
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logicalNames } from "../../core/naming.ts";
import { expectCleanCase } from "../support/fault-expect.ts";
import { startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { afterOperationStep, ensureWorkers, killAtStep, progressStep, pushStep, type StepPoint } from "../support/fault-steps.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";

let inst: FaultInstallation;
let db: mysql.Connection;
const takeovers: number[] = [];

async function databaseExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [name]);
  return rows.length === 1;
}

const ids = ["p1", "p2", "p3", "p4"];

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "kill" });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await ensureWorkers(inst, 2);
});

afterAll(async () => {
  if (takeovers.length > 0) process.stdout.write(`faults-detail: worker-kill takeover_ms max=${Math.max(...takeovers)} all=${takeovers.join(",")}\n`);
  await db?.end();
  await inst?.close();
});

const provisionSteps: StepPoint[] = [
  progressStep("before-up", (lines) => lines.some((l) => l.startsWith("stack up ")) && !lines.some((l) => l.startsWith("create "))),
  progressStep("during-up", (lines) => lines.some((l) => l.startsWith("create "))),
  pushStep("after-up-before-commit", "pre"),
  pushStep("after-commit-before-record", "post"),
];

describe("SIGKILL of the worker during a provision", () => {
  provisionSteps.forEach((step, i) => {
    it(`${step.name}: another worker completes the provision`, async () => {
      const id = inst.tenantId(ids[i] as string);
      const jobId = await inst.provision(id);
      const out = await killAtStep(inst, jobId, step);
      if (out.takeoverMs !== null) takeovers.push(out.takeoverMs);
      const tenant = await inst.api("GET", `/v1/tenants/${id}`);
      expect(out.final.state, `${out.final.error} | record: ${JSON.stringify(tenant.body)} | progress: ${out.final.progress.slice(-12).join(" | ")}`).toBe(
        "succeeded",
      );
      expect(out.takeoverMs, "another worker took the job over").not.toBeNull();
      expect(tenant.body).toMatchObject({ id, state: "active", tier: "pool" });
      expect(await databaseExists(logicalNames("tenant", id).database)).toBe(true);
      // One whole commit: the tenant's three files together, once.
      const mine = inst.commits().filter((c) => c.jobId === jobId);
      expect(mine).toHaveLength(1);
      expect(mine[0]?.files.filter((f) => f.startsWith(`tenants/${id}/`)).sort()).toEqual([
        `tenants/${id}/application.yaml`,
        `tenants/${id}/appproject.yaml`,
        `tenants/${id}/tenant.yaml`,
      ]);
      await expectCleanCase(inst, `provision-kill-${step.name}`, [jobId], out.takeoverMs);
    });
  });
});

const moveSteps: StepPoint[] = [
  progressStep("target-up", (lines) => lines.some((l) => l.startsWith("1/6")) && lines.some((l) => l.startsWith("create "))),
  progressStep("freeze-source", (lines) => lines.some((l) => l.startsWith("2/6"))),
  pushStep("before-cut-over-commit", "pre"),
  pushStep("after-cut-over-commit", "post"),
];

describe("SIGKILL of the worker during a move to silo", () => {
  moveSteps.forEach((step, i) => {
    it(`${step.name}: the move completes or is rolled back, never half-done`, async () => {
      const id = inst.tenantId(ids[i] as string);
      const start = await inst.api("GET", `/v1/tenants/${id}`);
      expect(start.body, "the tenant this case moves (provisioned above)").toMatchObject({ state: "active", tier: "pool" });
      const res = await inst.api("POST", `/v1/tenants/${id}/move`, { tier: "silo" });
      expect(res.status).toBe(202);
      const jobId = res.body.jobId as string;
      const out = await killAtStep(inst, jobId, step);
      if (out.takeoverMs !== null) takeovers.push(out.takeoverMs);
      expect(out.takeoverMs, "another worker took the job over").not.toBeNull();
      const tenant = (await inst.api("GET", `/v1/tenants/${id}`)).body as { state: string; tier: string };
      expect(tenant.state).toBe("active");
      const pool = logicalNames("tenant", id).database;
      const silo = logicalNames("silo", id).database;
      if (out.final.state === "succeeded") {
        expect(tenant.tier).toBe("silo");
        expect(await databaseExists(silo)).toBe(true);
        expect(await databaseExists(pool), "the source is removed (rollback window 0)").toBe(false);
        expect(inst.remote.show(`tenants/${id}/tenant.yaml`)).toContain("tier: silo");
      } else {
        // Before the cut-over a failure rolls back: the tenant stays where it was, whole.
        expect(out.final.error ?? "").toMatch(/rolled back/);
        expect(tenant.tier).toBe("pool");
        expect(await databaseExists(pool)).toBe(true);
        expect(await databaseExists(silo)).toBe(false);
        expect(inst.remote.show(`tenants/${id}/tenant.yaml`)).toContain("tier: pool");
      }
      expect(inst.commits().filter((c) => c.jobId === jobId).length).toBeLessThanOrEqual(1);
      await expectCleanCase(inst, `move-kill-${step.name}`, [jobId], out.takeoverMs);
    });
  });
});

function deprovisionSteps(idOf: () => string): StepPoint[] {
  return [
    pushStep("before-manifest-commit", "pre"),
    pushStep("after-manifest-commit", "post"),
    progressStep("during-destroy", (lines) => lines.some((l) => l.startsWith("delete "))),
    afterOperationStep(
      "after-destroy-before-record",
      (lines) => lines.some((l) => l.startsWith("delete ")),
      async () => {
        const id = idOf();
        return !(await databaseExists(logicalNames("tenant", id).database)) && !(await databaseExists(logicalNames("silo", id).database));
      },
    ),
  ];
}

describe("SIGKILL of the worker during a deprovision", () => {
  let current = "";
  deprovisionSteps(() => current).forEach((step, i) => {
    it(`${step.name}: another worker completes the deprovision`, async () => {
      const id = inst.tenantId(ids[i] as string);
      current = id;
      const res = await inst.api("DELETE", `/v1/tenants/${id}`);
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const jobId = res.body.jobId as string;
      const out = await killAtStep(inst, jobId, step);
      if (out.takeoverMs !== null) takeovers.push(out.takeoverMs);
      expect(out.final.state, `${out.final.error} | progress: ${out.final.progress.slice(-12).join(" | ")}`).toBe("succeeded");
      expect(out.takeoverMs, "another worker took the job over").not.toBeNull();
      expect((await inst.api("GET", `/v1/tenants/${id}`)).status).toBe(404);
      expect(await databaseExists(logicalNames("tenant", id).database)).toBe(false);
      expect(await databaseExists(logicalNames("silo", id).database)).toBe(false);
      expect(inst.remote.show(`tenants/${id}/tenant.yaml`)).toBeNull();
      expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
      await expectCleanCase(inst, `deprovision-kill-${step.name}`, [jobId], out.takeoverMs);
    });
  });
});
