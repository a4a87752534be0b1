// A plain stack operation (up, destroy, preview, refresh) of a named program: the building block
// the lifecycle handlers use, and a job kind of its own for operators and the foundation tests.
import type { JobHandler } from "../job-worker.ts";
import type { StackRunner } from "../pulumi-runner.ts";

export const PROJECT_NAME = "stackrail";

export function stackOperationHandler(runner: StackRunner, policyPacks: readonly string[]): JobHandler<"stack.operation"> {
  return async (ctx) => {
    const { stack, operation, program, args, project } = ctx.data;
    const startedAt = Date.now();
    const summary = await runner.run(
      { stack, projectName: project ?? PROJECT_NAME, operation, program, args, policyPacks },
      { signal: ctx.signal, onProgress: (line) => void ctx.progress(line) },
    );
    // When the operation itself ran (the job's queue bookkeeping brackets it by a few ms).
    return { ...summary, startedAt, finishedAt: Date.now() };
  };
}
