// Pulumi.yaml at the top runs the same programs for an operator's bare CLI: a preview of a
// tenant stack shows the resources a provision job would create.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { engineLocation, PROJECT_ROOT } from "../core/engine.ts";

const dir = mkdtempSync(path.join(tmpdir(), "stackrail-cli-"));
const engine = engineLocation();
const stack = `tenant-cli-${Math.random().toString(36).slice(2, 7)}`;
const env = {
  ...process.env,
  PATH: `${engine.binDir}:${path.dirname(engine.node)}:${process.env.PATH ?? ""}`,
  PULUMI_CONFIG_PASSPHRASE: "cli-entry-test",
  PULUMI_HOME: path.join(dir, "home"),
  PULUMI_BACKEND_URL: `file://${dir}`,
  PULUMI_SKIP_UPDATE_CHECK: "true",
  STACKRAIL_DATA_DIR: path.join(dir, "data"),
};
const pulumi = (...args: string[]): string => execFileSync(engine.pulumi, [...args, "--non-interactive"], { cwd: PROJECT_ROOT, env, encoding: "utf8" });

afterAll(() => {
  try {
    pulumi("stack", "rm", "--yes", "--force", "--stack", stack);
  } catch {
    // already gone
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("Pulumi.yaml for the bare CLI", () => {
  it("previews a tenant stack from the stack's config with the same program the worker runs", () => {
    pulumi("stack", "init", stack);
    pulumi("config", "set", "--stack", stack, "stackrail:program", "tenant");
    pulumi("config", "set", "--stack", stack, "stackrail:args", JSON.stringify({ tenantId: stack.slice("tenant-".length), tier: "pool", region: "eu-west-1" }));
    const out = pulumi("preview", "--stack", stack, "--diff");
    // Owner token, two passwords, database, user, grant, cache user, directory, and the stack itself.
    expect(out).toContain("+ 9 to create");
    expect(out).toContain(`t_${stack.slice("tenant-".length).replace(/-/g, "_")}`);
  });
});
