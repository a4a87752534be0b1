// The region program under runtime mocks: the properties that matter (encryption, backups,
// deletion protection, TLS, WAF, public access, tags), and the whole stack through the policy pack.
import { beforeAll, describe, expect, it } from "vitest";
import { checkResource, checkStack } from "../policy/policies.ts";
import { REQUIRED_TAGS } from "./common.ts";
import { runWithMocks, type MockRun } from "./mock-harness.ts";
import { regionProgram } from "./region.ts";
import { regionArgsSchema } from "./schemas.ts";

let run: MockRun;
const input = (r: { inputs: Record<string, unknown> }, key: string): unknown => r.inputs[key];

beforeAll(async () => {
  run = await runWithMocks(regionProgram(regionArgsSchema.parse({ region: "eu-west-1", environment: "production" })));
});

describe("region program (aws, mocked)", () => {
  it("KMS key with rotation; Aurora MySQL encrypted with it, backups kept, deletion protected", () => {
    const key = run.one("aws:kms/key:Key");
    expect(input(key, "enableKeyRotation")).toBe(true);
    const cluster = run.one("aws:rds/cluster:Cluster");
    expect(cluster.inputs).toMatchObject({ engine: "aurora-mysql", storageEncrypted: true, deletionProtection: true, skipFinalSnapshot: false });
    expect(input(cluster, "kmsKeyId")).toMatch(/^arn:aws:kms:/);
    expect(input(cluster, "backupRetentionPeriod")).toBeGreaterThanOrEqual(7);
    expect(run.ofType("aws:rds/clusterInstance:ClusterInstance").every((i) => input(i, "publiclyAccessible") === false)).toBe(true);
  });

  it("ElastiCache encrypted at rest and in transit, RBAC auth, default user off", () => {
    const group = run.one("aws:elasticache/replicationGroup:ReplicationGroup");
    expect(group.inputs).toMatchObject({ atRestEncryptionEnabled: true, transitEncryptionEnabled: true });
    expect(input(group, "userGroupIds")).toHaveLength(1);
    const def = run.one("aws:elasticache/user:User");
    expect(def.inputs).toMatchObject({ userName: "default" });
    expect(String(input(def, "accessString"))).toMatch(/^off /);
  });

  it("EFS encrypted; S3 blocks public access, requires TLS and encrypts with KMS; SQS DLQ encrypted", () => {
    expect(run.one("aws:efs/fileSystem:FileSystem").inputs).toMatchObject({ encrypted: true });
    expect(run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs).toMatchObject({
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    const sse = run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration");
    expect(JSON.stringify(sse.inputs)).toContain('"sseAlgorithm":"aws:kms"');
    const policy = JSON.parse(String(run.one("aws:s3/bucketPolicy:BucketPolicy").inputs.policy)) as { Statement: unknown[] };
    expect(policy.Statement).toContainEqual(expect.objectContaining({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }));
    expect(input(run.one("aws:sqs/queue:Queue"), "kmsMasterKeyId")).toMatch(/^arn:aws:kms:/);
  });

  it("ingress: ALB with an HTTPS listener on the ACM certificate, HTTP redirected, WAF attached", () => {
    const alb = run.one("aws:lb/loadBalancer:LoadBalancer");
    const listeners = run.ofType("aws:lb/listener:Listener");
    const https = listeners.find((l) => input(l, "protocol") === "HTTPS");
    expect(https?.inputs).toMatchObject({ port: 443, sslPolicy: expect.stringMatching(/TLS13/) as unknown });
    expect(input(https ?? alb, "certificateArn")).toMatch(/^arn:aws:acm:/);
    const http = listeners.find((l) => input(l, "protocol") === "HTTP");
    expect(JSON.stringify(http?.inputs)).toContain('"protocol":"HTTPS"');
    const assoc = run.one("aws:wafv2/webAclAssociation:WebAclAssociation");
    expect(input(assoc, "resourceArn")).toMatch(/:lb:/);
    expect(JSON.stringify(run.one("aws:wafv2/webAcl:WebAcl").inputs)).toContain("AWSManagedRulesCommonRuleSet");
  });

  it("every taggable resource carries the required tags, and the whole stack passes the policy pack", async () => {
    for (const r of run.resources) {
      const violations = await checkResource(r.type, r.inputs, r.name);
      expect(violations, `${r.type} ${r.name}`).toEqual([]);
    }
    expect(await checkStack(run.forPolicies())).toEqual([]);
    const tags = run.one("aws:rds/cluster:Cluster").inputs.tags as Record<string, string>;
    for (const t of REQUIRED_TAGS) expect(tags[t]).toBeTruthy();
  });

  it("outputs what tenant stacks need; the admin URL and kubeconfig are secrets", () => {
    for (const key of ["mysqlAdminUrl", "redisUserGroupId", "efsFileSystemId", "kmsKeyArn", "privateSubnetIds", "kubeconfig", "dlqArn", "oidcIssuer"]) {
      expect(run.outputs[key], key).toBeDefined();
    }
    expect(run.secretOutputs).toEqual(expect.arrayContaining(["mysqlAdminUrl", "kubeconfig"]));
    expect(String(run.outputs.mysqlAdminUrl)).toMatch(/^mysql:\/\/stackrail_admin:/);
  });
});
