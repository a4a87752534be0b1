// A route's query string through its zod schema, with zod's first issue turned into the API's 400:
// the field it names, or the parameter the route does not take. Shared by every route with a query.
import type { z } from "zod";
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
