// What every check of the audit shares: the records, the stacks, the scope, and the mapping from
// an object's name back to the tenant id or preview key it was derived from (core/naming.ts
// logicalNames), so that each object is judged by its owner's record and repaired through its
// owner's stack when it has one.
import { logicalNames, type LogicalNames, type Scope } from "../../core/naming.ts";
import { ownerOf, ownerOfKeyPrefix, type Owner, type Records } from "./records.ts";
import { stackOf, stackRepair, type StackInfo } from "./stacks.ts";
import type { OrphanFinding, OrphanScope } from "../../jobs/orphan-report.ts";

/** An object's place: its name space and, when it can be told, the key it was derived from. */
export interface Side {
  readonly scope: Scope;
  readonly key?: string;
}

/**
 * What a finding is about, so that it can be checked again against records read after the objects
 * were: a job that started meanwhile must not make its fresh objects look unowned (or a tenant
 * that started its deprovision make its objects look missing).
 */
export type Subject = { readonly scope: Scope; readonly key: string; readonly anyTier?: boolean } | { readonly runningStack: string };

export interface ExpectedSet {
  readonly subject: Subject;
  readonly names: LogicalNames;
  readonly owner: string;
  /** How an object of this set that is missing (the finding `id`) is brought back. */
  readonly repairMissing: (id: string) => string;
}

const LETTER_SCOPE: Record<string, Scope> = { t: "tenant", s: "silo", p: "preview" };

function names(scope: Scope, key: string): LogicalNames | null {
  try {
    return logicalNames(scope, key);
  } catch {
    return null;
  }
}

export class AuditContext {
  readonly scope: OrphanScope;
  readonly records: Records;
  readonly stacks: readonly StackInfo[];
  readonly #entries: { readonly finding: OrphanFinding; readonly subject?: Subject }[] = [];
  /** Live previews whose manifest is committed (only those are expected to have every object). */
  committedPreviews: ReadonlySet<string> = new Set();
  #reverse: Map<string, Side> | undefined;

  constructor(scope: OrphanScope, records: Records, stacks: readonly StackInfo[]) {
    this.scope = scope;
    this.records = records;
    this.stacks = stacks;
  }

  add(finding: OrphanFinding, subject?: Subject | Side): void {
    const about = subject && "scope" in subject ? (subject.key === undefined ? undefined : { scope: subject.scope, key: subject.key }) : subject;
    this.#entries.push(about ? { finding, subject: about } : { finding });
  }

  get findings(): OrphanFinding[] {
    return this.#entries.map((e) => e.finding);
  }

  /** Drops the findings that `keep` rejects. */
  keepOnly(keep: (finding: OrphanFinding, subject: Subject | undefined) => boolean): void {
    const kept = this.#entries.filter((e) => keep(e.finding, e.subject));
    this.#entries.splice(0, this.#entries.length, ...kept);
  }

  /** Adds keys this installation has a trace of (stacks, folders); call before the shared servers are read. */
  know(kind: "tenant" | "preview", key: string): void {
    (kind === "tenant" ? this.records.known.tenants : this.records.known.previews).add(key);
    this.#reverse = undefined;
  }

  /** Names of every known key, in every name space that key may use, back to their side. */
  #reverseMap(): Map<string, Side> {
    if (this.#reverse) return this.#reverse;
    const map = new Map<string, Side>();
    const add = (scope: Scope, key: string): void => {
      const n = names(scope, key);
      if (!n) return;
      for (const name of [`db:${n.database}`, `user:${n.dbUser}`, `cache:${n.cacheUser}`]) map.set(name, { scope, key });
    };
    for (const key of this.records.known.tenants) {
      add("tenant", key);
      add("silo", key);
    }
    for (const key of this.records.known.previews) add("preview", key);
    this.#reverse = map;
    return map;
  }

