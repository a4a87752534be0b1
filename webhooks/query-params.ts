// A route's query string through its zod schema, with zod's first issue turned into the API's 400:
// the field it names, or the parameter the route does not take. Shared by every route with a query.
import { z } from "zod";
import { ValidationError } from "../core/errors.ts";

export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.infer<S> {
  const parsed = schema.safeParse(query ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  if (issue?.code === "unrecognized_keys") throw new ValidationError(issue.keys[0] ?? "query", "is not a parameter of this route");
  const field = issue?.path.map(String).join(".") || "query";
  const message = issue?.code === "invalid_type" && issue.expected === "string" ? "must be given once" : (issue?.message ?? "invalid");
  throw new ValidationError(field, message);
}

/**
 * A `limit` query parameter: a whole number from 1 to `max`, `fallback` when absent. One schema, so
 * every list route words its errors the same way.
 */
export function limitParam(max: number, fallback: number): z.ZodDefault<z.ZodCoercedNumber<unknown>> {
  return z.coerce
    .number({ message: "must be a whole number" })
    .int("must be a whole number")
    .min(1, "must be at least 1")
    .max(max, `must be at most ${max}`)
    .default(fallback);
}
