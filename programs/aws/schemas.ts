// Argument schemas of the aws-only programs, kept apart from the programs so validating a job's
// arguments does not load @pulumi/aws.
import { z } from "zod";
import { functionNameSchema, regionSchema, tenantIdSchema, tierSchema } from "../../core/ids.ts";
import { DEFAULT_COST_CENTRE, DEFAULT_REGION_DOMAIN, costCentreSchema, regionDomainSchema, regionEnvironmentSchema } from "../../core/regions.ts";

/** Lambda's `path/file.export`, never leaving the bundle. */
export const lambdaHandlerSchema = z
  .string()
  .regex(/^[A-Za-z0-9_./-]{1,128}\.[A-Za-z_$][\w$]{0,63}$/, "must look like path/file.export")
  .refine((h) => !h.split("/").includes("..") && !h.startsWith("/"), "must stay inside the bundle");

export const environmentSchema = regionEnvironmentSchema;

export const regionArgsSchema = z
  .object({
    region: regionSchema,
    environment: regionEnvironmentSchema.default("production"),
    /** Public DNS name of the regional ingress; the ACM certificate covers it and its tenants. */
    domain: regionDomainSchema.default(DEFAULT_REGION_DOMAIN),
    costCentre: costCentreSchema.default(DEFAULT_COST_CENTRE),
  })
  .strict();
export type RegionArgs = z.infer<typeof regionArgsSchema>;

export const tenantFunctionsArgsSchema = z
  .object({
    tenantId: tenantIdSchema,
    region: regionSchema,
    functionName: functionNameSchema,
    /**
     * Where the uploaded bundle (a zip) lies; the worker stores it before the job runs. The engine
     * picks an archive's format by its extension, so the path must end in `.zip`.
     */
    codePath: z
      .string()
      .min(1)
      .max(1000)
      .regex(/^\/.*\.zip$/, "must be an absolute path ending in .zip"),
    /** The uploaded handler, `path/file.export` inside the bundle (checked against the bundle by the API). */
    handler: lambdaHandlerSchema,
    /** The role in the tenant-code account the provider assumes. */
    assumeRoleArn: z.string().regex(/^arn:aws:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/),
    environment: environmentSchema.default("production"),
    costCentre: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,32}$/)
      .default("tenant-code"),
    reservedConcurrency: z.number().int().min(1).max(100).default(5),
    memoryMb: z.number().int().min(128).max(2048).default(256),
    timeoutSeconds: z.number().int().min(1).max(60).default(10),
  })
  .strict();
export type TenantFunctionsArgs = z.infer<typeof tenantFunctionsArgsSchema>;

/** A container image: a repository with a tag and/or a `@sha256:` digest (pinning by digest is preferred). */
export const imageSchema = z
  .string()
  .max(255)
  .regex(/^[a-z0-9][a-z0-9._/-]{0,190}(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$/, "must be an image reference");

/**
 * Images of the data job: `dump` runs the MySQL client tools (mysqldump, mysql, gzip, sha256sum),
 * `upload` the AWS CLI. Overridable per installation (pin them by digest there).
 */
export const DATA_JOB_IMAGES = { dump: "mysql:8.4", upload: "amazon/aws-cli:2.22.35" } as const;

/** The `data-job` program (programs/aws/data-job.ts): a tier move's copy, or a deprovision's backup. */
export const dataJobArgsSchema = z
  .object({
    tenantId: tenantIdSchema,
    region: regionSchema,
    /** The worker's job this run belongs to (names the result object); checked again in the result. */
    runId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    /** `move`: dump the source tier's database, load it into the target's, verify both; `backup`: dump only. */
    mode: z.enum(["move", "backup"]),
    sourceTier: tierSchema,
    targetTier: tierSchema.optional(),
    /** Time stamp of the backup's name (`2026-01-31T10-00-00-000Z`). */
    stamp: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/),
    dumpImage: imageSchema.default(DATA_JOB_IMAGES.dump),
    uploadImage: imageSchema.default(DATA_JOB_IMAGES.upload),
    /** The Job's activeDeadlineSeconds: how long the copy may take before Kubernetes stops it. */
    deadlineSeconds: z.number().int().min(60).max(86_400).default(1200),
    /** Scratch space for the compressed dump (an emptyDir, GiB). */
    scratchGi: z.number().int().min(1).max(500).default(20),
  })
  .strict()
  .refine((a) => (a.mode === "move" ? a.targetTier !== undefined && a.targetTier !== a.sourceTier : a.targetTier === undefined), {
    message: "a move names a target tier other than the source; a backup names none",
    path: ["targetTier"],
  });
export type DataJobArgs = z.infer<typeof dataJobArgsSchema>;
