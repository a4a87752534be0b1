// The `region-<region>` stack (aws): the shared regional servers and edge every tenant stack in
// the region reads through a StackReference — KMS key, network, Aurora MySQL (encrypted, backups,
// deletion protection), ElastiCache Redis (encryption at rest and in transit, RBAC auth), EFS
// (encrypted), an S3 bucket (public access blocked, TLS-only, SSE-KMS), the ingress pieces (ALB
// with WAF and an ACM certificate) and an SQS dead-letter queue. The data-server builders are
// reused by silo tenants, who get dedicated ones.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { GeneratedPassword } from "../local/resources.ts";
import { awsName, policyDocument, tagsFor, type TagSpec } from "./common.ts";
import type { RegionArgs } from "./schemas.ts";

export interface Network {
  vpcId: pulumi.Input<string>;
  vpcCidr: pulumi.Input<string>;
  privateSubnetIds: pulumi.Input<pulumi.Input<string>[]>;
}

export interface DataServerSpec {
  /** Prefix of every AWS name, e.g. `stackrail-eu-west-1` or `stackrail-silo-acme`. */
  prefix: string;
  network: Network;
  kmsKeyArn: pulumi.Input<string>;
  tags: pulumi.Input<Record<string, string>>;
  production: boolean;
  /** Instance classes: shared servers are larger than a silo's or a preview's. */
  dbInstanceClass: string;
  cacheNodeType: string;
}

export interface MysqlServer {
  cluster: aws.rds.Cluster;
  /** mysql://admin:<password>@endpoint:3306 — a secret; the dynamic providers connect with it. */
  adminUrl: pulumi.Output<string>;
  adminSecret: aws.secretsmanager.Secret;
}

function securityGroup(name: string, spec: DataServerSpec, port: number, opts: pulumi.CustomResourceOptions): aws.ec2.SecurityGroup {
  return new aws.ec2.SecurityGroup(
    name,
    {
      vpcId: spec.network.vpcId,
      description: `${name}: port ${port} from inside the VPC only`,
      ingress: [{ protocol: "tcp", fromPort: port, toPort: port, cidrBlocks: [spec.network.vpcCidr] }],
      egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: [spec.network.vpcCidr] }],
      tags: spec.tags,
    },
    opts,
  );
}

export function mysqlServer(spec: DataServerSpec, opts: pulumi.CustomResourceOptions): MysqlServer {
  const tags = spec.tags;
  const sg = securityGroup(`${spec.prefix}-mysql`, spec, 3306, opts);
  const subnets = new aws.rds.SubnetGroup(`${spec.prefix}-mysql`, { subnetIds: spec.network.privateSubnetIds, tags }, opts);
  const password = new GeneratedPassword(`${spec.prefix}-mysql-admin`, { length: 40 });
  const cluster = new aws.rds.Cluster(
    `${spec.prefix}-mysql`,
    {
      clusterIdentifier: awsName(`${spec.prefix}-mysql`, 63),
      engine: "aurora-mysql",
      engineVersion: "8.0.mysql_aurora.3.08.0",
      masterUsername: "stackrail_admin",
      masterPassword: password.result,
      dbSubnetGroupName: subnets.name,
      vpcSecurityGroupIds: [sg.id],
      storageEncrypted: true,
      kmsKeyId: spec.kmsKeyArn,
      backupRetentionPeriod: spec.production ? 30 : 7,
      preferredBackupWindow: "02:00-03:00",
      deletionProtection: true,
      copyTagsToSnapshot: true,
      skipFinalSnapshot: false,
      finalSnapshotIdentifier: awsName(`${spec.prefix}-mysql-final`, 63),
      enabledCloudwatchLogsExports: ["audit", "error", "slowquery"],
      iamDatabaseAuthenticationEnabled: true,
      tags,
    },
    { ...opts, additionalSecretOutputs: ["masterPassword"] },
  );
  const instances = spec.production ? 2 : 1;
  for (let i = 0; i < instances; i++) {
    new aws.rds.ClusterInstance(
      `${spec.prefix}-mysql-${i}`,
      {
        clusterIdentifier: cluster.id,
        instanceClass: spec.dbInstanceClass,
        engine: "aurora-mysql",
        publiclyAccessible: false,
        performanceInsightsEnabled: true,
        performanceInsightsKmsKeyId: spec.kmsKeyArn,
        tags,
      },
      opts,
    );
  }
  const adminUrl = pulumi.secret(pulumi.interpolate`mysql://stackrail_admin:${password.result}@${cluster.endpoint}:${cluster.port}?ssl=Amazon%20RDS`);
  const adminSecret = new aws.secretsmanager.Secret(
    `${spec.prefix}-mysql-admin`,
    { name: `stackrail/${spec.prefix}/mysql-admin`, kmsKeyId: spec.kmsKeyArn, tags },
    opts,
  );
  new aws.secretsmanager.SecretVersion(`${spec.prefix}-mysql-admin`, { secretId: adminSecret.id, secretString: adminUrl }, opts);
  return { cluster, adminUrl, adminSecret };
}

