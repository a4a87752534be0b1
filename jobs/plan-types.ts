// What a plan says, in the words job records, rollout plans and PR comments keep: the engine's steps
// and policy findings, by name only. The worker's child process produces them
// (worker/pulumi-protocol.ts re-exports them for its messages); the edge reads them from records.
import { createHash } from "node:crypto";

/**
 * One step of a plan (a `preview`, or the preview before an `up`): what the engine would do to a
 * resource, with the names of the properties that change. Never values: a diff leaves the child
 * for PR comments, rollout plans and job records, where no secret may go.
 */
export interface ResourceDiff {
  readonly urn: string;
  readonly type: string;
  /** The engine's step op: create, update, replace, delete, create-replacement, delete-replaced, import, … (never `same`). */
  readonly op: string;
  /** Changed top-level property names (sorted); empty for create and delete. */
  readonly properties: readonly string[];
}

/** A policy pack's finding: the rule, the resource, the message. */
export interface PolicyViolation {
  readonly pack: string;
  readonly policy: string;
  /** advisory, mandatory, remediate or disabled, as the pack declared it. */
  readonly level: string;
  readonly message: string;
  readonly urn?: string;
}

/** One line per planned step: what an approval covers (op, resource, changed property names; never values). */
export function diffEntries(diff: readonly ResourceDiff[]): string[] {
  return diff.map((d) => `${d.op} ${d.urn}${d.properties.length > 0 ? ` [${[...d.properties].sort().join(",")}]` : ""}`).sort();
}

/** What an approval of a diff means; the `up` of an approved wave compares its own preview's against it. */
export function planDigest(diff: readonly ResourceDiff[]): string {
  return createHash("sha256")
    .update(JSON.stringify(diffEntries(diff)))
    .digest("hex");
}
