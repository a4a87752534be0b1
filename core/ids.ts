// Identifiers that reach stack names, paths, SQL and commits. Everything here is validated
// at the edge; the rest of the code only ever sees values that passed these schemas.
import { z } from "zod";

/**
 * 3 to 40 characters, a letter first and a letter or digit last: every name derived from the id
 * (Kubernetes and Argo CD names among them) must end in a letter or digit too, and a trailing `-`
 * would otherwise pass here and fail only after the tenant's stack had created resources.
 */
export const TENANT_ID_PATTERN = /^[a-z][a-z0-9-]{1,38}[a-z0-9]$/;

export const tenantIdSchema = z.string().regex(TENANT_ID_PATTERN, "must match ^[a-z][a-z0-9-]{1,38}[a-z0-9]$");
export type TenantId = z.infer<typeof tenantIdSchema>;

/** AWS region names (eu-west-1, us-east-2, ...); also used as folder names in the GitOps repo. */
export const regionSchema = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "must be a region name like eu-west-1");
export type Region = z.infer<typeof regionSchema>;

export const tierSchema = z.enum(["pool", "silo"]);
export type Tier = z.infer<typeof tierSchema>;

/** Application versions: semver-ish tags or a git SHA. No slashes, no spaces, no shell metacharacters. */
export const versionSchema = z.string().regex(/^(v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]{1,64})?|[0-9a-f]{7,40})$/, "must be a version (1.2.3) or a git SHA");

/** Function names inside a tenant (Lambda-compatible, also a path segment). */
export const functionNameSchema = z.string().regex(/^[a-z][a-z0-9-]{0,39}$/, "must match ^[a-z][a-z0-9-]{0,39}$");

export const prNumberSchema = z.number().int().positive().max(10_000_000);

export const gitShaSchema = z.string().regex(/^[0-9a-f]{40}$/, "must be a 40-character git SHA");

/**
 * GitHub repository names allow characters that stack names and paths must not carry
 * (dots, underscores, upper case). They are folded into a slug; a slug that is not usable
 * is refused rather than guessed at.
 */
export function repoSlug(repoName: string): string {
  const slug = repoName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 40)
    .replace(/-$/, "");
  if (!/^[a-z0-9][a-z0-9-]*$/.test(slug)) {
    throw new RangeError("repository name has no usable characters");
  }
  return slug;
}

export function tenantStackName(id: TenantId): string {
  return `tenant-${id}`;
}

export function previewKey(repoName: string, pr: number): string {
  return `${repoSlug(repoName)}-pr-${pr}`;
}

export function previewStackName(repoName: string, pr: number): string {
  return `preview-${previewKey(repoName, pr)}`;
}

export function regionStackName(region: Region): string {
  return `region-${region}`;
}

/** Every stack name Stackrail creates matches this; anything else is refused before the engine sees it. */
export const STACK_NAME_PATTERN = /^(tenant-[a-z][a-z0-9-]{1,38}[a-z0-9]|preview-[a-z0-9-]{1,40}-pr-\d{1,8}|region-[a-z]{2}(-[a-z]+)+-\d)$/;
