// The CLI's only way to the service: HTTP, with the bearer token in one header and nowhere else.
// Every refusal becomes an ApiError that names the method and route that refused, the status, and
// the field when the API names one ({error, message, field?}).
import { randomUUID } from "node:crypto";
import { z } from "zod";

/** What the API answers when it refuses: `{error, message, field?}` (webhooks/http-server.ts). */
const refusalSchema = z.looseObject({
  error: z.string().optional(),
  message: z.string().optional(),
  field: z.string().optional(),
});

const REQUEST_TIMEOUT_MS = 30_000;
/** 250 ms doubling: the last try is about 8 s after the first (a loaded Redis, a restarting edge). */
const ATTEMPTS = 6;
const RETRY_BASE_MS = 250;
const RETRY_AFTER_MAX_MS = 5_000;

export class ApiError extends Error {
  readonly method: string;
  /** The path that was asked for (no host, no query), e.g. `/v1/tenants/acme`. */
  readonly route: string;
  /** The HTTP status, or 0 when no answer came (connection refused, timeout). */
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  /** From a 503's Retry-After. */
  readonly retryAfterMs: number | undefined;

  constructor(init: { method: string; route: string; status: number; code: string; message: string; field?: string | undefined; retryAfterMs?: number }) {
    const where = `${init.method} ${init.route}`;
    const status = init.status > 0 ? `${init.status} ${init.code}` : init.code;
    // The API's messages start with the field they refuse; when one does not, the field is added.
    const field = init.field && !init.message.startsWith(`${init.field}:`) ? ` (field: ${init.field})` : "";
    super(`${where} ${init.status > 0 ? "refused" : "failed"}: ${status}: ${init.message}${field}`);
    this.name = "ApiError";
    this.method = init.method;
    this.route = init.route;
    this.status = init.status;
    this.code = init.code;
    this.field = init.field;
    this.retryAfterMs = init.retryAfterMs;
  }
}

/** The answer to a request whose status was 2xx. */
export interface ApiAnswer {
  readonly status: number;
  readonly body: unknown;
}

export interface ApiClientOptions {
  readonly baseUrl: URL;
  /** Absent for the webhook route, which authenticates by signature. */
  readonly token?: string | undefined;
  readonly fetch?: typeof fetch;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Told before a refused request is tried again (the human output says so on stderr). */
  readonly onRetry?: (err: ApiError, delayMs: number) => void;
}

export interface RequestOptions {
  readonly body?: unknown;
  /** Raw bytes sent as they are (a webhook body must be exactly what was signed). */
  readonly rawBody?: Buffer;
  readonly query?: Record<string, string | undefined>;
  readonly headers?: Record<string, string>;
  /** False for the webhook route: the token is sent only where it is needed. */
  readonly auth?: boolean;
  /** Streams (logs --follow) have no overall deadline. */
  readonly timeoutMs?: number | null;
}

/** The URL without `user:password@`: what may appear in a message. */
export function displayUrl(url: URL): string {
  const shown = new URL(url.href);
  shown.username = "";
  shown.password = "";
  return shown.href.replace(/\/$/, "");
}

export class ApiClient {
  readonly #base: URL;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #onRetry: ((err: ApiError, delayMs: number) => void) | undefined;

  constructor(options: ApiClientOptions) {
    this.#base = options.baseUrl;
    this.#token = options.token;
    this.#fetch = options.fetch ?? fetch;
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#onRetry = options.onRetry;
  }

