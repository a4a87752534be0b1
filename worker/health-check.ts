// A per-tenant check as a wave health gate. Production picks its gate from the configuration
// (worker/health/wave-gate.ts); tests and embedders that hand the service a per-tenant check
// (ServiceOptions.healthCheck) get it run as the wave's gate, after the wave's commit, one tenant
// after the other: a tenant whose check throws is unhealthy, with the error's message as detail.
import type { TenantRecord } from "../core/tenant-index.ts";
import type { WaveHealthGate } from "./health/wave-gate.ts";

/** Resolves when the tenant is healthy, throws when it is not. */
export type HealthCheck = (tenant: TenantRecord, outputs: Record<string, unknown>) => Promise<void>;

export function gateFromHealthCheck(check: HealthCheck): WaveHealthGate {
  return async (input, opts) => {
    const tenants = [];
    for (const { tenant, outputs } of input.tenants) {
      try {
        await check(tenant, outputs);
        tenants.push({ tenantId: tenant.id, healthy: true, detail: "healthy" });
      } catch (err) {
        const detail = err instanceof Error ? err.message : String(err);
        opts.onProgress(`${tenant.id}: ${detail}`);
        tenants.push({ tenantId: tenant.id, healthy: false, detail });
      }
    }
    return { source: "credentials", passed: tenants.every((t) => t.healthy), tenants, note: "checked by the health check the service was started with" };
  };
}
