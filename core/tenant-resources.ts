// The names that cross from a Pulumi program to something else that must find the same object:
// the Kubernetes objects a tenant's (or preview's) stack creates and its Argo CD Application's Helm
// values name (namespace, credentials Secrets, ConfigMap, ServiceAccount), the keys those Secrets
// hold, and the Pulumi project the regional stack lives in. The programs and the manifests both
// import them from here (issue 16, item 1), so neither side can rename one alone.
import { previewKey, type TenantId } from "./ids.ts";

/**
 * Project of the `region-<region>` stacks. Tenant stacks live in per-tier projects and previews in
 * `stackrail`; all of them read the region through a StackReference naming this project.
 */
export const REGION_PROJECT = "stackrail";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function tenantNamespace(id: TenantId): string {
  return `tenant-${id}`;
}

export function previewNamespace(repoName: string, pr: number): string {
  return `preview-${previewKey(repoName, pr)}`;
}

/** The Kubernetes objects a workload's stack creates in its namespace for the app's chart. */
export interface WorkloadObjects {
  readonly namespace: string;
  /** Secret with DATABASE_SECRET_KEYS: the tenant's own MySQL user on its own database. */
  readonly databaseSecret: string;
  /** Secret with CACHE_SECRET_KEYS: the tenant's own Redis ACL user, confined to its key prefix. */
  readonly cacheSecret: string;
  /** ConfigMap with the non-secret settings (hosts, database name, key prefix, access point). */
  readonly configMap: string;
  /** The account the app's pods run as; on aws its IAM role (IRSA) trusts exactly this account. */
  readonly serviceAccount: string;
}

/** Names of a namespace's workload objects (`tenant-<id>` or `preview-<repo>-pr-<n>`). */
export function workloadObjects(namespace: string): WorkloadObjects {
  const names: WorkloadObjects = {
    namespace,
    databaseSecret: `${namespace}-db`,
    cacheSecret: `${namespace}-cache`,
    configMap: `${namespace}-config`,
    serviceAccount: "app",
  };
  for (const [what, name] of Object.entries(names) as [string, string][]) {
    if (!DNS_LABEL.test(name)) throw new RangeError(`${what} "${name}" is not a DNS-1123 label`);
  }
  return names;
}

/** Keys of the database Secret: what the chart reads (`database.existingSecret`). */
export const DATABASE_SECRET_KEYS = ["host", "port", "database", "username", "password"] as const;
/** Keys of the cache Secret (`cache.existingSecret`); `tls` is "true" or "false". */
export const CACHE_SECRET_KEYS = ["host", "port", "username", "password", "keyPrefix", "tls"] as const;

/**
 * Secrets Manager name of a workload stack's credentials (`{mysql, redis}` JSON). A tenant's two
 * tiers exist side by side during a tier move, so the tier is part of a tenant's name (one name for
 * both would make the target tier's `up` fail: Secrets Manager names are unique per region). The
 * aws tenant program creates it under this name; the data job (issue 16, item 4) reads it.
 */
export function credentialsSecretId(namespace: string, tier?: "pool" | "silo"): string {
  return tier ? `stackrail/${namespace}/${tier}/credentials` : `stackrail/${namespace}/credentials`;
}

/**
 * Pulumi project of a tenant's data-job stack (`tenant-<id>`, like its tier stacks): the dump,
 * copy and verification of a tier move, or the final backup of a deprovision, run as a Kubernetes
 * Job in the tenant's namespace. A tenant's jobs run one at a time, so one stack per tenant is
 * enough; it is destroyed when its result has been read.
 */
export const DATA_JOB_PROJECT = "stackrail-data";

/** Names of a data job's Kubernetes objects in the tenant's namespace (one set per worker job). */
export interface DataJobObjects {
  readonly job: string;
  /** Secret with the MySQL option files (`source.cnf`, `target.cnf`) read from Secrets Manager. */
  readonly credentialsSecret: string;
  /** ConfigMap holding the job's script. */
  readonly scriptConfigMap: string;
  /** ServiceAccount its IAM role (IRSA) trusts: writes to the region bucket, nothing else. */
  readonly serviceAccount: string;
}

export function dataJobObjects(jobId: string): DataJobObjects {
  // The worker's job id may be long or upper-case; Kubernetes names are DNS labels.
  let h = 0x811c9dc5;
  for (const c of jobId) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  const base = `stackrail-data-${h.toString(16).padStart(8, "0")}`;
  return { job: base, credentialsSecret: `${base}-credentials`, scriptConfigMap: `${base}-script`, serviceAccount: base };
}

/**
 * Keys of a data job's objects in the region's bucket, inside the tenant's own folder: backups use
 * the layout of the blob store's backups (`tenants/<id>/backups/<database>-<time>.sql.gz`, see
 * core/blob-store.ts `blobKeys.backup`), the result the worker waits for sits beside them.
 */
export const dataJobKeys = {
  backup: (tenantId: TenantId, database: string, stamp: string): string => `tenants/${tenantId}/backups/${database}-${stamp}.sql.gz`,
  result: (tenantId: TenantId, jobId: string): string => `tenants/${tenantId}/data-jobs/${jobId}.json`,
};