export interface RedisServer {
  group: aws.elasticache.ReplicationGroup;
  userGroup: aws.elasticache.UserGroup;
}

export function redisServer(spec: DataServerSpec, opts: pulumi.CustomResourceOptions): RedisServer {
  const tags = spec.tags;
  const sg = securityGroup(`${spec.prefix}-redis`, spec, 6379, opts);
  const subnets = new aws.elasticache.SubnetGroup(
    `${spec.prefix}-redis`,
    { name: awsName(`${spec.prefix}-redis`, 40), subnetIds: spec.network.privateSubnetIds, tags },
    opts,
  );
  // RBAC: the mandatory `default` user is switched off; tenants get their own users (tenant stacks).
  const defaultPassword = new GeneratedPassword(`${spec.prefix}-redis-default`, { length: 40 });
  const defaultUser = new aws.elasticache.User(
    `${spec.prefix}-redis-default`,
    {
      userId: awsName(`${spec.prefix}-default`, 40),
      userName: "default",
      engine: "redis",
      accessString: "off -@all",
      authenticationMode: { type: "password", passwords: [defaultPassword.result] },
      tags,
    },
    opts,
  );
  const userGroup = new aws.elasticache.UserGroup(
    `${spec.prefix}-redis`,
    { userGroupId: awsName(`${spec.prefix}-users`, 40), engine: "redis", userIds: [defaultUser.userId], tags },
    { ...opts, ignoreChanges: ["userIds"] }, // tenant stacks add their users by association
  );
  const group = new aws.elasticache.ReplicationGroup(
    `${spec.prefix}-redis`,
    {
      replicationGroupId: awsName(`${spec.prefix}-redis`, 40),
      description: `Stackrail tenant caches (${spec.prefix})`,
      engine: "redis",
      engineVersion: "7.1",
      nodeType: spec.cacheNodeType,
      numCacheClusters: spec.production ? 2 : 1,
      automaticFailoverEnabled: spec.production,
      multiAzEnabled: spec.production,
      subnetGroupName: subnets.name,
      securityGroupIds: [sg.id],
      atRestEncryptionEnabled: true,
      kmsKeyId: spec.kmsKeyArn,
      transitEncryptionEnabled: true,
      userGroupIds: [userGroup.userGroupId],
      snapshotRetentionLimit: spec.production ? 7 : 1,
      parameterGroupName: "default.redis7",
      tags,
    },
    opts,
  );
  return { group, userGroup };
}

