// A real Redis Cluster for tests: three masters (no replicas) on free loopback ports, each
// `redis-server --cluster-enabled yes` in a temp dir, joined by `redis-cli --cluster create`.
// stop() kills the three servers and removes the dir. A redis-server without cluster support
// fails with a message that says so.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";

const run = promisify(execFile);

export interface RedisClusterFixture {
  /** `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, for REDIS_URL. */
  readonly url: string;
  readonly ports: readonly number[];
  /** A plain connection to one node (for CLUSTER and per-node commands). */
  node(port: number): Redis;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function clusterState(port: number): Promise<string> {
  const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => undefined);
  try {
    await r.connect();
    return /cluster_state:(\w+)/.exec(await r.cluster("INFO"))?.[1] ?? "unknown";
  } catch {
    return "unreachable";
  } finally {
    r.disconnect();
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Redis Cluster fixture: ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startRedisCluster(options: { timeoutMs?: number } = {}): Promise<RedisClusterFixture> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const dir = mkdtempSync(path.join(tmpdir(), "stackrail-redis-cluster-"));
  const servers: ChildProcess[] = [];
  const nodes: Redis[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const n of nodes) n.disconnect();
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.exitCode !== null || s.signalCode !== null) return resolve();
            s.once("exit", () => resolve());
            s.kill("SIGKILL");
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    while (ports.length < 3) {
      const p = await freePort();
      // A cluster node also listens on port + 10000 (the cluster bus).
      if (p + 10000 <= 65535 && !ports.includes(p)) ports.push(p);
    }
    let stderr = "";
    for (const port of ports) {
      const server = spawn(
        "redis-server",
        [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          path.join(dir, `nodes-${port}.conf`),
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--daemonize",
          "no",
          "--dir",
          dir,
          "--maxmemory-policy",
          "noeviction",
        ],
        { stdio: ["ignore", "pipe", "pipe"], cwd: dir },
      );
      server.stdout?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      server.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      server.once("error", (err) => (stderr += `\n${err.message}`));
      servers.push(server);
    }
    await waitFor(
      "redis-server nodes did not accept connections (is redis-server installed? apt-get install redis-server)",
      async () => {
        if (servers.some((s) => s.exitCode !== null)) {
          throw new Error(
            /cluster/i.test(stderr)
              ? `redis-server refused cluster mode (it needs cluster support, Redis 3 or later): ${stderr.trim().slice(-500)}`
              : `redis-server exited: ${stderr.trim().slice(-500)}`,
          );
        }
        return (await Promise.all(ports.map(clusterState))).every((s) => s !== "unreachable");
      },
      timeoutMs,
    );
    try {
      await run("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"], {
        timeout: timeoutMs,
      });
    } catch (err) {
      throw new Error(`redis-cli --cluster create failed (needs redis-cli 5 or later): ${(err as Error).message.slice(0, 500)}`);
    }
    await waitFor(
      "the cluster did not reach cluster_state:ok on every node",
      async () => (await Promise.all(ports.map(clusterState))).every((s) => s === "ok"),
      timeoutMs,
    );
    return {
      url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
      ports,
      node(port: number): Redis {
        const r = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 2 });
        r.on("error", () => undefined);
        nodes.push(r);
        return r;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
