// Issue 16, item 1: every Secret, ConfigMap and ServiceAccount that a tenant's (or preview's)
// Argo CD Application names in its Helm values is one the aws program creates, in the namespace
// the Application deploys to. The manifests are rendered the way the handlers render them, from
// the program's own (mocked) outputs, and the values are walked for references, so a name that
// drifts on either side fails here rather than in a cluster.
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { previewArgsSchema } from "../preview.ts";
import { tenantArgsSchema } from "../tenant.ts";
import { renderPreviewFiles, renderTenantFiles } from "../../worker/gitops/manifests.ts";
import { SETTINGS } from "../../worker/gitops/fixtures.test-support.ts";
import { infraFromOutputs } from "../../worker/handlers/tenant-support.ts";
import { runWithMocks, type MockRun } from "./mock-harness.ts";
import { REGION_OUTPUTS_FIXTURE } from "./region-outputs.test-support.ts";
import { awsPreviewProgram, awsTenantProgram } from "./tenant.ts";

type Kind = "Secret" | "ConfigMap" | "ServiceAccount";
interface Reference {
  kind: Kind;
  name: string;
  /** Where in the values it was found, for the failure message. */
  at: string;
}

const K8S_TYPE: Record<Kind, string> = {
  Secret: "kubernetes:core/v1:Secret",
  ConfigMap: "kubernetes:core/v1:ConfigMap",
  ServiceAccount: "kubernetes:core/v1:ServiceAccount",
};

/** Every object reference in Helm values, by the conventions charts use for them. */
function references(value: unknown, at = "valuesObject"): Reference[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => references(v, `${at}[${i}]`));
  if (typeof value !== "object" || value === null) return [];
  const out: Reference[] = [];
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const here = `${at}.${key}`;
    if (typeof v === "string" && /^(existingSecret|secretName)$/.test(key)) out.push({ kind: "Secret", name: v, at: here });
    else if (typeof v === "string" && /^(existingConfigMap|configMapName)$/.test(key)) out.push({ kind: "ConfigMap", name: v, at: here });
    else if (typeof v === "string" && key === "serviceAccountName") out.push({ kind: "ServiceAccount", name: v, at: here });
    else if (key === "serviceAccount" && typeof v === "object" && v !== null && typeof (v as { name?: unknown }).name === "string") {
      const sa = v as { name: string; create?: unknown };
      // A chart that creates its own account would not get the IRSA role the program annotates.
      expect(sa.create, `${here}.create`).toBe(false);
      out.push({ kind: "ServiceAccount", name: sa.name, at: `${here}.name` });
    } else out.push(...references(v, here));
  }
  return out;
}

interface Meta {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  stringData?: Record<string, unknown>;
  data?: Record<string, unknown>;
}

function created(run: MockRun, kind: Kind, name: string, namespace: string): Meta | undefined {
  return run
    .ofType(K8S_TYPE[kind])
    .map((r) => r.inputs as Meta)
    .find((m) => m.metadata?.name === name && m.metadata.namespace === namespace);
}

interface RenderedApp {
  spec: { destination: { namespace: string }; source: { helm: { valuesObject: Record<string, unknown> } } };
}

function checkReferences(run: MockRun, app: RenderedApp): Reference[] {
  const namespace = app.spec.destination.namespace;
  const ns = run.one("kubernetes:core/v1:Namespace").inputs as Meta;
  expect(ns.metadata?.name, "the Application deploys into the namespace the program creates").toBe(namespace);
  const refs = references(app.spec.source.helm.valuesObject);
  // Not vacuous: the values name the credentials, the configuration and the workload identity.
  expect(new Set(refs.map((r) => r.kind))).toEqual(new Set(["Secret", "ConfigMap", "ServiceAccount"]));
  for (const ref of refs) {
    expect(
      created(run, ref.kind, ref.name, namespace),
      `${ref.at} names ${ref.kind} ${namespace}/${ref.name}, which the program does not create`,
    ).toBeDefined();
  }
  // The IRSA role trusts exactly the account the values name.
  const sa = refs.find((r) => r.kind === "ServiceAccount");
  const trust = String(run.one("aws:iam/role:Role").inputs.assumeRolePolicy);
  expect(trust).toContain(`system:serviceaccount:${namespace}:${sa?.name}`);
  expect(created(run, "ServiceAccount", sa?.name ?? "", namespace)?.metadata?.annotations?.["eks.amazonaws.com/role-arn"]).toBeTruthy();
  return refs;
}

describe("item 1: the names a tenant's manifests reference are the objects the aws program creates", () => {
  it.each(["pool", "silo"] as const)("%s tenant", async (tier) => {
    const run = await runWithMocks(
      awsTenantProgram(tenantArgsSchema.parse({ tenantId: "acme", tier, region: "eu-west-1", version: "1.2.3" })),
      REGION_OUTPUTS_FIXTURE,
    );
    const files = renderTenantFiles({ id: "acme", region: "eu-west-1", tier, version: "1.2.3" }, infraFromOutputs(run.outputs, "tenant-acme"), SETTINGS);
    const app = parse(files["tenants/acme/application.yaml"] ?? "") as RenderedApp;
    const refs = checkReferences(run, app);
    // The credentials Secrets hold the keys the chart reads, and no other tenant's.
    for (const ref of refs.filter((r) => r.kind === "Secret")) {
      const secret = created(run, "Secret", ref.name, "tenant-acme");
      expect(Object.keys(secret?.stringData ?? {}).length, ref.name).toBeGreaterThan(0);
    }
  });

  it("preview environment", async () => {
    const args = previewArgsSchema.parse({ repo: "Web.App", pr: 42, headSha: "b".repeat(40), expiresAt: "2030-01-01T00:00:00Z" });
    const run = await runWithMocks(awsPreviewProgram(args), REGION_OUTPUTS_FIXTURE);
    const files = renderPreviewFiles(
      { repoName: "Web.App", pr: 42, headSha: "b".repeat(40), region: "eu-west-1" },
      infraFromOutputs(run.outputs, "preview-web-app-pr-42"),
      SETTINGS,
    );
    const app = parse(files["previews/web-app-pr-42/application.yaml"] ?? "") as RenderedApp;
    checkReferences(run, app);
  });
});
