// Shared pieces of the wave gate's tests: tenant records, a logger whose lines are kept, a gate
// run that records its progress lines, and the pair of Applications a tenant has in Argo CD.
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../core/logger.ts";
import type { TenantRecord } from "../../core/tenant-index.ts";
import type { AppState, ArgocdDouble } from "../../test/support/argocd-double.ts";
import type { WaveGateInput, WaveGateReport, WaveHealthGate } from "./wave-gate.ts";

export const WAVE_REVISION = "c0ffee".padEnd(40, "1");
export const OLD_REVISION = "0bad01".padEnd(40, "2");

export function tenantRecord(id: string, version = "2.0.0", region = "eu-west-1", tier: "pool" | "silo" = "pool"): TenantRecord {
  return { id, region, tier, version, state: "active", outputs: {}, updatedAt: null };
}

export function waveOf(tenants: readonly TenantRecord[], revision = WAVE_REVISION, wave = 1): WaveGateInput {
  return { wave, revision, tenants: tenants.map((tenant) => ({ tenant, outputs: {} })) };
}

/** A logger writing into `lines` (no scrubber: the gate itself must not log a secret). */
export function capturedLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: createLogger({ level: "debug", destination }), lines };
}

export async function runGate(gate: WaveHealthGate, input: WaveGateInput, signal?: AbortSignal): Promise<{ report: WaveGateReport; progress: string[] }> {
  const progress: string[] = [];
  const report = await gate(input, { onProgress: (l) => progress.push(l), ...(signal ? { signal } : {}) });
  return { report, progress };
}

export interface TenantScript {
  /** The tenant's `-gitops` Application (GitOps repo path tenants/<id>). */
  readonly gitops: readonly { readonly sync: AppState["sync"]; readonly revision: string }[];
  /** The workload Application (chart at the tenant's version). */
  readonly app: readonly { readonly sync: AppState["sync"]; readonly version: string; readonly health: AppState["health"]; readonly message?: string }[];
}

/** Scripts both Applications of a tenant as the regional ApplicationSet and the manifests name them. */
export function scriptTenant(double: ArgocdDouble, id: string, script: TenantScript, region = "eu-west-1"): void {
  const base = { "app.kubernetes.io/managed-by": "stackrail", "stackrail.io/region": region };
  double.setApplication({
    name: `tenant-${id}-gitops`,
    labels: base,
    repoURL: "https://git.example.com/acme/gitops.git",
    path: `tenants/${id}`,
    targetRevision: "main",
    states: script.gitops.map((g) => ({ sync: g.sync, revision: g.revision, health: "Healthy" })),
  });
  double.setApplication({
    name: `tenant-${id}`,
    labels: { ...base, "stackrail.io/tenant": id, "stackrail.io/tier": "pool" },
    repoURL: "https://git.example.com/acme/app.git",
    path: "chart",
    targetRevision: script.app[0]?.version ?? "1.0.0",
    states: script.app.map((a) => ({
      sync: a.sync,
      revision: `a99${a.version.replace(/\D/g, "")}`.padEnd(40, "0"),
      health: a.health,
      targetRevision: a.version,
      ...(a.message ? { healthMessage: a.message } : {}),
    })),
  });
}

/** A tenant whose wave reached Argo CD and whose application went through `health` states at `version`. */
export function syncedTenant(double: ArgocdDouble, id: string, health: readonly AppState["health"][], version = "2.0.0", region = "eu-west-1"): void {
  scriptTenant(double, id, { gitops: [{ sync: "Synced", revision: WAVE_REVISION }], app: health.map((h) => ({ sync: "Synced", version, health: h })) }, region);
}
