// An HTTP double of the Argo CD API server, for the wave health gate's tests. Every request is
// checked against Argo CD's published API description (test/support/argocd-api/swagger.json,
// Swagger 2.0): the path and method must be an operation there, every query parameter one the
// operation declares, with its declared type. Every answer is validated with ajv against the
// operation's response schema (200, else `default` = runtimeError), object schemas closed so a
// misspelt field fails. Failures go to `violations`; tests assert it stays empty.
//
// Scripting: each Application has a list of states; every answer that includes the Application
// serves its current state and then moves on to the next one (the last one repeats). `setStates`
// replaces the script at any time, `served(name)` counts answers, `stop()` / `start()` make the
// server unreachable and reachable again on the same port.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import path from "node:path";
import { Ajv, type ValidateFunction } from "ajv";

// A copy of ../shared/fixtures/argocd-api/swagger.json kept in the repository (argo-cd
// assets/swagger.json at commit 37ee0097cf85, after v3.5.1), so a fresh clone tests without it.
export const ARGOCD_SWAGGER = path.resolve(import.meta.dirname, "argocd-api/swagger.json");

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

export type SyncStatus = "Synced" | "OutOfSync" | "Unknown";
export type HealthStatus = "Healthy" | "Progressing" | "Degraded" | "Suspended" | "Missing" | "Unknown";

export interface AppState {
  readonly sync: SyncStatus;
  /** status.sync.revision: the commit the comparison was made against. */
  readonly revision: string;
  readonly health: HealthStatus;
  readonly healthMessage?: string;
  /** spec.source.targetRevision (and status.sync.comparedTo); defaults to the Application's. */
  readonly targetRevision?: string;
}

export interface AppScript {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly repoURL: string;
  readonly path: string;
  readonly targetRevision: string;
  readonly states: readonly AppState[];
}

interface Parameter {
  readonly name: string;
  readonly in: string;
  readonly type?: string;
  readonly required?: boolean;
  readonly items?: { readonly type?: string };
}

interface Operation {
  readonly method: string;
  readonly template: string;
  readonly regex: RegExp;
  readonly pathParams: string[];
  readonly parameters: Parameter[];
  readonly responses: Record<string, JsonObject>;
}

/** Closes every object schema that lists its properties, so fields the API does not have fail. */
function closeObjects(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(schema))
    out[k] = k === "properties" && isObject(v) ? Object.fromEntries(Object.entries(v).map(([p, s]) => [p, closeObjects(s)])) : closeObjects(v);
  if (isObject(out.properties) && out.additionalProperties === undefined && out.allOf === undefined) out.additionalProperties = false;
  return out;
}

/** The API description, loaded once: operations and an ajv holding the definitions as `argocd`. */
class SwaggerChecker {
  readonly #ops: Operation[] = [];
  readonly #ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true });
  readonly #compiled = new Map<string, ValidateFunction>();

