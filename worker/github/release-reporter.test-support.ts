// A release as the rollout reports it, for the reporter's tests and bench/github-calls.ts: a plan of
// N tenants in W waves (every wave after the first waits for approval, the default), and the
// calls the rollout makes at each milestone, in its order.
import { waveEnvironment, type PlanReport, type PlanViolation, type ReleaseReporter, type ReleaseSource, type WaveReport } from "./release-report.ts";

export const REGIONS = ["dev-eu", "eu-west-1", "us-east-1", "eu-central-1", "us-west-2"];

export function releasePlan(options: { jobId: string; tenants: number; waves: number; violations?: number; version?: string; message?: string }): PlanReport {
  const version = options.version ?? "2.4.0";
  const per = Math.ceil(options.tenants / options.waves);
  const waves = Array.from({ length: options.waves }, (_, i) => {
    const n = i + 1;
    // The last wave spans two regions: its environment is `wave-<n>`.
    const regions = n === options.waves && options.waves > 1 ? [REGIONS[n - 1] ?? `r${n}`, "ap-south-1"] : [REGIONS[i] ?? `r${n}`];
    const tenants = Array.from({ length: Math.max(0, Math.min(per, options.tenants - i * per)) }, (_, k) => ({
      tenantId: `t-${n}-${String(k).padStart(3, "0")}`,
      from: k % 10 === 9 ? null : "2.3.1",
      to: version,
      infraChanges: k % 7 === 0 ? 2 : 0,
    }));
    return { wave: n, regions, tenants, needsApproval: n > 1 };
  });
  const violations: PlanViolation[] = Array.from({ length: options.violations ?? 0 }, (_, i) => ({
    tenantId: `t-1-${String(i % per).padStart(3, "0")}`,
    pack: "stackrail-baseline",
    policy: i % 2 === 0 ? "encryption-at-rest" : "no-public-ingress",
    level: i % 3 === 0 ? "mandatory" : "advisory",
    message: options.message ?? `violation ${i}`,
    urn: `urn:pulumi:tenant::stackrail::aws:rds/cluster:Cluster::db-${i}`,
  }));
  return { jobId: options.jobId, version, waves, violations, planUrl: `https://stackrail.example.com/v1/releases/${options.jobId}/plan` };
}

export function waveOf(plan: PlanReport, n: number): WaveReport {
  const w = plan.waves.find((x) => x.wave === n);
  if (!w) throw new Error(`no wave ${n}`);
  return { jobId: plan.jobId, wave: n, regions: w.regions, environment: waveEnvironment(n, w.regions), tenants: w.tenants.length };
}

export type Milestone = { kind: "planned" } | { kind: "awaiting" | "started" | "finished"; wave: number } | { kind: "done" };

/** Every milestone of a successful release, in the rollout's order. */
export function milestones(plan: PlanReport): Milestone[] {
  const out: Milestone[] = [{ kind: "planned" }];
  for (const w of plan.waves) {
    if (w.needsApproval) out.push({ kind: "awaiting", wave: w.wave });
    out.push({ kind: "started", wave: w.wave }, { kind: "finished", wave: w.wave });
  }
  out.push({ kind: "done" });
  return out;
}

export async function report(reporter: ReleaseReporter, source: ReleaseSource, plan: PlanReport, m: Milestone): Promise<void> {
  switch (m.kind) {
    case "planned":
      return reporter.planned(source, plan);
    case "awaiting":
      return reporter.waveAwaitingApproval(source, waveOf(plan, m.wave));
    case "started":
      return reporter.waveStarted(source, waveOf(plan, m.wave));
    case "finished": {
      const w = waveOf(plan, m.wave);
      return reporter.waveFinished(source, { ...w, outcome: "success", summary: `${w.tenants} tenant(s) at ${plan.version}` });
    }
    case "done":
      return reporter.finished(source, { jobId: plan.jobId, outcome: "success", summary: `${plan.version} released to every tenant` });
  }
}
