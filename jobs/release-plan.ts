// The rollout plan of a release (issue 13 §1–2): per wave, the tenants, their version from → to,
// the Argo CD manifest diff (the tenant's files rendered at the new version against the GitOps
// repository) and the Pulumi diff of the tenant's stack (a preview at the new version). The
// rollout computes it before it applies anything, stores it beside the job (Redis, with the other
// rollout keys), and revises a wave when the diff found at apply time differs from the approved
// one. Approvals and the rejection live in keys of their own (release-approval.ts): the
// edge writes those while the rollout writes this one.
import type { Redis } from "ioredis";
import type { RepoRef } from "../core/jobs.ts";
import { diffEntries, planDigest, type PolicyViolation, type ResourceDiff } from "./plan-types.ts";
import { ROLLOUT_KEY_TTL_SECONDS, rolloutPlanKey } from "./rollout-control.ts";

/** What the preview of one tenant's stack at the new version would change. */
export interface TenantInfraPlan {
  readonly diff: readonly ResourceDiff[];
  readonly violations: readonly PolicyViolation[];
  /** planDigest(diff): what an approval of this tenant means. */
  readonly digest: string;
  /** The preview failed: why (the release does not start). */
  readonly error?: string;
}

export interface PlannedTenantEntry {
  readonly tenantId: string;
  readonly region: string;
  readonly tier: string;
  readonly from: string | null;
  readonly to: string;
  /** Unified diff of the tenant's GitOps files, current → new version ("" when nothing changes). */
  readonly manifestDiff: string;
  readonly infra: TenantInfraPlan;
}

/** A difference between the approved diff of a tenant and the one its apply-time preview found. */
export interface PlanChange {
  readonly tenantId: string;
  /** `op urn` entries (with changed property names) only in the new diff, and only in the approved one. */
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly at: string;
  /** The step job whose preview found it. */
  readonly step?: string;
}

export interface PlannedWave {
  readonly wave: number;
  readonly regions: readonly string[];
  readonly needsApproval: boolean;
  /** Bumped whenever the wave's diff changes: an approval counts for the revision it was given for. */
  readonly revision: number;
  readonly tenants: readonly PlannedTenantEntry[];
  /** Why the wave asks again: the differences its apply-time previews found, newest last. */
  readonly changes: readonly PlanChange[];
}

export interface ReleasePlan {
  readonly jobId: string;
  readonly version: string;
  readonly createdAt: string;
  readonly source?: { readonly repo: RepoRef; readonly sha: string };
  readonly waves: readonly PlannedWave[];
}

// The digest lives with the plan's vocabulary: the worker's child compares it before an `up`.
export { diffEntries, planDigest };

/** What differs between an approved diff and a new one. */
export function planChange(tenantId: string, approved: readonly ResourceDiff[], found: readonly ResourceDiff[]): PlanChange {
  const before = new Set(diffEntries(approved));
  const after = new Set(diffEntries(found));
  return {
    tenantId,
    added: [...after].filter((e) => !before.has(e)),
    removed: [...before].filter((e) => !after.has(e)),
    at: new Date().toISOString(),
  };
}

export async function loadPlan(redis: Redis, prefix: string, jobId: string): Promise<ReleasePlan | null> {
  const raw = await redis.get(rolloutPlanKey(prefix, jobId));
  return raw ? (JSON.parse(raw) as ReleasePlan) : null;
}

export async function savePlan(redis: Redis, prefix: string, plan: ReleasePlan): Promise<void> {
  await redis.set(rolloutPlanKey(prefix, plan.jobId), JSON.stringify(plan), "EX", ROLLOUT_KEY_TTL_SECONDS);
}

/** Longest inputs diffed line by line; beyond that the diff says only that the file changes. */
const MAX_DIFF_LINES = 4000;

/**
 * A unified diff (3 lines of context) of one file, `a/path` → `b/path`; "" when equal. A missing
 * file is /dev/null, as git shows it.
 */
export function unifiedDiff(path: string, before: string | null, after: string | null): string {
  if (before === after) return "";
  const a = before === null ? [] : splitLines(before);
  const b = after === null ? [] : splitLines(after);
  const header = `--- ${before === null ? "/dev/null" : `a/${path}`}\n+++ ${after === null ? "/dev/null" : `b/${path}`}\n`;
  if (a.length + b.length > MAX_DIFF_LINES) return `${header}@@ file too long to diff (${a.length} → ${b.length} lines) @@\n`;
  const ops = lineOps(a, b);
  const context = 3;
  const out: string[] = [];
  let i = 0;
  while (i < ops.length) {
    if (ops[i]?.[0] === " ") {
      i++;
      continue;
    }
    // A hunk: from `context` lines before this change to `context` lines after the last change near it.
    let start = i;
    for (let k = 0; k < context && start > 0 && ops[start - 1]?.[0] === " "; k++) start--;
    let end = i;
    for (;;) {
      while (end < ops.length && ops[end]?.[0] !== " ") end++;
      let gap = 0;
      while (end + gap < ops.length && ops[end + gap]?.[0] === " ") gap++;
      if (end + gap < ops.length && gap <= context * 2) end += gap;
      else {
        end += Math.min(gap, context);
        break;
      }
    }
    let aLine = 1;
    let bLine = 1;
    for (let k = 0; k < start; k++) {
      const op = ops[k]?.[0];
      if (op !== "+") aLine++;
      if (op !== "-") bLine++;
    }
    const hunk = ops.slice(start, end);
    const aCount = hunk.filter((o) => o[0] !== "+").length;
    const bCount = hunk.filter((o) => o[0] !== "-").length;
    out.push(`@@ -${aCount === 0 ? aLine - 1 : aLine},${aCount} +${bCount === 0 ? bLine - 1 : bLine},${bCount} @@`);
    for (const [op, line] of hunk) out.push(`${op}${line}`);
    i = end;
  }
  return `${header}${out.join("\n")}\n`;
}

function splitLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/** The edit script of two line lists through their longest common subsequence. */
function lineOps(a: readonly string[], b: readonly string[]): [" " | "-" | "+", string][] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    const row = lcs[i] as number[];
    const next = lcs[i + 1] as number[];
    for (let j = m - 1; j >= 0; j--) row[j] = a[i] === b[j] ? (next[j + 1] ?? 0) + 1 : Math.max(next[j] ?? 0, row[j + 1] ?? 0);
  }
  const ops: [" " | "-" | "+", string][] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push([" ", a[i] ?? ""]);
      i++;
      j++;
    } else if ((lcs[i + 1]?.[j] ?? 0) >= (lcs[i]?.[j + 1] ?? 0)) ops.push(["-", a[i++] ?? ""]);
    else ops.push(["+", b[j++] ?? ""]);
  }
  while (i < n) ops.push(["-", a[i++] ?? ""]);
  while (j < m) ops.push(["+", b[j++] ?? ""]);
  return ops;
}
