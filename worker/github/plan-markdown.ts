// A plan (the steps of a Pulumi preview and its policy findings) as Markdown for GitHub: one row
// per resource with its action and the NAMES of the properties that change, never their values,
// then the policy findings with rule and resource. Long plans fold into <details>; whatever does
// not fit the caller's character budget is left out with a count and a link to the job.
import type { PolicyViolation, ResourceDiff } from "../pulumi-protocol.ts";
import { inlineCode, isSafeUrl, link } from "./markdown.ts";

/** Plans longer than this many resources are folded. */
export const FOLD_AT = 10;
/** Property names shown per resource before "+N more". */
const MAX_PROPERTIES = 20;

const ACTION: Record<string, string> = {
  create: "➕ create",
  update: "🔄 update",
  replace: "♻️ replace",
  delete: "➖ delete",
  import: "📥 import",
};

function action(op: string): string {
  return ACTION[op] ?? inlineCode(op, { inTable: true, max: 30 });
}

/** `urn:pulumi:<stack>::<project>::<type>::<name>`: the resource's own name. */
export function resourceName(urn: string): string {
  return urn.split("::").pop() ?? urn;
}

/** `pulumi-nodejs:dynamic/stackrail:MysqlUser` → `MysqlUser`; `aws:s3/bucket:Bucket` stays whole. */
function shortType(type: string): string {
  return type.startsWith("pulumi-nodejs:dynamic/") ? (type.split(":").pop() ?? type) : type;
}

function properties(names: readonly string[]): string {
  if (names.length === 0) return "";
  const shown = names.slice(0, MAX_PROPERTIES).map((p) => inlineCode(p, { inTable: true, max: 60 }));
  return names.length > MAX_PROPERTIES ? `${shown.join(", ")} +${names.length - MAX_PROPERTIES} more` : shown.join(", ");
}

function diffRow(d: ResourceDiff): string {
  return `| ${action(d.op)} | ${inlineCode(resourceName(d.urn), { inTable: true, max: 100 })} | ${inlineCode(shortType(d.type), { inTable: true, max: 100 })} | ${properties(d.properties)} |`;
}

function violationRow(v: PolicyViolation): string {
  const resource = v.urn ? inlineCode(resourceName(v.urn), { inTable: true, max: 100 }) : "(stack)";
  const message = inlineCode(v.message, { inTable: true, max: 300 });
  return `| ${inlineCode(v.level, { inTable: true, max: 20 })} | ${inlineCode(`${v.pack}/${v.policy}`, { inTable: true, max: 120 })} | ${resource} | ${message} |`;
}

/** "2 to create, 1 to update" (in engine order of first appearance). */
export function planCounts(diff: readonly ResourceDiff[]): string {
  const counts = new Map<string, number>();
  for (const d of diff) counts.set(d.op, (counts.get(d.op) ?? 0) + 1);
  return [...counts].map(([op, n]) => `${n} to ${op}`).join(", ");
}

export interface PlanMarkdownOptions {
  /** Characters the returned text may use at most. */
  readonly budget: number;
  /** Where the whole plan is (the job), linked when rows are left out. */
  readonly restUrl?: string;
}

/**
 * Adds rows while they fit `budget` (counting what must follow them: the closing tags and the
 * "not shown" line), and says how many were left out.
 */
function table(header: string[], rows: string[], budget: number, closing: string, restUrl: string | undefined, what: string): string[] {
  const out = [...header];
  let used = header.join("\n").length + closing.length + 1;
  const reserve = 200 + (restUrl?.length ?? 0);
  let shown = 0;
  for (const row of rows) {
    if (used + row.length + 1 + reserve > budget) break;
    out.push(row);
    used += row.length + 1;
    shown += 1;
  }
  if (shown < rows.length) {
    const where = restUrl && isSafeUrl(restUrl) ? `: the whole list is in ${link(restUrl, "the job")}` : "";
    out.push("", `_${rows.length - shown} more ${what} not shown${where}._`);
  }
  return out;
}

/** The plan section: per resource action and changed property names; folded when long. */
export function renderPlan(diff: readonly ResourceDiff[], options: PlanMarkdownOptions): string {
  if (diff.length === 0) return "**Plan:** no resource changes.";
  const fold = diff.length > FOLD_AT;
  const title = `**Plan:** ${planCounts(diff)}`;
  const open = fold ? [`<details><summary>${title.replace(/\*\*/g, "")}</summary>`, ""] : [title, ""];
  const close = fold ? "\n\n</details>" : "";
  const head = [...open, "| Action | Resource | Type | Changed properties |", "|---|---|---|---|"];
  const body = table(head, diff.map(diffRow), options.budget, close, options.restUrl, "resources");
  return body.join("\n") + close;
}

/** The policy findings: level, pack/rule, resource, message. */
export function renderViolations(violations: readonly PolicyViolation[], options: PlanMarkdownOptions): string {
  if (violations.length === 0) return "";
  const mandatory = violations.filter((v) => v.level === "mandatory").length;
  const head = [
    `**Policy violations:** ${violations.length}${mandatory > 0 ? ` (${mandatory} mandatory: nothing was applied)` : ""}`,
    "",
    "| Level | Rule | Resource | Message |",
    "|---|---|---|---|",
  ];
  return table(head, violations.map(violationRow), options.budget, "", options.restUrl, "violations").join("\n");
}
