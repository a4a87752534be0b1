// The Pulumi update plans of a rollout (issue 18): a plan step saves the plan of its policy-checked
// preview in the blob store, where whichever worker runs the tenant's apply step finds it; the
// apply step's `up` is then constrained by it and needs no second policy preview. The engine
// writes the plan to a file on this host and reads it from one: the files live in the data dir
// (this user only) for the duration of one operation. A plan holds the stack's secrets encrypted
// with the stack's secrets provider, as the checkpoint does (worker/pulumi-plan.test.ts checks).
// The rollout deletes its plans when it ends.
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { BlobStore } from "../../core/blob-store.ts";
import { rolloutPlanBlobKey, rolloutPlansPrefix } from "../../jobs/rollout-control.ts";

/** What the blob holds: the engine's plan and what it was made for. */
const storedPlanSchema = z.object({
  format: z.literal(1),
  version: z.string(),
  /** planDigest of the preview that saved the plan: the diff an approval of this tenant covers. */
  digest: z.string(),
  /** The engine's plan file, as it wrote it. */
  plan: z.string(),
});
export type StoredPlan = z.infer<typeof storedPlanSchema>;

/** A file path for one operation's plan, in the data dir; the caller removes it (removePlanFile). */
export function planFile(dataDir: string): string {
  const dir = path.join(dataDir, "plans");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return path.join(dir, `${randomUUID()}.json`);
}

export function removePlanFile(file: string): void {
  rmSync(file, { force: true });
}

/** Stores the plan the engine saved in `file` for the tenant's apply step. */
export async function storePlan(
  blobs: BlobStore,
  rolloutJobId: string,
  tenantId: string,
  file: string,
  made: { readonly version: string; readonly digest: string },
): Promise<void> {
  const stored: StoredPlan = { format: 1, version: made.version, digest: made.digest, plan: readFileSync(file, "utf8") };
  await blobs.put(rolloutPlanBlobKey(rolloutJobId, tenantId), JSON.stringify(stored));
}

/** The stored plan of a tenant, or null (none saved: an older rollout, a skipped plan step; unreadable). */
export async function loadPlan(blobs: BlobStore, rolloutJobId: string, tenantId: string): Promise<StoredPlan | null> {
  const body = await blobs.get(rolloutPlanBlobKey(rolloutJobId, tenantId));
  if (body === null) return null;
  try {
    const parsed = storedPlanSchema.safeParse(JSON.parse(body.toString("utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Writes a stored plan to a file for the engine; the caller removes it (removePlanFile). */
export function writePlanFile(dataDir: string, stored: StoredPlan): string {
  const file = planFile(dataDir);
  writeFileSync(file, stored.plan, { mode: 0o600 });
  return file;
}

/** Deletes every plan of a rollout; returns how many. */
export async function dropPlans(blobs: BlobStore, rolloutJobId: string): Promise<number> {
  const entries = await blobs.list(rolloutPlansPrefix(rolloutJobId));
  for (const e of entries) await blobs.delete(e.key);
  return entries.length;
}
