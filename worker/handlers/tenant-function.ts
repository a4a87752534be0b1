// tenant.function: a tenant's uploaded code bundle (already validated and stored content-
// addressed by the API) is deployed. Local target: stored per tenant and function as a new
// numbered version (the same bundle and handler again is not a new version). aws target: the
// tenant-functions program (its own Lambda in the tenant-code account) through the engine.
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

export function tenantFunctionHandler(deps: TenantHandlerDeps & { readonly tenantCodeRoleArn?: string }): JobHandler<"tenant.function"> {
  return async (ctx) => {
    const { tenantId, name, bundleSha256, handler } = ctx.data;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    // Checked here as at the API: no code is deployed for a tenant on its way out or never provisioned.
    if (tenant.state !== "active") throw new ConflictError(`tenant ${tenantId} is ${tenant.state}; code is deployed to an active tenant only`);
    const bundle = path.join(deps.config.dataDir, "bundles", bundleSha256);
    if (
      !(await stat(bundle).then(
        (s) => s.isFile(),
        () => false,
      ))
    ) {
      throw new ProgramError(`bundle ${bundleSha256.slice(0, 12)} is no longer stored; upload the function again`);
    }

    if (deps.config.target === "aws") {
      if (!deps.tenantCodeRoleArn) throw new ProgramError("STACKRAIL_TENANT_CODE_ROLE_ARN is needed to deploy tenant code on aws");
      const summary = await deps.runner.run(
        {
          stack: `tenant-${tenantId}`,
          projectName: `stackrail-fn-${name}`,
          operation: "up",
          program: "tenant-functions",
          args: { tenantId, region: tenant.region, functionName: name, codePath: bundle, assumeRoleArn: deps.tenantCodeRoleArn },
          policyPacks: deps.policyPacks,
        },
        { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
      );
      return { tenantId, name, sha256: bundleSha256, outputs: summary.outputs, resourceChanges: summary.resourceChanges };
    }

    const dir = path.join(deps.config.dataDir, "functions", tenantId, name);
    const current = await latest(dir);
    if (current && current.sha256 === bundleSha256 && current.handler === handler) {
      await ctx.progress(`function ${name} already at v${current.version} with this bundle`);
      return { tenantId, name, version: current.version, sha256: bundleSha256, changed: false };
    }
    const version = (current?.version ?? 0) + 1;
    const target = path.join(dir, `v${version}`);
    await mkdir(target, { recursive: true, mode: 0o700 });
    await copyFile(bundle, path.join(target, "bundle.zip"));
    const record: VersionRecord = { version, sha256: bundleSha256, handler, jobId: ctx.jobId, deployedAt: new Date().toISOString() };
    await writeFile(path.join(target, "function.json"), JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
    await ctx.progress(`function ${name} stored as v${version}`);
    return { tenantId, name, version, sha256: bundleSha256, changed: true };
  };
}
