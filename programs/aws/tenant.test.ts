// The aws tenant and preview programs under runtime mocks: the logical database through the same
// dynamic providers as the local target (against the region's Aurora), the ElastiCache user
// confined to the tenant prefix, the EFS access point, Secrets Manager, the IAM role without
// wildcards, the Kubernetes namespace objects; silo gets dedicated servers.
import { describe, expect, it } from "vitest";
import { APP_PRIVILEGES } from "../logical.ts";
import { checkResource, checkStack } from "../policy/policies.ts";
import { previewArgsSchema } from "../preview.ts";
import { tenantArgsSchema } from "../tenant.ts";
import { runWithMocks } from "./mock-harness.ts";
import { awsPreviewProgram, awsTenantProgram } from "./tenant.ts";

const regionOutputs = {
  environment: "production",
  costCentre: "platform",
  accountId: "123456789012",
  kmsKeyArn: "arn:aws:kms:eu-west-1:123456789012:key/k",
  vpcId: "vpc-1",
  vpcCidr: "10.40.0.0/16",
  privateSubnetIds: ["subnet-1", "subnet-2"],
  mysqlAdminUrl: "mysql://stackrail_admin:region-admin-pw@aurora.example:3306",
  mysqlEndpoint: "aurora.example",
  redisEndpoint: "cache.example",
  redisPort: 6379,
  redisUserGroupId: "stackrail-eu-west-1-users",
  efsFileSystemId: "fs-1",
  ingressHostname: "eu-west-1.stackrail.example.com",
  oidcIssuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
  kubeconfig: "{}",
};

const DYN = "pulumi-nodejs:dynamic/stackrail:";

