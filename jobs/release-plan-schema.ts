// The rollout plan as GET /v1/releases/:jobId/plan answers it: the stored plan (release-plan.ts)
// with each wave's approval, the rollout's state and what it waits for. The edge's OpenAPI
// description is generated from this schema; the checks at the bottom keep it the plan's shape.
import { z } from "zod";
import type { PlannedWave, ReleasePlan } from "./release-plan.ts";
import type { ApprovalRecord, RejectionRecord } from "./release-approval.ts";
import { jobStateSchema } from "./job-view-schema.ts";

const approverFields = { by: z.string(), via: z.enum(["api", "comment"]), pr: z.string().optional() };
export const approvalRecordSchema = z.object({ ...approverFields, wave: z.number().int(), revision: z.number().int(), at: z.string() });
export const rejectionRecordSchema = z.object({ ...approverFields, wave: z.number().int(), at: z.string(), reason: z.string().optional() });

const resourceDiffSchema = z.object({ urn: z.string(), type: z.string(), op: z.string(), properties: z.array(z.string()) });
const policyViolationSchema = z.object({ pack: z.string(), policy: z.string(), level: z.string(), message: z.string(), urn: z.string().optional() });

const plannedTenantSchema = z.object({
  tenantId: z.string(),
  region: z.string(),
  tier: z.string(),
  from: z.string().nullable(),
  to: z.string(),
  manifestDiff: z.string().meta({ description: "Unified diff of the tenant's GitOps files" }),
  infra: z.object({ diff: z.array(resourceDiffSchema), violations: z.array(policyViolationSchema), digest: z.string(), error: z.string().optional() }),
});

const planChangeSchema = z.object({
  tenantId: z.string(),
  added: z.array(z.string()),
  removed: z.array(z.string()),
  at: z.string(),
  step: z.string().optional(),
});

const waveFields = {
  wave: z.number().int(),
  regions: z.array(z.string()),
  needsApproval: z.boolean(),
  revision: z.number().int(),
  tenants: z.array(plannedTenantSchema),
  changes: z.array(planChangeSchema),
};

const decisionFields = {
  state: jobStateSchema,
  awaitingApproval: z.object({ wave: z.number().int(), revision: z.number().int() }).optional().meta({ description: "The wave that waits for its approval" }),
  rejection: rejectionRecordSchema.optional(),
};

export const rolloutPlanViewSchema = z
  .union([
    z.object({
      jobId: z.string(),
      version: z.string(),
      createdAt: z.string(),
      source: z.object({ repo: z.object({ owner: z.string(), name: z.string() }), sha: z.string() }).optional(),
      planned: z.literal(true),
      ...decisionFields,
      waves: z.array(z.object({ ...waveFields, approval: approvalRecordSchema.nullable() })),
    }),
    z.object({
      jobId: z.string(),
      version: z.unknown().meta({ description: "The rollout's version, as its job data holds it" }),
      planned: z.literal(false).meta({ description: "The rollout has not computed its plan yet" }),
      ...decisionFields,
      waves: z.array(z.never()).max(0),
    }),
  ])
  .meta({ id: "RolloutPlan", description: "A release rollout's plan: waves, tenants, versions, manifest and Pulumi diffs, approvals" });

type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
type Planned = Extract<z.infer<typeof rolloutPlanViewSchema>, { planned: true }>;
const planKeys: SameKeys<ReleasePlan, Omit<Planned, "planned" | keyof typeof decisionFields>> = true;
const waveKeys: SameKeys<PlannedWave, Omit<Planned["waves"][number], "approval">> = true;
const approvalKeys: SameKeys<ApprovalRecord, z.infer<typeof approvalRecordSchema>> = true;
const rejectionKeys: SameKeys<RejectionRecord, z.infer<typeof rejectionRecordSchema>> = true;
void [planKeys, waveKeys, approvalKeys, rejectionKeys];
