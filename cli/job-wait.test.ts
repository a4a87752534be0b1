// The CLI reads every state the API can show: a release wave waiting for its approval is a job
// view like any other (not final), so `stackrail jobs show` and `--wait` keep working on it.
import { describe, expect, it } from "vitest";
import { isFinal, jobViewSchema } from "./job-wait.ts";

describe("job views in the CLI", () => {
  it("accepts awaiting-approval and does not treat it as final", () => {
    const view = jobViewSchema.parse({ id: "r1", kind: "release.rollout", state: "awaiting-approval", progress: [] });
    expect(view.state).toBe("awaiting-approval");
    expect(isFinal(view.state)).toBe(false);
  });
});
