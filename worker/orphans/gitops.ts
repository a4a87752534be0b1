// The GitOps repository against the records, read through the writer's read API: `tenants/<id>/`
// and `previews/<key>/` folders that no record owns, and active tenants whose files are missing.
import { TENANT_FILES } from "../../core/gitops-paths.ts";
import type { GitOpsWriter } from "../gitops/writer.ts";
import type { AuditContext } from "./context.ts";
import { ownerOf } from "./records.ts";
import { finding } from "../../jobs/orphan-report.ts";

export interface GitOpsFolders {
  readonly tenants: ReadonlyMap<string, readonly string[]>;
  readonly previews: ReadonlyMap<string, readonly string[]>;
}

function group(files: readonly string[], top: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of files) {
    const [first, key, file] = f.split("/");
    if (first !== top || !key || !file) continue;
    out.set(key, [...(out.get(key) ?? []), file]);
  }
  return out;
}

export async function readGitOpsFolders(reader: Pick<GitOpsWriter, "listFiles">): Promise<GitOpsFolders> {
  return { tenants: group(await reader.listFiles("tenants/"), "tenants"), previews: group(await reader.listFiles("previews/"), "previews") };
}

export function checkGitOps(ctx: AuditContext, folders: GitOpsFolders): void {
  for (const [id, files] of folders.tenants) {
    const record = ctx.records.tenants.get(id);
    if (record || ctx.records.inFlight.tenants.has(id)) continue;
    ctx.add(
      finding(
        "gitops",
        `tenants/${id}/`,
        "unowned",
        `if tenant ${id} should not exist: git rm -r tenants/${id} in the GitOps repository, commit and push (Argo CD prunes its app); if it should, restart the API: it rebuilds the tenant index from the repository`,
        { detail: `${files.join(", ")}; no tenant record has this id` },
      ),
      { scope: "tenant", key: id, anyTier: true },
    );
  }
  for (const [key, files] of folders.previews) {
    if (ownerOf(ctx.records, "preview", key).owned) continue;
    ctx.add(
      finding(
        "gitops",
        `previews/${key}/`,
        "unowned",
        `git rm -r previews/${key} in the GitOps repository, commit and push (Argo CD prunes the preview's app)`,
        {
          detail: `${files.join(", ")}; no live preview has this key`,
        },
      ),
      { scope: "preview", key },
    );
  }
  for (const t of ctx.records.tenants.values()) {
    if (t.state !== "active" || ctx.records.inFlight.tenants.has(t.id)) continue;
    const present = folders.tenants.get(t.id) ?? [];
    const missing = TENANT_FILES.filter((f) => !present.includes(f));
    if (missing.length === 0) continue;
    ctx.add(
      finding("gitops", `tenants/${t.id}/`, "missing", `POST /v1/tenants/${t.id}/upgrade {"version":"${t.version}"} (commits the tenant's files again)`, {
        owner: `tenant ${t.id} (active, ${t.tier})`,
        detail: `missing: ${missing.join(", ")}`,
      }),
      { scope: "tenant", key: t.id, anyTier: true },
    );
  }
}
