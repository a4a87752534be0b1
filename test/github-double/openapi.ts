// Checks requests and responses against GitHub's published OpenAPI description
// (@octokit/openapi, api.github.com). Each operation's parameters, request body and response
// schemas are compiled with ajv on first use. Request bodies are checked strictly: a field the
// operation does not define fails (GitHub would silently ignore it, hiding the bug). Format
// keywords are tolerated (accepted without checking), as are OpenAPI-only keywords.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

interface Parameter {
  name: string;
  in: "path" | "query" | "header" | "cookie";
  required?: boolean;
  schema?: JsonObject;
}

export interface Operation {
  operationId: string;
  method: string;
  template: string;
  regex: RegExp;
  pathParamNames: string[];
  parameters: Parameter[];
  requestSchema: JsonObject | undefined;
  requestRequired: boolean;
  responses: Record<string, JsonObject | null>;
}

export interface MatchedOperation {
  operation: Operation;
  pathParams: Record<string, string>;
}

function loadSpec(): JsonObject {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve("@octokit/openapi/package.json"));
  return JSON.parse(readFileSync(path.join(pkg, "generated", "api.github.com.json"), "utf8")) as JsonObject;
}

/** Schema refs `#/components/...` point into the spec document, registered in ajv as `gh`. */
function rebase(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(rebase);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(schema)) out[k] = k === "$ref" && typeof v === "string" && v.startsWith("#/") ? `gh${v}` : rebase(v);
  // A nullable enum (check run `conclusion`): null must be one of the allowed values as well.
  if (out.nullable === true && Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
  // OpenAPI 3.0 `nullable` next to a combinator (no `type`), which ajv refuses: spell it out.
  if (out.nullable === true && out.type === undefined) {
    delete out.nullable;
    return { anyOf: [{ type: "null" }, out] };
  }
  return out;
}

/** Closes object schemas of a request body so unknown fields fail; combinators are left open. */
function strict(schema: Json, spec: JsonObject, depth = 0): Json {
  if (depth > 12 || !isObject(schema)) return schema;
  if (typeof schema.$ref === "string") {
    const target = resolvePointer(spec, schema.$ref);
    return strict(target, spec, depth + 1);
  }
  const out: JsonObject = { ...schema };
  if (isObject(out.properties)) {
    out.properties = Object.fromEntries(Object.entries(out.properties).map(([k, v]) => [k, strict(v, spec, depth + 1)]));
    if (out.additionalProperties === undefined && out.allOf === undefined && out.anyOf === undefined && out.oneOf === undefined)
      out.additionalProperties = false;
  }
  if (isObject(out.items)) out.items = strict(out.items, spec, depth + 1);
  for (const k of ["oneOf", "anyOf"] as const) {
    const list = out[k];
    if (Array.isArray(list)) out[k] = list.map((s) => strict(s, spec, depth + 1));
  }
  return out;
}

function resolvePointer(spec: JsonObject, ref: string): Json {
  let node: Json = spec;
  for (const part of ref.replace(/^#\//, "").split("/")) {
    const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
    node = isObject(node) ? (node[key] ?? null) : null;
  }
  return node;
}

function deref<T>(spec: JsonObject, value: Json): T {
  let v = value;
  for (let i = 0; i < 5 && isObject(v) && typeof v.$ref === "string"; i++) v = resolvePointer(spec, v.$ref);
  return v as T;
}

export function formatAjvErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 8)
    .map((e) => {
      const extra = e.keyword === "additionalProperties" ? ` "${String((e.params as { additionalProperty?: string }).additionalProperty)}"` : "";
      return `${e.instancePath || "/"} ${e.message ?? e.keyword}${extra}`;
    })
    .join("; ");
}

export class OpenApiChecker {
  readonly #spec: JsonObject;
  readonly #ajv: Ajv;
  readonly #ops: Operation[] = [];
  readonly #compiled = new Map<string, ValidateFunction>();

