import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { PROJECT_ROOT } from "../../core/engine.ts";
import { ManifestInvalidError } from "../../core/errors.ts";
import { Ajv } from "ajv";
import { loadSchemas, shareRepeated, structural } from "./crd-schemas.ts";
import { CRD_DIR, CrdValidator, defaultCrdValidator } from "./crd-validator.ts";
import { renderPreviewFiles, renderRegionFiles, renderTenantFiles } from "./manifests.ts";
import { AJV_OPTIONS, buildPrecompiled, currentFingerprint, loadPrecompiled } from "./precompiled-validators.ts";
import { INFRA, SETTINGS, TENANT } from "./fixtures.test-support.ts";

// Inside the project: the generated code requires ajv's runtime helpers from node_modules.
mkdirSync(path.join(PROJECT_ROOT, ".build"), { recursive: true });
const work = mkdtempSync(path.join(PROJECT_ROOT, ".build", "test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const app = (): Obj => parse(renderTenantFiles(TENANT, INFRA, SETTINGS)["tenants/acme/application.yaml"]!) as Obj;
const spec = (o: Obj): Obj => o.spec as Obj;

/** Valid objects of every kind Stackrail writes, and broken variants of them. */
function cases(): { name: string; object: unknown }[] {
  const files = { ...renderTenantFiles(TENANT, INFRA, SETTINGS), ...renderRegionFiles({ region: "eu-west-1", previews: true }, SETTINGS) };
  Object.assign(files, renderPreviewFiles({ repoName: "app", pr: 7, headSha: "a".repeat(40), region: "eu-west-1" }, INFRA, SETTINGS));
  const valid = Object.entries(files).map(([name, text]) => ({ name, object: parse(text) as unknown }));
  const broken: { name: string; object: unknown }[] = [];
  const typo = app();
  spec(typo).projet = "x";
  broken.push({ name: "unknown field", object: typo });
  const missing = app();
  delete spec(missing).destination;
  broken.push({ name: "missing field", object: missing });
  const badName = app();
  (badName.metadata as Obj).name = "Not_A_Name";
  broken.push({ name: "metadata name", object: badName });
  for (const count of [3, "3", true, 1.5]) {
    const a = app();
    spec(a).source = { repoURL: "https://x/y.git", kustomize: { replicas: [{ name: "web", count }] } };
    broken.push({ name: `int-or-string ${JSON.stringify(count)}`, object: a });
  }
  for (const limit of [5, 2 ** 60, "5"]) {
    const a = app();
    spec(a).revisionHistoryLimit = limit;
    broken.push({ name: `int64 ${JSON.stringify(limit)}`, object: a });
  }
  const helmValues = app();
  spec(helmValues).source = { repoURL: "https://x/y.git", helm: { valuesObject: { anything: { goes: [1, "two"] } } } };
  broken.push({ name: "preserve-unknown-fields", object: helmValues });
  // Deep inside the ApplicationSet, where the Application template is a shared sub-schema.
  const appSet = (): Obj => parse(files["regions/eu-west-1/tenants.yaml"]!) as Obj;
  const templateTypo = appSet();
  ((spec(templateTypo).template as Obj).spec as Obj).source = { repoURL: "https://x/y.git", helm: { valueFilez: ["a.yaml"] } };
  broken.push({ name: "applicationset template typo", object: templateTypo });
  const generatorType = appSet();
  ((spec(generatorType).generators as Obj[])[0]!.git as Obj).files = [{ path: 7 }];
  broken.push({ name: "applicationset generator type", object: generatorType });
  broken.push({ name: "unknown kind", object: { apiVersion: "v1", kind: "Secret", metadata: { name: "x" } } });
  return [...valid, ...broken];
}

function verdict(validator: CrdValidator, object: unknown): string {
  try {
    validator.validateObject(object, "f.yaml");
    return "ok";
  } catch (error) {
    expect(error).toBeInstanceOf(ManifestInvalidError);
    return (error as Error).message;
  }
}

describe("precompiled manifest validators", () => {
  it("are what the project's install step built for the current CRDs, and the default validator uses them", () => {
    expect(loadPrecompiled()?.fingerprint).toBe(currentFingerprint());
    expect(defaultCrdValidator().source).toBe("precompiled");
  });

  it("give the same verdict and message as validators compiled at run time, for valid and broken objects", () => {
    const precompiled = new CrdValidator();
    const compiled = new CrdValidator({ precompiledDir: false });
    expect(precompiled.source).toBe("precompiled");
    expect(compiled.source).toBe("compiled");
    expect(precompiled.kinds().sort()).toEqual(compiled.kinds().sort());
    const verdicts = cases().map(({ name, object }) => [name, verdict(precompiled, object)]);
    expect(verdicts).toEqual(cases().map(({ name, object }) => [name, verdict(compiled, object)]));
    const byName = Object.fromEntries(verdicts);
    // Every rendered file is valid, every broken one is refused, and the rewrite kept the semantics.
    for (const [name, v] of verdicts) if (name?.includes("/")) expect(v, name).toBe("ok");
    expect(byName["unknown field"]).toMatch(/unknown field "projet"/);
    expect(byName["missing field"]).toMatch(/missing required field "destination"/);
    expect(byName["metadata name"]).toMatch(/\/metadata\/name/);
    expect([byName["int-or-string 3"], byName['int-or-string "3"']]).toEqual(["ok", "ok"]);
    expect(byName["int-or-string true"]).not.toBe("ok");
    expect(byName["int-or-string 1.5"]).not.toBe("ok");
    expect(byName["int64 5"]).toBe("ok");
    expect(byName[`int64 ${String(2 ** 60)}`]).not.toBe("ok");
    expect(byName['int64 "5"']).not.toBe("ok");
    expect(byName["preserve-unknown-fields"]).toBe("ok");
    expect(byName["unknown kind"]).toMatch(/no schema for this kind/);
    expect(byName["applicationset template typo"]).toMatch(/\/spec\/template\/spec\/source\/helm: unknown field "valueFilez"/);
    expect(byName["applicationset generator type"]).toMatch(/\/spec\/generators\/0\/git\/files\/0\/path: must be string/);
  });

  it("are rebuilt for changed CRDs and never used for other schemas than they were built from", async () => {
    const crds = path.join(work, "crds");
    cpSync(CRD_DIR, crds, { recursive: true });
    const root = path.join(work, "built");
    const first = await buildPrecompiled(crds, root);
    expect(first.built).toBe(true);
    expect((await buildPrecompiled(crds, root)).built).toBe(false);

    // Make `spec.project` optional in the Application CRD: the old build no longer matches.
    const file = path.join(crds, "application-crd.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replace(/(\n\s+required:\n\s+- destination\n)(\s+)- project\n/, "$1"));
    expect(loadPrecompiled(crds, root)).toBeUndefined();
    const stale = new CrdValidator({ crdDir: crds, precompiledDir: root });
    expect(stale.source).toBe("compiled");
    const noProject = app();
    delete spec(noProject).project;
    expect(verdict(stale, noProject)).toBe("ok");
    expect(verdict(new CrdValidator(), noProject)).toMatch(/missing required field "project"/);

    const second = await buildPrecompiled(crds, root);
    expect(second.built).toBe(true);
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(readdirSync(root)).toEqual([second.fingerprint]);
    expect(verdict(new CrdValidator({ crdDir: crds, precompiledDir: root }), noProject)).toBe("ok");
    expect(existsSync(path.join(root, second.fingerprint, "index.json"))).toBe(true);
  });
});

describe("shared sub-schemas", () => {
  it("find the same errors at the same places as the schemas written out in full", () => {
    const shared = loadSchemas();
    const full = loadSchemas(CRD_DIR, { share: false });
    expect(JSON.stringify(shared.get("argoproj.io/v1alpha1 ApplicationSet")).length).toBeLessThan(
      JSON.stringify(full.get("argoproj.io/v1alpha1 ApplicationSet")).length / 4,
    );
    const ajv = new Ajv(AJV_OPTIONS);
    const errorsOf = (schema: object, object: unknown) => {
      const validate = ajv.compile(schema);
      return validate(object) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.keyword} ${e.message ?? ""}`).sort();
    };
    let refused = 0;
    for (const { name, object } of cases()) {
      const o = object as Obj;
      const key = `${String(o.apiVersion)} ${String(o.kind)}`;
      const [s, f] = [shared.get(key), full.get(key)];
      if (!s || !f) continue;
      const errors = errorsOf(s, object);
      expect(errors, name).toEqual(errorsOf(f, object));
      if (errors.length > 0) refused += 1;
    }
    expect(refused).toBeGreaterThanOrEqual(7);
  });

  it("writes a repeated sub-schema once and refers to it", () => {
    const big = { type: "object", properties: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`field${i}`, { type: "string" }])) };
    const out = shareRepeated({ type: "object", properties: { a: big, b: { type: "array", items: big }, c: { type: "string" } } });
    const defs = out.$defs as Record<string, unknown>;
    expect(Object.values(defs)).toEqual([big]);
    const ref = { $ref: `#/$defs/${Object.keys(defs)[0] ?? ""}` };
    expect(out.properties).toEqual({ a: ref, b: { type: "array", items: ref }, c: { type: "string" } });
  });
});

describe("structural rewrite", () => {
  it("closes objects unless they preserve unknown fields and turns extensions into plain JSON Schema", () => {
    expect(
      structural({
        type: "object",
        description: "dropped",
        properties: {
          description: { type: "string", description: "a field named description stays" },
          port: { "x-kubernetes-int-or-string": true },
          when: { type: "string", format: "date-time" },
          free: { type: "object", properties: { a: { type: "string" } }, "x-kubernetes-preserve-unknown-fields": true },
        },
      }),
    ).toEqual({
      type: "object",
      additionalProperties: false,
      properties: {
        description: { type: "string" },
        port: { anyOf: [{ type: "integer" }, { type: "string" }] },
        when: { type: "string", pattern: expect.stringMatching(/^\^/) },
        free: { type: "object", properties: { a: { type: "string" } } },
      },
    });
  });
});
