// Issue 12, finding 4 (the other half of "provably dead"): another worker clears a stack lock once
// its owner's heartbeat has run out. A worker that is stopped (SIGSTOP), not killed, stops beating
// while its Pulumi child, whose parent pid and channel are unchanged, could go on running the
// engine. The child must cancel its operation and exit when its worker goes silent, well before
// the heartbeat's TTL, so that a lock cleared after the TTL is never one a live engine holds.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { engineLocation } from "../core/engine.ts";
import { privateRedis, processAlive, until } from "../test/support/lock-fixtures.ts";
import { TEST_MYSQL_URL } from "../test/support/services.ts";
import { descendants, killTree } from "./process-tree.ts";
import type { RunnerSettings } from "./pulumi-runner.ts";
import { HEARTBEAT_TTL_MS } from "./worker-identity.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-stopped-"));
const spawned: ChildProcess[] = [];
const orphans: number[] = [];
afterAll(() => {
  for (const c of spawned) {
    c.kill("SIGCONT");
    if (c.pid && c.exitCode === null) killTree(c.pid);
  }
  for (const pid of orphans) killTree(pid);
  rmSync(dataDir, { recursive: true, force: true });
});

describe("a Pulumi child whose worker is stopped", () => {
  it("cancels its operation and exits before the worker's heartbeat could run out", async () => {
    const cache = await privateRedis();
    spawned.push(cache.process);
    const settings: RunnerSettings = {
      engine: engineLocation(),
      backendUrl: `file://${path.join(dataDir, "state")}`,
      passphrase: randomBytes(12).toString("hex"),
      dataDir,
      target: "local",
      localMysqlUrl: TEST_MYSQL_URL,
      localRedisUrl: cache.url,
      cancelGraceMs: 5_000,
      prefork: false,
    };
    const tenantId = `stop-${randomBytes(3).toString("hex")}`;
    const request = {
      stack: `tenant-${tenantId}`,
      projectName: "stackrail",
      operation: "up" as const,
      program: "tenant",
      args: { tenantId, tier: "pool", region: "eu-west-1" },
      policyPacks: [],
    };
    // The operation hangs inside the cache user's create, so only a cancel or a kill ends it.
    cache.process.kill("SIGSTOP");
    const file = path.join(dataDir, "worker.ts");
    writeFileSync(
      file,
      [
        `import { PulumiRunner } from ${JSON.stringify(path.join(import.meta.dirname, "pulumi-runner.ts"))};`,
        `const runner = new PulumiRunner(${JSON.stringify(settings)});`,
        `await runner.run(${JSON.stringify(request)}, { onProgress: (line) => process.stdout.write(line + "\\n") }).catch((e) => process.stdout.write("ended: " + e.message + "\\n"));`,
      ].join("\n"),
    );
    const worker = spawn(settings.engine.node, [file], { stdio: ["ignore", "pipe", "inherit"] });
    spawned.push(worker);
    let output = "";
    worker.stdout?.on("data", (c: Buffer) => (output += c.toString()));
    await until("the operation to reach the cache user's create", () => /create .*cache-user/.test(output), 120_000);
    const tree = descendants(worker.pid as number);
    orphans.push(...tree);
    expect(tree.length).toBeGreaterThan(0);

    const stoppedAt = Date.now();
    worker.kill("SIGSTOP");
    await until("every process of the stopped worker's operation to exit", () => tree.every((pid) => !processAlive(pid)), HEARTBEAT_TTL_MS + 30_000);
    const exitedAfterMs = Date.now() - stoppedAt;
    console.log(`stopped worker: its operation's processes were gone ${exitedAfterMs} ms after SIGSTOP (heartbeat TTL ${HEARTBEAT_TTL_MS} ms)`);
    expect(exitedAfterMs).toBeLessThan(HEARTBEAT_TTL_MS);
    expect(processAlive(worker.pid as number)).toBe(true);

    worker.kill("SIGCONT");
    cache.process.kill("SIGCONT");
    cache.process.kill("SIGKILL");
  });
});
