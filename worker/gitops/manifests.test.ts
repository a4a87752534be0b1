import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ManifestInvalidError, ValidationError } from "../../core/errors.ts";
import { CRD_DIR, CrdValidator, defaultCrdValidator } from "./crd-validator.ts";
import { renderPreviewFiles, renderRegionFiles, renderTenantFiles, tenantDeletion, type InfraOutputs } from "./manifests.ts";
import { assertLayoutPath, isLayoutPath, previewPath, regionPath, tenantPath } from "../../core/gitops-paths.ts";
import { CANARY, INFRA, SETTINGS, TENANT } from "./fixtures.test-support.ts";

describe("CRD copy", () => {
  const shared = path.resolve(import.meta.dirname, "../../../shared/fixtures/argocd-crds");
  it.runIf(existsSync(shared))("equals ../shared/fixtures/argocd-crds byte for byte", () => {
    const names = readdirSync(shared)
      .filter((f) => f.endsWith(".yaml"))
      .sort();
    expect(
      readdirSync(CRD_DIR)
        .filter((f) => f.endsWith(".yaml"))
        .sort(),
    ).toEqual(names);
    for (const name of names) expect(readFileSync(path.join(CRD_DIR, name)).equals(readFileSync(path.join(shared, name)))).toBe(true);
  });
});

describe("renderTenantFiles", () => {
  const files = renderTenantFiles(TENANT, INFRA, SETTINGS);

  it("renders exactly the three tenant files, valid against the Argo CD CRDs", () => {
    expect(Object.keys(files).sort()).toEqual(["tenants/acme/application.yaml", "tenants/acme/appproject.yaml", "tenants/acme/tenant.yaml"]);
    defaultCrdValidator().validateFiles(files);
  });

  it("is byte-identical when rendered again, with sorted keys", () => {
    expect(renderTenantFiles({ ...TENANT }, { ...INFRA }, { ...SETTINGS })).toEqual(files);
    const app = files["tenants/acme/application.yaml"]!;
    const keys = Object.keys(parse(app) as object);
    expect(keys).toEqual([...keys].sort());
  });

  it("deploys the tenant version into the tenant namespace with infra outputs as values, never a secret", () => {
    const app = parse(files["tenants/acme/application.yaml"]!) as {
      spec: { source: { targetRevision: string; helm: { valuesObject: Record<string, Record<string, unknown>> } }; destination: { namespace: string } };
    };
    expect(app.spec.source.targetRevision).toBe("1.2.3");
    expect(app.spec.destination.namespace).toBe("tenant-acme");
    expect(app.spec.source.helm.valuesObject.database).toEqual({ host: INFRA.dbHost, port: 3306, name: "tenant_acme", existingSecret: "tenant-acme-db" });
    expect(app.spec.source.helm.valuesObject.cache).toMatchObject({ existingSecret: "tenant-acme-cache", keyPrefix: "tenant:acme:" });
  });

  it("drops credentials handed in with the infrastructure outputs", () => {
    const leaky = { ...INFRA, dbPassword: CANARY, cachePassword: CANARY, connectionString: `mysql://u:${CANARY}@h/db` } as InfraOutputs;
    const out = renderTenantFiles(TENANT, leaky, SETTINGS);
    for (const text of Object.values(out)) expect(text).not.toContain(CANARY);
    expect(out).toEqual(files);
  });

  it("confines the tenant in its AppProject", () => {
    const project = parse(files["tenants/acme/appproject.yaml"]!) as { spec: Record<string, unknown> };
    expect(project.spec.destinations).toEqual([{ server: SETTINGS.destinationServer, namespace: "tenant-acme" }]);
    expect(project.spec.sourceRepos).toEqual([SETTINGS.appRepoUrl]);
    expect(project.spec.clusterResourceWhitelist).toEqual([]);
  });

  it("keeps protected tenants from being pruned or cascade-deleted", () => {
    const out = renderTenantFiles({ ...TENANT, protected: true }, INFRA, SETTINGS);
    const app = parse(out["tenants/acme/application.yaml"]!) as {
      metadata: { finalizers?: string[] };
      spec: { syncPolicy: { automated: { prune: boolean } } };
    };
    expect(app.metadata.finalizers).toBeUndefined();
    expect(app.spec.syncPolicy.automated.prune).toBe(false);
    defaultCrdValidator().validateFiles(out);
  });

  it("refuses infra outputs that are not what they claim to be", () => {
    expect(() => renderTenantFiles(TENANT, { ...INFRA, dbHost: "db; rm -rf /" }, SETTINGS)).toThrow(ManifestInvalidError);
    expect(() => renderTenantFiles(TENANT, { ...INFRA, dbPort: 70000 }, SETTINGS)).toThrow(ManifestInvalidError);
    expect(() => renderTenantFiles(TENANT, INFRA, { ...SETTINGS, appRepoUrl: `https://x:${CANARY}@github.com/a/b` })).toThrow(ManifestInvalidError);
  });

  it("renders deletions for deprovisioning", () => {
    expect(tenantDeletion("acme")).toEqual({ "tenants/acme/tenant.yaml": null, "tenants/acme/application.yaml": null, "tenants/acme/appproject.yaml": null });
  });
});

