// tenant.drift: a drift check of one tenant's stack. A refresh preview (nothing written) compares the
// stack's state with the real world; what it would change is drift. The stack and what drifted go
// into the job's result; the drift counter only counts, by tier and region; with `repair` the stack is refreshed and brought back to its desired
// state with an `up`, except for a protected tenant, whose drift is only ever reported, and unless
// the configuration allows repairs (STACKRAIL_DRIFT_REPAIR): a job asking for one is not enough.
import type { Metrics } from "../../core/metrics.ts";
import type { TenantIndex } from "../../core/tenant-index.ts";
import type { JobHandler } from "../job-worker.ts";
import type { DriftedResource } from "../pulumi-protocol.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import { runTenantStack, type TenantStackArgs } from "./tenant-support.ts";

export interface TenantDriftDeps {
  readonly runner: StackRunner;
  readonly tenants: TenantIndex;
  readonly policyPacks: readonly string[];
  readonly metrics?: Metrics;
  /** Whether this installation repairs drift at all; a job's `repair` only asks. */
  readonly repairAllowed: boolean;
}

export interface DriftResult extends Record<string, unknown> {
  stack: string;
  /** Where the stack lives: the labels of stackrail_drift_found_total, so a count leads to its jobs. */
  tier?: string;
  region?: string;
  drift: boolean;
  changes: { update: number; delete: number };
  resources: DriftedResource[];
  repaired: boolean;
  reason?: string;
  /** The repair's `up`: what it changed. */
  repairChanges?: Record<string, number>;
}

export const PROTECTED_REASON = "protected tenant: reported, not repaired";
export const REPAIR_OFF_REASON = "repair is off in this installation (STACKRAIL_DRIFT_REPAIR): reported only";

export function tenantDriftHandler(deps: TenantDriftDeps): JobHandler<"tenant.drift"> {
  return async (ctx) => {
    const { tenantId, repair } = ctx.data;
    const stack = `tenant-${tenantId}`;
    const none = { update: 0, delete: 0 };
    const tenant = await deps.tenants.get(tenantId);
    // A scheduled check may outlive its tenant, or meet it mid-change: nothing to compare then.
    if (!tenant) return { stack, drift: false, changes: none, resources: [], repaired: false, reason: "tenant does not exist" } satisfies DriftResult;
    if (tenant.state !== "active") {
      return { stack, drift: false, changes: none, resources: [], repaired: false, reason: `tenant is ${tenant.state}; not checked` } satisfies DriftResult;
    }
    const args: TenantStackArgs = {
      tenantId,
      tier: tenant.tier,
      region: tenant.region,
      ...(tenant.version ? { version: tenant.version } : {}),
    };

    await ctx.progress(`drift check of ${stack} (refresh preview, nothing written)`);
    const check = await runTenantStack(deps.runner, ctx, "drift", args, []);
    const resources = [...(check.drifted ?? [])];
    const changes = {
      update: resources.filter((r) => r.op !== "delete").length,
      delete: resources.filter((r) => r.op === "delete").length,
    };
    const drift = resources.length > 0;
    const where = { tier: tenant.tier, region: tenant.region };
    if (!drift) {
      await ctx.progress("no drift");
      return { stack, ...where, drift, changes, resources, repaired: false } satisfies DriftResult;
    }
    // Bounded labels only: the stack and what drifted are in this job's result, not in a series per tenant.
    deps.metrics?.driftFound.inc({ kind: "tenant", ...where });
    for (const r of resources) {
      await ctx.progress(`drift: ${r.op} ${r.type} ${r.urn.split("::").pop() ?? ""}${r.properties.length > 0 ? ` (${r.properties.join(", ")})` : ""}`);
    }

    if (tenant.protected) {
      await ctx.progress(PROTECTED_REASON);
      return { stack, ...where, drift, changes, resources, repaired: false, reason: PROTECTED_REASON } satisfies DriftResult;
    }
    if (!repair) {
      return { stack, ...where, drift, changes, resources, repaired: false, reason: "repair not requested: reported only" } satisfies DriftResult;
    }
    if (!deps.repairAllowed) {
      await ctx.progress(REPAIR_OFF_REASON);
      return { stack, ...where, drift, changes, resources, repaired: false, reason: REPAIR_OFF_REASON } satisfies DriftResult;
    }
    // Refresh first (the state learns what changed), then `up` puts the desired state back.
    await ctx.progress(`repair: stack refresh ${stack}`);
    await runTenantStack(deps.runner, ctx, "refresh", args, []);
    await ctx.progress(`repair: stack up ${stack}`);
    const up = await runTenantStack(deps.runner, ctx, "up", args, deps.policyPacks);
    return { stack, ...where, drift, changes, resources, repaired: true, repairChanges: up.resourceChanges } satisfies DriftResult;
  };
}
