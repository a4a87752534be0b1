// Argument schemas of the aws-only programs, kept apart from the programs so validating a job's
// arguments does not load @pulumi/aws.
import { z } from "zod";
import { functionNameSchema, regionSchema, tenantIdSchema } from "../../core/ids.ts";
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
