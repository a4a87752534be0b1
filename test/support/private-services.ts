// Private servers for the fault-injection suite: a redis-server and a mariadbd that one test file
// starts, restarts, pauses and stops as it likes. The shared servers on 6379 and 3306 serve every
// other test at the same time: a fault is only ever injected into a private one.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, openSync, closeSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";

/** A TCP port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no TCP port from the OS");
  return address.port;
}

export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok: boolean;
    try {
      ok = await check();
    } catch {
      ok = false;
    }
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** The server's pid (changes on restart). */
  pid(): number | undefined;
  /** A short-lived connection for one command (restart-proof: every call connects anew). */
  command(...args: (string | number)[]): Promise<unknown>;
  /**
   * Stops the server and starts it again on the same port. keepData: `SHUTDOWN SAVE` and the dump
   * is loaded again; otherwise `SHUTDOWN NOSAVE` and the dump is removed: everything is lost.
   * `downMs` is how long the server stays away.
   */
  restart(options: { keepData: boolean; downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

/** A redis-server of this test only, configured as the service requires (noeviction). */
export async function startPrivateRedis(dir: string): Promise<PrivateRedis> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const logFd = openSync(path.join(dir, "redis.log"), "a");

  const start = async (): Promise<void> => {
    child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--dbfilename",
        "dump.rdb",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
      ],
      { stdio: ["ignore", logFd, logFd] },
    );
    child.on("error", () => undefined);
    await waitUntil(`the private redis-server on ${port}`, async () => (await command("PING")) === "PONG", 20_000);
  };

  const command = async (...args: (string | number)[]): Promise<unknown> => {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
    redis.on("error", () => undefined);
    try {
      await redis.connect();
      const [name, ...rest] = args;
      return await redis.call(String(name), ...rest);
    } finally {
      redis.disconnect();
    }
  };

  const shutdown = async (save: boolean): Promise<void> => {
    const running = child;
    if (!running) return;
    // SHUTDOWN closes the connection instead of answering.
    await command("SHUTDOWN", save ? "SAVE" : "NOSAVE").catch(() => undefined);
    await Promise.race([exited(running), new Promise((r) => setTimeout(r, 5000))]);
    if (running.exitCode === null && running.signalCode === null) running.kill("SIGKILL");
    await exited(running);
    child = undefined;
  };

  await start();
  return {
    url,
    port,
    dir,
    pid: () => child?.pid,
    command,
    async restart({ keepData, downMs = 1000 }) {
      await shutdown(keepData);
      if (!keepData) rmSync(path.join(dir, "dump.rdb"), { force: true });
      await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    async stop() {
      await shutdown(false);
      closeSync(logFd);
    },
  };
}

export interface PrivateMariaDb {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  pid(): number | undefined;
  query<T = unknown>(sql: string, params?: unknown[]): Promise<T>;
  /** Stops the server (`crash`: SIGKILL, else a clean shutdown) and starts it again on the same port after `downMs`. */
  restart(options: { crash: boolean; downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A mariadbd of this test only, initialised the normal way (grant tables, root with an empty
 * password over TCP from 127.0.0.1), so tenant users and grants behave as on the shared server.
 */
export async function startPrivateMariaDb(dir: string): Promise<PrivateMariaDb> {
  const dataDir = path.join(dir, "data");
  mkdirSync(dir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (!existsSync(path.join(dataDir, "mysql"))) {
    execFileSync(
      "mariadb-install-db",
      ["--no-defaults", `--datadir=${dataDir}`, "--auth-root-authentication-method=normal", "--skip-test-db", ...(asRoot ? ["--user=root"] : [])],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
  }
  const port = await freePort();
  const url = `mysql://root@127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const logFd = openSync(path.join(dir, "mariadbd.log"), "a");

  const query = async <T>(sql: string, params: unknown[] = []): Promise<T> => {
    const conn = await mysql.createConnection({ uri: url, connectTimeout: 1000 });
    try {
      const [rows] = await conn.query(sql, params);
      return rows as T;
    } finally {
      await conn.end().catch(() => undefined);
    }
  };

  const start = async (): Promise<void> => {
    child = spawn(
      "mariadbd",
      [
        "--no-defaults",
        `--datadir=${dataDir}`,
        `--port=${port}`,
        "--bind-address=127.0.0.1",
        `--socket=${path.join(dir, "mariadbd.sock")}`,
        `--pid-file=${path.join(dir, "mariadbd.pid")}`,
        "--innodb-buffer-pool-size=32M",
        ...(asRoot ? ["--user=root"] : []),
      ],
      { stdio: ["ignore", logFd, logFd] },
    );
    child.on("error", () => undefined);
    await waitUntil(
      `the private mariadbd on ${port}`,
      async () => {
        await query("SELECT 1");
        return true;
      },
      60_000,
      100,
    );
  };

  const halt = async (crash: boolean): Promise<void> => {
    const running = child;
    if (!running) return;
    if (crash) running.kill("SIGKILL");
    else running.kill("SIGTERM");
    await Promise.race([exited(running), new Promise((r) => setTimeout(r, 20_000))]);
    if (running.exitCode === null && running.signalCode === null) running.kill("SIGKILL");
    await exited(running);
    child = undefined;
  };

  await start();
  return {
    url,
    port,
    dir,
    pid: () => child?.pid,
    query,
    async restart({ crash, downMs = 1000 }) {
      await halt(crash);
      await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    async stop() {
      await halt(false);
      closeSync(logFd);
    },
  };
}
