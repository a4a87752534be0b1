// A deprovisioned tenant's files under the data dir (issue 11, finding 7): its function versions
// (`functions/<id>/<name>/v<n>/`) and the uploaded bundles only it referenced. Bundles are stored
// content-addressed (`bundles/<sha256>`) by the tenant API, so two tenants that uploaded the same
// bytes share one file: a bundle goes only when no other tenant's version and no waiting upload
// of another tenant still names it.
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { tenantIdSchema } from "../core/ids.ts";

const SHA256 = /^[0-9a-f]{64}$/;

/** The bundle digests recorded by a tenant's function versions. */
async function bundlesOf(tenantDir: string): Promise<Set<string>> {
  const out = new Set<string>();
  const functions = await readdir(tenantDir).catch(() => [] as string[]);
  for (const name of functions) {
    const versions = await readdir(path.join(tenantDir, name)).catch(() => [] as string[]);
    for (const v of versions.filter((x) => /^v\d+$/.test(x))) {
      const text = await readFile(path.join(tenantDir, name, v, "function.json"), "utf8").catch(() => null);
      if (text === null) continue;
      try {
        const sha = (JSON.parse(text) as { sha256?: unknown }).sha256;
        if (typeof sha === "string" && SHA256.test(sha)) out.add(sha);
      } catch {
        // An unreadable record names no bundle; its folder goes with the tenant's.
      }
    }
  }
  return out;
}

export interface RemovedFiles {
  readonly functions: number;
  readonly bundles: number;
}

/** Bundles named by the queue's `tenant.function` jobs: this tenant's, and every other tenant's. */
export interface BundleReferences {
  readonly own: ReadonlySet<string>;
  readonly others: ReadonlySet<string>;
}

/**
 * Removes `functions/<tenantId>/` and every bundle this tenant referenced (in a function version
 * or an upload job) that no other tenant does (in a version or a job, finished or not).
 */
export async function removeTenantFunctionFiles(
  dataDir: string,
  tenantId: string,
  jobs: BundleReferences = { own: new Set(), others: new Set() },
): Promise<RemovedFiles> {
  const id = tenantIdSchema.parse(tenantId);
  const root = path.join(dataDir, "functions");
  const own = path.join(root, id);
  const mine = new Set([...(await bundlesOf(own)), ...[...jobs.own].filter((sha) => SHA256.test(sha))]);
  const functions = (await readdir(own).catch(() => [] as string[])).length;
  const others = new Set(jobs.others);
  for (const other of await readdir(root).catch(() => [] as string[])) {
    if (other === id) continue;
    for (const sha of await bundlesOf(path.join(root, other))) others.add(sha);
  }
  await rm(own, { recursive: true, force: true });
  let bundles = 0;
  for (const sha of mine) {
    if (others.has(sha)) continue;
    await rm(path.join(dataDir, "bundles", sha), { force: true });
    bundles += 1;
  }
  return { functions, bundles };
}