  constructor(file = ARGOCD_SWAGGER) {
    const spec = JSON.parse(readFileSync(file, "utf8")) as JsonObject;
    if (spec.swagger !== "2.0") throw new Error("the Argo CD API description is not Swagger 2.0");
    // Swagger 2.0 formats: int64/int32 numbers travel as JSON strings or numbers; byte is base64.
    this.#ajv
      .addFormat("int64", true)
      .addFormat("int32", true)
      .addFormat("byte", /^[A-Za-z0-9+/]*={0,2}$/);
    this.#ajv.addFormat("date-time", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
    const definitions = closeObjects(spec.definitions as Json) as JsonObject;
    this.#ajv.addSchema({ $id: "argocd", definitions: rebase(definitions) });
    for (const [template, item] of Object.entries(spec.paths as JsonObject)) {
      if (!isObject(item)) continue;
      const pathParams = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string);
      const regex = new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "([^/]+)")}$`);
      for (const [method, op] of Object.entries(item)) {
        if (!isObject(op) || !["get", "put", "post", "delete", "patch"].includes(method)) continue;
        const parameters = (Array.isArray(op.parameters) ? op.parameters : []) as unknown as Parameter[];
        const responses: Record<string, JsonObject> = {};
        for (const [code, r] of Object.entries(isObject(op.responses) ? op.responses : {})) if (isObject(r) && isObject(r.schema)) responses[code] = r.schema;
        this.#ops.push({ method: method.toUpperCase(), template, regex, pathParams, parameters, responses });
      }
    }
    // A literal path (`/api/v1/applications/manifestsWithFiles`) wins over a template.
    this.#ops.sort((a, b) => a.pathParams.length - b.pathParams.length);
  }

  match(method: string, pathname: string): { op: Operation; params: Record<string, string> } | undefined {
    for (const op of this.#ops) {
      if (op.method !== method) continue;
      const m = op.regex.exec(pathname);
      if (!m) continue;
      return { op, params: Object.fromEntries(op.pathParams.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? "")])) };
    }
    return undefined;
  }

  checkQuery(op: Operation, query: URLSearchParams): string[] {
    const problems: string[] = [];
    const declared = new Map(op.parameters.filter((p) => p.in === "query").map((p) => [p.name, p]));
    for (const name of new Set(query.keys())) {
      const p = declared.get(name);
      if (!p) {
        problems.push(`query parameter ${name} is not declared for ${op.method} ${op.template}`);
        continue;
      }
      const values = query.getAll(name);
      if (p.type !== "array" && values.length > 1) problems.push(`query parameter ${name} repeated but not an array`);
      const type = p.type === "array" ? p.items?.type : p.type;
      for (const v of values) {
        if ((type === "integer" && !/^-?\d+$/.test(v)) || (type === "boolean" && !/^(true|false)$/.test(v)))
          problems.push(`query parameter ${name}=${v} is not a ${type}`);
      }
    }
    for (const p of op.parameters) if (p.in === "query" && p.required && !query.has(p.name)) problems.push(`required query parameter ${p.name} missing`);
    return problems;
  }

  checkAnswer(op: Operation, status: number, body: unknown): string[] {
    const schema = op.responses[String(status)] ?? op.responses.default;
    if (!schema) return [`${op.method} ${op.template} has no response schema for ${status}`];
    const key = `${op.method} ${op.template} ${status in op.responses ? status : "default"}`;
    let validate = this.#compiled.get(key);
    if (!validate) {
      validate = this.#ajv.compile(rebase(closeObjects(schema)) as object);
      this.#compiled.set(key, validate);
    }
    if (validate(body)) return [];
    return (validate.errors ?? []).map((e) => `${key}: ${e.instancePath || "/"} ${e.message ?? "invalid"}`);
  }
}

function rebase(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(rebase);
  if (!isObject(schema)) return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [k, k === "$ref" && typeof v === "string" && v.startsWith("#/") ? `argocd${v}` : rebase(v)]),
  );
}

let checker: SwaggerChecker | undefined;

export interface ArgocdDoubleOptions {
  /** Bearer tokens the server accepts; anything else answers 401. */
  readonly tokens: readonly string[];
  /** Namespace Applications live in (metadata.namespace); `appNamespace` must match it when given. */
  readonly namespace?: string;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string[]>;
  readonly status: number;
  readonly authorized: boolean;
}

export class ArgocdDouble {
  readonly violations: string[] = [];
  readonly requests: RecordedRequest[] = [];
  readonly namespace: string;
  readonly #tokens: Set<string>;
  readonly #apps = new Map<string, { script: AppScript; next: number; served: number }>();
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;

  private constructor(options: ArgocdDoubleOptions) {
    this.#tokens = new Set(options.tokens);
    this.namespace = options.namespace ?? "argocd";
    checker ??= new SwaggerChecker();
  }

  static async start(options: ArgocdDoubleOptions): Promise<ArgocdDouble> {
    const d = new ArgocdDouble(options);
    await d.start();
    return d;
  }

  /** Checks an answer the way the double checks its own (for testing the check itself). */
  static checkAnswer(method: string, pathname: string, status: number, body: unknown): string[] {
    checker ??= new SwaggerChecker();
    const matched = checker.match(method, pathname);
    return matched ? checker.checkAnswer(matched.op, status, body) : [`${method} ${pathname} is not an operation of the Argo CD API`];
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Listens (again) on the same port as before, or a free one the first time. */
  async start(): Promise<void> {
    if (this.#server) return;
    const server = createServer((req, res) => this.#handle(req, res));
    server.on("connection", (s: Socket) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Refuses connections from now on (the port is closed), until start(). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  close(): Promise<void> {
    return this.stop();
  }

  setApplication(script: AppScript): void {
    if (script.states.length === 0) throw new Error("an Application needs at least one state");
    this.#apps.set(script.name, { script, next: 0, served: 0 });
  }

  /** Replaces an Application's remaining states (its labels and source stay). */
  setStates(name: string, states: readonly AppState[]): void {
    const app = this.#apps.get(name);
    if (!app) throw new Error(`no Application ${name}`);
    if (states.length === 0) throw new Error("an Application needs at least one state");
    this.#apps.set(name, { script: { ...app.script, states }, next: 0, served: app.served });
  }

  deleteApplication(name: string): void {
    this.#apps.delete(name);
  }

  /** How many answers included this Application. */
  served(name: string): number {
    return this.#apps.get(name)?.served ?? 0;
  }

  #serve(name: string): JsonObject {
    const app = this.#apps.get(name);
    if (!app) throw new Error(`no Application ${name}`);
    const state = app.script.states[Math.min(app.next, app.script.states.length - 1)] as AppState;
    app.next++;
    app.served++;
    const s = app.script;
    const target = state.targetRevision ?? s.targetRevision;
    const source = { repoURL: s.repoURL, path: s.path, targetRevision: target };
    const destination = { server: "https://kubernetes.default.svc", namespace: name };
    return {
      metadata: { name, namespace: this.namespace, labels: { ...s.labels }, resourceVersion: String(app.served), uid: "00000000-0000-4000-8000-000000000000" },
      spec: { project: name, source, destination },
      status: {
        sync: { status: state.sync, revision: state.revision, comparedTo: { source, destination } },
        health: { status: state.health, ...(state.healthMessage ? { message: state.healthMessage } : {}) },
        reconciledAt: new Date().toISOString(),
        sourceType: s.path.startsWith("tenants/") ? "Directory" : "Helm",
      },
    };
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://double");
    const method = req.method ?? "GET";
    const auth = req.headers.authorization ?? "";
    const authorized = auth.startsWith("Bearer ") && this.#tokens.has(auth.slice("Bearer ".length));
    const matched = (checker as SwaggerChecker).match(method, url.pathname);
    const answer = (status: number, body: JsonObject): void => {
      if (matched) for (const v of (checker as SwaggerChecker).checkAnswer(matched.op, status, body)) this.violations.push(`answer: ${v}`);
      this.requests.push({
        method,
        path: url.pathname,
        query: Object.fromEntries([...new Set(url.searchParams.keys())].map((k) => [k, url.searchParams.getAll(k)])),
        status,
        authorized,
      });
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    const error = (status: number, grpc: number, message: string): void => answer(status, { error: message, code: grpc, message });
    if (!matched) {
      this.violations.push(`request: ${method} ${url.pathname} is not an operation of the Argo CD API`);
      return error(404, 5, "Not Found");
    }
    for (const p of (checker as SwaggerChecker).checkQuery(matched.op, url.searchParams)) this.violations.push(`request: ${p}`);
    // Argo CD answers 401 with gRPC code 16 (Unauthenticated) for a missing or unknown token.
    if (!authorized) return error(401, 16, "invalid session: token signature is invalid");
    const appNamespace = url.searchParams.get("appNamespace");
    if (method === "GET" && matched.op.template === "/api/v1/applications") {
      const selector = parseSelector(url.searchParams.get("selector") ?? "");
      if (selector === undefined) {
        this.violations.push(`request: selector ${url.searchParams.get("selector") ?? ""} is not one the double understands`);
        return error(400, 3, "invalid selector");
      }
      const items = [...this.#apps.values()]
        .filter((a) => (appNamespace === null || appNamespace === this.namespace) && selector.every(([k, v]) => a.script.labels[k] === v))
        .filter((a) => !url.searchParams.has("name") || a.script.name === url.searchParams.get("name"))
        .map((a) => this.#serve(a.script.name));
      return answer(200, { metadata: { resourceVersion: randomUUID() }, items });
    }
    if (method === "GET" && matched.op.template === "/api/v1/applications/{name}") {
      const name = matched.params.name ?? "";
      // Argo CD answers a missing Application (or one the token may not see) the same way.
      if (!this.#apps.has(name) || (appNamespace !== null && appNamespace !== this.namespace))
        return error(403, 7, `permission denied: applications, get, ${name}, sub: stackrail, iat: 0`);
      return answer(200, this.#serve(name));
    }
    this.violations.push(`request: ${method} ${matched.op.template} is not implemented by the double`);
    return error(501, 12, "not implemented by the double");
  }
}

/** Equality-based label selectors (`a=b,c=d`), the only kind the gate sends. */
function parseSelector(selector: string): [string, string][] | undefined {
  if (selector.trim() === "") return [];
  const pairs: [string, string][] = [];
  for (const part of selector.split(",")) {
    const m = /^\s*([A-Za-z0-9./_-]+)\s*==?\s*([A-Za-z0-9._-]*)\s*$/.exec(part);
    if (!m) return undefined;
    pairs.push([m[1] as string, m[2] as string]);
  }
  return pairs;
}
