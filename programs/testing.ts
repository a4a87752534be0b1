// Test support for the programs: a throw-away Pulumi workspace on the project's own engine, with a
// fresh file backend, PULUMI_HOME and passphrase in a temp dir, so each test runs the real engine
// in isolation. Used by programs/*.test.ts only; the worker has its own runner.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalWorkspace, PulumiCommand, type PulumiFn, type Stack } from "@pulumi/pulumi/automation/index.js";
import { engineLocation } from "../core/engine.ts";
import { POLICY_PACK_ENV } from "./policy/location.ts";

export interface TestWorkspace {
  readonly root: string;
  readonly backendDir: string;
  stack(stackName: string, program: PulumiFn): Promise<Stack>;
  /** Every byte of the backend's state (checkpoints, history, backups) as one string. */
  stateText(): string;
  dispose(): void;
}

export async function testWorkspace(projectName = "stackrail"): Promise<TestWorkspace> {
  const engine = engineLocation();
  const root = mkdtempSync(path.join(tmpdir(), "stackrail-programs-"));
  const backendDir = path.join(root, "state");
  const home = path.join(root, "home");
  const pulumiCommand = await PulumiCommand.get({ root: engine.dir });
  const envVars: Record<string, string> = {
    PULUMI_HOME: home,
    PULUMI_BACKEND_URL: `file://${backendDir}`,
    PULUMI_CONFIG_PASSPHRASE: "test-passphrase",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    ...POLICY_PACK_ENV,
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
    PATH: `${engine.binDir}:${path.dirname(engine.node)}:${process.env.PATH ?? ""}`,
  };
  for (const d of [backendDir, home]) rmSync(d, { recursive: true, force: true });
  mkdirSync(backendDir, { recursive: true });
  mkdirSync(home, { recursive: true });
  return {
    root,
    backendDir,
    stack(stackName, program) {
      const workDir = path.join(root, "work", stackName);
      mkdirSync(workDir, { recursive: true });
      return LocalWorkspace.createOrSelectStack(
        { stackName, projectName, program },
        {
          pulumiCommand,
          workDir,
          envVars,
          projectSettings: { name: projectName, runtime: "nodejs", backend: { url: `file://${backendDir}` } },
        },
      );
    },
    stateText() {
      const parts: string[] = [];
      const walk = (dir: string): void => {
        for (const entry of readdirSync(dir)) {
          const p = path.join(dir, entry);
          if (statSync(p).isDirectory()) walk(p);
          else parts.push(readFileSync(p, "utf8"));
        }
      };
      walk(backendDir);
      return parts.join("\n");
    },
    dispose() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}
