// The `tenant-<id>` and `preview-<repo>-pr-<n>` stacks on aws. The logical database, user and
// grants are made by the same dynamic providers as on the local target, against the regional
// Aurora cluster (pool) or a dedicated one (silo); the cache user is an ElastiCache RBAC user with
// the same ACL rules, confined to the tenant's key prefix; attachments get an EFS access point
// rooted at the tenant's folder; credentials go to Secrets Manager (KMS) and stay Pulumi secrets;
// the tenant's Kubernetes namespace and the objects the app needs come from @pulumi/kubernetes.
import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { previewKey } from "../../core/ids.ts";
import { REGION_PROJECT, credentialsSecretId, previewNamespace, tenantNamespace, workloadObjects, type WorkloadObjects } from "../../core/tenant-resources.ts";
import { MAX_CONNECTIONS, cacheRules, privilegesFor, stackOwner, tenantDatabase } from "../logical.ts";
import { logicalNames, type LogicalNames } from "../../core/naming.ts";
import { GeneratedPassword } from "../local/resources.ts";
import { previewLabels, type PreviewArgs } from "../preview.ts";
import type { TenantArgs } from "../tenant.ts";
import { awsName, policyDocument, tagsFor, type TagSpec } from "./common.ts";
import { mysqlServer, redisServer, type Network } from "./region.ts";
import { tenantKubernetesObjects } from "./tenant-kubernetes.ts";

/** The outputs of `region-<region>` a tenant stack reads. */
export const REGION_OUTPUTS = [
  "environment",
  "costCentre",
  "accountId",
  "kmsKeyArn",
  "vpcId",
  "vpcCidr",
  "privateSubnetIds",
  "mysqlAdminUrl",
  "mysqlEndpoint",
  "redisEndpoint",
  "redisPort",
  "redisUserGroupId",
  "efsFileSystemId",
  "ingressHostname",
  "oidcIssuer",
  "kubeconfig",
] as const;

interface Sizing {
  kind: "pool" | "silo" | "preview";
  readOnly: boolean;
  maxConnections: number;
  replicas: number;
  quota: { cpu: string; memory: string; pods: string };
}

interface AwsTenantSpec {
  region: string;
  names: LogicalNames;
  /** The namespace's objects (core/tenant-resources.ts); the namespace is also the IAM role's base name. */
  objects: WorkloadObjects;
  tenantTag: string;
  /** A tenant's tier (its credentials secret's name carries it); none for a preview. */
  tier?: "pool" | "silo";
  sizing: Sizing;
  labels: Record<string, string>;
  version?: string;
}

/** A stable POSIX uid/gid per tenant for its EFS access point (50000–1049999). */
export function posixId(key: string): number {
  return 50_000 + (parseInt(createHash("sha256").update(key).digest("hex").slice(0, 8), 16) % 1_000_000);
}

