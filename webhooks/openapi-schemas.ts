// Pieces shared by the route declarations' OpenAPI schemas (see openapi.ts): the error body every
// refusal uses, the 202 of a queued job, the security requirements, and per-status descriptions.
// These are documentation: handlers parse requests with their own zod schemas (the same objects
// the routes declare) and build answers typed by the view schemas in core/ and jobs/.
import type { FastifySchema } from "fastify";
import { z } from "zod";

/** The security scheme names of the document (components.securitySchemes, openapi.ts). */
export const BEARER: readonly Record<string, string[]>[] = [{ bearerAuth: [] }];
/** Routes an operator may also open in a browser or scrape: the token as HTTP Basic password works too. */
export const BEARER_OR_BASIC: readonly Record<string, string[]>[] = [{ bearerAuth: [] }, { basicAuth: [] }];
/** No credential (health, readiness, this document; the webhook proves itself with its signature). */
export const PUBLIC: readonly Record<string, string[]>[] = [];

const errorFields = {
  error: z.string().meta({ description: "A stable code: invalid, unauthorized, not_found, conflict, unavailable, …" }),
  message: z.string(),
  field: z.string().optional().meta({ description: "For a 400: the field, parameter or header that was refused" }),
};

const STATUS_TEXT: Record<number, string> = {
  400: "Invalid request: `field` names what was refused",
  401: "Missing or invalid credential",
  404: "Not found",
  409: "Conflict with the current state",
  413: "Body too large",
  415: "Unsupported content type",
  422: "The Idempotency-Key was used for a different request",
  500: "Internal error",
  503: "Redis (the job queue) is unavailable; retry later",
};

/** The error body for a status, described (`description` overrides the default text). */
export function errorBody(status: number, description?: string): z.ZodType {
  return z.object(errorFields).describe(description ?? STATUS_TEXT[status] ?? "Error");
}

/** Error bodies for several statuses at once. */
export function errorResponses(...statuses: number[]): Record<number, z.ZodType> {
  return Object.fromEntries(statuses.map((s) => [s, errorBody(s)]));
}

/** The answer of every route that queues a job. */
export const jobAcceptedSchema = z.object({ jobId: z.string() }).describe("Queued: the job's id (GET /v1/jobs/:id)");

/** `Idempotency-Key` on a mutation: a retry with the same key and body gets the first answer. */
export const idempotencyHeaders = z.object({
  "idempotency-key": z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/)
    .optional()
    .meta({ description: "Makes a retried mutation answer its first answer (24 h, per token); reused for another request: 422" }),
});

/** A job id in a path (`:id`, `:jobId`), as the queue accepts it. */
export const jobIdParam = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/);

/** A text/plain answer (metrics, logs). */
export function textResponse(description: string): { description: string; content: Record<string, { schema: z.ZodType }> } {
  return { description, content: { "text/plain": { schema: z.string() } } };
}

const acceptAll = () => () => true;
const stringify = () => (data: unknown) => JSON.stringify(data);

/**
 * Route options that declare `schema` for the description only, in any Fastify instance: the
 * request is not validated by Fastify (the handler parses it with the same zod schemas, in its
 * own order and words) and the answer is serialized with JSON.stringify, as Fastify does for a
 * route without a response schema, so declaring one changes no byte of any answer.
 */
export function documented<S extends FastifySchema>(schema: S): { schema: S; validatorCompiler: typeof acceptAll; serializerCompiler: typeof stringify } {
  return { schema, validatorCompiler: acceptAll, serializerCompiler: stringify };
}
