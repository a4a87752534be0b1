// Every name derived from a tenant id, computed and checked in one place before anything is
// created (issue 11, finding 4). An id that passes the id pattern but yields a name some system
// refuses (Argo CD and Kubernetes want DNS-1123 names, MySQL 32-character users, ...) would fail
// only after the stack had created resources; here it fails first: with a 400 at the tenant API,
// and again in the provision handler before its first `up`, whoever enqueued the job.
import { ValidationError } from "./errors.ts";
import { STACK_NAME_PATTERN, TENANT_ID_PATTERN, tenantStackName } from "./ids.ts";
import { logicalNames, type LogicalNames } from "./naming.ts";
import { tenantNamespace, workloadObjects } from "./tenant-resources.ts";
import { isLayoutPath, tenantDir } from "./gitops-paths.ts";

/** RFC 1123 label: what Kubernetes requires of namespaces and most object names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Kubernetes label values (the tenant id is one: `stackrail.io/tenant`). */
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
/** Helm release names: a DNS label of at most 53 characters (Helm adds suffixes to it). */
const HELM_RELEASE_MAX = 53;

export interface TenantNames {
  readonly id: string;
  /** Pulumi stack, in either tier's project. */
  readonly stack: string;
  /** Database, user, ACL user, key prefix and attachments path in each tier. */
  readonly pool: LogicalNames;
  readonly silo: LogicalNames;
  /** Kubernetes namespace of the tenant's workloads. */
  readonly namespace: string;
  /** Argo CD Application and AppProject (`tenants/<id>/*.yaml`). */
  readonly application: string;
  readonly appProject: string;
  /** The Application the regional ApplicationSet generates for the tenant's folder. */
  readonly gitopsApplication: string;
  readonly helmRelease: string;
  /** Kubernetes Secrets holding the database and cache credentials. */
  readonly databaseSecret: string;
  readonly cacheSecret: string;
  /** Value of the `stackrail.io/tenant` label. */
  readonly labelValue: string;
  /** Folder of the tenant's manifests in the GitOps repository. */
  readonly gitopsDir: string;
}

function check(what: string, value: string, ok: boolean, rule: string): string {
  if (!ok) throw new ValidationError("id", `gives ${what} "${value}", which is not ${rule}`);
  return value;
}

function label(what: string, value: string): string {
  return check(what, value, DNS_LABEL.test(value), "a DNS-1123 label (Kubernetes and Argo CD names)");
}

function logical(scope: "tenant" | "silo", id: string): LogicalNames {
  try {
    return logicalNames(scope, id);
  } catch (err) {
    throw new ValidationError("id", `gives no usable ${scope === "silo" ? "silo" : "pool"} database, user or cache names (${(err as Error).message})`);
  }
}

/** All names of tenant `id`, each checked against the rules of the system that will hold it; throws ValidationError("id", …). */
export function deriveTenantNames(id: string): TenantNames {
  if (!TENANT_ID_PATTERN.test(id)) throw new ValidationError("id", `must match ${TENANT_ID_PATTERN.source}`);
  const stack = tenantStackName(id);
  check("the stack name", stack, STACK_NAME_PATTERN.test(stack), "a stack name Stackrail runs");
  const application = label("the Argo CD Application name", `tenant-${id}`);
  const gitopsDir = tenantDir(id);
  check("the GitOps folder", gitopsDir, isLayoutPath(`${gitopsDir}/tenant.yaml`), "a path of the GitOps layout");
  return {
    id,
    stack,
    pool: logical("tenant", id),
    silo: logical("silo", id),
    namespace: label("the Kubernetes namespace", tenantNamespace(id)),
    application,
    appProject: label("the Argo CD AppProject name", application),
    gitopsApplication: label("the generated Argo CD Application name", `tenant-${id}-gitops`),
    helmRelease: check("the Helm release name", id, DNS_LABEL.test(id) && id.length <= HELM_RELEASE_MAX, "a Helm release name"),
    databaseSecret: label("the database Secret name", workloadObjects(tenantNamespace(id)).databaseSecret),
    cacheSecret: label("the cache Secret name", workloadObjects(tenantNamespace(id)).cacheSecret),
    labelValue: check("the tenant label", id, LABEL_VALUE.test(id), "a Kubernetes label value"),
    gitopsDir,
  };
}
