// The `data-job` program (aws; issue 16, item 4): a tenant's data work done inside its region, as
// a Kubernetes Job in the tenant's namespace on the region's cluster. A tier move dumps the source
// tier's database, loads it into the target tier's, and verifies both sides (row counts and
// CHECKSUM TABLE per table); a deprovision takes the final backup. Either way the dump is kept in
// the region's bucket (SSE-KMS, `tenants/<id>/backups/…`, the blob store's backup layout) and the
// Job writes a JSON result beside it, which the worker polls for (worker/aws-data-job.ts). The
// stack (`tenant-<id>` in project `stackrail-data`) is destroyed once the result is read.
//
// Credentials: read from Secrets Manager by this program (the names come from
// core/tenant-resources.ts, the same the tenant program creates them under) and handed to the Job
// as MySQL option files in a Kubernetes Secret mounted read-only. The region installs no External
// Secrets operator or CSI driver, and the tenant namespace's `-db` Secret holds one tier only (both
// tiers share the namespace during a move), so the program itself is the one reader. The values
// stay Pulumi secrets (encrypted in state); the Job's spec names the Secret, never a value.
//
// The bucket: the Job's own IAM role (IRSA, trusted by the Job's ServiceAccount only) may put
// exactly the backup and result objects, encrypted with the region's key; the token the Job uses is
// the one the EKS pod identity webhook projects, so no Kubernetes API token is mounted.
import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { logicalNames } from "../../core/naming.ts";
import { REGION_PROJECT, credentialsSecretId, dataJobKeys, dataJobObjects, tenantNamespace } from "../../core/tenant-resources.ts";
import { awsName, policyDocument, tagsFor } from "./common.ts";
import { DATA_JOB_SCRIPT, DATA_JOB_SCRIPT_KEY } from "./data-job-script.ts";
import type { DataJobArgs } from "./schemas.ts";

/** The outputs of `region-<region>` the data job reads. */
export const DATA_JOB_REGION_OUTPUTS = ["environment", "costCentre", "accountId", "kmsKeyArn", "bucketName", "oidcIssuer", "kubeconfig"] as const;

/** What a tenant's credentials secret holds (programs/aws/tenant.ts writes it); only `mysql` is read. */
const credentialsSchema = z.object({
  mysql: z.object({ host: z.string().min(1), port: z.coerce.number().int(), user: z.string().min(1), password: z.string().min(1) }),
});

