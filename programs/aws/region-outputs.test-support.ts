// Outputs of a `region-<region>` stack as the aws tenant and preview programs read them through
// their StackReference, for mocked runs (not a test file itself).
export const REGION_OUTPUTS_FIXTURE = {
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
  bucketName: "stackrail-eu-west-1-data-production",
  ingressHostname: "eu-west-1.stackrail.example.com",
  oidcIssuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
  kubeconfig: "{}",
} as const;
