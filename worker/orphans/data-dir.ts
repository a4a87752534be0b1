// The data directory against the records: attachments folders (`attachments/{tenants,silo,
// previews}/<key>`) and their owner markers (`attachments/.owners/…`, programs/local/fs-ops.ts),
// tenant function files (`functions/<id>/`), and final backups (`backups/<id>/`), which outlive
// their tenant on purpose and are listed as retained, never as orphans.
import { lstatSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import type { Scope } from "../../core/naming.ts";
import type { AuditContext } from "./context.ts";
import { ownerOf } from "./records.ts";
import { finding, findingId, type RetainedItem } from "../../jobs/orphan-report.ts";

const FOLDERS: ReadonlyArray<readonly [string, Scope]> = [
  ["tenants", "tenant"],
  ["silo", "silo"],
  ["previews", "preview"],
];
const KEY = /^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$/;

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Shell-quoted, for repair commands. */
function q(p: string): string {
  return `'${p.replace(/'/g, "'\\''")}'`;
}

/** Every tenant id and preview key the data directory holds something of (the installation scope knows them). */
export function dataDirKeys(dataDir: string): { tenants: string[]; previews: string[] } {
  const root = path.join(dataDir, "attachments");
  const tenants = new Set<string>();
  const previews = new Set<string>();
  for (const [folder, scope] of FOLDERS) {
    for (const base of [path.join(root, folder), path.join(root, ".owners", folder)]) {
      for (const key of entries(base).filter((k) => KEY.test(k))) (scope === "preview" ? previews : tenants).add(key);
    }
  }
  for (const folder of ["functions", "backups"]) for (const key of entries(path.join(dataDir, folder)).filter((k) => KEY.test(k))) tenants.add(key);
  return { tenants: [...tenants], previews: [...previews] };
}

export function checkDataDir(ctx: AuditContext, dataDir: string, options: { attachments: boolean }): RetainedItem[] {
  const root = path.join(dataDir, "attachments");
  if (options.attachments) {
    for (const [folder, scope] of FOLDERS) {
      const dirs = new Set(entries(path.join(root, folder)));
      const markers = new Set(entries(path.join(root, ".owners", folder)).filter((m) => !m.endsWith(".tmp")));
      for (const key of dirs) {
        const rel = `${folder}/${key}`;
        const dir = path.join(root, folder, key);
        const marker = path.join(root, ".owners", folder, key);
        const side = { scope, key };
        const owner = ownerOf(ctx.records, scope, key);
        if (!owner.owned) {
          ctx.add(
            finding("directory", rel, "unowned", ctx.repairFor(side, `rm -rf ${q(dir)} ${q(marker)}`), {
              ...(owner.owner ? { owner: owner.owner } : {}),
              detail: owner.why,
            }),
            side,
          );
        } else if (!markers.has(key)) {
          ctx.add(
            finding("directory", rel, "unregistered", ctx.reRecord(side, findingId("directory", rel)), {
              owner: owner.owner,
              detail: "no owner marker in attachments/.owners",
            }),
            side,
          );
        }
      }
      for (const key of markers) {
        if (dirs.has(key) || ownerOf(ctx.records, scope, key).owned) continue;
        const marker = path.join(root, ".owners", folder, key);
        ctx.add(
          finding(
            "directory-owner-marker",
            `${folder}/${key}`,
            "stale-registry",
            `npm run orphans -- --repair ${findingId("directory-owner-marker", `${folder}/${key}`)}`,
            {
              detail: `its directory is gone and no record owns it; by hand: rm ${q(marker)}`,
            },
          ),
          { scope, key },
        );
      }
    }
    for (const expected of ctx.expected()) {
      const rel = expected.names.attachmentsDir;
      if (exists(path.join(root, rel))) continue;
      ctx.add(
        finding("directory", rel, "missing", expected.repairMissing(findingId("directory", rel)), {
          owner: expected.owner,
          detail: "the record says it exists",
        }),
        expected.subject,
      );
    }
  }

  // Function versions and bundles go with their tenant's deprovision; none may outlive it.
  for (const id of entries(path.join(dataDir, "functions"))) {
    if (!KEY.test(id)) continue;
    if (ctx.records.tenants.has(id) || ctx.records.inFlight.tenants.has(id)) continue;
    ctx.add(
      finding("functions", id, "unowned", `npm run orphans -- --repair ${findingId("functions", id)}`, {
        detail: `no tenant record has this id; the repair removes functions/${id}/ and the bundles only it used (by hand: rm -rf ${q(path.join(dataDir, "functions", id))})`,
      }),
      { scope: "tenant", key: id, anyTier: true },
    );
  }

  const retained: RetainedItem[] = [];
  for (const id of entries(path.join(dataDir, "backups"))) {
    const dir = path.join(dataDir, "backups", id);
    const files = entries(dir);
    const bytes = files.reduce((sum, f) => {
      try {
        return sum + statSync(path.join(dir, f)).size;
      } catch {
        return sum;
      }
    }, 0);
    const live = ctx.records.tenants.has(id) ? "tenant exists" : "tenant gone";
    retained.push({
      kind: "backup",
      name: id,
      detail: `${files.length} file(s), ${bytes} bytes in backups/${id}/ (${live}); kept on purpose, remove by hand when no longer needed`,
    });
  }
  return retained;
}