/** A value of a MySQL option file: double-quoted, with `\` and `"` escaped. */
function optionValue(v: string | number): string {
  return `"${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** `[client]` options for the tenant's own user, TLS required (Aurora speaks it). */
export function optionFile(secretString: string): string {
  const parsed = credentialsSchema.safeParse(JSON.parse(secretString));
  // The value is a secret: the message never quotes it.
  if (!parsed.success) throw new Error("the tenant's credentials secret does not hold mysql host, port, user and password");
  const m = parsed.data.mysql;
  return [
    "[client]",
    `host=${optionValue(m.host)}`,
    `port=${m.port}`,
    `user=${optionValue(m.user)}`,
    `password=${optionValue(m.password)}`,
    "ssl-mode=REQUIRED",
    "",
  ].join("\n");
}

const RUN_AS = 65532;
const restricted: k8s.types.input.core.v1.SecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  runAsUser: RUN_AS,
  runAsGroup: RUN_AS,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

export function dataJobProgram(args: DataJobArgs): () => Promise<Record<string, unknown>> {
  return () => {
    const namespace = tenantNamespace(args.tenantId);
    const objects = dataJobObjects(args.runId);
    const source = logicalNames(args.sourceTier === "silo" ? "silo" : "tenant", args.tenantId);
    const target = args.targetTier ? logicalNames(args.targetTier === "silo" ? "silo" : "tenant", args.tenantId) : undefined;
    const backupKey = dataJobKeys.backup(args.tenantId, source.database, args.stamp);
    const resultKey = dataJobKeys.result(args.tenantId, args.runId);

    const region = new pulumi.StackReference("region", { name: `${pulumi.getOrganization()}/${REGION_PROJECT}/region-${args.region}` });
    const str = (name: (typeof DATA_JOB_REGION_OUTPUTS)[number]): pulumi.Output<string> => region.requireOutput(name).apply((v) => String(v));
    const tags = pulumi
      .all([str("environment"), str("costCentre")])
      .apply(([environment, costCentre]) =>
        tagsFor({ environment, costCentre, tenant: args.tenantId, extra: { stack: pulumi.getStack(), "data-job": args.mode } }),
      );
    const provider = new aws.Provider("aws", { region: args.region as aws.Region });
    const bucket = str("bucketName");
    const kmsKeyArn = str("kmsKeyArn");

    // The tenant's credentials, per tier, from the Secrets Manager secrets its tier stacks created.
    const optionsOf = (tier: "pool" | "silo"): pulumi.Output<string> =>
      pulumi.secret(
        aws.secretsmanager.getSecretVersionOutput({ secretId: credentialsSecretId(namespace, tier) }, { provider }).apply((v) => optionFile(v.secretString)),
      );
    const credentials: Record<string, pulumi.Output<string>> = { "source.cnf": optionsOf(args.sourceTier) };
    if (args.targetTier) credentials["target.cnf"] = optionsOf(args.targetTier);

    // The Job's IAM role: the two objects it writes, with the region's key, nothing else.
    const oidcHost = str("oidcIssuer").apply((u) => u.replace(/^https:\/\//, ""));
    const role = new aws.iam.Role(
      "data-job",
      {
        name: awsName(`tenant-${namespace}-data`, 64),
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
      { provider },
    );
    new aws.iam.RolePolicy(
      "data-job",
      {
        role: role.name,
        policy: pulumi.all([bucket, kmsKeyArn]).apply(([b, key]) =>
          policyDocument(
            {
              Sid: "BackupAndResult",
              Effect: "Allow",
              Action: ["s3:PutObject"],
              Resource: [`arn:aws:s3:::${b}/${backupKey}`, `arn:aws:s3:::${b}/${resultKey}`],
              Condition: { StringEquals: { "s3:x-amz-server-side-encryption": "aws:kms", "s3:x-amz-server-side-encryption-aws-kms-key-id": key } },
            },
            // Multipart uploads under SSE-KMS need both (the CLI uses them above 8 MiB).
            {
              Sid: "RegionKeyThroughS3",
              Effect: "Allow",
              Action: ["kms:GenerateDataKey", "kms:Decrypt"],
              Resource: [key],
              Condition: { StringEquals: { "kms:ViaService": `s3.${args.region}.amazonaws.com` } },
            },
          ),
        ),
      },
      { provider },
    );

    const kube = new k8s.Provider("eks", { kubeconfig: str("kubeconfig"), enableServerSideApply: true });
    const labels = {
      "app.kubernetes.io/managed-by": "stackrail",
      "app.kubernetes.io/component": "data-job",
      "stackrail.io/tenant": args.tenantId,
      "stackrail.io/data-job": args.mode,
    };
    const meta = (name: string, extra: Partial<k8s.types.input.meta.v1.ObjectMeta> = {}): k8s.types.input.meta.v1.ObjectMeta => ({
      name,
      namespace,
      labels,
      ...extra,
    });
    const kopts: pulumi.CustomResourceOptions = { provider: kube };
    const serviceAccount = new k8s.core.v1.ServiceAccount(
      "data-job",
      { metadata: meta(objects.serviceAccount, { annotations: { "eks.amazonaws.com/role-arn": role.arn } }), automountServiceAccountToken: false },
      kopts,
    );
    const secret = new k8s.core.v1.Secret(
      "data-job-credentials",
      { metadata: meta(objects.credentialsSecret), type: "Opaque", stringData: credentials },
      { ...kopts, additionalSecretOutputs: ["stringData", "data"] },
    );
    const script = new k8s.core.v1.ConfigMap(
      "data-job-script",
      { metadata: meta(objects.scriptConfigMap), data: { [DATA_JOB_SCRIPT_KEY]: DATA_JOB_SCRIPT } },
      kopts,
    );

    const common: k8s.types.input.core.v1.EnvVar[] = [
      { name: "RUN_ID", value: args.runId },
      { name: "TENANT", value: args.tenantId },
      { name: "MODE", value: args.mode },
      { name: "SOURCE_DATABASE", value: source.database },
      { name: "TARGET_DATABASE", value: target?.database ?? "" },
      { name: "HOME", value: "/tmp" },
      { name: "TMPDIR", value: "/tmp" },
    ];
    const scratch = [
      { name: "work", mountPath: "/work" },
      { name: "tmp", mountPath: "/tmp" },
      { name: "script", mountPath: "/scripts", readOnly: true },
    ];
    const job = new k8s.batch.v1.Job(
      "data-job",
      {
        // The worker polls the result object; the engine does not wait for the Job to finish.
        metadata: meta(objects.job, { annotations: { "pulumi.com/skipAwait": "true" } }),
        spec: {
          // One try: a second load into a half-loaded target proves nothing. The worker decides retries.
          backoffLimit: 0,
          activeDeadlineSeconds: args.deadlineSeconds,
          ttlSecondsAfterFinished: 3600,
          template: {
            metadata: { labels },
            spec: {
              serviceAccountName: objects.serviceAccount,
              automountServiceAccountToken: false,
              restartPolicy: "Never",
              securityContext: { runAsNonRoot: true, runAsUser: RUN_AS, runAsGroup: RUN_AS, fsGroup: RUN_AS, seccompProfile: { type: "RuntimeDefault" } },
              initContainers: [
                {
                  name: "dump",
                  image: args.dumpImage,
                  command: ["/bin/sh", `/scripts/${DATA_JOB_SCRIPT_KEY}`, "dump"],
                  env: common,
                  securityContext: restricted,
                  resources: { requests: { cpu: "250m", memory: "256Mi" }, limits: { cpu: "1", memory: "1Gi" } },
                  volumeMounts: [...scratch, { name: "credentials", mountPath: "/credentials", readOnly: true }],
                },
              ],
              containers: [
                {
                  name: "upload",
                  image: args.uploadImage,
                  command: ["/bin/sh", `/scripts/${DATA_JOB_SCRIPT_KEY}`, "upload"],
                  env: [
                    ...common,
                    { name: "AWS_REGION", value: args.region },
                    { name: "BUCKET", value: bucket },
                    { name: "KMS_KEY_ARN", value: kmsKeyArn },
                    { name: "BACKUP_KEY", value: backupKey },
                    { name: "RESULT_KEY", value: resultKey },
                  ],
                  securityContext: restricted,
                  resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "500m", memory: "512Mi" } },
                  volumeMounts: scratch,
                },
              ],
              volumes: [
                { name: "work", emptyDir: { sizeLimit: `${args.scratchGi}Gi` } },
                { name: "tmp", emptyDir: { sizeLimit: "256Mi" } },
                { name: "script", configMap: { name: objects.scriptConfigMap, defaultMode: 0o555 } },
                { name: "credentials", secret: { secretName: objects.credentialsSecret, defaultMode: 0o440 } },
              ],
            },
          },
        },
      },
      { ...kopts, dependsOn: [serviceAccount, secret, script] },
    );

    return Promise.resolve({
      tenantId: args.tenantId,
      mode: args.mode,
      runId: args.runId,
      namespace,
      jobName: job.metadata.name,
      region: args.region,
      resultBucket: bucket,
      resultKey,
      backupKey,
      sourceDatabase: source.database,
      ...(target ? { targetDatabase: target.database } : {}),
    });
  };
}
