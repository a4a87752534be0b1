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

/**
 * Policy packs enforced before every `up`, on every target: the pack in programs/policy holds the
 * aws guardrails and the rules for the per-tenant resources both targets make (databases, grants,
 * cache users, folders), so `local` (and on-premise installations) plan under the same policy.
 */
export function policyPacksFor(_config: Config): string[] {
  return [path.resolve(import.meta.dirname, "../programs/policy")];
}
