// Issue 16, item 4: the `data-job` program under Pulumi's runtime mocks. A tier move's copy (and a
// deprovision's backup) runs as a Kubernetes Job in the tenant's namespace: restricted security
// context, no API token, resource limits, one try, a deadline and a TTL; the credentials come from
// the Secrets Manager secrets the tenant program creates (names from core/tenant-resources.ts),
// handed over in a Secret the Job mounts, never as a plain value in its spec; the script counts
// rows and runs CHECKSUM TABLE on both sides; the backup and the result go to the region's bucket
// under SSE-KMS with the region's key, through a role that may write those two objects only. The
// mandatory policy pack passes on the stack.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { blobKeys } from "../../core/blob-store.ts";
import { ValidationError } from "../../core/errors.ts";
import { credentialsSecretId, dataJobObjects } from "../../core/tenant-resources.ts";
import { programFor } from "../index.ts";
import { checkResource, checkStack } from "../policy/policies.ts";
import { tenantArgsSchema } from "../tenant.ts";
import { DATA_JOB_SCRIPT, VERIFICATION_STATEMENTS } from "./data-job-script.ts";
import { dataJobProgram, optionFile } from "./data-job.ts";
import { runWithMocks, type CallAnswers, type MockRun, type Recorded } from "./mock-harness.ts";
import { REGION_OUTPUTS_FIXTURE } from "./region-outputs.test-support.ts";
import { regionProgram } from "./region.ts";
import { dataJobArgsSchema, regionArgsSchema } from "./schemas.ts";
import { awsTenantProgram } from "./tenant.ts";

const CANARY = "canary-pw-7f3a9c1e";
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const STAMP = "2026-11-30T00-00-00-000Z";

/** Secrets Manager as the tenant program fills it; records which secrets were read. */
function secretsManager(read: string[]): CallAnswers {
  return {
    "aws:secretsmanager/getSecretVersion:getSecretVersion": (inputs) => {
      const id = String(inputs.secretId);
      read.push(id);
      const tier = id.includes("/silo/") ? "s" : "t";
      return {
        secretId: id,
        arn: `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${id}`,
        secretString: JSON.stringify({
          mysql: { host: `${tier}.aurora.example`, port: 3306, database: `${tier}_acme`, user: `${tier}_acme`, password: `${CANARY}-${tier}` },
          redis: { host: "cache.example", port: 6379, tls: true, user: `${tier}-acme`, password: `${CANARY}-cache`, keyPrefix: "t:acme:" },
        }),
      };
    },
  };
}

