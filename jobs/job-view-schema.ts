// The job view as the API answers it (GET /v1/jobs/:id, the job list, dead letters): the zod form
// of JobView (queue.ts builds it), used by the HTTP edge's OpenAPI description. The checks at the
// bottom keep the two the same shape: a field added to JobView and not here fails to compile.
import { z } from "zod";
import type { JobState } from "../core/jobs.ts";
import type { JobView } from "./queue.ts";

/** Every state a job view shows (core/jobs.ts JobState). */
export const jobStateSchema = z
  .enum(["waiting", "running", "awaiting-approval", "succeeded", "failed", "superseded", "cancelled"])
  .meta({ description: "awaiting-approval: a release waits for the approval of a wave" });

/** Who or what asked (core/jobs.ts triggerSchema), with the pull request a webhook job is about. */
export const jobTriggerSchema = z.union([
  z.object({
    type: z.literal("webhook"),
    deliveryId: z.string(),
    event: z.string(),
    sender: z.string().optional(),
    pr: z.object({ repo: z.string(), number: z.number() }).optional(),
  }),
  z.object({ type: z.literal("api"), tokenName: z.string(), pr: z.object({ repo: z.string(), number: z.number() }).optional() }),
  z.object({ type: z.literal("schedule"), name: z.string(), pr: z.object({ repo: z.string(), number: z.number() }).optional() }),
  z.object({ type: z.literal("job"), parentJobId: z.string(), pr: z.object({ repo: z.string(), number: z.number() }).optional() }),
]);

const jobViewFields = {
  id: z.string(),
  kind: z.string().meta({ description: "A job kind (tenant.provision, release.rollout, …); old records may carry kinds this version does not know" }),
  stack: z.string().nullable().meta({ description: "The stack (or lane) the job changes" }),
  state: jobStateSchema,
  supersededBy: z.string().optional(),
  result: z.unknown().optional().meta({ description: "What the job returned, once succeeded; never a secret" }),
  error: z.string().optional(),
  trigger: jobTriggerSchema.nullable(),
  data: z.record(z.string(), z.unknown()).meta({ description: "The job's own identifiers (tenant id, version, PR, …); never a secret" }),
  attempts: z.number().int(),
  createdAt: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
};

export const jobViewSchema = z
  .object({ ...jobViewFields, progress: z.array(z.string()).meta({ description: "The job's last progress lines (at most 500)" }) })
  .meta({ id: "JobView", description: "A job: its state, progress, result or error" });

/** A list entry: the job's view without its progress lines. */
export const jobListItemSchema = z.object(jobViewFields).meta({ id: "JobListItem", description: "A job as the job list shows it (no progress lines)" });

// Compile-time ties to the code that builds the answer: same keys, and every JobView is accepted.
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
const viewKeys: SameKeys<JobView, z.infer<typeof jobViewSchema>> = true;
const viewAccepted: JobView extends z.infer<typeof jobViewSchema> ? true : false = true;
const statesEqual: SameKeys<Record<JobState, 1>, Record<z.infer<typeof jobStateSchema>, 1>> = true;
void [viewKeys, viewAccepted, statesEqual];
