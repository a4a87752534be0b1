// Stands in for worker/runner-factory.ts inside a worker process of the scale benchmark (see
// bench/scale-hooks.ts): the same exports, but createRunner returns the recorded no-op runner
// (bench/scale-runner.ts) instead of the PulumiRunner. Everything else in the worker process is
// the product's own wiring (`main.ts --role worker`, worker/worker-role.ts).
import path from "node:path";
import type { Config } from "../core/config.ts";
import type { StackRunner } from "../worker/pulumi-runner.ts";
import { RecordedRunner } from "./scale-runner.ts";

export function createRunner(): StackRunner {
  return new RecordedRunner();
}

/** The same packs as the product's policyPacksFor (the no-op runner does not run them). */
export function policyPacksFor(_config: Config): string[] {
  return [path.resolve(import.meta.dirname, "../programs/policy")];
}
