// The health gate a release rollout runs after it committed a wave's GitOps files. The source is
// chosen from the configuration, in this order: Argo CD (ARGOCD_SERVER + ARGOCD_AUTH_TOKEN), the
// per-tenant health URL (STACKRAIL_HEALTH_URL), else the tenants' own credentials (the embedded
// default, which says so in the report's note). An unhealthy tenant is a report with passed=false,
// never an exception; only typed errors (CancelledError when the job's signal aborts) are thrown.
import type { Config } from "../../core/config.ts";
import { argocdGate } from "./argocd-gate.ts";
import { credentialsGate } from "./credentials-gate.ts";
import type { GateRuntime, WaveGateDeps, WaveHealthGate } from "./gate-types.ts";
import { abortableSleep, throwIfCancelled } from "./gate-support.ts";
import { healthUrlGate } from "./health-url-gate.ts";
import { pulumiStateCredentials } from "./stack-credentials.ts";

export type {
  TenantCredentialSource,
  TenantCredentials,
  TenantHealth,
  WaveGateDeps,
  WaveGateInput,
  WaveGateOptions,
  WaveGateReport,
  WaveHealthGate,
} from "./gate-types.ts";
export { NO_HEALTH_SOURCE_NOTE, NOTHING_CHECKED_NOTE } from "./credentials-gate.ts";

export const DEFAULT_POLL_MS = 2000;
export const DEFAULT_SETTLE_MS = 30_000;

export type WaveGateConfig = Pick<
  Config,
  "argocd" | "argocdNamespace" | "healthUrl" | "healthTimeoutMs" | "target" | "dataDir" | "pulumiBackendUrl" | "pulumiPassphrase"
>;

export function waveHealthGateFor(config: WaveGateConfig, deps: WaveGateDeps): WaveHealthGate {
  const rt: GateRuntime = {
    logger: deps.logger,
    fetch: deps.fetch ?? fetch,
    now: deps.now ?? Date.now,
    sleep: deps.sleep ?? abortableSleep,
    pollMs: deps.pollMs ?? DEFAULT_POLL_MS,
    settleMs: Math.min(deps.settleMs ?? DEFAULT_SETTLE_MS, config.healthTimeoutMs),
    timeoutMs: config.healthTimeoutMs,
  };
  const argocd = config.argocd;
  if (argocd) {
    const settings = { server: argocd.server, authToken: argocd.authToken, namespace: config.argocdNamespace };
    return (input, opts) => {
      throwIfCancelled(opts.signal);
      return argocdGate(settings, rt, input, opts);
    };
  }
  const template = config.healthUrl;
  if (template !== undefined) {
    return (input, opts) => {
      throwIfCancelled(opts.signal);
      return healthUrlGate(template, rt, input, opts);
    };
  }
  const source = deps.credentials ?? pulumiStateCredentials(config);
  return (input, opts) => {
    throwIfCancelled(opts.signal);
    return credentialsGate(config.target, source, rt, input, opts);
  };
}
