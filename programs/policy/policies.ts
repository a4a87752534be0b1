// The guardrails of the aws target as @pulumi/policy rules: encryption on S3, RDS, EFS,
// ElastiCache and SQS; S3 public access blocked and TLS required; no `*` in IAM policies of
// tenant roles; every Lambda with a dead-letter queue and its tags; required tags on every
// taggable resource; and the per-tenant logical resources of both targets (tenant-policies.ts).
// All mandatory. Kept apart from index.ts (which builds the PolicyPack and
// starts serving it to the engine) so tests can call each rule directly.
import type {
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import { LAMBDA_REQUIRED_TAGS, REQUIRED_TAGS } from "../aws/common.ts";
import { tenantPolicies } from "./tenant-policies.ts";

type Props = Record<string, unknown>;
type ResourceCheck = (type: string, props: Props, report: (message: string) => void) => void;
type StackCheck = (resources: PolicyResource[], report: ReportViolation) => void;

function resourcePolicy(name: string, description: string, check: ResourceCheck): ResourceValidationPolicy {
  return {
    name,
    description,
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
      check(args.type, args.props as Props, (message) => report(message));
    },
  };
}

function stackPolicy(name: string, description: string, check: StackCheck): StackValidationPolicy {
  return {
    name,
    description,
    enforcementLevel: "mandatory",
    validateStack: (args: StackValidationArgs, report: ReportViolation) => {
      check(args.resources, report);
    },
  };
}

const T = {
  bucket: "aws:s3/bucket:Bucket",
  bucketV2: "aws:s3/bucketV2:BucketV2",
  sse: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  sseV2: "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
  pab: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  bucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
  rdsCluster: "aws:rds/cluster:Cluster",
  rdsInstance: "aws:rds/instance:Instance",
  efs: "aws:efs/fileSystem:FileSystem",
  cache: "aws:elasticache/replicationGroup:ReplicationGroup",
  sqs: "aws:sqs/queue:Queue",
  role: "aws:iam/role:Role",
  rolePolicy: "aws:iam/rolePolicy:RolePolicy",
  iamPolicy: "aws:iam/policy:Policy",
  lambda: "aws:lambda/function:Function",
} as const;

const isBucket = (type: string): boolean => type === T.bucket || type === T.bucketV2;

/** Does `r` belong to `bucket`: by dependency, or by the bucket name/id it names. */
function attachedTo(r: PolicyResource, bucket: PolicyResource): boolean {
  if (r.dependencies.some((d) => d.urn === bucket.urn)) return true;
  const target = r.props.bucket as unknown;
  return typeof target === "string" && (target === bucket.props.bucket || target === bucket.props.id);
}

// --- S3 ---------------------------------------------------------------------------------------

const SSE_ALGORITHMS = ["aws:kms", "aws:kms:dsse", "AES256"];

export const s3BucketEncrypted = stackPolicy(
  "s3-bucket-encrypted",
  "Every S3 bucket has a server-side encryption configuration (SSE-KMS or SSE-S3).",
  (resources, report) => {
    const configs = resources.filter((r) => r.type === T.sse || r.type === T.sseV2);
    for (const bucket of resources.filter((r) => isBucket(r.type))) {
      const mine = configs.filter((c) => attachedTo(c, bucket));
      const ok = mine.some((c) => {
        const rules = (c.props.rules ?? []) as { applyServerSideEncryptionByDefault?: { sseAlgorithm?: string } }[];
        return rules.length > 0 && rules.every((rule) => SSE_ALGORITHMS.includes(rule.applyServerSideEncryptionByDefault?.sseAlgorithm ?? ""));
      });
      if (!ok) report(`S3 bucket ${bucket.name} has no server-side encryption configuration with ${SSE_ALGORITHMS.join(" or ")}.`, bucket.urn);
    }
  },
);

const PAB_FLAGS = ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"] as const;