describe("aws tenant program (mocked)", () => {
  it("pool tenant: logical database on the shared Aurora, cache user on its prefix, access point, secret, role, namespace", async () => {
    const run = await runWithMocks(
      awsTenantProgram(tenantArgsSchema.parse({ tenantId: "acme", tier: "pool", region: "eu-west-1", version: "1.2.3" })),
      regionOutputs,
    );
    const db = run.one(`${DYN}MysqlDatabase`);
    expect(db.inputs.name).toBe("t_acme");
    // The admin URL reaches the provider as a secret (the mock sees the secret wrapper).
    expect(db.inputs.serverUrl).toMatchObject({ value: regionOutputs.mysqlAdminUrl });
    const grant = run.one(`${DYN}MysqlGrant`);
    expect(grant.inputs).toMatchObject({ user: "t_acme", database: "t_acme", privileges: APP_PRIVILEGES });
    expect(run.one(`${DYN}MysqlUser`).inputs).toMatchObject({ user: "t_acme", maxConnections: 20 });
    // Database and user are made or adopted only as this stack's (issue 11 finding 2).
    for (const type of ["MysqlDatabase", "MysqlUser"]) expect(JSON.stringify(run.one(`${DYN}${type}`).inputs.owner)).toContain("acme/");
    expect(grant.inputs.databaseMatch).toBe("exact");
    expect(run.ofType("aws:rds/cluster:Cluster")).toHaveLength(0); // pool: no dedicated server

    const user = run.one("aws:elasticache/user:User");
    const access = String(user.inputs.accessString);
    expect(access).toContain("~t:acme:*");
    expect(access).toContain("-@dangerous");
    expect(access).not.toMatch(/~\*|allkeys/);
    expect(run.one("aws:elasticache/userGroupAssociation:UserGroupAssociation").inputs).toMatchObject({ userGroupId: regionOutputs.redisUserGroupId });

    const ap = run.one("aws:efs/accessPoint:AccessPoint");
    expect(ap.inputs).toMatchObject({ fileSystemId: "fs-1", rootDirectory: { path: "/tenants/acme", creationInfo: { permissions: "0700" } } });
    expect(run.one("aws:secretsmanager/secret:Secret").inputs).toMatchObject({ kmsKeyId: regionOutputs.kmsKeyArn });

    const rolePolicy = run.one("aws:iam/rolePolicy:RolePolicy");
    const doc = JSON.parse(String(rolePolicy.inputs.policy)) as { Statement: { Action: string[]; Resource: string[] }[] };
    for (const s of doc.Statement) {
      expect(s.Action.every((a) => !a.includes("*"))).toBe(true);
      expect(s.Resource).not.toContain("*");
    }

    const ns = run.one("kubernetes:core/v1:Namespace");
    expect(ns.inputs).toMatchObject({ metadata: { name: "tenant-acme", labels: { "stackrail.io/tenant": "acme", "stackrail.io/tier": "pool" } } });
    expect(run.one("kubernetes:core/v1:ConfigMap").inputs).toMatchObject({ data: { REPLICAS: "2", VERSION: "1.2.3", REDIS_KEY_PREFIX: "t:acme:" } });
    expect(run.ofType("kubernetes:networking.k8s.io/v1:NetworkPolicy")).toHaveLength(1);

    for (const r of run.resources) expect(await checkResource(r.type, r.inputs, r.name), `${r.type} ${r.name}`).toEqual([]);
    expect(await checkStack(run.forPolicies())).toEqual([]);
    const tags = user.inputs.tags as Record<string, string>;
    expect(tags).toMatchObject({ tenant: "acme", environment: "production", "cost-centre": "platform" });
    expect(run.secretOutputs).toEqual(expect.arrayContaining(["databasePassword", "cachePassword"]));
  });

  it("silo tenant: dedicated encrypted Aurora and ElastiCache, `s_` name space", async () => {
    const run = await runWithMocks(awsTenantProgram(tenantArgsSchema.parse({ tenantId: "bigco", tier: "silo", region: "eu-west-1" })), regionOutputs);
    const cluster = run.one("aws:rds/cluster:Cluster");
    expect(cluster.inputs).toMatchObject({ storageEncrypted: true, deletionProtection: true, kmsKeyId: regionOutputs.kmsKeyArn });
    expect(run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs).toMatchObject({
      atRestEncryptionEnabled: true,
      transitEncryptionEnabled: true,
    });
    const db = run.one(`${DYN}MysqlDatabase`);
    expect(db.inputs.name).toBe("s_bigco");
    expect((db.inputs.serverUrl as { value: string }).value).toContain("stackrail-silo-bigco-mysql.cluster.example");
    expect(run.one("aws:elasticache/userGroupAssociation:UserGroupAssociation").inputs.userGroupId).not.toBe(regionOutputs.redisUserGroupId);
    for (const r of run.resources) expect(await checkResource(r.type, r.inputs, r.name), `${r.type} ${r.name}`).toEqual([]);
  });

  it("preview: same shape, small, labelled with the PR and its expiry", async () => {
    const args = previewArgsSchema.parse({ repo: "Web.App", pr: 42, headSha: "b".repeat(40), expiresAt: "2030-01-01T00:00:00Z" });
    const run = await runWithMocks(awsPreviewProgram(args), regionOutputs);
    const ns = run.one("kubernetes:core/v1:Namespace");
    expect(ns.inputs).toMatchObject({
      metadata: { name: "preview-web-app-pr-42", labels: { "stackrail.io/pr": "42", "stackrail.io/expires-at": "1893456000" } },
    });
    expect(run.one(`${DYN}MysqlUser`).inputs).toMatchObject({ user: "p_web_app_pr_42", maxConnections: 5 });
    expect(run.one("kubernetes:core/v1:ResourceQuota").inputs).toMatchObject({ spec: { hard: { pods: "5" } } });
    expect(run.outputs.labels).toMatchObject({ "stackrail.io/head-sha": "b".repeat(40) });
    // Previews are checked by the same mandatory pack as every other `up` (issue 16, item 5): they pass it.
    for (const r of run.resources) expect(await checkResource(r.type, r.inputs, r.name), `${r.type} ${r.name}`).toEqual([]);
    expect(await checkStack(run.forPolicies())).toEqual([]);
  });
});
