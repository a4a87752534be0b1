// Each policy rule with a resource that breaks it and one that passes.
import { describe, expect, it } from "vitest";
import { checkResource, checkStack, type StackResource } from "./policies.ts";

const tags = { environment: "production", "cost-centre": "platform", "managed-by": "stackrail" };
const only = async (policy: string, type: string, props: Record<string, unknown>): Promise<string[]> =>
  (await checkResource(type, props)).filter((v) => v.policy === policy).map((v) => v.message);

describe("resource rules", () => {
  const cases: { policy: string; type: string; bad: Record<string, unknown>; good: Record<string, unknown> }[] = [
    { policy: "rds-encrypted", type: "aws:rds/cluster:Cluster", bad: { storageEncrypted: false, tags }, good: { storageEncrypted: true, tags } },
    { policy: "rds-encrypted", type: "aws:rds/instance:Instance", bad: { tags }, good: { storageEncrypted: true, tags } },
    { policy: "efs-encrypted", type: "aws:efs/fileSystem:FileSystem", bad: { tags }, good: { encrypted: true, tags } },
    {
      policy: "elasticache-encrypted",
      type: "aws:elasticache/replicationGroup:ReplicationGroup",
      bad: { atRestEncryptionEnabled: true, transitEncryptionEnabled: false, tags },
      good: { atRestEncryptionEnabled: true, transitEncryptionEnabled: true, userGroupIds: ["g"], tags },
    },
    {
      policy: "elasticache-encrypted",
      type: "aws:elasticache/replicationGroup:ReplicationGroup",
      bad: { atRestEncryptionEnabled: true, transitEncryptionEnabled: true, tags }, // no auth
      good: { atRestEncryptionEnabled: true, transitEncryptionEnabled: true, authToken: "x", tags },
    },
    { policy: "sqs-encrypted", type: "aws:sqs/queue:Queue", bad: { tags }, good: { sqsManagedSseEnabled: true, tags } },
    { policy: "sqs-encrypted", type: "aws:sqs/queue:Queue", bad: { sqsManagedSseEnabled: false, tags }, good: { kmsMasterKeyId: "arn:aws:kms:k", tags } },
    {
      policy: "s3-encryption-algorithm",
      type: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
      bad: { bucket: "b", rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "none" } }] },
      good: { bucket: "b", rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" } }] },
    },
    {
      policy: "s3-public-access-block-complete",
      type: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
      bad: { bucket: "b", blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: false },
      good: { bucket: "b", blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
    },
    {
      policy: "no-wildcard-iam-in-tenant-roles",
      type: "aws:iam/rolePolicy:RolePolicy",
      bad: { role: "tenant-acme-app", policy: JSON.stringify({ Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "arn:aws:s3:::b" }] }) },
      good: { role: "tenant-acme-app", policy: JSON.stringify({ Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::b/t/*" }] }) },
    },
    {
      policy: "no-wildcard-iam-in-tenant-roles",
      type: "aws:iam/rolePolicy:RolePolicy",
      bad: { role: "tenant-acme-fn-x", policy: { Statement: [{ Effect: "Allow", Action: ["sqs:SendMessage"], Resource: "*" }] } },
      // A broad explicit Deny is the point of the execution role, not a violation.
      good: {
        role: "tenant-acme-fn-x",
        policy: {
          Statement: [
            { Effect: "Allow", Action: ["sqs:SendMessage"], Resource: "arn:aws:sqs:q" },
            { Effect: "Deny", NotAction: ["sqs:SendMessage"], Resource: "*" },
          ],
        },
      },
    },
    {
      policy: "no-wildcard-iam-in-tenant-roles",
      type: "aws:iam/role:Role",
      bad: {
        name: "r",
        tags: { ...tags, tenant: "acme" },
        inlinePolicies: [{ policy: JSON.stringify({ Statement: { Effect: "Allow", Action: "*", Resource: "arn:x" } }) }],
      },
      good: {
        name: "r",
        tags: { ...tags, tenant: "acme" },
        inlinePolicies: [{ policy: JSON.stringify({ Statement: { Effect: "Allow", Action: "s3:GetObject", Resource: "arn:x" } }) }],
      },
    },
    {
      policy: "lambda-dlq-and-tags",
      type: "aws:lambda/function:Function",
      bad: { tags: { ...tags, tenant: "acme" } },
      good: { deadLetterConfig: { targetArn: "arn:aws:sqs:q" }, tags: { ...tags, tenant: "acme" } },
    },
    {
      policy: "lambda-dlq-and-tags",
      type: "aws:lambda/function:Function",
      bad: { deadLetterConfig: { targetArn: "arn:aws:sqs:q" }, tags },
      good: { deadLetterConfig: { targetArn: "arn:aws:sqs:q" }, tags: { ...tags, tenant: "acme" } },
    },
    {
      policy: "tenant-grants-confined",
      type: "pulumi-nodejs:dynamic/stackrail:MysqlGrant",
      bad: { database: "*", privileges: ["SELECT", "SUPER"], databaseMatch: "exact" },
      good: { database: "t_acme", privileges: ["SELECT", "INSERT"], databaseMatch: "exact" },
    },
    {
      policy: "tenant-grants-confined",
      type: "pulumi-nodejs:dynamic/stackrail:MysqlGrant",
      // `_` unescaped is a pattern: t_a_b also matches another tenant's t_axb.
      bad: { database: "t_a_b", privileges: ["SELECT"] },
      good: { database: "t_a_b", privileges: ["SELECT"], databaseMatch: "exact" },
    },
    {
      policy: "tenant-cache-user-confined",
      type: "pulumi-nodejs:dynamic/stackrail:RedisAclUser",
      bad: { keyPrefix: "t:acme:", rules: ["+@all"] },
      good: { keyPrefix: "t:acme:", rules: ["-@all", "+@read", "-@dangerous"] },
    },
    { policy: "required-tags", type: "aws:kms/key:Key", bad: { tags: { environment: "production" } }, good: { tags } },
    { policy: "required-tags", type: "aws:sqs/queue:Queue", bad: { sqsManagedSseEnabled: true }, good: { sqsManagedSseEnabled: true, tags } },
  ];

  for (const c of cases) {
    it(`${c.policy}: ${c.type} violating fails, compliant passes`, async () => {
      expect(await only(c.policy, c.type, c.bad)).not.toEqual([]);
      expect(await only(c.policy, c.type, c.good)).toEqual([]);
      expect(await checkResource(c.type, c.good)).toEqual([]); // the compliant one passes every rule
    });
  }

  it("a role that is not a tenant role is not held to the tenant rule", async () => {
    const policy = JSON.stringify({ Statement: [{ Effect: "Allow", Action: "*", Resource: "*" }] });
    expect(await only("no-wildcard-iam-in-tenant-roles", "aws:iam/rolePolicy:RolePolicy", { role: "platform-ops", policy })).toEqual([]);
  });
});

describe("stack rules (S3)", () => {
  const bucket: StackResource = { type: "aws:s3/bucket:Bucket", name: "data", props: { bucket: "data", tags } };
  const sse: StackResource = {
    type: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    name: "data-sse",
    props: { bucket: "data", rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" } }] },
    dependsOn: ["data"],
  };
  const pab: StackResource = {
    type: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    name: "data-pab",
    props: { bucket: "data", blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
    dependsOn: ["data"],
  };
  const tls: StackResource = {
    type: "aws:s3/bucketPolicy:BucketPolicy",
    name: "data-policy",
    props: {
      bucket: "data",
      policy: JSON.stringify({
        Statement: [
          { Effect: "Deny", Principal: "*", Action: "s3:*", Resource: ["arn:aws:s3:::data/*"], Condition: { Bool: { "aws:SecureTransport": "false" } } },
        ],
      }),
    },
    dependsOn: ["data"],
  };
  const policiesOf = async (rs: StackResource[]): Promise<string[]> => (await checkStack(rs)).map((v) => v.policy);

  it("a bucket with encryption, a full public access block and a TLS-only policy passes", async () => {
    expect(await checkStack([bucket, sse, pab, tls])).toEqual([]);
  });
  it("s3-bucket-encrypted: a bucket without an encryption configuration fails", async () => {
    expect(await policiesOf([bucket, pab, tls])).toEqual(["s3-bucket-encrypted"]);
  });
  it("s3-public-access-blocked: a bucket without a public access block, or with a public ACL, fails", async () => {
    expect(await policiesOf([bucket, sse, tls])).toEqual(["s3-public-access-blocked"]);
    expect(await policiesOf([{ ...bucket, props: { ...bucket.props, acl: "public-read" } }, sse, pab, tls])).toEqual(["s3-public-access-blocked"]);
  });
  it("s3-tls-only: a bucket without a TLS-only policy, or with an Allow-only policy, fails", async () => {
    expect(await policiesOf([bucket, sse, pab])).toEqual(["s3-tls-only"]);
    const allow = {
      ...tls,
      props: { bucket: "data", policy: JSON.stringify({ Statement: [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "*" }] }) },
    };
    expect(await policiesOf([bucket, sse, pab, allow])).toEqual(["s3-tls-only"]);
  });
  it("resources of another bucket do not cover this one", async () => {
    const other: StackResource = { type: "aws:s3/bucket:Bucket", name: "other", props: { bucket: "other", tags } };
    expect(await policiesOf([bucket, other, sse, pab, tls])).toEqual(["s3-bucket-encrypted", "s3-public-access-blocked", "s3-tls-only"]);
  });
});