function awsTenant(spec: AwsTenantSpec): Record<string, unknown> {
  const { names, sizing, objects } = spec;
  const namespace = objects.namespace;
  // The region stack lives in one project, whichever project (tier) this stack is in.
  const region = new pulumi.StackReference("region", { name: `${pulumi.getOrganization()}/${REGION_PROJECT}/region-${spec.region}` });
  const out = (name: (typeof REGION_OUTPUTS)[number]): pulumi.Output<unknown> => region.requireOutput(name);
  const str = (name: (typeof REGION_OUTPUTS)[number]): pulumi.Output<string> => out(name).apply((v) => String(v));

  const environment = str("environment");
  const costCentre = str("costCentre");
  // Tags must be known strings for the policy pack; the environment and cost centre follow the region.
  const tags = pulumi
    .all([environment, costCentre])
    .apply(([env, cc]) => tagsFor({ environment: env, costCentre: cc, tenant: spec.tenantTag, extra: { stack: pulumi.getStack() } } satisfies TagSpec));
  const provider = new aws.Provider("aws", { region: spec.region as aws.Region });
  const opts: pulumi.CustomResourceOptions = { provider };
  const kmsKeyArn = str("kmsKeyArn");

  // Servers: pool and previews share the region's; silo gets dedicated ones in the region's network.
  let mysqlAdminUrl: pulumi.Output<string>;
  let mysqlHost: pulumi.Output<string>;
  let redisHost: pulumi.Output<string>;
  let redisUserGroupId: pulumi.Output<string>;
  if (sizing.kind === "silo") {
    const network: Network = {
      vpcId: str("vpcId"),
      vpcCidr: str("vpcCidr"),
      privateSubnetIds: out("privateSubnetIds").apply((v) => v as string[]),
    };
    const serverSpec = {
      prefix: awsName(`stackrail-silo-${names.key}`, 40),
      network,
      kmsKeyArn,
      tags,
      production: true,
      dbInstanceClass: "db.r7g.large",
      cacheNodeType: "cache.r7g.large",
    };
    const mysql = mysqlServer(serverSpec, opts);
    const redis = redisServer(serverSpec, opts);
    mysqlAdminUrl = mysql.adminUrl;
    mysqlHost = mysql.cluster.endpoint;
    redisHost = redis.group.primaryEndpointAddress;
    redisUserGroupId = redis.userGroup.userGroupId;
  } else {
    mysqlAdminUrl = pulumi.secret(str("mysqlAdminUrl"));
    mysqlHost = str("mysqlEndpoint");
    redisHost = str("redisEndpoint");
    redisUserGroupId = str("redisUserGroupId");
  }

  // Same code as the local target: database, user with a connection limit, grants on that database only.
  const db = tenantDatabase({
    names,
    owner: stackOwner(names),
    serverUrl: mysqlAdminUrl,
    privileges: privilegesFor(sizing.readOnly),
    maxConnections: sizing.maxConnections,
  });

  // Cache: an ElastiCache RBAC user with the same ACL rules as the local Redis user.
  const cachePassword = new GeneratedPassword(`${names.label}-cache-password`, { length: 32 });
  const accessString = ["on", `~${names.keyPrefix}*`, `&${names.keyPrefix}*`, ...cacheRules(sizing.readOnly)].join(" ");
  const cacheUser = new aws.elasticache.User(
    `${names.cacheUser}-cache-user`,
    {
      userId: awsName(names.cacheUser, 40),
      userName: names.cacheUser,
      engine: "redis",
      accessString,
      authenticationMode: { type: "password", passwords: [cachePassword.result] },
      tags,
    },
    { ...opts, additionalSecretOutputs: ["authenticationMode", "passwords"] },
  );
  new aws.elasticache.UserGroupAssociation(`${names.cacheUser}-cache-user`, { userGroupId: redisUserGroupId, userId: cacheUser.userId }, opts);

  // Attachments: an access point confined to the tenant's folder, as the tenant's own POSIX user.
  const uid = posixId(names.key);
  const accessPoint = new aws.efs.AccessPoint(
    `${names.key}-attachments`,
    {
      fileSystemId: str("efsFileSystemId"),
      posixUser: { uid, gid: uid },
      rootDirectory: { path: `/${names.attachmentsDir}`, creationInfo: { ownerUid: uid, ownerGid: uid, permissions: "0700" } },
      tags,
    },
    opts,
  );

  // Credentials: Secrets Manager (KMS) for the app, Pulumi secrets in the stack.
  const credentials = pulumi.secret(
    pulumi.jsonStringify({
      mysql: { host: mysqlHost, port: 3306, database: names.database, user: names.dbUser, password: db.password },
      redis: { host: redisHost, port: 6379, tls: true, user: names.cacheUser, password: cachePassword.result, keyPrefix: names.keyPrefix },
    }),
  );
  const secret = new aws.secretsmanager.Secret(
    `${names.key}-credentials`,
    { name: credentialsSecretId(namespace, spec.tier), kmsKeyId: kmsKeyArn, recoveryWindowInDays: 7, tags },
    opts,
  );
  new aws.secretsmanager.SecretVersion(`${names.key}-credentials`, { secretId: secret.id, secretString: credentials }, opts);

  // The app's IAM role (IRSA): its own secret and access point, nothing else, no wildcards.
  const oidcHost = str("oidcIssuer").apply((u) => u.replace(/^https:\/\//, ""));
  const roleName = awsName(`tenant-${namespace}-app`, 64);
  const role = new aws.iam.Role(
    `${names.key}-app`,
    {
      name: roleName,
      assumeRolePolicy: pulumi.all([str("accountId"), oidcHost]).apply(([account, host]) =>
        policyDocument({
          Effect: "Allow",
          Principal: { Federated: `arn:aws:iam::${account}:oidc-provider/${host}` },
          Action: "sts:AssumeRoleWithWebIdentity",
          Condition: {
            StringEquals: { [`${host}:sub`]: `system:serviceaccount:${namespace}:${objects.serviceAccount}`, [`${host}:aud`]: "sts.amazonaws.com" },
          },
        }),
      ),
      tags,
    },
    opts,
  );
  new aws.iam.RolePolicy(
    `${names.key}-app`,
    {
      role: role.name,
      policy: pulumi.all([secret.arn, accessPoint.arn, accessPoint.fileSystemArn]).apply(([secretArn, apArn, fsArn]) =>
        policyDocument(
          { Sid: "OwnCredentials", Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: [secretArn] },
          {
            Sid: "OwnAttachments",
            Effect: "Allow",
            Action: ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            Resource: [fsArn],
            Condition: { StringEquals: { "elasticfilesystem:AccessPointArn": apArn } },
          },
        ),
      ),
    },
    opts,
  );

  // Kubernetes: namespace and what the app needs; Argo CD deploys the app itself.
  const kube = new k8s.Provider("eks", { kubeconfig: str("kubeconfig"), enableServerSideApply: true });
  const hostname = pulumi.interpolate`${names.key}.${str("ingressHostname")}`;
  tenantKubernetesObjects(
    {
      objects,
      labels: spec.labels,
      quota: sizing.quota,
      roleArn: role.arn,
      database: { host: mysqlHost, port: "3306", database: names.database, username: names.dbUser, password: db.password },
      cache: { host: redisHost, port: "6379", username: names.cacheUser, password: cachePassword.result, keyPrefix: names.keyPrefix, tls: "true" },
      config: {
        TENANT: spec.tenantTag,
        REPLICAS: String(sizing.replicas),
        VERSION: spec.version ?? "",
        MYSQL_HOST: mysqlHost,
        MYSQL_DATABASE: names.database,
        REDIS_HOST: redisHost,
        REDIS_KEY_PREFIX: names.keyPrefix,
        ATTACHMENTS_ACCESS_POINT: accessPoint.id,
        CREDENTIALS_SECRET_ARN: secret.arn,
        PUBLIC_HOSTNAME: hostname,
      },
    },
    { provider: kube },
  );

  return {
    target: "aws",
    region: spec.region,
    namespace,
    url: pulumi.interpolate`https://${hostname}`,
    hostname,
    databaseHost: mysqlHost,
    databasePort: 3306,
    databaseName: db.database.name,
    databaseUser: db.user.user,
    databasePassword: db.password,
    cacheHost: redisHost,
    cachePort: 6379,
    cacheUser: cacheUser.userName,
    cacheKeyPrefix: names.keyPrefix,
    cachePassword: pulumi.secret(cachePassword.result),
    attachmentsAccessPointId: accessPoint.id,
    credentialsSecretArn: secret.arn,
    appRoleArn: role.arn,
    replicas: sizing.replicas,
  };
}

export function awsTenantProgram(args: TenantArgs): () => Promise<Record<string, unknown>> {
  return () => {
    const silo = args.tier === "silo";
    const outputs = awsTenant({
      region: args.region,
      names: logicalNames(silo ? "silo" : "tenant", args.tenantId),
      objects: workloadObjects(tenantNamespace(args.tenantId)),
      tenantTag: args.tenantId,
      tier: args.tier,
      version: args.version,
      labels: { "stackrail.io/tenant": args.tenantId, "stackrail.io/tier": args.tier },
      sizing: {
        kind: args.tier,
        readOnly: args.readOnly ?? false,
        maxConnections: args.maxConnections ?? MAX_CONNECTIONS[args.tier],
        replicas: 2,
        quota: silo ? { cpu: "8", memory: "16Gi", pods: "50" } : { cpu: "2", memory: "4Gi", pods: "20" },
      },
    });
    return Promise.resolve({ ...outputs, tenantId: args.tenantId, tier: args.tier, version: args.version ?? "" });
  };
}

export function awsPreviewProgram(args: PreviewArgs): () => Promise<Record<string, unknown>> {
  return () => {
    const key = previewKey(args.repo, args.pr);
    const labels = previewLabels(args);
    const outputs = awsTenant({
      region: args.region,
      names: logicalNames("preview", key),
      objects: workloadObjects(previewNamespace(args.repo, args.pr)),
      tenantTag: `preview-${key}`,
      version: args.headSha,
      labels,
      sizing: { kind: "preview", readOnly: false, maxConnections: MAX_CONNECTIONS.preview, replicas: 1, quota: { cpu: "1", memory: "1Gi", pods: "5" } },
    });
    return Promise.resolve({ ...outputs, preview: key, pr: args.pr, headSha: args.headSha, expiresAt: args.expiresAt, labels });
  };
}
