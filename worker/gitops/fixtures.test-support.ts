// Shared inputs for the GitOps tests (not a test file itself).
import { workloadObjects } from "../../core/tenant-resources.ts";
import type { GitOpsSettings, InfraOutputs, TenantSpec } from "./manifests.ts";

/** Names of tenant acme's objects, from the one place programs and manifests take them. */
const ACME_OBJECTS = workloadObjects("tenant-acme");

export const SETTINGS: GitOpsSettings = {
  appRepoUrl: "https://github.com/acme/app.git",
  chartPath: "charts/app",
  argocdNamespace: "argocd",
  destinationServer: "https://kubernetes.default.svc",
  gitopsRepoUrl: "https://github.com/acme/gitops.git",
};

export const INFRA: InfraOutputs = {
  dbHost: "aurora.eu-west-1.example.internal",
  dbPort: 3306,
  dbName: "tenant_acme",
  cacheHost: "cache.eu-west-1.example.internal",
  cachePort: 6379,
  cachePrefix: "tenant:acme:",
  credentialsSecretName: ACME_OBJECTS.databaseSecret,
  cacheCredentialsSecretName: ACME_OBJECTS.cacheSecret,
  configMapName: ACME_OBJECTS.configMap,
  serviceAccountName: ACME_OBJECTS.serviceAccount,
  attachmentsAccessPoint: "fsap-0123456789abcdef0",
  hostname: "acme.eu.example.com",
};

export const TENANT: TenantSpec = { id: "acme", region: "eu-west-1", tier: "pool", version: "1.2.3" };

export const CANARY = "canary-Sup3rS3cret-7f1c9d2e";
