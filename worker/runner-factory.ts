// Builds the Pulumi runner from configuration: the project's engine, the state backend, the
// passphrase, and the policy packs that are mandatory on the target.
import path from "node:path";
import type { Config } from "../core/config.ts";
import { engineLocation, type EngineLocation } from "../core/engine.ts";
import { PulumiRunner, type RunnerSettings } from "./pulumi-runner.ts";

export function createRunner(config: Config, engine: EngineLocation = engineLocation(), extra: Pick<RunnerSettings, "guard"> = {}): PulumiRunner {
  return new PulumiRunner({
    ...extra,
    engine,
    backendUrl: config.pulumiBackendUrl,
    passphrase: config.pulumiPassphrase,
    dataDir: config.dataDir,
    target: config.target,
    localMysqlUrl: config.localMysqlUrl,
    localRedisUrl: config.localRedisUrl,
    cancelGraceMs: 20_000,
  });
}

/** Policy packs enforced before every `up`: the pack in programs/policy guards the aws target. */
export function policyPacksFor(config: Config): string[] {
  return config.target === "aws" ? [path.resolve(import.meta.dirname, "../programs/policy")] : [];
}
