import { defineConfig } from "vitest/config";
import { SummaryReporter } from "./test/summary-reporter.ts";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    // test/faults/ is its own run (npm run test:faults, vitest.faults.config.ts). The Helm chart's test
    // runs here: `npm ci` builds Helm (postinstall) and installs its schema packages (devDependencies).
    exclude: ["node_modules/**", ".engine/**", ".stackrail/**", "test/faults/**"],
    globalSetup: ["test/global-setup.ts"],
    // Real engines, databases and git: generous limits, and never more workers than cores.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", new SummaryReporter()],
  },
});
