// What a release rollout tells GitHub (issue 13 §5), as an interface the rollout calls at its
// milestones: the plan as a check run on the release commit, one Deployment per wave, the check
// run updated as waves pass. The rollout handler runs again after every crash and every wave, so
// each call must be idempotent for its (jobId, wave), and none may throw into the rollout:
// GitHub being down must not stop a release (the implementation logs and counts its failures).
import type { RepoRef } from "../../core/jobs.ts";

/** The commit a release came from; without one (an API release of a version) nothing is reported. */
export interface ReleaseSource {
  readonly repo: RepoRef;
  readonly sha: string;
}

export interface PlannedTenant {
  readonly tenantId: string;
  readonly from: string | null;
  readonly to: string;
  /** Resources the tenant stack's preview would change (0: manifest only). */
  readonly infraChanges: number;
}

export interface PlanViolation {
  readonly tenantId: string;
  readonly pack: string;
  readonly policy: string;
  readonly level: string;
  readonly message: string;
  readonly urn?: string;
}

export interface PlanReport {
  readonly jobId: string;
  readonly version: string;
  readonly waves: readonly {
    readonly wave: number;
    readonly regions: readonly string[];
    readonly tenants: readonly PlannedTenant[];
    readonly needsApproval: boolean;
  }[];
  readonly violations: readonly PlanViolation[];
  /** Where the whole plan is (`GET /v1/releases/:jobId/plan`). */
  readonly planUrl: string;
}

export interface WaveReport {
  readonly jobId: string;
  readonly wave: number;
  readonly regions: readonly string[];
  /** Deployment environment: `wave-<n>` or the wave's region when it has one. */
  readonly environment: string;
  readonly tenants: number;
}

export type ReleaseOutcome = "success" | "failure" | "cancelled" | "superseded";

export interface ReleaseReporter {
  planned(source: ReleaseSource, plan: PlanReport): Promise<void>;
  waveStarted(source: ReleaseSource, wave: WaveReport): Promise<void>;
  waveAwaitingApproval(source: ReleaseSource, wave: WaveReport): Promise<void>;
  waveFinished(source: ReleaseSource, wave: WaveReport & { readonly outcome: "success" | "failure"; readonly summary: string }): Promise<void>;
  finished(source: ReleaseSource, result: { readonly jobId: string; readonly outcome: ReleaseOutcome; readonly summary: string }): Promise<void>;
}

/** Reports nothing: releases without a source commit, and installations without GitHub credentials. */
export const noReleaseReporter: ReleaseReporter = {
  planned: () => Promise.resolve(),
  waveStarted: () => Promise.resolve(),
  waveAwaitingApproval: () => Promise.resolve(),
  waveFinished: () => Promise.resolve(),
  finished: () => Promise.resolve(),
};

/** The Deployment environment of a wave: its region when it has one, else `wave-<n>`. */
export function waveEnvironment(wave: number, regions: readonly string[]): string {
  return regions.length === 1 && regions[0] !== undefined ? regions[0] : `wave-${wave}`;
}
