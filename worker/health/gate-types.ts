// The wave health gate's contract, shared by the three sources (Argo CD, health URL, tenant
// credentials) and re-exported by wave-gate.ts, which picks one of them from the configuration.
import type { Logger } from "../../core/logger.ts";
import type { TenantRecord } from "../../core/tenant-index.ts";

export interface WaveGateInput {
  readonly wave: number;
  /** The wave's GitOps commit sha. */
  readonly revision: string;
  /** The tenants of the wave; `tenant.version` is the version the wave rolled out. */
  readonly tenants: readonly { readonly tenant: TenantRecord; readonly outputs: Record<string, unknown> }[];
}

export interface TenantHealth {
  readonly tenantId: string;
  readonly healthy: boolean;
  /** One line for the job and the release manager; never a secret. */
  readonly detail: string;
}

export interface WaveGateReport {
  readonly source: "argocd" | "health-url" | "credentials";
  readonly passed: boolean;
  readonly tenants: readonly TenantHealth[];
  /** Said plainly when the gate could not see the application itself. */
  readonly note?: string;
}

export interface WaveGateOptions {
  readonly signal?: AbortSignal;
  readonly onProgress: (line: string) => void;
}

export type WaveHealthGate = (input: WaveGateInput, opts: WaveGateOptions) => Promise<WaveGateReport>;

/** A tenant's own logins, as its stack created them (local target). Held in memory for one check only. */
export interface TenantCredentials {
  readonly database: { readonly host: string; readonly port: number; readonly name: string; readonly user: string; readonly password: string };
  readonly cache: {
    readonly host: string;
    readonly port: number;
    readonly db: number;
    readonly user: string;
    readonly password: string;
    readonly keyPrefix: string;
  };
}

export type TenantCredentialSource = (tenant: TenantRecord, signal: AbortSignal | undefined) => Promise<TenantCredentials>;

export interface WaveGateDeps {
  readonly logger: Logger;
  readonly fetch?: typeof fetch;
  /** Milliseconds since the epoch; the gate's deadline is measured with it. */
  readonly now?: () => number;
  /** Resolves after `ms`, rejects when `signal` aborts. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Pause between two looks at a tenant (default 2 s); backoff after errors doubles it up to 8×. */
  readonly pollMs?: number;
  /**
   * How long an Application may stay Missing or Unknown after it synced at the wave's revision
   * before that tenant fails (default 30 s, never beyond the gate's timeout). Degraded fails at once.
   */
  readonly settleMs?: number;
  /** Where the credentials gate gets a tenant's own logins; defaults to the tenant stack's outputs in Pulumi state. */
  readonly credentials?: TenantCredentialSource;
}

/** What every source gets: the dependencies with their defaults filled in. */
export interface GateRuntime {
  readonly logger: Logger;
  readonly fetch: typeof fetch;
  readonly now: () => number;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly pollMs: number;
  readonly settleMs: number;
  readonly timeoutMs: number;
}
