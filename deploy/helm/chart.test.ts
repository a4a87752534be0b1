// The Helm chart, checked the way a cluster would take it: `helm lint` and `helm template` with the
// Helm CLI built from Go modules (scripts/install-helm.ts), and every rendered object validated
// against the Kubernetes API schemas shipped by the kubernetes-models packages (generated from the
// Kubernetes OpenAPI spec, and from the Prometheus Operator CRDs for the ServiceMonitor). Nothing is
// downloaded here: `npm ci` builds Helm (postinstall) and installs the schema packages (devDependencies),
// and `npm test` runs this file; a missing tool or package fails it with the command that installs it.
import { execFile } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { PROJECT_ROOT } from "../../core/engine.ts";
import { helmLocation } from "../../scripts/install-helm.ts";

const run = promisify(execFile);
const CHART = path.join(PROJECT_ROOT, "deploy/helm/stackrail");
const TEST_VALUES = path.join(CHART, "ci/test-values.yaml");

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

interface Container {
  name: string;
  args?: string[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet: { path: string; port: string } };
  readinessProbe?: { httpGet: { path: string; port: string } };
  securityContext?: Record<string, unknown>;
  resources?: Record<string, unknown>;
}

interface PodSpec {
  terminationGracePeriodSeconds: number;
  securityContext: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: Container[];
}

type Validator = (object: K8sObject) => void;

let helm = "";
let helmHome = "";
let validatorFor: (apiVersion: string, kind: string) => Promise<Validator>;

async function helmRun(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(helm, args, {
    env: {
      ...process.env,
      HELM_CACHE_HOME: path.join(helmHome, "cache"),
      HELM_CONFIG_HOME: path.join(helmHome, "config"),
      HELM_DATA_HOME: path.join(helmHome, "data"),
    },
    maxBuffer: 16 * 1024 * 1024,
  });
}

async function render(args: string[] = []): Promise<K8sObject[]> {
  const { stdout } = await helmRun(["template", "sr", CHART, "--namespace", "platform", ...args]);
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** `helm template` that must fail: its error text. */
async function renderError(args: string[]): Promise<string> {
  try {
    await helmRun(["template", "sr", CHART, ...args]);
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? err);
  }
  throw new Error(`helm template ${args.join(" ")} rendered, but was expected to fail`);
}

const find = (objects: K8sObject[], kind: string, name: string): K8sObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}`);
  return found;
};

const podSpec = (deployment: K8sObject): PodSpec => (deployment.spec as { template: { spec: PodSpec } }).template.spec;

function withValues(values: string): string[] {
  const file = path.join(helmHome, `values-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, values);
  return ["--values", file];
}

beforeAll(async () => {
  const location = helmLocation();
  try {
    accessSync(location.helm, constants.X_OK);
  } catch {
    throw new Error(
      `helm v${location.version} is missing at ${path.relative(PROJECT_ROOT, location.helm)}: \`npm ci\` builds it from Go modules ` +
        "(postinstall), or run `node scripts/install-helm.ts` (needs Go; pinned by deploy/helm/tools/go.mod).",
    );
  }
  helm = location.helm;
  helmHome = mkdtempSync(path.join(tmpdir(), "stackrail-helm-"));

  // Resolved here rather than imported at the top so that a missing package fails with its install command.
  const packages = ["kubernetes-models", "@kubernetes-models/prometheus-operator"];
  for (const name of packages) {
    try {
      await import(name);
    } catch {
      throw new Error(
        `${name} is missing: the chart test validates rendered objects against its Kubernetes schemas. ` +
          "It is a devDependency of the project: run `npm ci`.",
      );
    }
  }
  validatorFor = async (apiVersion, kind) => {
    const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
    const module =
      group === "monitoring.coreos.com"
        ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
        : `kubernetes-models/${group ? `${group}/` : ""}${version}/${kind}`;
    const exported = ((await import(module)) as Record<string, unknown>)[kind] as new (data: unknown) => { validate(): void };
    if (typeof exported !== "function") throw new Error(`${module} has no model ${kind}: no schema to validate ${apiVersion} ${kind} against`);
    return (object) => new exported(object).validate();
  };
});

afterAll(() => {
  if (helmHome) rmSync(helmHome, { recursive: true, force: true });
});

describe("helm lint", () => {
  it("passes in strict mode with the test values", async () => {
    const { stdout } = await helmRun(["lint", CHART, "--strict", "--values", TEST_VALUES]);
    expect(stdout).toContain("1 chart(s) linted, 0 chart(s) failed");
  });
});

