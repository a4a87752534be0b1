// Issue 12, finding 1: a Pulumi child must not outlive its worker. A worker process is SIGKILLed
// while its operation hangs inside a provider (a tenant cache server that stopped answering), and
// every process of the operation must be gone within seconds; the next worker then finds the
// stack usable (no live lock, pending operations resolved) and completes it.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { engineLocation } from "../core/engine.ts";
import { TEST_MYSQL_URL } from "../test/support/services.ts";
import { descendants, killTree } from "./process-tree.ts";
import { PulumiRunner, type RunnerSettings } from "./pulumi-runner.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-orphan-"));
const spawned: ChildProcess[] = [];
/** Processes of the orphaned operation: reparented away from the worker, so killed by pid if still there. */
const orphans: number[] = [];
afterAll(() => {
  for (const c of spawned) if (c.pid && c.exitCode === null) killTree(c.pid);
  for (const pid of orphans) killTree(pid);
  rmSync(dataDir, { recursive: true, force: true });
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

async function privateRedis(): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  spawned.push(child);
  const { Redis } = await import("ioredis");
  const deadline = Date.now() + 15_000;
  for (;;) {
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await probe.connect();
      await probe.ping();
      return { url: `redis://127.0.0.1:${port}`, process: child };
    } catch {
      if (Date.now() > deadline) throw new Error("private redis-server did not start (is redis-server on PATH?)");
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      probe.disconnect();
    }
  }
}

describe("a Pulumi child whose worker dies", () => {
  it("stops its operation and exits within seconds, and the next worker completes the stack", async () => {
    const cache = await privateRedis();
    const settings: RunnerSettings = {
      engine: engineLocation(),
      backendUrl: `file://${path.join(dataDir, "state")}`,
      passphrase: randomBytes(12).toString("hex"),
      dataDir,
      target: "local",
      localMysqlUrl: TEST_MYSQL_URL,
      localRedisUrl: cache.url,
      cancelGraceMs: 5_000,
    };
    const tenantId = `orphan-${randomBytes(3).toString("hex")}`;
    const request = {
      stack: `tenant-${tenantId}`,
      projectName: "stackrail",
      operation: "up" as const,
      program: "tenant",
      args: { tenantId, tier: "pool", region: "eu-west-1" },
      policyPacks: [],
    };
    // The cache server stops answering: the operation hangs inside the Redis ACL user's create.
    cache.process.kill("SIGSTOP");
    const script = [
      `import { PulumiRunner } from ${JSON.stringify(path.join(import.meta.dirname, "pulumi-runner.ts"))};`,
      `const runner = new PulumiRunner(${JSON.stringify({ ...settings, prefork: false })});`,
      `await runner.run(${JSON.stringify(request)}, { onProgress: (line) => process.stdout.write(line + "\\n") }).catch((e) => process.stdout.write("ended: " + e.message + "\\n"));`,
    ].join("\n");
    const file = path.join(dataDir, "worker.ts");
    writeFileSync(file, script);
    const worker = spawn(settings.engine.node, [file], { stdio: ["ignore", "pipe", "inherit"] });
    spawned.push(worker);
    let output = "";
    worker.stdout?.on("data", (c: Buffer) => (output += c.toString()));
    await until("the operation to reach the cache user's create", () => /create .*cache-user/.test(output), 120_000);
    const tree = descendants(worker.pid as number);
    orphans.push(...tree);
    expect(tree.length, "the operation's processes").toBeGreaterThan(0);

    const killedAt = Date.now();
    worker.kill("SIGKILL");
    // Grace for the engine's own cancellation (5 s) plus the watchdog's poll and a loaded machine.
    await until("every process of the orphaned operation to exit", () => tree.every((pid) => !alive(pid)), 30_000);
    const exitedAfterMs = Date.now() - killedAt;
    expect(exitedAfterMs).toBeLessThan(30_000);

    // The next worker: the stack is not held by anyone alive, and the operation completes.
    cache.process.kill("SIGCONT");
    const runner = new PulumiRunner({ ...settings, prefork: false });
    try {
      const summary = await runner.run(request);
      expect(summary.result).toBe("succeeded");
      const destroyed = await runner.run({ ...request, operation: "destroy" });
      expect(destroyed.result).toBe("succeeded");
    } finally {
      runner.close();
      cache.process.kill("SIGKILL");
    }
  });
});
