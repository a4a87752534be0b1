// The JSON schemas that manifests are validated against: the Argo CD 3.6.0 CRDs' openAPIV3Schema
// (copies in ./crds; CI clones the repository elsewhere, a test keeps them equal to
// shared/fixtures), our own Tenant file and the part of `metadata` we rely on.
//
// Kubernetes' structural-schema extensions are rewritten into plain JSON Schema, so that ajv needs
// no custom keyword or format and the validators can be generated ahead of time as standalone code
// (scripts/build-validators.ts): compiling the CRDs at run time costs a worker ~100-280 MiB.
// - `x-kubernetes-preserve-unknown-fields` allows unknown fields; elsewhere objects are closed, so a
//   misspelt field fails here (as `kubectl apply --validate=strict` would) instead of being pruned;
// - `x-kubernetes-int-or-string` accepts an integer or a string;
// - the formats the CRDs use become ranges and patterns; descriptions are dropped;
// - a sub-schema that occurs more than once (the Application source and template, repeated inside
//   the ApplicationSet's generators) is written once under `$defs` and referenced, so ajv generates
//   its code once: 8.4 MB of generated code for the ApplicationSet becomes 0.4 MB.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

export const CRD_DIR = path.join(import.meta.dirname, "crds");

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** Key of the Tenant file's schema (not a Kubernetes object). */
export const TENANT_KEY = "stackrail.io/v1 Tenant";
/** Key of the metadata schema every Kubernetes object is checked against as well. */
export const METADATA_KEY = "metadata";

/** Our own desired-state file (tenants/<id>/tenant.yaml); not a Kubernetes object. */
const TENANT_SCHEMA: JsonObject = {
  type: "object",
  additionalProperties: false,
  required: ["apiVersion", "kind", "id", "region", "tier", "version", "protected"],
  properties: {
    apiVersion: { const: "stackrail.io/v1" },
    kind: { const: "Tenant" },
    id: { type: "string", pattern: "^[a-z][a-z0-9-]{2,39}$" },
    region: { type: "string", pattern: "^[a-z]{2}(-[a-z]+)+-\\d$" },
    tier: { enum: ["pool", "silo"] },
    version: { type: "string", minLength: 1, maxLength: 80 },
    protected: { type: "boolean" },
  },
};

// `metadata` in a CRD is only `type: object`; the API server checks it. Check what we rely on.
const METADATA_SCHEMA: JsonObject = {
  type: "object",
  required: ["name"],
  properties: {
    name: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", maxLength: 253 },
    namespace: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 },
    labels: { type: "object", additionalProperties: { type: "string", maxLength: 63 } },
    annotations: { type: "object", additionalProperties: { type: "string" } },
    finalizers: { type: "array", items: { type: "string" } },
  },
  additionalProperties: false,
};

