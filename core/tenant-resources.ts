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
