// The orphan audit's vocabulary: what a finding says, and the bounded set of kinds the
// `stackrail_orphans{kind}` gauge is labelled with.

/**
 * What was compared: `server` reports every object in the tenant and preview name spaces of the
 * MariaDB and cache servers (a dedicated server: everything there is this installation's);
 * `installation` reports only objects of tenant ids and preview keys this installation knows of
 * (its records, stacks, GitOps folders, data directory and jobs), for servers shared with others.
 * The data directory, the Pulumi backend, the GitOps repository and the queue are this
 * installation's own and are audited in full either way.
 */
export type OrphanScope = "server" | "installation";

export const ORPHAN_KINDS = [
  "database",
  "database-user",
  "database-owner-row",
  "acl-user",
  "acl-owner-entry",
  "cache-keys",
  "directory",
  "directory-owner-marker",
  "functions",
  "stack",
  "stack-lock",
  "gitops",
  "lane",
  "lane-lease",
  "job",
  "tenant-record",
] as const;
export type OrphanKind = (typeof ORPHAN_KINDS)[number];

/**
 * unowned: exists, and no record owns it. missing: a record says it should exist, and it does not.
 * unregistered: owned, but its ownership registry entry is gone. stale-registry: a registry entry
 * (owner row, ACL owner field, directory marker) whose object and owner are both gone. stale-lock:
 * a Pulumi lock no running job holds. stale-lease: a lane lease no live job holds. dead-entries: a
 * lane holding jobs that are gone or finished. stuck-active: a job BullMQ shows active with no
 * worker's lock. stuck-record: a tenant record in a transitional state with no job working on it.
 */
export type OrphanProblem =
  "unowned" | "missing" | "unregistered" | "stale-registry" | "stale-lock" | "stale-lease" | "dead-entries" | "stuck-active" | "stuck-record";

export interface OrphanFinding {
  /** `<kind>:<name>`: what `npm run orphans -- --repair <id>` takes. */
  readonly id: string;
  readonly kind: OrphanKind;
  readonly name: string;
  readonly problem: OrphanProblem;
  /** Who owns it, or claims to (a record, a registry entry, a stack, a lock's process). */
  readonly owner?: string;
  readonly detail?: string;
  /** The route, command or statement that repairs it. Never holds a secret. */
  readonly repair: string;
}

/** What is kept on purpose after its owner went: listed, never counted as an orphan. */
export interface RetainedItem {
  readonly kind: "backup" | "stack-history";
  readonly name: string;
  readonly detail: string;
}

/**
 * A tenant whose provision or deprovision failed: what is left is still its own (owned, not
 * orphaned), and DELETE cleans it up. Listed apart so that `findings` stays "nobody's".
 */
export interface FailedTenant {
  readonly tenant: string;
  readonly failure: string;
  readonly repair: string;
}

export interface OrphanReport {
  readonly scope: OrphanScope;
  readonly checkedAt: string;
  readonly durationMs: number;
  readonly findings: OrphanFinding[];
  readonly retained: RetainedItem[];
  readonly failed: FailedTenant[];
  /** Checks this installation does not make (another target, a backend whose locks cannot be listed). */
  readonly skipped: string[];
  /** Sources that could not be read: the audit is not complete, and says which part is missing. */
  readonly incomplete: { source: string; error: string }[];
}

export function findingId(kind: OrphanKind, name: string): string {
  return `${kind}:${name}`;
}

export function finding(
  kind: OrphanKind,
  name: string,
  problem: OrphanProblem,
  repair: string,
  extra: { owner?: string; detail?: string } = {},
): OrphanFinding {
  return {
    id: findingId(kind, name),
    kind,
    name,
    problem,
    ...(extra.owner !== undefined ? { owner: extra.owner } : {}),
    ...(extra.detail !== undefined ? { detail: extra.detail } : {}),
    repair,
  };
}

/** Counts by kind, every kind present (a kind that went back to 0 must say so). */
export function countByKind(findings: readonly OrphanFinding[]): Record<OrphanKind, number> {
  const counts = Object.fromEntries(ORPHAN_KINDS.map((k) => [k, 0])) as Record<OrphanKind, number>;
  for (const f of findings) counts[f.kind] += 1;
  return counts;
}
