// The runner's spare child: started ahead of the next operation, used by it, replaced afterwards,
// and never left behind (close, or the worker process dying).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { engineLocation } from "../core/engine.ts";
import { ProgramError } from "../core/errors.ts";
import { PulumiRunner, type RunnerSettings } from "./pulumi-runner.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-runner-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const settings: RunnerSettings = {
  engine: engineLocation(),
  backendUrl: `file://${path.join(dataDir, "state")}`,
  passphrase: "runner-test-passphrase",
  dataDir,
  target: "local",
  localMysqlUrl: "mysql://root@127.0.0.1:3306",
  localRedisUrl: "redis://127.0.0.1:6379",
  cancelGraceMs: 5_000,
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("PulumiRunner spare child", () => {
  it("runs the next operation on the child started ahead of it, then starts another", async () => {
    const runner = new PulumiRunner(settings);
    try {
      const first = runner.sparePid;
      expect(first).toBeTypeOf("number");
      // An unknown program fails inside the child, after it has taken the operation.
      const request = {
        stack: "tenant-runner-spare",
        projectName: "stackrail",
        operation: "up" as const,
        program: "no-such-program",
        args: {},
        policyPacks: [],
      };
      // It is a program error (fails at once), not a transient one (retried).
      const failure = runner.run(request);
      await expect(failure).rejects.toThrow(/unknown program/);
      await expect(failure).rejects.toBeInstanceOf(ProgramError);
      await until("the used child to exit", () => !alive(first!));
      const next = runner.sparePid;
      expect(next).toBeTypeOf("number");
      expect(next).not.toBe(first);
      expect(alive(next!)).toBe(true);
    } finally {
      runner.close();
    }
  });

  it("starts no spare when told not to, and close() stops the spare", async () => {
    expect(new PulumiRunner({ ...settings, prefork: false }).sparePid).toBeUndefined();
    const runner = new PulumiRunner(settings);
    const pid = runner.sparePid!;
    runner.close();
    expect(runner.sparePid).toBeUndefined();
    await until("the closed spare to exit", () => !alive(pid));
  });

  it("an idle spare does not keep its worker process alive, and goes with it", async () => {
    const script = [
      `import { PulumiRunner } from ${JSON.stringify(path.join(import.meta.dirname, "pulumi-runner.ts"))};`,
      `const runner = new PulumiRunner(${JSON.stringify(settings)});`,
      // After an operation: the spare started by taking the previous one is the one left idle.
      `await runner.run({ stack: "tenant-runner-idle", projectName: "stackrail", operation: "up", program: "no-such-program", args: {}, policyPacks: [] }).catch(() => undefined);`,
      `process.stdout.write(String(runner.sparePid) + "\\n");`,
    ].join("\n");
    // A file, not `-e`: the hang this guards against showed only with a module file.
    const file = path.join(dataDir, "owner.ts");
    writeFileSync(file, script);
    const owner = spawn(settings.engine.node, [file], { stdio: ["ignore", "pipe", "inherit"] });
    let pid = 0;
    owner.stdout.on("data", (c: Buffer) => (pid = Number(c.toString().trim())));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        owner.kill("SIGKILL");
        resolve(-1);
      }, 15_000);
      owner.once("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code, "the process that owns an idle spare should exit by itself").toBe(0);
    expect(pid).toBeGreaterThan(0);
    await until("the spare to follow its worker", () => !alive(pid));
  });

  it("a spare exits by itself when its worker process is killed", async () => {
    const script = [
      `import { PulumiRunner } from ${JSON.stringify(path.join(import.meta.dirname, "pulumi-runner.ts"))};`,
      `const runner = new PulumiRunner(${JSON.stringify(settings)});`,
      `process.stdout.write(String(runner.sparePid) + "\\n");`,
      `setInterval(() => undefined, 1000);`,
    ].join("\n");
    const worker = spawn(settings.engine.node, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const pid = await new Promise<number>((resolve, reject) => {
      worker.stdout.once("data", (c: Buffer) => resolve(Number(c.toString().trim())));
      worker.once("exit", (code) => reject(new Error(`worker exited early (${code})`)));
    });
    expect(alive(pid)).toBe(true);
    worker.kill("SIGKILL");
    await until("the orphaned spare to exit", () => !alive(pid));
  });
});