export function regionProgram(args: RegionArgs): () => Promise<Record<string, unknown>> {
  return () => {
    const production = args.environment === "production";
    const prefix = `stackrail-${args.region}`;
    const tagSpec: TagSpec = { environment: args.environment, costCentre: args.costCentre, extra: { region: args.region } };
    const tags = tagsFor(tagSpec);
    const provider = new aws.Provider("aws", { region: args.region as aws.Region, defaultTags: { tags } });
    const opts: pulumi.CustomResourceOptions = { provider };
    const identity = aws.getCallerIdentityOutput({}, { provider });

    const key = new aws.kms.Key(
      `${prefix}-data`,
      {
        description: `Stackrail data key (${args.region}): Aurora, ElastiCache, EFS, S3, SQS, Secrets Manager`,
        enableKeyRotation: true,
        deletionWindowInDays: 30,
        tags,
      },
      opts,
    );
    new aws.kms.Alias(`${prefix}-data`, { name: `alias/${prefix}-data`, targetKeyId: key.keyId }, opts);

    // Network: private subnets for the data servers, public ones for the ALB.
    const vpcCidr = "10.40.0.0/16";
    const vpc = new aws.ec2.Vpc(`${prefix}`, { cidrBlock: vpcCidr, enableDnsHostnames: true, enableDnsSupport: true, tags }, opts);
    const igw = new aws.ec2.InternetGateway(`${prefix}`, { vpcId: vpc.id, tags }, opts);
    const publicRoutes = new aws.ec2.RouteTable(`${prefix}-public`, { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: igw.id }], tags }, opts);
    const zones = ["a", "b"].map((z) => `${args.region}${z}`);
    const privateSubnets = zones.map(
      (az, i) => new aws.ec2.Subnet(`${prefix}-private-${i}`, { vpcId: vpc.id, cidrBlock: `10.40.${i}.0/24`, availabilityZone: az, tags }, opts),
    );
    const publicSubnets = zones.map((az, i) => {
      const subnet = new aws.ec2.Subnet(
        `${prefix}-public-${i}`,
        { vpcId: vpc.id, cidrBlock: `10.40.${100 + i}.0/24`, availabilityZone: az, mapPublicIpOnLaunch: false, tags },
        opts,
      );
      new aws.ec2.RouteTableAssociation(`${prefix}-public-${i}`, { subnetId: subnet.id, routeTableId: publicRoutes.id }, opts);
      return subnet;
    });
    const network: Network = { vpcId: vpc.id, vpcCidr, privateSubnetIds: privateSubnets.map((s) => s.id) };
    const serverSpec: DataServerSpec = {
      prefix,
      network,
      kmsKeyArn: key.arn,
      tags,
      production,
      dbInstanceClass: production ? "db.r7g.large" : "db.t4g.medium",
      cacheNodeType: production ? "cache.r7g.large" : "cache.t4g.small",
    };
    const mysql = mysqlServer(serverSpec, opts);
    const redis = redisServer(serverSpec, opts);

    const efsSg = securityGroup(`${prefix}-efs`, serverSpec, 2049, opts);
    const efs = new aws.efs.FileSystem(
      `${prefix}-attachments`,
      { encrypted: true, kmsKeyId: key.arn, performanceMode: "generalPurpose", throughputMode: "elastic", tags },
      opts,
    );
    new aws.efs.BackupPolicy(`${prefix}-attachments`, { fileSystemId: efs.id, backupPolicy: { status: "ENABLED" } }, opts);
    privateSubnets.forEach(
      (s, i) => new aws.efs.MountTarget(`${prefix}-attachments-${i}`, { fileSystemId: efs.id, subnetId: s.id, securityGroups: [efsSg.id] }, opts),
    );

    const bucketName = awsName(`${prefix}-data-${args.environment}`, 63);
    const bucket = new aws.s3.Bucket(`${prefix}-data`, { bucket: bucketName, forceDestroy: false, tags }, opts);
    new aws.s3.BucketPublicAccessBlock(
      `${prefix}-data`,
      { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
      opts,
    );
    new aws.s3.BucketServerSideEncryptionConfiguration(
      `${prefix}-data`,
      { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: key.arn }, bucketKeyEnabled: true }] },
      opts,
    );
    new aws.s3.BucketVersioning(`${prefix}-data`, { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } }, opts);
    new aws.s3.BucketPolicy(
      `${prefix}-data`,
      {
        bucket: bucket.id,
        policy: bucket.arn.apply((arn) =>
          policyDocument({
            Sid: "DenyInsecureTransport",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:*",
            Resource: [arn, `${arn}/*`],
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          }),
        ),
      },
      opts,
    );

    const dlq = new aws.sqs.Queue(
      `${prefix}-dlq`,
      { name: `${prefix}-dlq`, kmsMasterKeyId: key.arn, kmsDataKeyReusePeriodSeconds: 300, messageRetentionSeconds: 14 * 24 * 3600, tags },
      opts,
    );

    // Ingress: ALB (TLS only, HTTP redirects), WAF with AWS managed rules and a rate limit, ACM certificate.
    const hostname = `${args.region}.${args.domain}`;
    const cert = new aws.acm.Certificate(
      `${prefix}-ingress`,
      { domainName: hostname, subjectAlternativeNames: [`*.${hostname}`], validationMethod: "DNS", tags },
      opts,
    );
    const albSg = new aws.ec2.SecurityGroup(
      `${prefix}-alb`,
      {
        vpcId: vpc.id,
        description: "ALB: HTTPS and the HTTP redirect from anywhere",
        ingress: [
          { protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"] },
          { protocol: "tcp", fromPort: 80, toPort: 80, cidrBlocks: ["0.0.0.0/0"] },
        ],
        egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: [vpcCidr] }],
        tags,
      },
      opts,
    );
    const alb = new aws.lb.LoadBalancer(
      `${prefix}-ingress`,
      {
        name: awsName(`${prefix}`, 32),
        loadBalancerType: "application",
        internal: false,
        subnets: publicSubnets.map((s) => s.id),
        securityGroups: [albSg.id],
        dropInvalidHeaderFields: true,
        enableDeletionProtection: true,
        tags,
      },
      opts,
    );
    const https = new aws.lb.Listener(
      `${prefix}-https`,
      {
        loadBalancerArn: alb.arn,
        port: 443,
        protocol: "HTTPS",
        sslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06",
        certificateArn: cert.arn,
        defaultActions: [{ type: "fixed-response", fixedResponse: { contentType: "text/plain", statusCode: "404", messageBody: "unknown tenant" } }],
        tags,
      },
      opts,
    );
    new aws.lb.Listener(
      `${prefix}-http`,
      {
        loadBalancerArn: alb.arn,
        port: 80,
        protocol: "HTTP",
        defaultActions: [{ type: "redirect", redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" } }],
        tags,
      },
      opts,
    );
    const managed = (name: string, priority: number): aws.types.input.wafv2.WebAclRule => ({
      name,
      priority,
      overrideAction: { none: {} },
      statement: { managedRuleGroupStatement: { vendorName: "AWS", name } },
      visibilityConfig: { cloudwatchMetricsEnabled: true, metricName: name, sampledRequestsEnabled: true },
    });
    const waf = new aws.wafv2.WebAcl(
      `${prefix}-ingress`,
      {
        scope: "REGIONAL",
        defaultAction: { allow: {} },
        rules: [
          managed("AWSManagedRulesCommonRuleSet", 1),
          managed("AWSManagedRulesKnownBadInputsRuleSet", 2),
          managed("AWSManagedRulesSQLiRuleSet", 3),
          {
            name: "rate-limit",
            priority: 10,
            action: { block: {} },
            statement: { rateBasedStatement: { limit: 2000, aggregateKeyType: "IP" } },
            visibilityConfig: { cloudwatchMetricsEnabled: true, metricName: "rate-limit", sampledRequestsEnabled: true },
          },
        ],
        visibilityConfig: { cloudwatchMetricsEnabled: true, metricName: `${prefix}-ingress`, sampledRequestsEnabled: true },
        tags,
      },
      opts,
    );
    new aws.wafv2.WebAclAssociation(`${prefix}-ingress`, { resourceArn: alb.arn, webAclArn: waf.arn }, opts);

    // The EKS cluster itself is not managed here; tenant stacks reach it through this kubeconfig.
    const clusterName = `stackrail-${args.region}`;
    const eks = aws.eks.getClusterOutput({ name: clusterName }, { provider });
    const kubeconfig = pulumi.secret(
      pulumi.jsonStringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: clusterName, cluster: { server: eks.endpoint, "certificate-authority-data": eks.certificateAuthorities[0]?.data } }],
        contexts: [{ name: clusterName, context: { cluster: clusterName, user: clusterName } }],
        "current-context": clusterName,
        users: [
          {
            name: clusterName,
            user: {
              exec: {
                apiVersion: "client.authentication.k8s.io/v1beta1",
                command: "aws",
                args: ["eks", "get-token", "--cluster-name", clusterName, "--region", args.region],
              },
            },
          },
        ],
      }),
    );
    const oidcIssuer = eks.identities.apply((ids) => ids[0]?.oidcs[0]?.issuer ?? "");

    return Promise.resolve({
      region: args.region,
      environment: args.environment,
      costCentre: args.costCentre,
      accountId: identity.accountId,
      kmsKeyArn: key.arn,
      vpcId: vpc.id,
      vpcCidr,
      privateSubnetIds: network.privateSubnetIds,
      mysqlEndpoint: mysql.cluster.endpoint,
      mysqlPort: mysql.cluster.port,
      mysqlAdminUrl: mysql.adminUrl,
      mysqlAdminSecretArn: mysql.adminSecret.arn,
      redisEndpoint: redis.group.primaryEndpointAddress,
      redisPort: redis.group.port,
      redisUserGroupId: redis.userGroup.userGroupId,
      efsFileSystemId: efs.id,
      bucketName: bucket.bucket,
      dlqArn: dlq.arn,
      dlqUrl: dlq.url,
      albArn: alb.arn,
      albDnsName: alb.dnsName,
      httpsListenerArn: https.arn,
      certificateArn: cert.arn,
      webAclArn: waf.arn,
      ingressHostname: hostname,
      eksClusterName: clusterName,
      oidcIssuer,
      kubeconfig,
    });
  };
}
