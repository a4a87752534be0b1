// The GitOps repository layout (brief, "GitOps repository layout"). Every path Stackrail writes
// is computed here from identifiers that are validated again on the way in, and every path a
// writer receives is checked against the layout, so no input can reach outside it. It is in core/
// because the edge checks a new tenant's folder too (tenant-names.ts), not only the worker's writers.
import { ValidationError } from "./errors.ts";
import { prNumberSchema, previewKey, regionSchema, tenantIdSchema, type Region, type TenantId } from "./ids.ts";

export const TENANT_FILES = ["tenant.yaml", "application.yaml", "appproject.yaml"] as const;
export type TenantFile = (typeof TENANT_FILES)[number];

const LAYOUT: readonly RegExp[] = [
  /^tenants\/[a-z][a-z0-9-]{2,39}\/(tenant|application|appproject)\.yaml$/,
  /^previews\/[a-z0-9][a-z0-9-]{0,39}-pr-[1-9]\d{0,7}\/application\.yaml$/,
  /^regions\/[a-z]{2}(-[a-z]+)+-\d\/[a-z][a-z0-9-]{0,62}\.yaml$/,
];

export function isLayoutPath(path: string): boolean {
  return LAYOUT.some((re) => re.test(path));
}

/** Throws unless `path` is one of the layout's file paths (relative, no `..`, no absolute paths). */
export function assertLayoutPath(path: string): void {
  if (!isLayoutPath(path)) throw new ValidationError("path", `"${path.slice(0, 120)}" is not a path of the GitOps layout`);
}

function checked<T>(field: string, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false } }, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ValidationError(field, "is not a valid identifier for a GitOps path");
  return parsed.data;
}

export function tenantDir(id: TenantId): string {
  return `tenants/${checked("tenantId", tenantIdSchema, id)}`;
}

export function tenantPath(id: TenantId, file: TenantFile): string {
  const path = `${tenantDir(id)}/${file}`;
  assertLayoutPath(path);
  return path;
}

export function previewDir(repoName: string, pr: number): string {
  const n = checked("pr", prNumberSchema, pr);
  let key: string;
  try {
    key = previewKey(repoName, n);
  } catch {
    throw new ValidationError("repo", "has no characters usable in a GitOps path");
  }
  return `previews/${key}`;
}

export function previewPath(repoName: string, pr: number): string {
  const path = `${previewDir(repoName, pr)}/application.yaml`;
  assertLayoutPath(path);
  return path;
}

export function regionPath(region: Region, name: string): string {
  const path = `regions/${checked("region", regionSchema, region)}/${name}.yaml`;
  assertLayoutPath(path);
  return path;
}
