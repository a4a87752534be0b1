// Where the credentials gate finds a tenant's own logins on the local target: the outputs of its
// `tenant-<id>` stack (programs/local-logical-set.ts), whose passwords exist only as Pulumi
// secrets in the state backend. The runner masks secret outputs on purpose, so they are read here,
// through the Automation API with the installation's passphrase, for one check, and dropped.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation/index.js";
import { z } from "zod";
import type { Config } from "../../core/config.ts";
import { engineLocation, type EngineLocation } from "../../core/engine.ts";
import type { TenantCredentialSource, TenantCredentials } from "./gate-types.ts";
import { throwIfCancelled } from "./gate-support.ts";

const outputsSchema = z.object({
  databaseHost: z.string(),
  databasePort: z.number().int(),
  databaseName: z.string(),
  databaseUser: z.string(),
  databasePassword: z.string(),
  cacheHost: z.string(),
  cachePort: z.number().int(),
  cacheDb: z.number().int().optional(),
  cacheUser: z.string(),
  cachePassword: z.string(),
  cacheKeyPrefix: z.string(),
});

/** The project a tenant stack lives in: one per tier (as tenantProject() in worker/handlers/tenant-support.ts). */
export const tenantStackProject = (tier: string): string => `stackrail-${tier}`;

/** Reads the tenant stack's outputs, secrets included, from the configured Pulumi backend. */
export function pulumiStateCredentials(
  config: Pick<Config, "dataDir" | "pulumiBackendUrl" | "pulumiPassphrase">,
  engine: EngineLocation = engineLocation(),
): TenantCredentialSource {
  let command: Promise<PulumiCommand> | undefined;
  return async (tenant, signal) => {
    const projectName = tenantStackProject(tenant.tier);
    const stackName = `tenant-${tenant.id}`;
    // Its own work directory: a rollout's engine may be using the stack's usual one right now.
    const workDir = path.join(config.dataDir, "workspaces", "health-gate", projectName, stackName);
    const pulumiHome = path.join(config.dataDir, "pulumi-home");
    await mkdir(workDir, { recursive: true });
    await mkdir(pulumiHome, { recursive: true });
    command ??= PulumiCommand.get({ root: engine.dir });
    const stack = await LocalWorkspace.selectStack(
      { stackName, projectName, program: () => Promise.resolve({}) },
      {
        workDir,
        pulumiHome,
        pulumiCommand: await command,
        projectSettings: { name: projectName, runtime: "nodejs", backend: { url: config.pulumiBackendUrl } },
        envVars: {
          PULUMI_BACKEND_URL: config.pulumiBackendUrl,
          PULUMI_HOME: pulumiHome,
          PULUMI_SKIP_UPDATE_CHECK: "true",
          PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
          ...(config.pulumiPassphrase !== undefined ? { PULUMI_CONFIG_PASSPHRASE: config.pulumiPassphrase } : {}),
        },
      },
    );
    throwIfCancelled(signal);
    const raw = await stack.outputs();
    throwIfCancelled(signal);
    const o = outputsSchema.parse(Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.value])));
    return {
      database: { host: o.databaseHost, port: o.databasePort, name: o.databaseName, user: o.databaseUser, password: o.databasePassword },
      cache: { host: o.cacheHost, port: o.cachePort, db: o.cacheDb ?? 0, user: o.cacheUser, password: o.cachePassword, keyPrefix: o.cacheKeyPrefix },
    } satisfies TenantCredentials;
  };
}
