import { defineConfig } from "vitest/config";
import { SummaryReporter } from "./test/summary-reporter.ts";

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
    reporters: ["default", new SummaryReporter()],
  },
});
