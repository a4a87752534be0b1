// A deprovisioned tenant's code (issue 11, finding 7; issue 14): in the blob store, its own folder's
// bundles and function versions (`tenants/<id>/bundles/`, `tenants/<id>/functions/`; its backups
// stay); on this machine, the cached archives (`functions/<id>/`). Installations from before the
// blob store kept bundles content-addressed under the data dir (`bundles/<sha256>`), shared by
// tenants that uploaded the same bytes: such a bundle goes only when no other tenant's version and
// no waiting upload of another tenant still names it.
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { blobKeys, type BlobStore } from "../core/blob-store.ts";
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
  blobs?: BlobStore,
): Promise<RemovedFiles> {
  const id = tenantIdSchema.parse(tenantId);
  let stored = { functions: 0, bundles: 0 };
  if (blobs !== undefined) stored = await removeStoredCode(blobs, id);
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
  return { functions: Math.max(functions, stored.functions), bundles: bundles + stored.bundles };
}

/** The tenant's bundles and function versions in the blob store; its backups are kept on purpose. */
async function removeStoredCode(blobs: BlobStore, tenantId: string): Promise<RemovedFiles> {
  const bundles = await blobs.list(blobKeys.bundles(tenantId));
  const functionsPrefix = blobKeys.functions(tenantId);
  const versions = await blobs.list(functionsPrefix);
  const names = new Set(versions.map((e) => e.key.slice(functionsPrefix.length).split("/")[0]));
  for (const e of [...versions, ...bundles]) await blobs.delete(e.key);
  return { functions: names.size, bundles: bundles.length };
}