  constructor(spec: JsonObject = loadSpec()) {
    this.#spec = spec;
    this.#ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, coerceTypes: false });
    this.#ajv.addSchema({ $id: "gh", components: rebase(spec.components ?? {}) });
    const paths = isObject(spec.paths) ? spec.paths : {};
    for (const [template, item] of Object.entries(paths)) {
      if (!isObject(item)) continue;
      const shared = Array.isArray(item.parameters) ? item.parameters : [];
      for (const method of ["get", "post", "patch", "put", "delete"]) {
        const op = item[method];
        if (!isObject(op) || typeof op.operationId !== "string") continue;
        const names: string[] = [];
        const regex = new RegExp(
          "^" +
            template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{([^}]+)\}/g, (_m, name: string) => {
              names.push(name);
              // `{ref}` in git ref routes spans slashes (heads/feature/x).
              return name === "ref" || name === "path" ? "(.+)" : "([^/]+)";
            }) +
            "$",
        );
        const parameters = [...shared, ...(Array.isArray(op.parameters) ? op.parameters : [])].map((p) => deref<Parameter>(spec, p));
        const body = deref<JsonObject | null>(spec, isObject(op.requestBody) ? op.requestBody : null);
        const content = body && isObject(body.content) ? body.content["application/json"] : undefined;
        const responses: Record<string, JsonObject | null> = {};
        for (const [status, r] of Object.entries(isObject(op.responses) ? op.responses : {})) {
          const resp = deref<JsonObject>(spec, r);
          const json = isObject(resp.content) ? resp.content["application/json"] : undefined;
          responses[status] = isObject(json) && isObject(json.schema) ? json.schema : null;
        }
        this.#ops.push({
          operationId: op.operationId,
          method: method.toUpperCase(),
          template,
          regex,
          pathParamNames: names,
          parameters,
          requestSchema: isObject(content) && isObject(content.schema) ? content.schema : undefined,
          requestRequired: body?.required === true,
          responses,
        });
      }
    }
    // Literal routes before templated ones (`/git/ref/{ref}` vs `/git/refs/{ref}` are distinct anyway);
    // with as many parameters, the longer template first, since a multi-segment `{ref}` would
    // otherwise swallow a literal suffix (`/commits/{ref}` vs `/commits/{ref}/check-runs`).
    this.#ops.sort((a, b) => a.pathParamNames.length - b.pathParamNames.length || b.template.length - a.template.length);
  }

  match(method: string, pathname: string): MatchedOperation | undefined {
    for (const operation of this.#ops) {
      if (operation.method !== method) continue;
      const m = operation.regex.exec(pathname);
      if (!m) continue;
      const pathParams: Record<string, string> = {};
      operation.pathParamNames.forEach((n, i) => (pathParams[n] = decodeURIComponent(m[i + 1] ?? "")));
      return { operation, pathParams };
    }
    return undefined;
  }

  #compile(key: string, schema: Json): ValidateFunction {
    let fn = this.#compiled.get(key);
    if (!fn) {
      fn = this.#ajv.compile(rebase(schema) as object);
      this.#compiled.set(key, fn);
    }
    return fn;
  }

  /** Problems with a request (empty when it conforms). Query values are checked after type coercion. */
  checkRequest(m: MatchedOperation, query: URLSearchParams, body: unknown): string[] {
    const problems: string[] = [];
    const op = m.operation;
    const known = new Set(op.parameters.filter((p) => p.in === "query").map((p) => p.name));
    for (const name of query.keys()) if (!known.has(name)) problems.push(`query parameter "${name}" is not defined for ${op.operationId}`);
    for (const p of op.parameters) {
      if (p.in !== "path" && p.in !== "query") continue;
      const raw = p.in === "path" ? m.pathParams[p.name] : (query.get(p.name) ?? undefined);
      if (raw === undefined) {
        if (p.required) problems.push(`${p.in} parameter "${p.name}" is required`);
        continue;
      }
      if (!p.schema) continue;
      const type = deref<JsonObject>(this.#spec, p.schema).type;
      let value: unknown = raw;
      if (type === "integer" || type === "number") value = /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
      if (type === "boolean") value = raw === "true" ? true : raw === "false" ? false : raw;
      const fn = this.#compile(`${op.operationId} param ${p.name}`, p.schema);
      if (!fn(value)) problems.push(`${p.in} parameter "${p.name}": ${formatAjvErrors(fn.errors)}`);
    }
    if (op.requestSchema) {
      if (body === undefined) {
        if (op.requestRequired) problems.push(`${op.operationId} needs a JSON body`);
      } else {
        const fn = this.#compile(`${op.operationId} request`, strict(op.requestSchema, this.#spec));
        if (!fn(body)) problems.push(`request body of ${op.operationId}: ${formatAjvErrors(fn.errors)}`);
      }
    } else if (body !== undefined && op.method !== "GET") {
      problems.push(`${op.operationId} takes no body`);
    }
    return problems;
  }

  /** Problems with a response (empty when it conforms or the status has no JSON schema). */
  checkResponse(m: MatchedOperation, status: number, body: unknown): string[] {
    const op = m.operation;
    if (!(String(status) in op.responses)) {
      // GitHub documents errors sparsely (rate limits, 422s, server errors happen on any route):
      // an undocumented error status is accepted, an undocumented success is not.
      return status >= 400 ? [] : [`${op.operationId} does not document status ${status}`];
    }
    const schema = op.responses[String(status)];
    if (!schema) return body === undefined || body === "" ? [] : [];
    const fn = this.#compile(`${op.operationId} response ${status}`, schema);
    return fn(body) ? [] : [`response ${status} of ${op.operationId}: ${formatAjvErrors(fn.errors)}`];
  }
}

let shared: OpenApiChecker | undefined;
export function openApiChecker(): OpenApiChecker {
  shared ??= new OpenApiChecker();
  return shared;
}