export const s3PublicAccessBlocked = stackPolicy(
  "s3-public-access-blocked",
  "Every S3 bucket has a public access block with all four settings on, and no public ACL.",
  (resources, report) => {
    const blocks = resources.filter((r) => r.type === T.pab);
    for (const bucket of resources.filter((r) => isBucket(r.type))) {
      const acl: unknown = bucket.props.acl;
      if (typeof acl === "string" && acl.startsWith("public")) report(`S3 bucket ${bucket.name} has the public ACL ${acl}.`, bucket.urn);
      const ok = blocks.filter((b) => attachedTo(b, bucket)).some((b) => PAB_FLAGS.every((f) => b.props[f] === true));
      if (!ok) report(`S3 bucket ${bucket.name} has no public access block with ${PAB_FLAGS.join(", ")} all true.`, bucket.urn);
    }
  },
);

interface Statement {
  Effect?: string;
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

function statements(policy: unknown): Statement[] {
  let doc = policy;
  if (typeof doc === "string") {
    try {
      doc = JSON.parse(doc) as unknown;
    } catch {
      return [];
    }
  }
  const s = (doc as { Statement?: Statement | Statement[] } | undefined)?.Statement;
  return s === undefined ? [] : Array.isArray(s) ? s : [s];
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function deniesInsecureTransport(policy: unknown): boolean {
  return statements(policy).some((s) => {
    if (s.Effect !== "Deny") return false;
    const value = s.Condition?.Bool?.["aws:SecureTransport"];
    return (value === "false" || value === false) && list(s.Action).some((a) => a === "s3:*" || a === "*");
  });
}

export const s3TlsOnly = stackPolicy(
  "s3-tls-only",
  "Every S3 bucket has a bucket policy denying requests without TLS (aws:SecureTransport = false).",
  (resources, report) => {
    const policies = resources.filter((r) => r.type === T.bucketPolicy);
    for (const bucket of resources.filter((r) => isBucket(r.type))) {
      const ok = policies.filter((p) => attachedTo(p, bucket)).some((p) => deniesInsecureTransport(p.props.policy));
      if (!ok) report(`S3 bucket ${bucket.name} has no bucket policy denying aws:SecureTransport = false.`, bucket.urn);
    }
  },
);

export const s3EncryptionAlgorithm = resourcePolicy("s3-encryption-algorithm", "S3 encryption configurations use SSE-KMS or SSE-S3.", (type, props, report) => {
  if (type !== T.sse && type !== T.sseV2) return;
  const rules = (props.rules ?? []) as { applyServerSideEncryptionByDefault?: { sseAlgorithm?: string } }[];
  if (rules.length === 0 || !rules.every((r) => SSE_ALGORITHMS.includes(r.applyServerSideEncryptionByDefault?.sseAlgorithm ?? ""))) {
    report(`S3 encryption must use ${SSE_ALGORITHMS.join(" or ")} on every rule.`);
  }
});

export const s3PublicAccessBlockComplete = resourcePolicy(
  "s3-public-access-block-complete",
  "An S3 public access block has all four settings on.",
  (type, props, report) => {
    if (type !== T.pab) return;
    const off = PAB_FLAGS.filter((f) => props[f] !== true);
    if (off.length > 0) report(`S3 public access block must set ${off.join(", ")} to true.`);
  },
);

// --- encryption at rest (and in transit for ElastiCache) ------------------------------------

export const rdsEncrypted = resourcePolicy("rds-encrypted", "RDS clusters and instances encrypt their storage.", (type, props, report) => {
  if ((type === T.rdsCluster || type === T.rdsInstance) && props.storageEncrypted !== true) {
    report("RDS storage must be encrypted (storageEncrypted: true).");
  }
});

export const efsEncrypted = resourcePolicy("efs-encrypted", "EFS file systems are encrypted.", (type, props, report) => {
  if (type === T.efs && props.encrypted !== true) report("EFS file systems must be encrypted (encrypted: true).");
});

export const elasticacheEncrypted = resourcePolicy(
  "elasticache-encrypted",
  "ElastiCache replication groups encrypt at rest and in transit and require authentication.",
  (type, props, report) => {
    if (type !== T.cache) return;
    if (props.atRestEncryptionEnabled !== true && props.atRestEncryptionEnabled !== "true") {
      report("ElastiCache must encrypt at rest (atRestEncryptionEnabled: true).");
    }
    if (props.transitEncryptionEnabled !== true) report("ElastiCache must encrypt in transit (transitEncryptionEnabled: true).");
    const groups = props.userGroupIds as unknown[] | undefined;
    if (!props.authToken && !(Array.isArray(groups) && groups.length > 0)) {
      report("ElastiCache must require authentication (authToken or RBAC userGroupIds).");
    }
  },
);

export const sqsEncrypted = resourcePolicy("sqs-encrypted", "SQS queues are encrypted (KMS or SQS-managed SSE).", (type, props, report) => {
  if (type !== T.sqs) return;
  if (!props.kmsMasterKeyId && props.sqsManagedSseEnabled !== true) {
    report("SQS queues must be encrypted (kmsMasterKeyId or sqsManagedSseEnabled: true).");
  }
});

// --- IAM -----------------------------------------------------------------------------------------

/** Tenant roles: named `tenant-...` by the programs, or tagged with the tenant. */
export const TENANT_ROLE_NAME = /^tenant-/;

function isWildcardAction(a: string): boolean {
  return a === "*" || a.endsWith(":*");
}

const text = (v: unknown): string => (typeof v === "string" ? v : "");

function wildcardFindings(policy: unknown): string[] {
  const found: string[] = [];
  for (const s of statements(policy)) {
    if (s.Effect !== "Allow") continue; // explicit denies may (and should) be broad
    if (s.NotAction !== undefined) found.push("an Allow with NotAction grants every other action");
    for (const a of list(s.Action)) if (isWildcardAction(a)) found.push(`action ${a}`);
    for (const r of list(s.Resource)) if (r === "*") found.push("resource *");
  }
  return found;
}

export const noWildcardTenantIam = resourcePolicy(
  "no-wildcard-iam-in-tenant-roles",
  "IAM policies of tenant roles grant no `*` action (or `service:*`) and no `*` resource.",
  (type, props, report) => {
    const tags = (props.tags ?? {}) as Record<string, string>;
    const docs: unknown[] = [];
    if (type === T.role && (tags.tenant || TENANT_ROLE_NAME.test(text(props.name)))) {
      for (const p of (props.inlinePolicies ?? []) as { policy?: unknown }[]) docs.push(p.policy);
    } else if (type === T.rolePolicy && TENANT_ROLE_NAME.test(text(props.role))) {
      docs.push(props.policy);
    } else if (type === T.iamPolicy && (tags.tenant || TENANT_ROLE_NAME.test(text(props.name)))) {
      docs.push(props.policy);
    }
    const findings = docs.flatMap(wildcardFindings);
    if (findings.length > 0) report(`tenant role policy must not use wildcards: ${[...new Set(findings)].join("; ")}.`);
  },
);

// --- Lambda ----------------------------------------------------------------------------------------

export const lambdaDlqAndTags = resourcePolicy(
  "lambda-dlq-and-tags",
  `Every Lambda function has a dead-letter queue and the tags ${LAMBDA_REQUIRED_TAGS.join(", ")}.`,
  (type, props, report) => {
    if (type !== T.lambda) return;
    const dlq = props.deadLetterConfig as { targetArn?: string } | undefined;
    if (!dlq?.targetArn) report("Lambda functions must have a dead-letter queue (deadLetterConfig.targetArn).");
    const tags = (props.tags ?? {}) as Record<string, string>;
    const missing = LAMBDA_REQUIRED_TAGS.filter((t) => !tags[t]);
    if (missing.length > 0) report(`Lambda functions must carry the tags ${missing.join(", ")}.`);
  },
);

// --- tags ----------------------------------------------------------------------------------------

/** AWS resource types that take tags (every type the programs create, and the usual others). */
export const TAGGABLE_TYPES = new Set([
  T.bucket,
  T.bucketV2,
  T.rdsCluster,
  T.rdsInstance,
  "aws:rds/clusterInstance:ClusterInstance",
  "aws:rds/subnetGroup:SubnetGroup",
  T.efs,
  "aws:efs/accessPoint:AccessPoint",
  T.cache,
  "aws:elasticache/subnetGroup:SubnetGroup",
  "aws:elasticache/user:User",
  "aws:elasticache/userGroup:UserGroup",
  T.sqs,
  T.role,
  T.iamPolicy,
  T.lambda,
  "aws:kms/key:Key",
  "aws:secretsmanager/secret:Secret",
  "aws:lb/loadBalancer:LoadBalancer",
  "aws:lb/listener:Listener",
  "aws:lb/targetGroup:TargetGroup",
  "aws:wafv2/webAcl:WebAcl",
  "aws:acm/certificate:Certificate",
  "aws:ec2/vpc:Vpc",
  "aws:ec2/subnet:Subnet",
  "aws:ec2/securityGroup:SecurityGroup",
  "aws:ec2/internetGateway:InternetGateway",
  "aws:ec2/routeTable:RouteTable",
  "aws:ec2/instance:Instance",
  "aws:cloudwatch/logGroup:LogGroup",
  "aws:eks/cluster:Cluster",
]);

export const requiredTags = resourcePolicy(
  "required-tags",
  `Every taggable AWS resource carries the tags ${REQUIRED_TAGS.join(", ")}.`,
  (type, props, report) => {
    if (!TAGGABLE_TYPES.has(type)) return;
    const tags = (props.tags ?? {}) as Record<string, string>;
    const missing = REQUIRED_TAGS.filter((t) => !tags[t]);
    if (missing.length > 0) report(`missing required tags: ${missing.join(", ")}.`);
  },
);

export const resourcePolicies: ResourceValidationPolicy[] = [
  s3EncryptionAlgorithm,
  s3PublicAccessBlockComplete,
  rdsEncrypted,
  efsEncrypted,
  elasticacheEncrypted,
  sqsEncrypted,
  noWildcardTenantIam,
  lambdaDlqAndTags,
  ...tenantPolicies,
  requiredTags,
];
export const stackPolicies: StackValidationPolicy[] = [s3BucketEncrypted, s3PublicAccessBlocked, s3TlsOnly];
export const policies: (ResourceValidationPolicy | StackValidationPolicy)[] = [...resourcePolicies, ...stackPolicies];

export interface Violation {
  policy: string;
  message: string;
  urn?: string;
}

/** Runs every resource rule on one resource; what the engine does before it creates or updates it. */
export async function checkResource(type: string, props: Props, name = "r"): Promise<Violation[]> {
  const found: Violation[] = [];
  const urn = `urn:pulumi:test::stackrail::${type}::${name}`;
  for (const policy of resourcePolicies) {
    const args = { type, props, urn, name } as unknown as ResourceValidationArgs;
    const validations = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource];
    for (const validate of validations) {
      if (validate) await validate(args, (message) => found.push({ policy: policy.name, message, urn }));
    }
  }
  return found;
}

export interface StackResource {
  type: string;
  name: string;
  props: Props;
  /** Names of the resources this one depends on. */
  dependsOn?: string[];
}

/** Runs every stack rule over a set of resources (dependencies by name). */
export async function checkStack(resources: StackResource[]): Promise<Violation[]> {
  const urnOf = (r: StackResource): string => `urn:pulumi:test::stackrail::${r.type}::${r.name}`;
  const byName = new Map<string, PolicyResource>();
  for (const r of resources) {
    byName.set(r.name, { type: r.type, name: r.name, props: r.props, urn: urnOf(r), dependencies: [], propertyDependencies: {} } as unknown as PolicyResource);
  }
  for (const r of resources) {
    const pr = byName.get(r.name);
    if (pr) pr.dependencies = (r.dependsOn ?? []).flatMap((d) => byName.get(d) ?? []);
  }
  const found: Violation[] = [];
  for (const policy of stackPolicies) {
    const args = { resources: [...byName.values()] } as unknown as StackValidationArgs;
    await policy.validateStack(args, (message, urn) => found.push({ policy: policy.name, message, ...(urn ? { urn } : {}) }));
  }
  return found;
}
