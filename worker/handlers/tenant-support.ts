// What the tenant handlers share: turning a stack's outputs into the non-secret values manifests
// carry, the GitOps settings from configuration, and running the tenant program.
import { parse } from "yaml";
import type { Config } from "../../core/config.ts";
import { StackrailError } from "../../core/errors.ts";
import { workloadObjects } from "../../core/tenant-resources.ts";
import { publicUrl } from "../../core/urls.ts";
import { tierSchema, type Region, type TenantId, type Tier } from "../../core/ids.ts";
import type { Trigger } from "../../core/jobs.ts";
import { SECRET_FIELD_NAME } from "../../core/logger.ts";
import { SECRET_PLACEHOLDER } from "../pulumi-protocol.ts";
import { renderRegionFiles, type GitOpsSettings, type InfraOutputs } from "../gitops/manifests.ts";
import { tenantPath } from "../../core/gitops-paths.ts";
import { commitMessage, type GitOpsWriter } from "../gitops/writer.ts";
import type { StepContext } from "../job-worker.ts";
import type { OperationSummary, StackOperation, StackOperationRequest } from "../pulumi-protocol.ts";
import type { StackRunner } from "../pulumi-runner.ts";

/** Pulumi project of preview stacks; tenant stacks live in one project per tier (tenantProject). */
export const PROJECT_NAME = "stackrail";

export function gitopsSettings(config: Config): GitOpsSettings {
  return {
    // Argo CD gets repository credentials from its own secrets; a manifest never carries them.
    appRepoUrl: publicUrl(config.appRepoUrl),
    chartPath: config.appChartPath,
    argocdNamespace: config.argocdNamespace,
    destinationServer: publicUrl(config.argocdDestination),
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

/** The stack's Kubernetes objects the values name, from the one place the programs take them from too. */
type WorkloadReferences = Pick<InfraOutputs, "credentialsSecretName" | "cacheCredentialsSecretName" | "configMapName" | "serviceAccountName">;

function workloadReferences(namespace: string): WorkloadReferences {
  const o = workloadObjects(namespace);
  return {
    credentialsSecretName: o.databaseSecret,
    cacheCredentialsSecretName: o.cacheSecret,
    configMapName: o.configMap,
    serviceAccountName: o.serviceAccount,
  };
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
    ...workloadReferences(secretBase),
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
  /** Update plans and the approved digest (see StackOperationRequest). */
  plan: Pick<StackOperationRequest, "savePlan" | "plan" | "expectedDigest"> = {},
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
    { stack: `tenant-${args.tenantId}`, projectName: tenantProject(args.tier), operation, program: "tenant", args: programArgs, policyPacks, ...plan },
    { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
  );
}

export function tenantCommitMessage(ctx: StepContext, kind: string, tenantId: string, trigger: Trigger, summary?: string): string {
  return commitMessage({ jobId: ctx.jobId, kind, subject: `tenant-${tenantId}`, trigger, ...(summary ? { summary } : {}) });
}

/** What the GitOps repository (the system of record) says about a tenant, for the guards of destructive jobs. */
export interface RepositoryTenant {
  readonly present: boolean;
  readonly tier: Tier | undefined;
  /** True when the file says so, and when a file exists that cannot be read: a guard fails safe. */
  readonly protected: boolean;
}

export async function repositoryTenant(writer: Pick<GitOpsWriter, "readFile">, id: TenantId): Promise<RepositoryTenant> {
  const text = await writer.readFile(tenantPath(id, "tenant.yaml"));
  if (text === null) return { present: false, tier: undefined, protected: false };
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    doc = null;
  }
  if (typeof doc !== "object" || doc === null) return { present: true, tier: undefined, protected: true };
  const fields = doc as { tier?: unknown; protected?: unknown };
  const tier = tierSchema.safeParse(fields.tier);
  return { present: true, tier: tier.success ? tier.data : undefined, protected: fields.protected === true || /^protected: true$/m.test(text) };
}

/** A failed job's `code: message` for a tenant record: scrubbed when a scrubber is given, else the code alone. */
export function failureSummary(err: unknown, scrub?: (text: string) => string): string {
  const code = err instanceof StackrailError ? err.code : "internal";
  if (!scrub) return code;
  return scrub(`${code}: ${err instanceof Error ? err.message : String(err)}`).slice(0, 500);
}
