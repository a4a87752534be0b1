// A plain stack operation (up, destroy, preview, refresh, drift) of a named program, as a job kind
// that only tests and benchmarks have. Production has no such kind (issue 11, finding 3): a raw
// operation would skip every guard the lifecycle handlers check. A test hands this kind to its
// own worker through JobWorkerDeps.extraKinds (or the harness's `extraKinds`), and enqueues its
// jobs with enqueueStackOperation, since the production queue client refuses unknown kinds.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { STACK_NAME_PATTERN } from "../../core/ids.ts";
import { triggerSchema } from "../../core/jobs.ts";
import { PROJECT_NAME } from "../../worker/handlers/tenant-support.ts";
import { extraJobKind, type ExtraJobKind, type ExtraJobKinds, type StepContext } from "../../worker/job-worker.ts";
import type { StackRunner } from "../../worker/pulumi-runner.ts";
import { JOB_OPTIONS, type JobQueue } from "../../jobs/queue.ts";

export const STACK_OPERATION = "test.stack-operation";

export const stackOperationSchema = z.object({
  kind: z.literal(STACK_OPERATION),
  trigger: triggerSchema,
  requestedAt: z.string(),
  stack: z.string().regex(STACK_NAME_PATTERN),
  /** Pulumi project of the stack (tenant stacks live in one project per tier); defaults to "stackrail". */
  project: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,40}$/)
    .optional(),
  operation: z.enum(["up", "destroy", "preview", "refresh", "drift"]),
  program: z.string().max(64),
  args: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
});
export type StackOperationJob = z.infer<typeof stackOperationSchema>;

/** A job's data with a test trigger and the current time filled in. */
export function stackOperationJob(
  fields: Omit<StackOperationJob, "kind" | "trigger" | "requestedAt" | "args"> & Partial<StackOperationJob>,
): StackOperationJob {
  return {
    trigger: { type: "api", tokenName: "test" },
    requestedAt: new Date().toISOString(),
    args: {},
    ...fields,
    kind: STACK_OPERATION,
  };
}

/** The kind with any handler (job-fate tests use handlers that fail on purpose); it runs in its stack's lane. */
export function stackOperationKindWith(handler: (ctx: StepContext & { readonly data: StackOperationJob }) => Promise<Record<string, unknown>>): ExtraJobKind {
  return extraJobKind(stackOperationSchema, handler, { stackOf: (d) => d.stack });
}

/** The kind backed by a real runner: the operation through the Automation API, timed. */
export function stackOperationKind(runner: StackRunner, policyPacks: readonly string[] = []): ExtraJobKind {
  return stackOperationKindWith(async (ctx) => {
    const { stack, operation, program, args, project } = ctx.data;
    const startedAt = Date.now();
    const summary = await runner.run(
      { stack, projectName: project ?? PROJECT_NAME, operation, program, args, policyPacks },
      { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
    );
    // When the operation itself ran (the job's queue bookkeeping brackets it by a few ms).
    return { ...summary, startedAt, finishedAt: Date.now() };
  });
}

/** For the harness: the kind built on the worker's own runner. */
export function stackOperationKinds(deps: { runner: StackRunner; policyPacks: readonly string[] }): ExtraJobKinds {
  return { [STACK_OPERATION]: stackOperationKind(deps.runner) };
}

/** Adds the job the way JobQueue.enqueue adds a lifecycle job: registered in its stack's lane first. */
export async function enqueueStackOperation(queue: JobQueue, data: StackOperationJob, options: { jobId?: string } = {}): Promise<{ jobId: string }> {
  const job = stackOperationSchema.parse(data);
  const jobId = options.jobId ?? randomUUID();
  await queue.lanes.register(job.stack, jobId, { kind: job.kind });
  await queue.queue.add(job.kind, job, { ...JOB_OPTIONS, jobId });
  return { jobId };
}
