// Final backups before a tenant's data resources are destroyed (local target): a compressed
// logical dump under the data dir, written with the server's own dump tool. The password travels
// in the child's environment (MYSQL_PWD), never on a command line or in a log.
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import mysql from "mysql2/promise";
import { ProgramError } from "../core/errors.ts";

export interface BackupResult {
  readonly file: string;
  readonly bytes: number;
}

const SQL_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/** Whether the database exists: a deprovision retried after its destroy, or of a database lost by hand, has nothing to dump. */
export async function databaseExists(mysqlUrl: string, database: string): Promise<boolean> {
  const conn = await mysql.createConnection({ uri: mysqlUrl, connectTimeout: 3000 });
  try {
    // An exact comparison: in `SHOW DATABASES LIKE` a tenant's `_` matches any character.
    const [rows] = await conn.query<mysql.RowDataPacket[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [database]);
    return rows.length > 0;
  } finally {
    await conn.end();
  }
}

export async function dumpDatabase(options: { mysqlUrl: string; database: string; outDir: string; now?: Date }): Promise<BackupResult> {
  if (!SQL_NAME.test(options.database)) throw new ProgramError("refusing to dump a database with an unexpected name");
  const url = new URL(options.mysqlUrl);
  const stamp = (options.now ?? new Date()).toISOString().replace(/[:.]/g, "-");
  // A dump holds every row of the tenant: private to this user (issue 11, finding 12).
  mkdirSync(options.outDir, { recursive: true, mode: 0o700 });
  const file = path.join(options.outDir, `${options.database}-${stamp}.sql.gz`);
  const args = [
    `--host=${url.hostname || "127.0.0.1"}`,
    `--port=${url.port || "3306"}`,
    `--user=${decodeURIComponent(url.username || "root")}`,
    "--single-transaction",
    "--routines",
    "--triggers",
    "--databases",
    options.database,
  ];
  const child = spawn("mysqldump", args, {
    env: { ...process.env, MYSQL_PWD: decodeURIComponent(url.password) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-2000);
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? -1));
  });
  await pipeline(child.stdout, createGzip(), createWriteStream(file, { mode: 0o600 }));
  const code = await exited;
  if (code !== 0) throw new ProgramError(`database dump failed (exit ${code}): ${stderr.trim()}`);
  return { file, bytes: statSync(file).size };
}
