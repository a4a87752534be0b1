// Pulumi stacks and their locks against the records: a stack holding resources that no record
// owns, an active tenant (or a committed preview) whose stack is gone or empty, and a lock that no
// running job holds (with the process that wrote it). Stacks are listed through the Automation
// API against the configured backend, so every backend the service supports is covered; locks are
// read from the file backend's own folder (the engine has no command that lists them).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation/index.js";
import type { Config } from "../../core/config.ts";
import type { EngineLocation } from "../../core/engine.ts";
import type { Tier } from "../../core/ids.ts";
import { PROJECT_NAME, tenantProject } from "../handlers/tenant-support.ts";
import type { Subject } from "./context.ts";
import { ownerOf, scopeOfTier, stackKey, type Owner, type Records } from "./records.ts";
import { finding, type OrphanFinding, type RetainedItem } from "../../jobs/orphan-report.ts";

/** The projects Stackrail runs stacks in: previews (and regions) in one, tenants in one per tier. */
export const STACK_PROJECTS: readonly string[] = [PROJECT_NAME, tenantProject("pool"), tenantProject("silo")];

export interface StackInfo {
  readonly project: string;
  readonly stack: string;
  /** Resources in the latest checkpoint (0 after a destroy: only the history is left). */
  readonly resources: number;
  readonly lastUpdate?: string;
}

export interface LockInfo {
  readonly project: string;
  readonly stack: string;
  readonly file: string;
  readonly pid?: number;
  readonly host?: string;
  readonly user?: string;
  readonly since?: string;
  /** Whether the writing process still runs; undefined when it ran on another host (not provable from here). */
  readonly alive: boolean | undefined;
}

type StackConfig = Pick<Config, "dataDir" | "pulumiBackendUrl" | "pulumiPassphrase">;

/** The Automation API workspace the audit (and its repairs) read the backend through; removed by `close`. */
export async function auditWorkspace(config: StackConfig, engine: EngineLocation): Promise<{ workspace: LocalWorkspace; close: () => void }> {
  const workDir = mkdtempSync(path.join(tmpdir(), "stackrail-orphans-"));
  const pulumiHome = path.join(config.dataDir, "pulumi-home");
  const pulumiCommand = await PulumiCommand.get({ root: engine.dir, version: undefined });
  const workspace = await LocalWorkspace.create({
    workDir,
    pulumiHome,
    pulumiCommand,
    // Not a project of its own: with `all` every project's stacks are listed fully qualified.
    projectSettings: { name: "stackrail-orphan-audit", runtime: "nodejs", backend: { url: config.pulumiBackendUrl } },
    envVars: {
      PULUMI_BACKEND_URL: config.pulumiBackendUrl,
      PULUMI_HOME: pulumiHome,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
      ...(config.pulumiPassphrase !== undefined ? { PULUMI_CONFIG_PASSPHRASE: config.pulumiPassphrase } : {}),
      PATH: `${engine.binDir}:${path.dirname(engine.node)}:${process.env.PATH ?? ""}`,
    },
  });
  return { workspace, close: () => rmSync(workDir, { recursive: true, force: true }) };
}