  /** The side of a name: a registry's owner key first, the known keys next, else the name read backwards. */
  #resolve(kind: "db" | "user" | "cache", name: string, hint: string | undefined): Side {
    const scope = LETTER_SCOPE[name[0] ?? ""] ?? "tenant";
    const derive = (key: string): string | undefined => {
      const n = names(scope, key);
      return kind === "db" ? n?.database : kind === "user" ? n?.dbUser : n?.cacheUser;
    };
    if (hint && derive(hint) === name) return { scope, key: hint };
    const known = this.#reverseMap().get(`${kind}:${name}`);
    if (known) return known;
    // Untruncated names spell the key (`-` as `_` in SQL names; keys never hold `_`). A shortened
    // name ends in `_<hash>_` and is tied to its key only by a record or a registry entry.
    const rest = name.slice(2);
    const candidate = kind === "cache" ? rest : rest.replace(/_/g, "-");
    if (derive(candidate) === name) return { scope, key: candidate };
    return { scope };
  }

  readonly names = {
    database: (name: string, hint?: string): Side => this.#resolve("db", name, hint),
    dbUser: (user: string, hint?: string): Side => this.#resolve("user", user, hint),
    cacheUser: (user: string, hint?: string): Side => this.#resolve("cache", user, hint),
  };

  /** Whether an object on a shared server is this audit's to report (see OrphanScope). */
  inScope(side: Side): boolean {
    if (this.scope === "server") return true;
    if (side.key === undefined) return false;
    return (side.scope === "preview" ? this.records.known.previews : this.records.known.tenants).has(side.key);
  }

  owner(side: Side): Owner {
    if (side.key === undefined) return { owned: false, why: "its name is not derived from any known tenant id or preview key" };
    return ownerOf(this.records, side.scope, side.key);
  }

  /** The stack that made an object is how it goes (its state would otherwise still list it); else `fallback`. */
  repairFor(side: Side, fallback: string): string {
    if (side.key === undefined) return fallback;
    const stack =
      side.scope === "preview" ? stackOf(this.stacks, "preview", side.key) : stackOf(this.stacks, "tenant", side.key, side.scope === "silo" ? "silo" : "pool");
    return stack ? stackRepair(stack.project, stack.stack) : fallback;
  }

  /** Owned, with its ownership entry gone (finding `id`): written again from the owner stack's state. */
  reRecord(side: Side, id: string): string {
    const stack =
      side.key === undefined
        ? undefined
        : side.scope === "preview"
          ? stackOf(this.stacks, "preview", side.key)
          : stackOf(this.stacks, "tenant", side.key, side.scope === "silo" ? "silo" : "pool");
    return stack
      ? `npm run orphans -- --repair ${id} (records ${stack.project}/${stack.stack} as its owner again, from the stack's state)`
      : "its owner has no stack that holds it: remove it by hand once nothing uses it";
  }

  /** What the records say must exist now: active tenants and committed live previews with no job on them. */
  expected(): ExpectedSet[] {
    const out: ExpectedSet[] = [];
    for (const t of this.records.tenants.values()) {
      if (t.state !== "active" || this.records.inFlight.tenants.has(t.id)) continue;
      const n = names(t.tier === "silo" ? "silo" : "tenant", t.id);
      if (!n) continue;
      out.push({
        subject: { scope: t.tier === "silo" ? "silo" : "tenant", key: t.id },
        names: n,
        owner: `tenant ${t.id} (active, ${t.tier})`,
        repairMissing: (id) =>
          `npm run orphans -- --repair ${id} (queues a drift repair of tenant-${t.id}: refresh, then up, which makes it again; the workers need STACKRAIL_DRIFT_REPAIR=true, and a protected tenant is only reported)`,
      });
    }
    for (const key of this.records.previews) {
      if (!this.committedPreviews.has(key) || this.records.inFlight.previews.has(key)) continue;
      const n = names("preview", key);
      if (!n) continue;
      out.push({
        subject: { scope: "preview", key },
        names: n,
        owner: `preview ${key}`,
        repairMissing: () => "close and reopen the pull request: the preview is destroyed and made again",
      });
    }
    return out;
  }
}

/** Whether a finding still holds against `records` (read again after the objects were). */
export function stillHolds(finding: OrphanFinding, subject: Subject | undefined, records: Records): boolean {
  if (!subject) return true;
  if ("runningStack" in subject) return !records.runningStacks.has(subject.runningStack);
  const { scope, key } = subject;
  const owned = (subject.anyTier ? ownerOfKeyPrefix(records, scope === "preview" ? "p" : "t", key) : ownerOf(records, scope, key)).owned;
  const inFlight = (scope === "preview" ? records.inFlight.previews : records.inFlight.tenants).has(key);
  switch (finding.problem) {
    case "unowned":
    case "stale-registry":
      return !owned;
    case "unregistered":
      return owned;
    case "missing": {
      if (inFlight) return false;
      if (scope === "preview") return records.previews.has(key);
      const record = records.tenants.get(key);
      return record?.state === "active" && (subject.anyTier === true || record.tier === (scope === "silo" ? "silo" : "pool"));
    }
    case "stuck-record": {
      const state = records.tenants.get(key)?.state;
      return !inFlight && (state === "provisioning" || state === "deprovisioning");
    }
    default:
      return true;
  }
}
