// The plan in the PR preview comment: per resource action and changed property names, policy
// findings with rule and resource, outputs last; long plans fold, and the comment stays under
// GitHub's 65,536-character limit with a link to the job for what did not fit.
import { describe, expect, it } from "vitest";
import type { PolicyViolation, ResourceDiff } from "../pulumi-protocol.ts";
import { COMMENT_BUDGET, PREVIEW_MARKER, renderPreviewComment, type PreviewReport } from "./feedback.ts";
import { FOLD_AT, renderPlan } from "./plan-markdown.ts";

const urn = (type: string, name: string): string => `urn:pulumi:preview-web-pr-7::stackrail::${type}::${name}`;
const user = "pulumi-nodejs:dynamic/stackrail:MysqlUser";
const jobUrl = "https://stackrail.example.com/v1/jobs/preview.up%3A42";

const base: PreviewReport = {
  repo: { owner: "acme", name: "web" },
  pr: 7,
  headSha: "a".repeat(40),
  phase: "succeeded",
  jobId: "preview.up:42",
  jobUrl,
};

const diff: ResourceDiff[] = [
  {
    urn: urn("pulumi-nodejs:dynamic/stackrail:MysqlDatabase", "p_web_pr_7-database"),
    type: "pulumi-nodejs:dynamic/stackrail:MysqlDatabase",
    op: "create",
    properties: [],
  },
  { urn: urn(user, "p_web_pr_7-db-user"), type: user, op: "update", properties: ["maxConnections", "password"] },
  {
    urn: urn("pulumi-nodejs:dynamic/stackrail:RedisAclUser", "p-web-pr-7-cache-user"),
    type: "pulumi-nodejs:dynamic/stackrail:RedisAclUser",
    op: "replace",
    properties: ["username"],
  },
  { urn: urn("aws:s3/bucket:Bucket", "old"), type: "aws:s3/bucket:Bucket", op: "delete", properties: [] },
];

describe("the plan in the preview comment", () => {
  it("shows each resource's action and changed property names, then the outputs, never a secret output", () => {
    const body = renderPreviewComment({
      ...base,
      diff,
      violations: [],
      outputs: { url: "http://web-pr-7.preview.localhost", databasePassword: "hunter2-very-secret", databaseName: "p_web_pr_7" },
    });
    expect(body).toContain("**Plan:** 1 to create, 1 to update, 1 to replace, 1 to delete");
    expect(body).toContain("| ➕ create | `p_web_pr_7-database` | `MysqlDatabase` |  |");
    expect(body).toContain("| 🔄 update | `p_web_pr_7-db-user` | `MysqlUser` | `maxConnections`, `password` |");
    expect(body).toContain("| ♻️ replace | `p-web-pr-7-cache-user` | `RedisAclUser` | `username` |");
    expect(body).toContain("| ➖ delete | `old` | `aws:s3/bucket:Bucket` |  |");
    expect(body).not.toContain("<details><summary>Plan");
    expect(body.indexOf("**Plan:**")).toBeLessThan(body.indexOf("Outputs"));
    expect(body).not.toContain("hunter2");
    expect(body).not.toContain("Policy violations");
  });

  it("says so when nothing changes", () => {
    expect(renderPreviewComment({ ...base, diff: [] })).toContain("**Plan:** no resource changes.");
  });

  it(`folds a plan of more than ${FOLD_AT} resources into <details>`, () => {
    const many = Array.from({ length: FOLD_AT + 1 }, (_, i) => ({ urn: urn(user, `u${i}`), type: user, op: "create", properties: [] }));
    const text = renderPlan(many, { budget: 60_000 });
    expect(text.startsWith(`<details><summary>Plan: ${FOLD_AT + 1} to create</summary>`)).toBe(true);
    expect(text.endsWith("</details>")).toBe(true);
    expect(text.split("\n").filter((l) => l.startsWith("| ➕ create"))).toHaveLength(FOLD_AT + 1);
  });

  it("lists policy violations with rule, resource and message, inert", () => {
    const violations: PolicyViolation[] = [
      {
        pack: "stackrail-guardrails",
        policy: "tenant-grants-confined",
        level: "mandatory",
        message: 'tenant grant must name a single database, not "*" <img src=x> @admins',
        urn: urn("pulumi-nodejs:dynamic/stackrail:MysqlGrant", "p_web_pr_7-db-grant"),
      },
      { pack: "stackrail-guardrails", policy: "s3-tls-only", level: "advisory", message: "no TLS-only policy" },
    ];
    const body = renderPreviewComment({ ...base, phase: "failed", violations, error: "mandatory policy violation; nothing was applied" });
    expect(body).toContain("**Policy violations:** 2 (1 mandatory: nothing was applied)");
    expect(body).toContain("| `mandatory` | `stackrail-guardrails/tenant-grants-confined` | `p_web_pr_7-db-grant` | ");
    expect(body).toContain("| `advisory` | `stackrail-guardrails/s3-tls-only` | (stack) | `no TLS-only policy` |");
    // User-influenced text stays inside code spans.
    expect(body).toContain('`tenant grant must name a single database, not "*" <img src=x> @admins`');
  });

  it("stays under GitHub's limit with thousands of resources and findings, closes its <details>, and links the job for the rest", () => {
    const long = "x".repeat(90);
    const huge: ResourceDiff[] = Array.from({ length: 5000 }, (_, i) => ({
      urn: urn(user, `${long}-${i}`),
      type: user,
      op: i % 2 ? "update" : "replace",
      properties: Array.from({ length: 30 }, (_, j) => `property${j}`),
    }));
    const findings: PolicyViolation[] = Array.from({ length: 3000 }, (_, i) => ({
      pack: "stackrail-guardrails",
      policy: "tenant-names-owned",
      level: "mandatory",
      message: `m${i} ${long}`.repeat(4),
      urn: urn(user, `${long}-${i}`),
    }));
    const outputs = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`output${i}`, "v".repeat(500)]));
    const body = renderPreviewComment({ ...base, diff: huge, violations: findings, outputs, error: "e".repeat(10_000), title: "t".repeat(500) });
    expect(body.length).toBeLessThanOrEqual(COMMENT_BUDGET);
    expect(`${PREVIEW_MARKER}\n${body}`.length).toBeLessThan(65_536);
    expect(body).toMatch(/_\d+ more resources not shown: the whole list is in \[the job\]\(https:\/\/stackrail\.example\.com\/v1\/jobs\/preview\.up%3A42\)\._/);
    expect(body).toMatch(/_\d+ more violations not shown: the whole list is in \[the job\]/);
    expect(body.split("<details>").length).toBe(body.split("</details>").length);
    expect(body).toContain("+10 more"); // 30 property names: 20 shown
    // Both sections got room: the budget is shared, not eaten by the first.
    expect(body.split("\n").filter((l) => l.startsWith("| ♻️ replace") || l.startsWith("| 🔄 update")).length).toBeGreaterThan(50);
    expect(body.split("\n").filter((l) => l.startsWith("| `mandatory`")).length).toBeGreaterThan(20);
  });
});
