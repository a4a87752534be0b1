// Records what the real engine returns for one tenant's release, for the scale benchmark's no-op
// runner (bench/scale-runner.ts): a tenant stack provisioned at 1.0.0 with the real PulumiRunner
// on the local target, then the two operations a release runs on it, `preview` at 2.0.0 (the plan
// step) and `up` at 2.0.0 (the apply step). Their OperationSummary objects are written, with the
// tenant's id as a placeholder, to bench/scale-recorded-release.json. The tenant's objects are
// dropped afterwards. `node bench/scale-record.ts` refreshes the file; the benchmark only reads it.
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../core/config.ts";
import { localServiceEnv, uniqueName } from "../test/support/services.ts";
import { tenantProject } from "../worker/handlers/tenant-support.ts";
import type { OperationSummary, StackOperation } from "../worker/pulumi-protocol.ts";
import { createRunner, policyPacksFor } from "../worker/runner-factory.ts";
import { dropLocalLeftovers, removeDir } from "./lib/cleanup.ts";
import { machineInfo, say } from "./lib/report.ts";

/** Stands for the tenant's id in the recorded summaries. */
export const TENANT_PLACEHOLDER = "{{tenant}}";
/** BENCH_SCALE_RECORDING names another recording (the worker processes inherit it). */
export const RECORDING_FILE = process.env.BENCH_SCALE_RECORDING ?? path.join(import.meta.dirname, "scale-recorded-release.json");

export interface Recording {
  readonly recordedAt: string;
  readonly gitCommit: string;
  readonly engine: string;
  readonly tenant: { readonly tier: string; readonly region: string; readonly from: string; readonly to: string };
  /** What the engine returned: the plan step's preview and the apply step's up. */
  readonly preview: OperationSummary;
  readonly up: OperationSummary;
}

/** Replaces every occurrence of `from` in the summary's strings by `to` (JSON round trip). */
export function substitute<T>(value: T, from: string, to: string): T {
  return JSON.parse(JSON.stringify(value).split(from).join(to)) as T;
}

async function record(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-bench-record-"));
  // Letters and digits only: the id is substituted into names (databases, users) that allow no hyphen.
  const tenantId = `rec${randomBytes(3).toString("hex")}`;
  const config = loadConfig({
    ...localServiceEnv({ dataDir, prefix: uniqueName("bench-record"), apiToken: randomBytes(24).toString("hex"), passphrase: randomBytes(16).toString("hex") }),
    LOG_LEVEL: "warn",
  });
  const runner = createRunner(config);
  const tier = "pool";
  const region = "eu-west-1";
  const run = (operation: StackOperation, version: string): Promise<OperationSummary> =>
    runner.run({
      stack: `tenant-${tenantId}`,
      projectName: tenantProject(tier),
      operation,
      program: "tenant",
      args: { tenantId, tier, region, version },
      policyPacks: policyPacksFor(config),
    });
  try {
    say(`record: provisioning tenant ${tenantId} at 1.0.0 with the real engine`);
    await run("up", "1.0.0");
    say("record: preview at 2.0.0 (the plan step)");
    const preview = await run("preview", "2.0.0");
    say("record: up at 2.0.0 (the apply step)");
    const up = await run("up", "2.0.0");
    const recording: Recording = {
      recordedAt: new Date().toISOString(),
      gitCommit: machineInfo().gitCommit,
      engine: "PulumiRunner (worker/runner-factory.ts createRunner), local target",
      tenant: { tier, region, from: "1.0.0", to: "2.0.0" },
      preview: substitute(preview, tenantId, TENANT_PLACEHOLDER),
      up: substitute(up, tenantId, TENANT_PLACEHOLDER),
    };
    writeFileSync(RECORDING_FILE, `${JSON.stringify(recording, null, 2)}\n`);
    say(`record: written ${path.relative(process.cwd(), RECORDING_FILE)} (preview ${preview.durationMs} ms, up ${up.durationMs} ms)`);
  } finally {
    runner.close();
    await dropLocalLeftovers("tenant", [tenantId]);
    removeDir(dataDir);
  }
}

if (import.meta.main) await record();