interface Container {
  name: string;
  image: string;
  command: string[];
  env: { name: string; value?: unknown; valueFrom?: unknown }[];
  securityContext: Record<string, unknown>;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface JobInputs {
  metadata: { name: string; namespace: string; annotations: Record<string, string> };
  spec: {
    backoffLimit: number;
    activeDeadlineSeconds: number;
    ttlSecondsAfterFinished: number;
    template: {
      spec: {
        serviceAccountName: string;
        automountServiceAccountToken: boolean;
        restartPolicy: string;
        securityContext: Record<string, unknown>;
        initContainers: Container[];
        containers: Container[];
        volumes: { name: string; secret?: { secretName: string }; configMap?: { name: string } }[];
      };
    };
  };
}

function named(run: MockRun, type: string, name: string, namespace: string): Recorded | undefined {
  return run.ofType(type).find((r) => {
    const m = (r.inputs as { metadata?: { name?: string; namespace?: string } }).metadata;
    return m?.name === name && m.namespace === namespace;
  });
}

async function policyClean(run: MockRun): Promise<void> {
  for (const r of run.resources) expect(await checkResource(r.type, r.inputs, r.name), `${r.type} ${r.name}`).toEqual([]);
  expect(await checkStack(run.forPolicies())).toEqual([]);
}

describe("aws data-job program (mocked)", () => {
  it("move: a restricted Job reads both tiers' credentials from Secrets Manager, verifies, and writes to the encrypted bucket", async () => {
    const read: string[] = [];
    const args = dataJobArgsSchema.parse({
      tenantId: "acme",
      region: "eu-west-1",
      runId: "job-1",
      mode: "move",
      sourceTier: "pool",
      targetTier: "silo",
      stamp: STAMP,
    });
    const run = await runWithMocks(dataJobProgram(args), REGION_OUTPUTS_FIXTURE, secretsManager(read));
    const names = dataJobObjects("job-1");

    // Credentials: the secrets the tenant program creates for each tier, by the same names.
    expect(read.sort()).toEqual([credentialsSecretId("tenant-acme", "pool"), credentialsSecretId("tenant-acme", "silo")].sort());
    for (const tier of ["pool", "silo"] as const) {
      const tenant = await runWithMocks(awsTenantProgram(tenantArgsSchema.parse({ tenantId: "acme", tier, region: "eu-west-1" })), REGION_OUTPUTS_FIXTURE);
      expect(tenant.ofType("aws:secretsmanager/secret:Secret").map((r) => r.inputs.name)).toContain(credentialsSecretId("tenant-acme", tier));
    }

    const job = run.one("kubernetes:batch/v1:Job").inputs as unknown as JobInputs;
    expect(job.metadata).toMatchObject({ name: names.job, namespace: "tenant-acme", annotations: { "pulumi.com/skipAwait": "true" } });
    expect(job.spec).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 1200, ttlSecondsAfterFinished: 3600 });
    const pod = job.spec.template.spec;
    expect(pod).toMatchObject({ serviceAccountName: names.serviceAccount, automountServiceAccountToken: false, restartPolicy: "Never" });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    const containers = [...pod.initContainers, ...pod.containers];
    expect(containers.map((c) => c.name)).toEqual(["dump", "upload"]);
    for (const c of containers) {
      expect(c.securityContext, c.name).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ["ALL"] },
      });
      expect(Object.keys(c.resources.limits).sort(), c.name).toEqual(["cpu", "memory"]);
      expect(Object.keys(c.resources.requests).sort(), c.name).toEqual(["cpu", "memory"]);
      // No credential in the environment, by value or by reference: they are files.
      for (const e of c.env) {
        expect(e.valueFrom, `${c.name} ${e.name}`).toBeUndefined();
        expect(e.name).not.toMatch(/PASS|SECRET|TOKEN/);
      }
    }
    const dump = pod.initContainers[0] as Container;
    expect(dump.volumeMounts).toContainEqual({ name: "credentials", mountPath: "/credentials", readOnly: true });
    expect((pod.containers[0] as Container).volumeMounts.map((m) => m.name)).not.toContain("credentials");
    const env = Object.fromEntries(containers.flatMap((c) => c.env.map((e) => [e.name, e.value])));
    expect(env).toMatchObject({ SOURCE_DATABASE: "t_acme", TARGET_DATABASE: "s_acme", MODE: "move", RUN_ID: "job-1" });

    // Every object the Job references exists in the tenant's namespace, created by this stack.
    const secretVolume = pod.volumes.find((v) => v.secret)?.secret?.secretName ?? "";
    const configVolume = pod.volumes.find((v) => v.configMap)?.configMap?.name ?? "";
    const secret = named(run, "kubernetes:core/v1:Secret", secretVolume, "tenant-acme");
    expect(secret, `Secret ${secretVolume}`).toBeDefined();
    const config = named(run, "kubernetes:core/v1:ConfigMap", configVolume, "tenant-acme");
    expect(config, `ConfigMap ${configVolume}`).toBeDefined();
    const sa = named(run, "kubernetes:core/v1:ServiceAccount", pod.serviceAccountName, "tenant-acme");
    expect(sa?.inputs).toMatchObject({ automountServiceAccountToken: false });
    // The option files are Pulumi secrets (encrypted in state), one per tier.
    const stringData = JSON.stringify(secret?.inputs.stringData);
    expect(stringData).toContain(SECRET_SIG);
    expect(stringData).toContain(`${CANARY}-t`);
    expect(stringData).toContain(`${CANARY}-s`);
    expect(stringData).toContain("source.cnf");
    expect(stringData).toContain("target.cnf");

    // The script: row counts and CHECKSUM TABLE per table on both sides, compared; SSE-KMS uploads.
    const text = String((config?.inputs.data as Record<string, string>)["data-job.sh"]);
    expect(text).toBe(DATA_JOB_SCRIPT);
    for (const statement of VERIFICATION_STATEMENTS) expect(text).toContain(statement);
    expect(text).toContain('tables "$C/source.cnf" "$SOURCE_DATABASE"');
    expect(text).toContain('tables "$C/target.cnf" "$TARGET_DATABASE"');
    expect(text).toContain("echo mismatch");
    expect(text).toContain('--sse aws:kms --sse-kms-key-id "$KMS_KEY_ARN"');
    expect(env).toMatchObject({ BUCKET: REGION_OUTPUTS_FIXTURE.bucketName, KMS_KEY_ARN: REGION_OUTPUTS_FIXTURE.kmsKeyArn });

    // The role writes the backup and the result, encrypted with the region's key, and nothing else.
    const policy = JSON.parse(String(run.one("aws:iam/rolePolicy:RolePolicy").inputs.policy)) as {
      Statement: { Action: string[]; Resource: string[]; Condition: Record<string, Record<string, string>> }[];
    };
    const put = policy.Statement[0];
    expect(put?.Action).toEqual(["s3:PutObject"]);
    expect(put?.Resource).toEqual([
      `arn:aws:s3:::${REGION_OUTPUTS_FIXTURE.bucketName}/${String(run.outputs.backupKey)}`,
      `arn:aws:s3:::${REGION_OUTPUTS_FIXTURE.bucketName}/${String(run.outputs.resultKey)}`,
    ]);
    expect(put?.Condition.StringEquals).toMatchObject({ "s3:x-amz-server-side-encryption": "aws:kms" });
    const trust = JSON.parse(String(run.one("aws:iam/role:Role").inputs.assumeRolePolicy)) as {
      Statement: { Condition: { StringEquals: Record<string, string> } }[];
    };
    expect(Object.values(trust.Statement[0]?.Condition.StringEquals ?? {})).toContain(`system:serviceaccount:tenant-acme:${names.serviceAccount}`);

    // Outputs name the result object and the backup, in the blob store's backup layout.
    expect(run.outputs).toMatchObject({
      resultBucket: REGION_OUTPUTS_FIXTURE.bucketName,
      resultKey: "tenants/acme/data-jobs/job-1.json",
      backupKey: blobKeys.backup("acme", `t_acme-${STAMP}.sql.gz`),
      jobName: names.job,
      namespace: "tenant-acme",
    });

    // Canary: no credential outside the Secret's (secret) data.
    for (const r of run.resources) {
      if (r === secret) continue;
      expect(JSON.stringify(r.inputs), `${r.type} ${r.name}`).not.toContain(CANARY);
    }
    expect(JSON.stringify(run.outputs)).not.toContain(CANARY);
    await policyClean(run);
  });

  it("backup: one tier's credentials, the dump only, the same restrictions", async () => {
    const read: string[] = [];
    const args = dataJobArgsSchema.parse({ tenantId: "bigco", region: "eu-west-1", runId: "job-2", mode: "backup", sourceTier: "silo", stamp: STAMP });
    const run = await runWithMocks(dataJobProgram(args), REGION_OUTPUTS_FIXTURE, secretsManager(read));
    expect(read).toEqual([credentialsSecretId("tenant-bigco", "silo")]);
    const job = run.one("kubernetes:batch/v1:Job").inputs as unknown as JobInputs;
    const env = Object.fromEntries(job.spec.template.spec.initContainers[0]?.env.map((e) => [e.name, e.value]) ?? []);
    expect(env).toMatchObject({ MODE: "backup", SOURCE_DATABASE: "s_bigco", TARGET_DATABASE: "" });
    const stringData = JSON.stringify(run.one("kubernetes:core/v1:Secret").inputs.stringData);
    expect(stringData).toContain("source.cnf");
    expect(stringData).not.toContain("target.cnf");
    expect(run.outputs.backupKey).toBe(blobKeys.backup("bigco", `s_bigco-${STAMP}.sql.gz`));
    await policyClean(run);
  });

  it("the region's bucket the Job writes to is SSE-KMS with the key it names", async () => {
    const run = await runWithMocks(regionProgram(regionArgsSchema.parse({ region: "eu-west-1" })));
    const sse = run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs as {
      rules: { applyServerSideEncryptionByDefault: { sseAlgorithm: string; kmsMasterKeyId: string } }[];
    };
    expect(sse.rules[0]?.applyServerSideEncryptionByDefault.sseAlgorithm).toBe("aws:kms");
    expect(sse.rules[0]?.applyServerSideEncryptionByDefault.kmsMasterKeyId).toBe(run.outputs.kmsKeyArn);
    expect(run.outputs.bucketName).toBe(run.one("aws:s3/bucket:Bucket").inputs.bucket);
  });

  it("arguments: aws only, a move names another tier, a backup none; option files escape and never quote a bad secret", () => {
    const base = { tenantId: "acme", region: "eu-west-1", runId: "j", stamp: STAMP, sourceTier: "pool" };
    expect(() => programFor("data-job", { ...base, mode: "backup" }, { target: "local" } as never)).toThrow(ValidationError);
    expect(dataJobArgsSchema.safeParse({ ...base, mode: "move" }).success).toBe(false);
    expect(dataJobArgsSchema.safeParse({ ...base, mode: "move", targetTier: "pool" }).success).toBe(false);
    expect(dataJobArgsSchema.safeParse({ ...base, mode: "backup", targetTier: "silo" }).success).toBe(false);
    expect(dataJobArgsSchema.safeParse({ ...base, mode: "backup", dumpImage: "mysql:8.4; rm -rf /" }).success).toBe(false);
    expect(dataJobArgsSchema.safeParse({ ...base, mode: "backup", dumpImage: `mysql@sha256:${"a".repeat(64)}` }).success).toBe(true);
    const file = optionFile(JSON.stringify({ mysql: { host: "h", port: 3306, user: "u", password: 'a"b\\c' } }));
    expect(file).toContain('password="a\\"b\\\\c"');
    let message = "";
    try {
      optionFile(JSON.stringify({ mysql: { host: "h", password: CANARY } }));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/does not hold/);
    expect(message).not.toContain(CANARY);
  });

  it("the script is valid POSIX sh", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "stackrail-data-job-"));
    try {
      const file = path.join(dir, "data-job.sh");
      writeFileSync(file, DATA_JOB_SCRIPT);
      execFileSync("sh", ["-n", file]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
