// Argument schemas of the aws-only programs, kept apart from the programs so validating a job's
// arguments does not load @pulumi/aws.
import { z } from "zod";
import { functionNameSchema, regionSchema, tenantIdSchema } from "../../core/ids.ts";

export const environmentSchema = z.enum(["production", "development"]);

export const regionArgsSchema = z
  .object({
    region: regionSchema,
    environment: environmentSchema.default("production"),
    /** Public DNS name of the regional ingress; the ACM certificate covers it and its tenants. */
    domain: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/)
      .default("stackrail.example.com"),
    costCentre: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,32}$/)
      .default("platform"),
  })
  .strict();
export type RegionArgs = z.infer<typeof regionArgsSchema>;

export const tenantFunctionsArgsSchema = z
  .object({
    tenantId: tenantIdSchema,
    region: regionSchema,
    functionName: functionNameSchema,
    /** Where the uploaded bundle (a zip) lies; the worker stores it before the job runs. */
    codePath: z.string().min(1).max(1000),
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
