// What every fault case ends with, asserted the same way in every file of test/faults/.
import { expect } from "vitest";
import type { FaultInstallation, SettleReport } from "./fault-installation.ts";

/**
 * Every job the case started is terminal or waits for a stated reason, no stack lock is left, no
 * job committed twice, nothing of the installation runs outside a live worker, and the orphan
 * audit finds nothing of this installation.
 */
export function expectClean(report: SettleReport): void {
  expect(report.unsettled, "every job terminal or waiting for a stated reason").toEqual([]);
  expect(report.locks, "no stack lock left").toEqual([]);
  expect(report.duplicated, "one commit per job at most").toBe(0);
  expect(report.strays, "no process left running outside a live worker").toEqual([]);
  expect(report.audit.status, "GET /v1/audit/orphans answers").toBe(200);
  expect(report.audit.findings, "the orphan audit finds nothing of this installation").toEqual([]);
}

/** settle() (which prints the case's summary line), then expectClean(). */
export async function expectCleanCase(
  inst: FaultInstallation,
  caseName: string,
  jobIds: Iterable<string>,
  takeoverMs: number | null,
  options: { timeoutMs?: number } = {},
): Promise<SettleReport> {
  const report = await inst.settle(caseName, jobIds, { takeoverMs, ...options });
  expectClean(report);
  return report;
}
