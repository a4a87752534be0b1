// tenant.function: a tenant's uploaded code bundle (already validated and stored by the API in the
// blob store, `tenants/<id>/bundles/<sha256>`) is deployed. Both targets store it per tenant and function as a numbered
// version (the same bundle and handler again is not a new version). aws target: the version's
// `bundle.zip` and the uploaded handler go to the tenant-functions program (its own Lambda in the
// tenant-code account) through the engine, on every job (an `up` of an unchanged version changes nothing).
//
// Installations from before the blob store kept the same things on the worker's disk: bundles
// content-addressed under the data dir (`bundles/<sha256>`) and versions as
// `functions/<id>/<name>/v<n>/function.json`. Those are read when the blob store has nothing, and
// copied into it, so that a job queued before the upgrade still finds its bundle and the next
// version of a function deployed before it follows its last one instead of overwriting v1.
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { blobKeys, blobStoreFor, tenantKey, type BlobStore } from "../../core/blob-store.ts";
import { ConflictError, NotFoundError, ProgramError } from "../../core/errors.ts";
import type { JobHandler } from "../job-worker.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";

const versionRecordSchema = z.object({
  version: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  handler: z.string(),
  jobId: z.string(),
  deployedAt: z.string(),
});
type VersionRecord = z.infer<typeof versionRecordSchema>;

/**
 * A function's versions live in the blob store (`tenants/<id>/functions/<name>/v<n>.json`), so
 * the next job finds them on whichever worker runs it; each record names its bundle by digest
 * (`tenants/<id>/bundles/<sha256>`, written by the API).
 */
const versionKey = (tenantId: string, name: string, version: number): string => tenantKey(tenantId, "functions", name, `v${version}.json`);

