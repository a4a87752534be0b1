// The rollout plan's pieces that need no engine: the manifest's unified diff, and the digest that
// decides whether an apply-time preview still matches the approved diff.
import { describe, expect, it } from "vitest";
import { planChange, planDigest, unifiedDiff } from "./release-plan.ts";

describe("unifiedDiff", () => {
  it("shows the changed lines with context, as git does", () => {
    const before = "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\nversion: 1.0.0\ng: 7\n";
    const after = before.replace("version: 1.0.0", "version: 2.0.0");
    expect(unifiedDiff("tenants/x/tenant.yaml", before, after)).toBe(
      "--- a/tenants/x/tenant.yaml\n+++ b/tenants/x/tenant.yaml\n@@ -4,5 +4,5 @@\n d: 4\n e: 5\n f: 6\n-version: 1.0.0\n+version: 2.0.0\n g: 7\n",
    );
  });

  it("is empty for equal files and uses /dev/null for a new one", () => {
    expect(unifiedDiff("f", "x\n", "x\n")).toBe("");
    expect(unifiedDiff("f", null, "x\ny\n")).toBe("--- /dev/null\n+++ b/f\n@@ -0,0 +1,2 @@\n+x\n+y\n");
  });
});

describe("planDigest", () => {
  const grant = { urn: "urn:pulumi:s::p::mysql:Grant::g", type: "mysql:Grant", op: "update", properties: ["privileges"] };
  it("depends on ops, resources and property names, not on their order", () => {
    const user = { urn: "urn:pulumi:s::p::mysql:User::u", type: "mysql:User", op: "create", properties: [] };
    expect(planDigest([grant, user])).toBe(planDigest([user, grant]));
    expect(planDigest([grant])).not.toBe(planDigest([{ ...grant, properties: ["database"] }]));
    expect(planDigest([grant])).not.toBe(planDigest([{ ...grant, op: "replace" }]));
    expect(planDigest([])).not.toBe(planDigest([grant]));
  });

  it("names what changed between the approved diff and the found one", () => {
    const change = planChange("t1", [], [grant]);
    expect(change).toMatchObject({ tenantId: "t1", added: ["update urn:pulumi:s::p::mysql:Grant::g [privileges]"], removed: [] });
  });
});