  get baseUrl(): string {
    return displayUrl(this.#base);
  }

  /**
   * Sends one request; a non-2xx answer throws ApiError. The response is returned unread.
   * A 503 (the edge answers it when Redis is slow or away, having queued nothing) is tried again a
   * few times. That is safe for a mutation because it carries an Idempotency-Key, the same on
   * every try, and for a webhook delivery because the service dedupes on its delivery id.
   */
  async raw(method: string, route: string, options: RequestOptions = {}): Promise<Response> {
    const headers = { ...options.headers };
    const mutation = method !== "GET" && method !== "HEAD";
    if (mutation && options.auth !== false && !Object.keys(headers).some((h) => h.toLowerCase() === "idempotency-key")) {
      headers["idempotency-key"] = randomUUID();
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#send(method, route, { ...options, headers });
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 503 || attempt >= ATTEMPTS) throw err;
        const delayMs = err.retryAfterMs ?? RETRY_BASE_MS * 2 ** (attempt - 1);
        this.#onRetry?.(err, delayMs);
        await this.#sleep(delayMs);
      }
    }
  }

  async #send(method: string, route: string, options: RequestOptions): Promise<Response> {
    const url = new URL(route.replace(/^\//, ""), this.#base.href.endsWith("/") ? this.#base : new URL(`${this.#base.href}/`));
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "stackrail-cli", ...options.headers };
    if (options.auth !== false) {
      if (!this.#token) throw new ApiError({ method, route, status: 0, code: "no_token", message: "no API token: set STACKRAIL_TOKEN (or pass --token)" });
      headers.authorization = `Bearer ${this.#token}`;
    }
    let body: Uint8Array | undefined;
    if (options.rawBody !== undefined) body = new Uint8Array(options.rawBody);
    else if (options.body !== undefined) {
      body = new TextEncoder().encode(JSON.stringify(options.body));
      headers["content-type"] = "application/json";
    }
    const timeoutMs = options.timeoutMs === undefined ? REQUEST_TIMEOUT_MS : options.timeoutMs;
    let res: Response;
    try {
      res = await this.#fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        // A redirect could carry the token to another host: the operator points STACKRAIL_URL at the right place instead.
        redirect: "manual",
        ...(timeoutMs !== null ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
      });
    } catch (err) {
      throw new ApiError({ method, route, status: 0, code: "unreachable", message: `no answer from ${this.baseUrl} (${describeFetchError(err)})` });
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new ApiError({
        method,
        route,
        status: res.status,
        code: "redirect",
        message: `the server redirects (to ${res.headers.get("location") ?? "?"}); set STACKRAIL_URL to the address it should be reached at`,
      });
    }
    if (!res.ok) throw await refusal(method, route, res);
    return res;
  }

  /** Sends one request and parses the JSON answer. */
  async request(method: string, route: string, options: RequestOptions = {}): Promise<ApiAnswer> {
    const res = await this.raw(method, route, options);
    const text = await res.text();
    if (text === "") return { status: res.status, body: null };
    try {
      return { status: res.status, body: JSON.parse(text) as unknown };
    } catch {
      throw new ApiError({ method, route, status: res.status, code: "bad_answer", message: "the answer is not JSON" });
    }
  }

  /** GET and parse with `schema`: an answer of another shape is an error naming the field. */
  async get<S extends z.ZodType>(route: string, schema: S, query?: Record<string, string | undefined>): Promise<z.infer<S>> {
    const answer = await this.request("GET", route, query ? { query } : {});
    return parseAnswer("GET", route, schema, answer.body);
  }
}

export function parseAnswer<S extends z.ZodType>(method: string, route: string, schema: S, body: unknown): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue?.path.map(String).join(".") || "body";
  throw new ApiError({ method, route, status: 0, code: "bad_answer", message: `unexpected answer: ${field}: ${issue?.message ?? "invalid"}`, field });
}

async function refusal(method: string, route: string, res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  let parsed: z.infer<typeof refusalSchema> = {};
  try {
    const r = refusalSchema.safeParse(JSON.parse(text));
    if (r.success) parsed = r.data;
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  const code = parsed.error ?? (res.statusText.toLowerCase().replace(/\s+/g, "_") || "error");
  let message = parsed.message ?? (text.trim().slice(0, 200) || res.statusText || "no message");
  if (res.status === 401) message += " (check STACKRAIL_TOKEN or --token)";
  const retryAfter = Number(res.headers.get("retry-after"));
  return new ApiError({
    method,
    route,
    status: res.status,
    code,
    message,
    field: parsed.field,
    ...(Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterMs: Math.min(retryAfter * 1000, RETRY_AFTER_MAX_MS) } : {}),
  });
}

function describeFetchError(err: unknown): string {
  if (err instanceof Error && err.name === "TimeoutError") return "timed out";
  // fetch wraps the socket's error: its code (ECONNREFUSED, ENOTFOUND) is what an operator can act on.
  const cause = err instanceof Error ? (err.cause as { code?: unknown; message?: unknown; errors?: { code?: unknown }[] } | undefined) : undefined;
  const code = cause?.code ?? cause?.errors?.find((e) => typeof e.code === "string")?.code;
  if (typeof code === "string") return code;
  if (typeof cause?.message === "string" && cause.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}
