// Wraps a runner to record every Pulumi operation's duration and outcome in the metrics.
import { StackBusyError } from "../core/errors.ts";
import type { Metrics } from "../core/metrics.ts";
import type { OperationSummary, StackOperationRequest } from "./pulumi-protocol.ts";
import type { RunOptions, StackRunner } from "./pulumi-runner.ts";

export function observedRunner(runner: StackRunner, metrics: Metrics): StackRunner {
  return {
    async run(request: StackOperationRequest, options?: RunOptions): Promise<OperationSummary> {
      const end = metrics.pulumiDuration.startTimer({ operation: request.operation });
      try {
        const summary = await runner.run(request, options);
        end({ result: "succeeded" });
        return summary;
      } catch (err) {
        // A busy stack ran no operation (the job waits); it is not a failed one.
        if (err instanceof StackBusyError) throw err;
        end({ result: "failed" });
        throw err;
      }
    },
    close: () => runner.close?.(),
  };
}