describe("previews and regions", () => {
  it("renders a preview Application under previews/<repo>-pr-<n>/ that validates", () => {
    const files = renderPreviewFiles({ repoName: "Web.App", pr: 42, headSha: "a".repeat(40), region: "eu-west-1" }, INFRA, SETTINGS);
    expect(Object.keys(files)).toEqual(["previews/web-app-pr-42/application.yaml"]);
    defaultCrdValidator().validateFiles(files);
  });

  it("renders regional objects (AppProject, ApplicationSet, previews) that validate", () => {
    const files = renderRegionFiles({ region: "eu-west-1", previews: true }, SETTINGS);
    expect(Object.keys(files).sort()).toEqual([
      "regions/eu-west-1/appproject.yaml",
      "regions/eu-west-1/previews-appproject.yaml",
      "regions/eu-west-1/previews.yaml",
      "regions/eu-west-1/tenants.yaml",
    ]);
    defaultCrdValidator().validateFiles(files);
    expect(Object.keys(renderRegionFiles({ region: "us-east-1", previews: false }, SETTINGS))).toHaveLength(2);
  });
});

describe("CrdValidator", () => {
  const validator = new CrdValidator();
  const app = () => parse(renderTenantFiles(TENANT, INFRA, SETTINGS)["tenants/acme/application.yaml"]!) as Record<string, Record<string, unknown>>;

  it("names the object and the failing path for a missing required field", () => {
    const bad = app();
    delete bad.spec!.destination;
    expect(() => validator.validateObject(bad, "tenants/acme/application.yaml")).toThrow(
      /tenants\/acme\/application.yaml: Application "tenant-acme".*missing required field "destination"/,
    );
  });

  it("refuses unknown fields, wrong types and unknown kinds", () => {
    const typo = app();
    (typo.spec as Record<string, unknown>).projet = "x";
    expect(() => validator.validateObject(typo)).toThrow(/unknown field "projet"/);
    const wrongType = app();
    (wrongType.spec as Record<string, unknown>).revisionHistoryLimit = "ten";
    expect(() => validator.validateObject(wrongType)).toThrow(ManifestInvalidError);
    expect(() => validator.validateObject({ apiVersion: "v1", kind: "Secret", metadata: { name: "x" }, data: { p: CANARY } })).toThrow(
      /no schema for this kind/,
    );
  });

  it("accepts int-or-string fields as either and nothing else", () => {
    const withRetry = (limit: unknown) => {
      const a = app();
      (a.spec as Record<string, unknown>).source = { repoURL: "https://x/y.git", kustomize: { replicas: [{ name: "web", count: limit }] } };
      return a;
    };
    expect(() => validator.validateObject(withRetry(3))).not.toThrow();
    expect(() => validator.validateObject(withRetry("3"))).not.toThrow();
    expect(() => validator.validateObject(withRetry(true))).toThrow(ManifestInvalidError);
  });

  it("refuses paths outside the layout", () => {
    expect(() => validator.validateFiles({ "../etc/passwd": "x" })).toThrow(ManifestInvalidError);
  });
});

describe("paths", () => {
  it("computes the layout paths from valid identifiers", () => {
    expect(tenantPath("acme", "tenant.yaml")).toBe("tenants/acme/tenant.yaml");
    expect(previewPath("My.Repo", 7)).toBe("previews/my-repo-pr-7/application.yaml");
    expect(regionPath("eu-west-1", "tenants")).toBe("regions/eu-west-1/tenants.yaml");
  });

  const hostile = [
    "..",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "acme/../../x",
    "tenants/../..",
    ".git",
    "acme\0",
    "acme\n..",
    "ACME",
    "ac",
    "a".repeat(41),
    "a".repeat(10_000),
    "ac me",
    "acmé",
    "аcme" /* Cyrillic a */,
    "acme\u202e",
    "acme/",
    "~root",
    "C:\\x",
    "-acme",
    "",
  ];

  it("no input produces a path outside tenants/, previews/ and regions/", () => {
    const produced: string[] = [];
    const attempt = (fn: () => string) => {
      try {
        produced.push(fn());
      } catch (error) {
        expect(error).toBeInstanceOf(ValidationError);
      }
    };
    for (const h of hostile) {
      attempt(() => tenantPath(h, "application.yaml"));
      attempt(() => tenantPath("acme", h as "tenant.yaml"));
      attempt(() => previewPath(h, 1));
      attempt(() => regionPath(h, "tenants"));
      attempt(() => regionPath("eu-west-1", h));
    }
    for (const n of [0, -1, 1.5, Number.NaN, Infinity, 1e12]) attempt(() => previewPath("repo", n));
    // Random strings from the whole Unicode range.
    for (let i = 0; i < 2000; i++) {
      const s = Array.from({ length: 1 + Math.floor(Math.random() * 60) }, () => String.fromCodePoint(Math.floor(Math.random() * 0x2ffff))).join("");
      attempt(() => tenantPath(s, "tenant.yaml"));
      attempt(() => previewPath(s, 1 + Math.floor(Math.random() * 1000)));
      attempt(() => regionPath(s, "x"));
    }
    for (const p of produced) {
      expect(p).toMatch(/^(tenants|previews|regions)\/[a-z0-9-]+\/[a-z0-9-]+\.yaml$/);
      expect(path.posix.normalize(p)).toBe(p);
      expect(isLayoutPath(p)).toBe(true);
    }
    for (const h of hostile) expect(() => assertLayoutPath(h)).toThrow(ValidationError);
    expect(() => assertLayoutPath("tenants/acme/../../x.yaml")).toThrow(ValidationError);
  });
});
