// The CI run of 2026-11-29 failed here: a worker SIGKILLed mid-`up` left the checkpoint's metadata
// sidecar (`<stack>.json.attrs`) empty, and every later command on the stack, on every worker,
// failed with "failed to load checkpoint: EOF". The real engine reproduces it below, and the
// repair that runs before each operation makes the stack usable again.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation } from "../core/engine.ts";
import { repairFileCheckpoint, UnreadableCheckpointError } from "./checkpoint-repair.ts";

const run = promisify(execFile);
const scratch = mkdtempSync(path.join(tmpdir(), "stackrail-checkpoint-"));
const backend = path.join(scratch, "state");
const project = path.join(scratch, "project");
const stack = "tenant-attrs";
const checkpoint = path.join(backend, ".pulumi", "stacks", "repair-test", `${stack}.json`);
const env = {
  ...process.env,
  PULUMI_HOME: path.join(scratch, "home"),
  PULUMI_BACKEND_URL: pathToFileURL(backend).href,
  PULUMI_CONFIG_PASSPHRASE: "checkpoint-repair-test",
  PULUMI_SKIP_UPDATE_CHECK: "true",
  PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
};

async function pulumi(...args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const r = await run(engineLocation().pulumi, [...args, "--non-interactive"], { cwd: project, env });
    return { ok: true, output: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

beforeAll(async () => {
  for (const dir of [backend, project]) rmSync(dir, { recursive: true, force: true });
  await run("mkdir", ["-p", backend, project]);
  writeFileSync(path.join(project, "Pulumi.yaml"), "name: repair-test\nruntime: nodejs\n");
  const init = await pulumi("stack", "init", stack);
  expect(init.ok, init.output).toBe(true);
});

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("checkpoint repair on the file backend", () => {
  it("removes a metadata sidecar an interrupted write left empty, and the engine can read the stack again", async () => {
    expect(existsSync(`${checkpoint}.attrs`)).toBe(true);
    const before = readFileSync(checkpoint, "utf8");
    writeFileSync(`${checkpoint}.attrs`, "");
    // The fault as CI met it: the engine refuses the stack.
    const broken = await pulumi("stack", "select", stack);
    expect(broken.ok).toBe(false);
    expect(broken.output).toContain("failed to load checkpoint: EOF");

    const lines = repairFileCheckpoint(backend, "repair-test", stack);
    expect(lines).toEqual(["removed 1 unreadable checkpoint metadata file(s) left by an interrupted write"]);
    const fixed = await pulumi("stack", "select", stack);
    expect(fixed.ok, fixed.output).toBe(true);
    // The checkpoint itself was not touched, and a second repair has nothing to do.
    expect(readFileSync(checkpoint, "utf8")).toBe(before);
    expect(repairFileCheckpoint(backend, "repair-test", stack)).toEqual([]);
  });

  it("restores a checkpoint cut off mid-write from the backend's backup", async () => {
    const good = readFileSync(checkpoint, "utf8");
    writeFileSync(`${checkpoint}.bak`, good);
    writeFileSync(checkpoint, good.slice(0, 20));
    // `stack select` only checks the file exists; an export has to read it.
    expect((await pulumi("stack", "export", "--stack", stack)).ok).toBe(false);
    expect(repairFileCheckpoint(backend, "repair-test", stack)).toEqual(["restored the stack checkpoint from its backup (the last write was cut off)"]);
    expect(readFileSync(checkpoint, "utf8")).toBe(good);
    const fixed = await pulumi("stack", "export", "--stack", stack);
    expect(fixed.ok, fixed.output).toBe(true);
  });

  it("refuses a stack whose checkpoint is unreadable with no backup, and changes nothing", () => {
    const cut = '{"version": 3, "checkpoint": {';
    writeFileSync(checkpoint, cut);
    rmSync(`${checkpoint}.bak`, { force: true });
    // An empty state would let a destroy "succeed" over resources that still exist.
    expect(() => repairFileCheckpoint(backend, "repair-test", stack)).toThrow(UnreadableCheckpointError);
    expect(() => repairFileCheckpoint(backend, "repair-test", stack)).toThrow(/unreadable and has no usable backup/);
    expect(readFileSync(checkpoint, "utf8")).toBe(cut);
  });
});
