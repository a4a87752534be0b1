// The Kubernetes objects of a tenant's (or preview's) namespace on aws, through @pulumi/kubernetes:
// the namespace (restricted pod security), its quota and default limits, a network policy that
// admits traffic from the namespace itself and the ingress controller only, the ServiceAccount
// the IRSA role trusts, the credentials Secrets and the ConfigMap the app's chart reads. Every name
// comes from core/tenant-resources.ts, the same place the Argo CD values take them from. Kept
// apart from the AWS resources so the objects can be rendered on their own (tenant-kubernetes.render.test.ts).
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { CACHE_SECRET_KEYS, DATABASE_SECRET_KEYS, type WorkloadObjects } from "../../core/tenant-resources.ts";

export interface TenantKubernetesSpec {
  readonly objects: WorkloadObjects;
  readonly labels: Record<string, string>;
  readonly quota: { cpu: string; memory: string; pods: string };
  /** The tenant app's IAM role (IRSA); its trust policy names `objects.serviceAccount`. */
  readonly roleArn: pulumi.Input<string>;
  readonly database: Record<(typeof DATABASE_SECRET_KEYS)[number], pulumi.Input<string>>;
  readonly cache: Record<(typeof CACHE_SECRET_KEYS)[number], pulumi.Input<string>>;
  /** Non-secret settings for the ConfigMap. */
  readonly config: Record<string, pulumi.Input<string>>;
}

export interface TenantKubernetesObjects {
  readonly namespace: k8s.core.v1.Namespace;
  readonly serviceAccount: k8s.core.v1.ServiceAccount;
}

export function tenantKubernetesObjects(spec: TenantKubernetesSpec, opts: pulumi.CustomResourceOptions): TenantKubernetesObjects {
  const { objects } = spec;
  const labels = { "app.kubernetes.io/managed-by": "stackrail", ...spec.labels };
  const namespace = new k8s.core.v1.Namespace(
    objects.namespace,
    { metadata: { name: objects.namespace, labels: { ...labels, "pod-security.kubernetes.io/enforce": "restricted" } } },
    opts,
  );
  const nsOpts: pulumi.CustomResourceOptions = { ...opts, dependsOn: [namespace] };
  const meta = (name: string, extra: Partial<k8s.types.input.meta.v1.ObjectMeta> = {}): k8s.types.input.meta.v1.ObjectMeta => ({
    name,
    namespace: objects.namespace,
    labels,
    ...extra,
  });

  new k8s.core.v1.ResourceQuota(
    "quota",
    { metadata: meta("tenant-quota"), spec: { hard: { "requests.cpu": spec.quota.cpu, "requests.memory": spec.quota.memory, pods: spec.quota.pods } } },
    nsOpts,
  );
  new k8s.core.v1.LimitRange(
    "limits",
    {
      metadata: meta("tenant-limits"),
      spec: { limits: [{ type: "Container", default: { cpu: "500m", memory: "512Mi" }, defaultRequest: { cpu: "100m", memory: "128Mi" } }] },
    },
    nsOpts,
  );
  new k8s.networking.v1.NetworkPolicy(
    "isolation",
    {
      metadata: meta("tenant-isolation"),
      spec: {
        podSelector: {},
        policyTypes: ["Ingress"],
        ingress: [{ from: [{ podSelector: {} }] }, { from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } } }] }],
      },
    },
    nsOpts,
  );
  const serviceAccount = new k8s.core.v1.ServiceAccount(
    "app",
    { metadata: meta(objects.serviceAccount, { annotations: { "eks.amazonaws.com/role-arn": spec.roleArn } }), automountServiceAccountToken: false },
    nsOpts,
  );
  // Two Secrets, not one: the database and the cache are separate grants, and the chart mounts each
  // where it is used.
  new k8s.core.v1.Secret("database-credentials", { metadata: meta(objects.databaseSecret), type: "Opaque", stringData: spec.database }, nsOpts);
  new k8s.core.v1.Secret("cache-credentials", { metadata: meta(objects.cacheSecret), type: "Opaque", stringData: spec.cache }, nsOpts);
  new k8s.core.v1.ConfigMap("config", { metadata: meta(objects.configMap), data: spec.config }, nsOpts);
  return { namespace, serviceAccount };
}