export async function listStacks(config: StackConfig, engine: EngineLocation): Promise<StackInfo[]> {
  // A file backend whose folder does not exist yet has no stacks (the first operation makes it).
  if (config.pulumiBackendUrl.startsWith("file://") && !existsSync(fileURLToPath(config.pulumiBackendUrl))) return [];
  const { workspace, close } = await auditWorkspace(config, engine);
  try {
    const out: StackInfo[] = [];
    for (const s of await workspace.listStacks({ all: true })) {
      // `organization/<project>/<stack>` on DIY backends, `<org>/<project>/<stack>` on Pulumi Cloud.
      const parts = s.name.split("/");
      if (parts.length !== 3) continue;
      const [, project, stack] = parts as [string, string, string];
      if (!STACK_PROJECTS.includes(project)) continue;
      out.push({ project, stack, resources: s.resourceCount ?? 0, ...(s.lastUpdate ? { lastUpdate: s.lastUpdate } : {}) });
    }
    return out;
  } finally {
    close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The file backend's lock files (`.pulumi/locks/organization/<project>/<stack>/*.json`); null for other backends. */
export function listLocks(backendUrl: string): LockInfo[] | null {
  if (!backendUrl.startsWith("file://")) return null;
  const root = path.join(fileURLToPath(backendUrl), ".pulumi", "locks", "organization");
  const out: LockInfo[] = [];
  if (!existsSync(root)) return out;
  for (const project of readdirSync(root).filter((p) => STACK_PROJECTS.includes(p))) {
    let stacks: string[];
    try {
      stacks = readdirSync(path.join(root, project));
    } catch {
      continue;
    }
    for (const stack of stacks) {
      const dir = path.join(root, project, stack);
      let files: string[];
      try {
        files = readdirSync(dir).filter((f) => f.endsWith(".json"));
      } catch {
        continue;
      }
      for (const f of files) {
        const file = path.join(dir, f);
        let owner: { pid?: unknown; hostname?: unknown; username?: unknown; timestamp?: unknown } = {};
        try {
          owner = JSON.parse(readFileSync(file, "utf8")) as typeof owner;
        } catch {
          // unreadable: reported with what is known (the file)
        }
        const pid = typeof owner.pid === "number" ? owner.pid : undefined;
        const host = typeof owner.hostname === "string" ? owner.hostname : undefined;
        out.push({
          project,
          stack,
          file,
          ...(pid !== undefined ? { pid } : {}),
          ...(host !== undefined ? { host } : {}),
          ...(typeof owner.username === "string" ? { user: owner.username } : {}),
          ...(typeof owner.timestamp === "string" ? { since: owner.timestamp } : {}),
          alive: pid !== undefined && host === hostname() ? alive(pid) : undefined,
        });
      }
    }
  }
  return out;
}

export function stackRepair(project: string, stack: string): string {
  return `npm run orphans -- --repair stack:${project}/${stack}`;
}

/** The stack that holds a tenant's (or preview's) objects of a name space, if it has resources. */
export function stackOf(stacks: readonly StackInfo[], kind: "tenant" | "preview", key: string, tier?: Tier): StackInfo | undefined {
  const project = kind === "preview" ? PROJECT_NAME : tenantProject(tier ?? "pool");
  return stacks.find((s) => s.project === project && s.stack === `${kind}-${key}` && s.resources > 0);
}

function tierOfProject(project: string): Tier | null {
  return project === tenantProject("pool") ? "pool" : project === tenantProject("silo") ? "silo" : null;
}

/** Adds a finding with what it is about (context.ts AuditContext.add). */
export type AddFinding = (finding: OrphanFinding, subject?: Subject) => void;

export function checkStacks(add: AddFinding, stacks: readonly StackInfo[], records: Records, committedPreviews: ReadonlySet<string>): RetainedItem[] {
  const retained: RetainedItem[] = [];
  for (const s of stacks) {
    const k = stackKey(s.stack);
    if (!k) continue; // region stacks: shared regional infrastructure, no per-tenant record
    const name = `${s.project}/${s.stack}`;
    const tier = tierOfProject(s.project);
    const subject: Subject | undefined =
      k.kind === "preview"
        ? s.project === PROJECT_NAME
          ? { scope: "preview", key: k.key }
          : undefined
        : tier
          ? { scope: scopeOfTier(tier), key: k.key }
          : undefined;
    const owner: Owner = subject
      ? ownerOf(records, subject.scope, subject.key)
      : { owned: false, why: k.kind === "preview" ? `a preview stack outside the ${PROJECT_NAME} project` : "a tenant stack outside the tier projects" };
    if (owner.owned) continue;
    if (s.resources === 0) {
      retained.push({
        kind: "stack-history",
        name,
        detail: `no resources (destroyed); its update history is kept. Remove it with: pulumi stack rm --yes ${name}`,
      });
      continue;
    }
    add(
      finding("stack", name, "unowned", stackRepair(s.project, s.stack), {
        ...(owner.owner ? { owner: owner.owner } : {}),
        detail: `${s.resources} resources; ${owner.why}`,
      }),
      subject,
    );
  }
  // Owned but missing: an active tenant, or a preview whose manifest was committed, without resources.
  for (const t of records.tenants.values()) {
    if (t.state !== "active" || records.inFlight.tenants.has(t.id)) continue;
    if (stackOf(stacks, "tenant", t.id, t.tier)) continue;
    const name = `${tenantProject(t.tier)}/tenant-${t.id}`;
    add(
      finding(
        "stack",
        name,
        "missing",
        `restore the stack's state (file backend: ${name}.json.bak beside its checkpoint, or pulumi stack import); do not provision again over its objects`,
        { owner: `tenant ${t.id} (active, ${t.tier})`, detail: "the tenant is active but its stack is gone or holds no resources" },
      ),
      { scope: scopeOfTier(t.tier), key: t.id },
    );
  }
  for (const key of records.previews) {
    if (!committedPreviews.has(key) || records.inFlight.previews.has(key) || stackOf(stacks, "preview", key)) continue;
    add(
      finding("stack", `${PROJECT_NAME}/preview-${key}`, "missing", "push a commit to the pull request (the preview is brought up again), or close it", {
        owner: `preview ${key}`,
        detail: "the preview is live and committed but its stack is gone or holds no resources",
      }),
      { scope: "preview", key },
    );
  }
  return retained;
}

export function checkLocks(add: AddFinding, locks: readonly LockInfo[], records: Records): void {
  const byStack = new Map<string, LockInfo[]>();
  for (const l of locks) {
    // A running job's own operation holds it.
    if (records.runningStacks.has(l.stack)) continue;
    const name = `${l.project}/${l.stack}`;
    byStack.set(name, [...(byStack.get(name) ?? []), l]);
  }
  for (const [name, list] of byStack) {
    const owners = list.map(
      (l) =>
        `pid ${l.pid ?? "?"} on ${l.host ?? "?"}${l.user ? ` (user ${l.user})` : ""}${l.since ? ` since ${l.since}` : ""}, ${l.alive === undefined ? "on another host" : l.alive ? "process still running" : "process gone"}`,
    );
    const provablyDead = list.every((l) => l.alive === false);
    const live = list.filter((l) => l.alive === true);
    const repair = provablyDead
      ? `npm run orphans -- --repair stack-lock:${name}`
      : live.length > 0
        ? `no job runs on this stack: stop the process that holds the lock (kill ${live.map((l) => l.pid).join(" ")} on ${hostname()}), then npm run orphans -- --repair stack-lock:${name}`
        : `make sure the process on the other host is gone, then remove the lock file: rm ${list.map((l) => `'${l.file}'`).join(" ")}`;
    add(
      finding("stack-lock", name, "stale-lock", repair, { owner: owners.join("; "), detail: `${list.length} lock file(s), no running job holds the stack` }),
      {
        runningStack: list[0]?.stack ?? "",
      },
    );
  }
}
