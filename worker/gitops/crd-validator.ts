// Validates every manifest against the Argo CD 3.6.0 CRDs before anything is committed. The
// schemas (crd-schemas.ts) are the CRDs' openAPIV3Schema with Kubernetes' structural extensions
// rewritten into plain JSON Schema; unknown fields are refused where the CRD does not preserve
// them, so a misspelt field fails here rather than being pruned silently.
//
// Validators come precompiled (precompiled-validators.ts, built by `npm ci`); when the build is
// missing or stale they are compiled here with the same options, at a higher memory cost.
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { parseAllDocuments } from "yaml";
import { ManifestInvalidError } from "../../core/errors.ts";
import { CRD_DIR, METADATA_KEY, TENANT_KEY, isObject, loadSchemas, type JsonObject } from "./crd-schemas.ts";
import { isLayoutPath } from "../../core/gitops-paths.ts";
import { AJV_OPTIONS, PRECOMPILED_DIR, loadPrecompiled, type Precompiled } from "./precompiled-validators.ts";

export { CRD_DIR } from "./crd-schemas.ts";

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

export interface CrdValidatorOptions {
  crdDir?: string;
  /** Where precompiled validators are looked up; `false` compiles at run time. */
  precompiledDir?: string | false;
}

export class CrdValidator {
  readonly #crdDir: string;
  readonly #precompiled: Precompiled | undefined;
  readonly #compiled = new Map<string, ValidateFunction>();
  #schemas: Map<string, JsonObject> | undefined;
  #ajv: Ajv | undefined;

  constructor(options: CrdValidatorOptions = {}) {
    this.#crdDir = options.crdDir ?? CRD_DIR;
    const dir = options.precompiledDir ?? PRECOMPILED_DIR;
    this.#precompiled = dir === false ? undefined : loadPrecompiled(this.#crdDir, dir);
  }

  /** Whether the validators are the precompiled ones or compiled in this process. */
  get source(): "precompiled" | "compiled" {
    return this.#precompiled ? "precompiled" : "compiled";
  }

  /** The `group/version Kind` keys this validator knows. */
  kinds(): string[] {
    const keys = this.#precompiled ? this.#precompiled.keys() : [...this.#loadSchemas().keys()];
    return keys.filter((k) => k !== METADATA_KEY);
  }

  #loadSchemas(): Map<string, JsonObject> {
    this.#schemas ??= loadSchemas(this.#crdDir);
    return this.#schemas;
  }

  #validatorFor(key: string): ValidateFunction | undefined {
    if (this.#precompiled) return this.#precompiled.get(key);
    const cached = this.#compiled.get(key);
    if (cached) return cached;
    const schema = this.#loadSchemas().get(key);
    if (schema === undefined) return undefined;
    this.#ajv ??= new Ajv(AJV_OPTIONS);
    const fn = this.#ajv.compile(schema);
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
    const key = `${apiVersion} ${kind}`;
    const validate = this.#validatorFor(key);
    if (!validate) throw new ManifestInvalidError(`${label}: no schema for this kind; only ${this.kinds().join(", ")} may be committed`);
    const errors: string[] = [];
    if (!validate(object)) errors.push(...(validate.errors ?? []).map(formatError));
    const metadata = this.#validatorFor(METADATA_KEY);
    if (!metadata) throw new Error("the metadata schema is missing from the validators");
    if (key !== TENANT_KEY && !metadata(object.metadata)) {
      errors.push(...(metadata.errors ?? []).map((e) => formatError({ ...e, instancePath: `/metadata${e.instancePath}` })));
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
