// tenant.function: a tenant's uploaded code bundle (already validated and stored content-
// addressed by the API) is deployed. Both targets store it per tenant and function as a numbered
// version (the same bundle and handler again is not a new version). aws target: the version's
// `bundle.zip` and the uploaded handler go to the tenant-functions program (its own Lambda in the
// tenant-code account) through the engine, on every job (an `up` of an unchanged version changes nothing).
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { ConflictError, NotFoundError, ProgramError } from "../../core/errors.ts";
import type { JobHandler } from "../job-worker.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";

interface VersionRecord {
  version: number;
  sha256: string;
  handler: string;
  jobId: string;
  deployedAt: string;
}

async function latest(dir: string): Promise<VersionRecord | null> {
  const versions = (await readdir(dir).catch(() => [] as string[]))
    .map((v) => /^v(\d+)$/.exec(v)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
  if (versions.length === 0) return null;
  return JSON.parse(await readFile(path.join(dir, `v${versions[0]}`, "function.json"), "utf8")) as VersionRecord;
}

const isFile = (file: string): Promise<boolean> =>
  stat(file).then(
    (st) => st.isFile(),
    () => false,
  );

/** A new numbered version: the bundle as `bundle.zip` and its record. */
async function storeVersion(dir: string, version: number, bundle: string, what: Pick<VersionRecord, "sha256" | "handler" | "jobId">): Promise<VersionRecord> {
  const target = path.join(dir, `v${version}`);
  await mkdir(target, { recursive: true, mode: 0o700 });
  await copyFile(bundle, path.join(target, "bundle.zip"));
  const record: VersionRecord = { version, ...what, deployedAt: new Date().toISOString() };
  await writeFile(path.join(target, "function.json"), JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
  return record;
}

export function tenantFunctionHandler(deps: TenantHandlerDeps & { readonly tenantCodeRoleArn?: string }): JobHandler<"tenant.function"> {
  return async (ctx) => {
    const { tenantId, name, bundleSha256, handler } = ctx.data;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    // Checked here as at the API: no code is deployed for a tenant on its way out or never provisioned.
    if (tenant.state !== "active") throw new ConflictError(`tenant ${tenantId} is ${tenant.state}; code is deployed to an active tenant only`);
    const bundle = path.join(deps.config.dataDir, "bundles", bundleSha256);
    if (!(await isFile(bundle))) {
      throw new ProgramError(`bundle ${bundleSha256.slice(0, 12)} is no longer stored; upload the function again`);
    }

    const aws = deps.config.target === "aws";
    if (aws && !deps.tenantCodeRoleArn) throw new ProgramError("STACKRAIL_TENANT_CODE_ROLE_ARN is needed to deploy tenant code on aws");

    // Both targets keep each bundle and handler as a numbered version; on aws the version's
    // `bundle.zip` is what the program deploys: Pulumi reads an archive by its extension, and the
    // content-addressed upload has none.
    const dir = path.join(deps.config.dataDir, "functions", tenantId, name);
    const current = await latest(dir);
    const unchanged = current !== null && current.sha256 === bundleSha256 && current.handler === handler;
    const record = unchanged ? current : await storeVersion(dir, (current?.version ?? 0) + 1, bundle, { sha256: bundleSha256, handler, jobId: ctx.jobId });
    const archive = path.join(dir, `v${record.version}`, "bundle.zip");
    // A version whose archive went missing gets it back from the upload.
    if (!(await isFile(archive))) await copyFile(bundle, archive);

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
