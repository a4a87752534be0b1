// Shared pieces of the aws programs: the tags every resource carries (the policy pack requires
// them), bounded AWS names, and IAM policy documents built as data, not strings.
import { createHash } from "node:crypto";

/** Tags every taggable resource must carry; tenant-scoped resources add `tenant`. */
export const REQUIRED_TAGS = ["environment", "cost-centre", "managed-by"] as const;
/** Tags every Lambda function must carry (cost attribution per tenant). */
export const LAMBDA_REQUIRED_TAGS = ["tenant", "environment", "cost-centre"] as const;

export interface TagSpec {
  environment: string;
  costCentre: string;
  tenant?: string;
  extra?: Record<string, string>;
}

export function tagsFor(spec: TagSpec): Record<string, string> {
  return {
    environment: spec.environment,
    "cost-centre": spec.costCentre,
    "managed-by": "stackrail",
    ...(spec.tenant ? { tenant: spec.tenant } : {}),
    ...spec.extra,
  };
}

/** AWS names have per-service limits; a long name keeps a readable prefix and a stable hash. */
export function awsName(name: string, max: number): string {
  if (name.length <= max) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${name.slice(0, max - 9)}-${hash}`;
}

export interface PolicyStatement {
  Sid?: string;
  Effect: "Allow" | "Deny";
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: PolicyStatement[];
}

export function policyDocument(...statements: PolicyStatement[]): string {
  const doc: PolicyDocument = { Version: "2012-10-17", Statement: statements };
  return JSON.stringify(doc);
}