async function latest(blobs: BlobStore, dataDir: string, tenantId: string, name: string): Promise<VersionRecord | null> {
  const prefix = tenantKey(tenantId, "functions", name) + "/";
  const versions = (await blobs.list(prefix))
    .map((e) => /^v(\d+)\.json$/.exec(e.key.slice(prefix.length))?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
  const text = versions[0] === undefined ? null : await blobs.get(versionKey(tenantId, name, versions[0]));
  const stored = text === null ? null : versionRecordSchema.parse(JSON.parse(text.toString("utf8")));
  // A version only this disk knows (written before the blob store) goes into it, so that numbering follows it everywhere.
  const local = await latestOnDisk(dataDir, tenantId, name);
  if (local !== null && (stored === null || local.version > stored.version)) {
    await blobs.put(versionKey(tenantId, name, local.version), JSON.stringify(local, null, 2) + "\n");
    return local;
  }
  return stored;
}

/** The highest version with a readable record under `functions/<id>/<name>/` on this disk. */
async function latestOnDisk(dataDir: string, tenantId: string, name: string): Promise<VersionRecord | null> {
  const dir = path.join(dataDir, "functions", tenantId, name);
  const versions = (await readdir(dir).catch(() => [] as string[]))
    .map((v) => /^v(\d+)$/.exec(v)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
  for (const v of versions) {
    const text = await readFile(path.join(dir, `v${v}`, "function.json"), "utf8").catch(() => null);
    if (text === null) continue;
    try {
      const record = versionRecordSchema.safeParse(JSON.parse(text));
      if (record.success && record.data.version === v) return record.data;
    } catch {
      // An unreadable record is skipped; an older one may still say where numbering stands.
    }
  }
  return null;
}

/**
 * The bundle: from the blob store, or from the data dir where it was uploaded before the blob
 * store (checked against its digest), then copied into the blob store for the next worker.
 */
async function bundleOf(blobs: BlobStore, dataDir: string, tenantId: string, sha256: string): Promise<Buffer | null> {
  const key = blobKeys.bundle(tenantId, sha256);
  const stored = await blobs.get(key);
  if (stored !== null) return stored;
  const legacy = await readFile(path.join(dataDir, "bundles", sha256)).catch(() => null);
  if (legacy === null || createHash("sha256").update(legacy).digest("hex") !== sha256) return null;
  await blobs.put(key, legacy);
  return legacy;
}

const isFile = (file: string): Promise<boolean> =>
  stat(file).then(
    (st) => st.isFile(),
    () => false,
  );

/**
 * The version's archive on this worker's disk, `functions/<id>/<name>/v<n>/bundle.zip`: a cache of
 * the blob store (fetched again when missing), because Pulumi reads an archive from a path and picks
 * its format by the extension the content-addressed upload does not have.
 */
async function localArchive(dataDir: string, tenantId: string, name: string, record: VersionRecord, bundle: Buffer): Promise<string> {
  const dir = path.join(dataDir, "functions", tenantId, name, `v${record.version}`);
  const archive = path.join(dir, "bundle.zip");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cached = (await isFile(archive)) ? await readFile(archive) : null;
  if (cached === null || !cached.equals(bundle)) await writeFile(archive, bundle, { mode: 0o600 });
  await writeFile(path.join(dir, "function.json"), JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
  return archive;
}

export function tenantFunctionHandler(deps: TenantHandlerDeps & { readonly tenantCodeRoleArn?: string }): JobHandler<"tenant.function"> {
  const blobs = deps.blobs ?? blobStoreFor(deps.config.blobStore);
  return async (ctx) => {
    const { tenantId, name, bundleSha256, handler } = ctx.data;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    // Checked here as at the API: no code is deployed for a tenant on its way out or never provisioned.
    if (tenant.state !== "active") throw new ConflictError(`tenant ${tenantId} is ${tenant.state}; code is deployed to an active tenant only`);
    const bundle = await bundleOf(blobs, deps.config.dataDir, tenantId, bundleSha256);
    if (bundle === null) {
      throw new ProgramError(`bundle ${bundleSha256.slice(0, 12)} is no longer stored; upload the function again`);
    }

    const aws = deps.config.target === "aws";
    if (aws && !deps.tenantCodeRoleArn) throw new ProgramError("STACKRAIL_TENANT_CODE_ROLE_ARN is needed to deploy tenant code on aws");

    // Both targets keep each bundle and handler as a numbered version; on aws the version's
    // `bundle.zip` is what the program deploys.
    const current = await latest(blobs, deps.config.dataDir, tenantId, name);
    const unchanged = current !== null && current.sha256 === bundleSha256 && current.handler === handler;
    let record: VersionRecord;
    if (unchanged) {
      record = current;
    } else {
      record = { version: (current?.version ?? 0) + 1, sha256: bundleSha256, handler, jobId: ctx.jobId, deployedAt: new Date().toISOString() };
      await blobs.put(versionKey(tenantId, name, record.version), JSON.stringify(record, null, 2) + "\n");
    }
    const archive = await localArchive(deps.config.dataDir, tenantId, name, record, bundle);

    if (aws) {
      await ctx.progress(`function ${name} v${record.version} (${handler}): stack up`);
      const summary = await deps.runner.run(
        {
          stack: `tenant-${tenantId}`,
          projectName: `stackrail-fn-${name}`,
          operation: "up",
          program: "tenant-functions",
          args: { tenantId, region: tenant.region, functionName: name, codePath: archive, handler, assumeRoleArn: deps.tenantCodeRoleArn ?? "" },
          policyPacks: deps.policyPacks,
        },
        { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
      );
      return {
        tenantId,
        name,
        version: record.version,
        sha256: bundleSha256,
        changed: !unchanged,
        outputs: summary.outputs,
        resourceChanges: summary.resourceChanges,
      };
    }

    if (unchanged) {
      await ctx.progress(`function ${name} already at v${record.version} with this bundle`);
      return { tenantId, name, version: record.version, sha256: bundleSha256, changed: false };
    }
    await ctx.progress(`function ${name} stored as v${record.version}`);
    return { tenantId, name, version: record.version, sha256: bundleSha256, changed: true };
  };
}
