// Issue 11, finding 4: every name derived from a tenant id is computed and checked before anything
// is created. Ids the brief's pattern accepts yield names every system takes (the rendered Argo CD
// manifests validate against the CRDs); ids it refuses (`sp--`, a trailing `-`) are refused here
// with the field named, whatever path they came in by.
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ValidationError } from "./errors.ts";
import { STACK_NAME_PATTERN, TENANT_ID_PATTERN, tenantIdSchema } from "./ids.ts";
import { logicalNames } from "./naming.ts";
import { defaultCrdValidator } from "../worker/gitops/crd-validator.ts";
import { INFRA, SETTINGS } from "../worker/gitops/fixtures.test-support.ts";
import { renderTenantFiles } from "../worker/gitops/manifests.ts";
import { infraFromOutputs } from "../worker/handlers/tenant-support.ts";
import { deriveTenantNames } from "./tenant-names.ts";

const GOOD = ["abc", "a-b", "a--b", "ab1", "a1-2b", `a${"b".repeat(38)}c`, "sp-1", "x9z"];
const BAD = ["sp--", "ab-", "a-", "a", "ab", "1ab", "-ab", "Ab-c", "a_b", "a.b", `a${"b".repeat(39)}c`, "ab\n", ""];

describe("finding 4: tenant ids and the names derived from them", () => {
  it("uses the brief's id pattern, in the schema and in the stack name pattern", () => {
    expect(TENANT_ID_PATTERN.source).toBe("^[a-z][a-z0-9-]{1,38}[a-z0-9]$");
    for (const id of GOOD) {
      expect(tenantIdSchema.safeParse(id).success, id).toBe(true);
      expect(STACK_NAME_PATTERN.test(`tenant-${id}`), id).toBe(true);
    }
    for (const id of BAD) {
      expect(tenantIdSchema.safeParse(id).success, JSON.stringify(id)).toBe(false);
      expect(STACK_NAME_PATTERN.test(`tenant-${id}`), JSON.stringify(id)).toBe(false);
    }
  });

  it("refuses an id whose names could not all be created, naming the field", () => {
    for (const id of BAD) {
      expect(() => deriveTenantNames(id), JSON.stringify(id)).toThrow(ValidationError);
      try {
        deriveTenantNames(id);
      } catch (err) {
        expect((err as ValidationError).field).toBe("id");
      }
    }
  });

  it("derives every name of a valid id, each the one the programs and manifests use", () => {
    for (const id of GOOD) {
      const n = deriveTenantNames(id);
      expect(n.stack).toBe(`tenant-${id}`);
      expect(n.pool).toEqual(logicalNames("tenant", id));
      expect(n.silo).toEqual(logicalNames("silo", id));
      expect(n.gitopsDir).toBe(`tenants/${id}`);
      const files = renderTenantFiles({ id, region: "eu-west-1", tier: "pool", version: "1.2.3" }, infraFromOutputs({ ...INFRA_OUTPUTS }, n.stack), SETTINGS);
      const app = parse(files[`tenants/${id}/application.yaml`] ?? "") as {
        metadata: { name: string; labels: Record<string, string> };
        spec: {
          project: string;
          destination: { namespace: string };
          source: { helm: { releaseName: string; valuesObject: { database: { existingSecret: string }; cache: { existingSecret: string } } } };
        };
      };
      expect(app.metadata.name).toBe(n.application);
      expect(app.spec.project).toBe(n.appProject);
      expect(app.spec.destination.namespace).toBe(n.namespace);
      expect(app.spec.source.helm.releaseName).toBe(n.helmRelease);
      expect(app.metadata.labels["stackrail.io/tenant"]).toBe(n.labelValue);
      expect(app.spec.source.helm.valuesObject.database.existingSecret).toBe(n.databaseSecret);
      expect(app.spec.source.helm.valuesObject.cache.existingSecret).toBe(n.cacheSecret);
      // What Argo CD would be given validates against its CRDs: no id that passes fails after `up`.
      expect(() => defaultCrdValidator().validateFiles(files), id).not.toThrow();
    }
  });
});

/** Stack outputs shaped like the tenant program's, from the manifest fixtures. */
const INFRA_OUTPUTS = {
  databaseHost: INFRA.dbHost,
  databasePort: INFRA.dbPort,
  databaseName: INFRA.dbName,
  cacheHost: INFRA.cacheHost,
  cachePort: INFRA.cachePort,
  cacheKeyPrefix: INFRA.cachePrefix,
};
