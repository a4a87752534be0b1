// Validates every manifest against the Argo CD 3.6.0 CRDs (their openAPIV3Schema, compiled with
// ajv) before anything is committed. Kubernetes' structural-schema extensions are honoured:
// `x-kubernetes-int-or-string` accepts an integer or a string, `x-kubernetes-preserve-unknown-fields`
// allows unknown fields, and elsewhere unknown fields are refused (as `kubectl apply
// --validate=strict` would) so a misspelt field fails here rather than being pruned silently.
// The CRDs are a copy in ./crds (CI clones the repository elsewhere); a test keeps it in sync.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { parseAllDocuments } from "yaml";
import { ManifestInvalidError } from "../../core/errors.ts";
import { isLayoutPath } from "./paths.ts";

export const CRD_DIR = path.join(import.meta.dirname, "crds");

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

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

/** Rewrites a structural schema for ajv: closes objects that do not preserve unknown fields. */
function structural(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(structural);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(schema)) {
    // `properties`' keys are field names, not keywords: recurse into each value only.
    if (k === "properties" && isObject(v)) out[k] = Object.fromEntries(Object.entries(v).map(([f, s]) => [f, structural(s)]));
    else out[k] = structural(v);
  }
  if (out.type === "object" && isObject(out.properties) && out.additionalProperties === undefined && out["x-kubernetes-preserve-unknown-fields"] !== true) {
    out.additionalProperties = false;
  }
  // `metadata` in a CRD is only `type: object`; the API server checks it. Check what we rely on.
  return out;
}

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

function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: true });
  ajv.addKeyword({
    keyword: "x-kubernetes-int-or-string",
    schemaType: "boolean",
    validate: (on: boolean, data: unknown) => !on || typeof data === "string" || (typeof data === "number" && Number.isInteger(data)),
    errors: false,
  });
  for (const keyword of [
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
    // CEL rules are evaluated by the API server; there is no CEL interpreter here.
    "x-kubernetes-validations",
  ]) {
    ajv.addKeyword({ keyword });
  }
  ajv.addFormat("int32", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isSafeInteger(n) });
  ajv.addFormat("date-time", /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/);
  ajv.addFormat("byte", /^[A-Za-z0-9+/]*={0,2}$/);
  return ajv;
}

interface Crd {
  group: string;
  kind: string;
  versions: { name: string; schema: JsonObject }[];
}

function loadCrds(dir: string): Crd[] {
  const crds: Crd[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), "utf8"))) {
      const crd = doc.toJS() as unknown;
      if (!isObject(crd) || crd.kind !== "CustomResourceDefinition" || !isObject(crd.spec)) continue;
      const spec = crd.spec;
      const names = spec.names;
      if (!isObject(names) || typeof names.kind !== "string" || typeof spec.group !== "string" || !Array.isArray(spec.versions)) continue;
      const versions = spec.versions.flatMap((v) => {
        if (!isObject(v) || typeof v.name !== "string" || !isObject(v.schema) || !isObject(v.schema.openAPIV3Schema)) return [];
        return [{ name: v.name, schema: v.schema.openAPIV3Schema }];
      });
      crds.push({ group: spec.group, kind: names.kind, versions });
    }
  }
  return crds;
}

export interface ManifestObject {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown };
  [key: string]: unknown;
}

function formatError(e: ErrorObject): string {
  const where = e.instancePath || "/";
  if (e.keyword === "additionalProperties") return `${where}: unknown field "${String((e.params as { additionalProperty?: string }).additionalProperty)}"`;
  if (e.keyword === "required") return `${where}: missing required field "${String((e.params as { missingProperty?: string }).missingProperty)}"`;
  return `${where}: ${e.message ?? e.keyword}`;
}

export class CrdValidator {
  readonly #crds: Crd[];
  readonly #ajv = createAjv();
  readonly #compiled = new Map<string, ValidateFunction>();
  readonly #metadata: ValidateFunction;

  constructor(crdDir: string = CRD_DIR) {
    this.#crds = loadCrds(crdDir);
    this.#metadata = this.#ajv.compile(METADATA_SCHEMA);
  }

  /** The `group/version Kind` keys this validator knows. */
  kinds(): string[] {
    return [...this.#crds.flatMap((c) => c.versions.map((v) => `${c.group}/${v.name} ${c.kind}`)), "stackrail.io/v1 Tenant"];
  }

  #validatorFor(apiVersion: string, kind: string): ValidateFunction | undefined {
    const key = `${apiVersion} ${kind}`;
    const cached = this.#compiled.get(key);
    if (cached) return cached;
    let schema: Json | undefined;
    if (key === "stackrail.io/v1 Tenant") schema = TENANT_SCHEMA;
    for (const crd of this.#crds) {
      for (const v of crd.versions) if (`${crd.group}/${v.name}` === apiVersion && crd.kind === kind) schema = structural(v.schema);
    }
    if (schema === undefined) return undefined;
    const fn = this.#ajv.compile(schema as object);
    this.#compiled.set(key, fn);
    return fn;
  }

  /** Validates one object; throws ManifestInvalidError naming the file, the object and the failing paths. */
  validateObject(object: unknown, where = "manifest"): void {
    if (!isObject(object)) throw new ManifestInvalidError(`${where}: not a YAML mapping`);
    const apiVersion = typeof object.apiVersion === "string" ? object.apiVersion : "?";
    const kind = typeof object.kind === "string" ? object.kind : "?";
    const name = isObject(object.metadata) && typeof object.metadata.name === "string" ? object.metadata.name : typeof object.id === "string" ? object.id : "?";
    const label = `${where}: ${kind} "${name}" (${apiVersion})`;
    const validate = this.#validatorFor(apiVersion, kind);
    if (!validate) throw new ManifestInvalidError(`${label}: no schema for this kind; only ${this.kinds().join(", ")} may be committed`);
    const errors: string[] = [];
    if (!validate(object)) errors.push(...(validate.errors ?? []).map(formatError));
    if (kind !== "Tenant" && !this.#metadata(object.metadata)) {
      errors.push(...(this.#metadata.errors ?? []).map((e) => formatError({ ...e, instancePath: `/metadata${e.instancePath}` })));
    }
    if (errors.length > 0) throw new ManifestInvalidError(`${label} is invalid: ${[...new Set(errors)].slice(0, 10).join("; ")}`);
  }

  /** Validates a manifest file's text (one or more YAML documents). */
  validateText(text: string, where = "manifest"): void {
    const docs = parseAllDocuments(text);
    if (docs.length === 0) throw new ManifestInvalidError(`${where}: empty file`);
    for (const doc of docs) {
      if (doc.errors.length > 0) throw new ManifestInvalidError(`${where}: not valid YAML: ${doc.errors[0]?.message ?? ""}`);
      this.validateObject(doc.toJS(), where);
    }
  }

  /** Validates every written file of a change (paths must be in the layout; deletions need no check). */
  validateFiles(files: Readonly<Record<string, string | null>>): void {
    for (const [file, text] of Object.entries(files)) {
      if (!isLayoutPath(file)) throw new ManifestInvalidError(`${file.slice(0, 120)}: not a path of the GitOps layout`);
      if (text !== null) this.validateText(text, file);
    }
  }
}

let shared: CrdValidator | undefined;

/** A process-wide validator over the bundled CRDs (schemas are compiled once, on first use). */
export function defaultCrdValidator(): CrdValidator {
  shared ??= new CrdValidator();
  return shared;
}