describe("rendered objects", () => {
  let objects: K8sObject[] = [];
  beforeAll(async () => {
    objects = await render(["--values", TEST_VALUES]);
  });

  it("renders every object the chart promises", () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        "ConfigMap/sr-stackrail",
        "Deployment/sr-stackrail-api",
        "Deployment/sr-stackrail-worker",
        "PodDisruptionBudget/sr-stackrail-api",
        "PodDisruptionBudget/sr-stackrail-worker",
        "Secret/sr-stackrail",
        "Service/sr-stackrail-api",
        "Service/sr-stackrail-worker",
        "ServiceAccount/sr-stackrail",
        "ServiceMonitor/sr-stackrail",
      ].sort(),
    );
  });

  it("validates every object against its Kubernetes API schema", async () => {
    for (const object of objects) {
      const validate = await validatorFor(object.apiVersion, object.kind);
      expect(() => validate(object), `${object.kind}/${object.metadata.name}`).not.toThrow();
    }
  });

  it("has a validator that rejects what the API server would reject", async () => {
    const deployment = structuredClone(find(objects, "Deployment", "sr-stackrail-api"));
    (deployment.spec as Record<string, unknown>).replicas = "two";
    const validate = await validatorFor("apps/v1", "Deployment");
    expect(() => validate(deployment)).toThrow(/replicas must be integer/);
    const monitor = structuredClone(find(objects, "ServiceMonitor", "sr-stackrail"));
    (monitor.spec as Record<string, unknown>).endpoints = "metrics";
    const validateMonitor = await validatorFor("monitoring.coreos.com/v1", "ServiceMonitor");
    expect(() => validateMonitor(monitor)).toThrow(/endpoints must be array/);
  });

  it("runs each role with its --role, non-root, with resources and the probes of its listener", () => {
    const api = podSpec(find(objects, "Deployment", "sr-stackrail-api"));
    const worker = podSpec(find(objects, "Deployment", "sr-stackrail-worker"));
    expect(api.containers[0]?.args).toEqual(["--role", "api"]);
    expect(worker.containers[0]?.args).toEqual(["--role", "worker"]);
    expect(api.containers[0]?.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(api.containers[0]?.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http" });
    // A worker has no HTTP edge: on the same port, its probe listener serves /healthz and /readyz.
    expect(worker.containers[0]?.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(worker.containers[0]?.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(worker.containers[0]?.ports).toContainEqual(expect.objectContaining({ name: "http", containerPort: 8080 }));
    for (const spec of [api, worker]) {
      expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
      expect(spec.containers[0]?.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
      expect(spec.containers[0]?.resources).toHaveProperty("requests.memory");
    }
    const pdb = find(objects, "PodDisruptionBudget", "sr-stackrail-worker").spec as Record<string, unknown>;
    expect(pdb).toMatchObject({ maxUnavailable: 1, selector: { matchLabels: { "app.kubernetes.io/component": "worker" } } });
  });

  it("keeps secret values out of the ConfigMap and gives both roles the config and the secret", () => {
    const data = find(objects, "ConfigMap", "sr-stackrail").data as Record<string, string>;
    const secret = find(objects, "Secret", "sr-stackrail").stringData as Record<string, string>;
    expect(Object.keys(secret).sort()).toEqual(["GITHUB_WEBHOOK_SECRET", "PULUMI_CONFIG_PASSPHRASE", "REDIS_URL", "STACKRAIL_API_TOKENS"]);
    const configText = JSON.stringify(data);
    for (const value of Object.values(secret)) expect(configText).not.toContain(value);
    expect(data).toMatchObject({
      PULUMI_BACKEND_URL: "s3://stackrail-state?region=eu-west-1",
      STACKRAIL_METRICS_PORT: "9464",
      STACKRAIL_DATA_DIR: "/var/lib/stackrail/data",
    });
    for (const name of ["sr-stackrail-api", "sr-stackrail-worker"]) {
      expect(podSpec(find(objects, "Deployment", name)).containers[0]?.envFrom).toEqual([
        { configMapRef: { name: "sr-stackrail" } },
        { secretRef: { name: "sr-stackrail" } },
      ]);
    }
  });

  it("gives pods more time to stop than Stackrail's own shutdown grace", () => {
    const grace = Number((find(objects, "ConfigMap", "sr-stackrail").data as Record<string, string>).STACKRAIL_SHUTDOWN_GRACE_MS);
    for (const name of ["sr-stackrail-api", "sr-stackrail-worker"]) {
      expect(podSpec(find(objects, "Deployment", name)).terminationGracePeriodSeconds * 1000).toBeGreaterThan(grace);
    }
  });
});

describe("values", () => {
  it("derives the termination grace period from shutdownGraceMs", async () => {
    const objects = await render(["--values", TEST_VALUES, "--set", "shutdownGraceMs=600500"]);
    expect((find(objects, "ConfigMap", "sr-stackrail").data as Record<string, string>).STACKRAIL_SHUTDOWN_GRACE_MS).toBe("600500");
    expect(podSpec(find(objects, "Deployment", "sr-stackrail-worker")).terminationGracePeriodSeconds).toBe(601 + 30);
  });

  it("uses an existing Secret instead of making one", async () => {
    const objects = await render(["--set", "existingSecret=stackrail-from-vault"]);
    expect(objects.some((o) => o.kind === "Secret")).toBe(false);
    expect(objects.some((o) => o.kind === "ServiceMonitor")).toBe(false);
    expect(podSpec(find(objects, "Deployment", "sr-stackrail-worker")).containers[0]?.envFrom?.[1]).toEqual({
      secretRef: { name: "stackrail-from-vault" },
    });
    for (const object of objects) (await validatorFor(object.apiVersion, object.kind))(object);
  });

  it("refuses a secret in the ConfigMap, by name or as a URL password", async () => {
    expect(await renderError(["--values", TEST_VALUES, "--set", "config.GITHUB_TOKEN=ghp_x"])).toContain("config.GITHUB_TOKEN is a secret");
    expect(await renderError(withValues('existingSecret: s\nconfig:\n  LOCAL_MYSQL_URL: "mysql://root:hunter2@db:3306"\n'))).toContain(
      "config.LOCAL_MYSQL_URL carries a password",
    );
  });

  it("refuses values the schema does not know (values.schema.json), in lint and template alike", async () => {
    expect(await renderError(["--values", TEST_VALUES, "--set", "worker.replica=3"])).toContain("additional properties 'replica' not allowed");
    await expect(helmRun(["lint", CHART, "--strict", "--values", TEST_VALUES, "--set", "worker.replica=3"])).rejects.toThrow(/1 chart\(s\) failed/);
  });

  it("refuses to render without a Pulumi secrets provider, or with both secret sources", async () => {
    expect(await renderError([])).toContain("PULUMI_CONFIG_PASSPHRASE is required");
    expect(await renderError(["--values", TEST_VALUES, "--set", "existingSecret=other"])).toContain("either existingSecret or secrets");
  });
});
