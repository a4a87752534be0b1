// What the API shows of a tenant and of a region (GET /v1/tenants…, GET /v1/regions…): desired
// state, state, last known non-secret outputs, never a secret. The edge builds these views
// (webhooks/tenant-api.ts publicTenant, webhooks/region-api.ts publicRegion) typed by these schemas,
// and its OpenAPI description is generated from them.
import { z } from "zod";
import { regionSettingsSchema } from "./regions.ts";

const outputsSchema = z.record(z.string(), z.unknown()).meta({ description: "Last known non-secret infrastructure outputs (endpoints, names, ARNs)" });

export const tenantFailureSchema = z.object({
  job: z.enum(["tenant.provision", "tenant.deprovision"]),
  jobId: z.string(),
  stack: z.string().meta({ description: "The stack that may hold resources" }),
  tier: z.enum(["pool", "silo"]),
  error: z.string(),
  at: z.string(),
});

export const tenantViewSchema = z
  .object({
    id: z.string(),
    region: z.string(),
    tier: z.enum(["pool", "silo"]),
    version: z.string(),
    protected: z.boolean().meta({ description: "A protected tenant is never deprovisioned through the API" }),
    state: z.enum(["provisioning", "active", "deprovisioning", "failed"]),
    failure: tenantFailureSchema.optional().meta({ description: "A failed provision or deprovision: which job, which stack may hold resources, and why" }),
    outputs: outputsSchema,
    updatedAt: z.string().nullable(),
  })
  .meta({ id: "Tenant", description: "A tenant's desired state and last known infrastructure outputs" });
export type TenantView = z.infer<typeof tenantViewSchema>;

export const regionViewSchema = z
  .object({
    region: z.string(),
    state: z.enum(["provisioning", "ready", "failed"]),
    jobId: z.string().nullable().meta({ description: "The newest region job" }),
    settings: regionSettingsSchema.nullable(),
    outputs: outputsSchema,
    error: z.string().optional(),
    readyAt: z.string().optional(),
    updatedAt: z.string(),
  })
  .meta({ id: "Region", description: "A region's shared infrastructure: state, settings, non-secret outputs" });
export type RegionView = z.infer<typeof regionViewSchema>;
