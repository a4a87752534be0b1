// What the tenant handlers share: turning a stack's outputs into the non-secret values manifests
// carry, the GitOps settings from configuration, and running the tenant program.
import type { Config } from "../../core/config.ts";
import type { Region, TenantId, Tier } from "../../core/ids.ts";
import type { Trigger } from "../../core/jobs.ts";
import { SECRET_FIELD_NAME } from "../../core/logger.ts";
import { SECRET_PLACEHOLDER } from "../pulumi-protocol.ts";
import { renderRegionFiles, type GitOpsSettings, type InfraOutputs } from "../gitops/manifests.ts";
import { commitMessage, type GitOpsWriter } from "../gitops/writer.ts";
import type { StepContext } from "../job-worker.ts";
import type { OperationSummary, StackOperation } from "../pulumi-protocol.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import { PROJECT_NAME } from "./stack-operation.ts";

export function gitopsSettings(config: Config): GitOpsSettings {
  return {
    appRepoUrl: config.appRepoUrl,
    chartPath: config.appChartPath,
    argocdNamespace: config.argocdNamespace,
    destinationServer: config.argocdDestination,
  };
}

/**
 * The regional Argo CD objects of a region that are missing or out of date in the repository,
 * pointing at the repository the writer commits to. Jobs that put something in a region commit
 * them with their own files, so the region's first tenant or preview creates them. Files already
 * up to date are left out: validating the ApplicationSet loads its large validator.
 */
export async function regionFiles(
  config: Config,
  writer: Pick<GitOpsWriter, "source" | "readFile">,
  region: Region,
  previews: boolean,
): Promise<Record<string, string>> {
  const files = renderRegionFiles(
    { region, previews },
    { ...gitopsSettings(config), gitopsRepoUrl: writer.source.repoURL, gitopsBranch: writer.source.revision },
  );
  const stale = await Promise.all(Object.entries(files).map(async ([file, text]) => ((await writer.readFile(file)) === text ? [] : [[file, text] as const])));
  return Object.fromEntries(stale.flat());
}

const str = (v: unknown, fallback = ""): string => (typeof v === "string" ? v : fallback);
const num = (v: unknown, fallback: number): number => (typeof v === "number" ? v : fallback);

/**
 * The allow-listed, non-secret outputs of a tenant or preview stack, shaped for manifests.
 * Credentials stay in Pulumi state (and Secrets Manager on aws); manifests name the Kubernetes
 * secrets that hold them.
 */
export function infraFromOutputs(outputs: Record<string, unknown>, secretBase: string): InfraOutputs {
  return {
    dbHost: str(outputs.databaseHost),
    dbPort: num(outputs.databasePort, 3306),
    dbName: str(outputs.databaseName),
    cacheHost: str(outputs.cacheHost),
    cachePort: num(outputs.cachePort, 6379),
    cachePrefix: str(outputs.cacheKeyPrefix),
    credentialsSecretName: `${secretBase}-db`,
    cacheCredentialsSecretName: `${secretBase}-cache`,
    ...(typeof outputs.attachmentsPath === "string" ? { attachmentsPath: outputs.attachmentsPath } : {}),
    ...(typeof outputs.attachmentsAccessPointId === "string" ? { attachmentsAccessPoint: outputs.attachmentsAccessPointId } : {}),
    ...(typeof outputs.hostname === "string" ? { hostname: outputs.hostname } : {}),
  };
}

/** Stack outputs with every secret (already "[secret]") and credential-named value left out. */
export function publicOutputs(outputs: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).filter(([k, v]) => v !== SECRET_PLACEHOLDER && !SECRET_FIELD_NAME.test(k)));
}

export interface TenantStackArgs {
  readonly tenantId: TenantId;
  readonly tier: Tier;
  readonly region: Region;
  readonly version?: string;
  readonly readOnly?: boolean;
  readonly keepCacheKeys?: boolean;
}

/**
 * Tenant stacks live in one Pulumi project per tier, so that during a tier move the target
 * (`tenant-<id>` in the target tier's project) is provisioned beside the source and the tenant id
 * and stack name never change.
 */
export function tenantProject(tier: Tier): string {
  return `${PROJECT_NAME}-${tier}`;
}

export function runTenantStack(
  runner: StackRunner,
  ctx: StepContext,
  operation: StackOperation,
  args: TenantStackArgs,
  policyPacks: readonly string[],
): Promise<OperationSummary> {
  const programArgs: Record<string, string | number | boolean> = {
    tenantId: args.tenantId,
    tier: args.tier,
    region: args.region,
  };
  if (args.version) programArgs.version = args.version;
  if (args.readOnly) programArgs.readOnly = true;
  if (args.keepCacheKeys) programArgs.keepCacheKeys = true;
  return runner.run(
    { stack: `tenant-${args.tenantId}`, projectName: tenantProject(args.tier), operation, program: "tenant", args: programArgs, policyPacks },
    { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
  );
}

export function tenantCommitMessage(ctx: StepContext, kind: string, tenantId: string, trigger: Trigger, summary?: string): string {
  return commitMessage({ jobId: ctx.jobId, kind, subject: `tenant-${tenantId}`, trigger, ...(summary ? { summary } : {}) });
}
