import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { SummaryReporter } from "./test/summary-reporter.ts";

/** The soak last: it takes longest, and a failure in a short case then shows without waiting for it. */
class SoakLastSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const isSoak = (f: TestSpecification) => f.moduleId.endsWith("/soak.test.ts");
    return [...sorted.filter((f) => !isSoak(f)), ...sorted.filter(isSoak)];
  }
}

// `npm run test:faults`: the fault-injection suite (test/faults/). Real processes are killed,
// stopped and restarted; each file runs its own installation (private Redis, GitOps remote,
// data dir). One file at a time: the cases measure takeover and shutdown times, which a second
// file's Pulumi runs on the same two cores would distort.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    exclude: ["node_modules/**", ".engine/**", ".stackrail/**"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 900_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    sequence: { sequencer: SoakLastSequencer },
    reporters: ["default", new SummaryReporter()],
  },
});