const FORMATS: Record<string, JsonObject> = {
  int32: { minimum: -(2 ** 31), maximum: 2 ** 31 - 1 },
  int64: { minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
  "date-time": { pattern: "^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$" },
  byte: { pattern: "^[A-Za-z0-9+/]*={0,2}$" },
};

/** Rewrites a structural schema into plain JSON Schema (see the header). */
export function structural(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(structural);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === "description" || k.startsWith("x-kubernetes-")) continue;
    // `properties`' keys are field names, not keywords: recurse into each value only.
    if (k === "properties" && isObject(v)) out[k] = Object.fromEntries(Object.entries(v).map(([f, s]) => [f, structural(s)]));
    else if (k === "format" && typeof v === "string") Object.assign(out, FORMATS[v] ?? {});
    else out[k] = structural(v);
  }
  if (schema["x-kubernetes-int-or-string"] === true && out.anyOf === undefined) {
    delete out.type;
    out.anyOf = [{ type: "integer" }, { type: "string" }];
  }
  if (out.type === "object" && isObject(out.properties) && out.additionalProperties === undefined && schema["x-kubernetes-preserve-unknown-fields"] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

/** Keywords whose values are sub-schemas (`properties` maps field names to sub-schemas). */
const SUBSCHEMA_KEYWORDS = new Set(["items", "additionalProperties", "anyOf", "allOf", "oneOf", "not"]);
/** Smaller repeated sub-schemas stay inline: a function call would cost more than it saves. */
const SHARE_MIN_CHARS = 400;

function mapSubschemas(schema: JsonObject, fn: (sub: Json) => Json): JsonObject {
  return Object.fromEntries(
    Object.entries(schema).map(([k, v]) => {
      if (k === "properties" && isObject(v)) return [k, Object.fromEntries(Object.entries(v).map(([f, s]) => [f, fn(s)]))];
      if (SUBSCHEMA_KEYWORDS.has(k)) return [k, Array.isArray(v) ? v.map(fn) : fn(v)];
      return [k, v];
    }),
  );
}

/** Writes every sub-schema that occurs more than once under `$defs`, referenced by its hash. */
export function shareRepeated(schema: JsonObject): JsonObject {
  const idOf = (s: Json): string | undefined => {
    if (!isObject(s)) return undefined;
    const text = JSON.stringify(s);
    return text.length < SHARE_MIN_CHARS ? undefined : `s${createHash("sha256").update(text).digest("hex").slice(0, 16)}`;
  };
  const seen = new Map<string, number>();
  const count = (s: Json): Json => {
    const id = idOf(s);
    if (id !== undefined) seen.set(id, (seen.get(id) ?? 0) + 1);
    if (isObject(s)) mapSubschemas(s, count);
    return s;
  };
  mapSubschemas(schema, count);
  const defs: JsonObject = {};
  const share = (s: Json): Json => {
    if (!isObject(s)) return s;
    const id = idOf(s);
    if (id === undefined || (seen.get(id) ?? 0) < 2) return mapSubschemas(s, share);
    if (!(id in defs)) defs[id] = mapSubschemas(s, share);
    return { $ref: `#/$defs/${id}` };
  };
  const out = mapSubschemas(schema, share);
  return Object.keys(defs).length === 0 ? out : { ...out, $defs: defs };
}

function crdFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort();
}

/**
 * Every schema by key (`group/version Kind`, TENANT_KEY, METADATA_KEY), rewritten by `structural`
 * and, unless `share` is false, with repeated sub-schemas shared (`shareRepeated`).
 */
export function loadSchemas(dir: string = CRD_DIR, { share = true }: { share?: boolean } = {}): Map<string, JsonObject> {
  const schemas = new Map<string, JsonObject>([
    [TENANT_KEY, TENANT_SCHEMA],
    [METADATA_KEY, METADATA_SCHEMA],
  ]);
  for (const file of crdFiles(dir)) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), "utf8"))) {
      const crd = doc.toJS() as unknown;
      if (!isObject(crd) || crd.kind !== "CustomResourceDefinition" || !isObject(crd.spec)) continue;
      const { names, group, versions } = crd.spec;
      if (!isObject(names) || typeof names.kind !== "string" || typeof group !== "string" || !Array.isArray(versions)) continue;
      for (const v of versions) {
        if (!isObject(v) || typeof v.name !== "string" || !isObject(v.schema) || !isObject(v.schema.openAPIV3Schema)) continue;
        const schema = structural(v.schema.openAPIV3Schema) as JsonObject;
        schemas.set(`${group}/${v.name} ${names.kind}`, share ? shareRepeated(schema) : schema);
      }
    }
  }
  return schemas;
}

/**
 * Identifies the schemas' inputs: the CRD files, this file (the rewrite) and the ajv version that
 * generates code. Precompiled validators are used only when their fingerprint matches.
 */
export function schemaFingerprint(dir: string = CRD_DIR, ajvVersion: string): string {
  const hash = createHash("sha256");
  hash.update(`ajv ${ajvVersion}\n`);
  hash.update(readFileSync(import.meta.filename));
  for (const file of crdFiles(dir)) hash.update(file).update(readFileSync(path.join(dir, file)));
  return hash.digest("hex").slice(0, 16);
}
