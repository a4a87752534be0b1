// The shared query-string pieces of the edge's list routes: `limitParam` words every route's limit
// errors the same way, and parseQuery turns them into the API's 400 naming the field.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ValidationError } from "../core/errors.ts";
import { limitParam, parseQuery } from "./query-params.ts";

describe("limitParam", () => {
  const schema = z.strictObject({ limit: limitParam(50, 20) });

  it("takes a whole number from 1 to its maximum, and its default when absent", () => {
    expect(parseQuery(schema, {})).toEqual({ limit: 20 });
    expect(parseQuery(schema, { limit: "1" })).toEqual({ limit: 1 });
    expect(parseQuery(schema, { limit: "50" })).toEqual({ limit: 50 });
  });

  it.each([
    ["0", "must be at least 1"],
    ["51", "must be at most 50"],
    ["2.5", "must be a whole number"],
    ["many", "must be a whole number"],
  ])("refuses limit=%s: %s", (limit, message) => {
    expect(() => parseQuery(schema, { limit })).toThrow(ValidationError);
    expect(() => parseQuery(schema, { limit })).toThrow(message);
  });
});
