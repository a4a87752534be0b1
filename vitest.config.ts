import { defineConfig } from "vitest/config";
import { SummaryReporter } from "./test/summary-reporter.ts";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", ".engine/**", ".stackrail/**"],
    globalSetup: ["test/global-setup.ts"],
    // Real engines, databases and git: generous limits, and never more workers than cores.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", new SummaryReporter()],
  },
});
