// Copying a tenant's data between tiers and proving the copy: the database (dump and load with
// the server's own tools), the attachments directory and the cache keys. Verification compares
// row counts and CHECKSUM TABLE per table, and file sizes and hashes per attachment.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, mkdir, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { ProgramError } from "../core/errors.ts";

const SQL_NAME = /^[a-z][a-z0-9_]{0,63}$/;

function clientArgs(url: URL): string[] {
  return [`--host=${url.hostname || "127.0.0.1"}`, `--port=${url.port || "3306"}`, `--user=${decodeURIComponent(url.username || "root")}`];
}

/** mysqldump source | mysql target; the passwords travel in each child's environment only. */
export async function copyDatabase(from: { url: string; database: string }, to: { url: string; database: string }): Promise<void> {
  if (!SQL_NAME.test(from.database) || !SQL_NAME.test(to.database)) throw new ProgramError("refusing to copy a database with an unexpected name");
  const src = new URL(from.url);
  const dst = new URL(to.url);
  const dump = spawn("mysqldump", [...clientArgs(src), "--single-transaction", "--routines", "--triggers", from.database], {
    env: { ...process.env, MYSQL_PWD: decodeURIComponent(src.password) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const load = spawn("mysql", [...clientArgs(dst), to.database], {
    env: { ...process.env, MYSQL_PWD: decodeURIComponent(dst.password) },
    stdio: ["pipe", "ignore", "pipe"],
  });
  dump.stdout.pipe(load.stdin);
  let errors = "";
  for (const child of [dump, load]) child.stderr?.on("data", (c: Buffer) => (errors = (errors + c.toString()).slice(-2000)));
  const exit = (c: ChildProcess): Promise<number> =>
    new Promise((resolve, reject) => {
      c.on("error", reject);
      c.on("close", (code) => resolve(code ?? -1));
    });
  const [a, b] = await Promise.all([exit(dump), exit(load)]);
  if (a !== 0 || b !== 0) throw new ProgramError(`database copy failed (dump ${a}, load ${b}): ${errors.trim()}`);
}

export interface TableReport {
  readonly table: string;
  readonly rows: number;
  readonly checksum: string;
}

async function tableReports(url: string, database: string): Promise<TableReport[]> {
  const conn = await mysql.createConnection({ uri: url, database });
  try {
    const [tables] = await conn.query<mysql.RowDataPacket[]>(
      "SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
      [database],
    );
    const out: TableReport[] = [];
    for (const row of tables) {
      const table = String(row.t);
      const [[count]] = (await conn.query(`SELECT COUNT(*) AS n FROM ${conn.escapeId(table)}`)) as unknown as [[{ n: number }]];
      const [[sum]] = (await conn.query(`CHECKSUM TABLE ${conn.escapeId(table)}`)) as unknown as [[{ Checksum: number | string | null }]];
      out.push({ table, rows: Number(count.n), checksum: String(sum.Checksum) });
    }
    return out;
  } finally {
    await conn.end();
  }
}

/** Row counts and checksums per table must match on both sides; otherwise the copy is refused. */
export async function verifyDatabaseCopy(from: { url: string; database: string }, to: { url: string; database: string }): Promise<TableReport[]> {
  const [a, b] = await Promise.all([tableReports(from.url, from.database), tableReports(to.url, to.database)]);
  const key = (r: TableReport): string => `${r.table}:${r.rows}:${r.checksum}`;
  const left = a.map(key).join("\n");
  const right = b.map(key).join("\n");
  if (left !== right) {
    throw new ProgramError(`database copy does not verify: source [${a.map(key).join(", ")}] target [${b.map(key).join(", ")}]`);
  }
  return a;
}

async function fileDigests(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile()) {
        const s = await stat(full);
        out.set(
          path.relative(root, full),
          `${s.size}:${createHash("sha256")
            .update(await readFile(full))
            .digest("hex")}`,
        );
      }
    }
  };
  await walk(root);
  return out;
}

export async function copyDirectory(from: string, to: string): Promise<number> {
  await mkdir(to, { recursive: true, mode: 0o700 });
  await cp(from, to, { recursive: true, force: true, errorOnExist: false });
  return (await fileDigests(to)).size;
}

export async function verifyDirectoryCopy(from: string, to: string): Promise<number> {
  const [a, b] = await Promise.all([fileDigests(from), fileDigests(to)]);
  for (const [file, digest] of a) {
    if (b.get(file) !== digest) throw new ProgramError(`attachment ${file} differs after the copy`);
  }
  return a.size;
}

/** Copies keys under `prefix` between two Redis servers (nothing to do when both are the same server). */
export async function copyCacheKeys(fromUrl: string, toUrl: string, prefix: string): Promise<number> {
  if (!/^[a-z]:[a-z0-9-]+:$/.test(prefix)) throw new ProgramError("refusing to copy cache keys with an unexpected prefix");
  if (fromUrl === toUrl) return 0;
  const src = new Redis(fromUrl, { lazyConnect: true });
  const dst = new Redis(toUrl, { lazyConnect: true });
  await Promise.all([src.connect(), dst.connect()]);
  let copied = 0;
  try {
    let cursor = "0";
    do {
      const [next, keys] = await src.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      cursor = next;
      for (const key of keys) {
        const [dump, ttl] = await Promise.all([src.dumpBuffer(key), src.pttl(key)]);
        if (!dump) continue;
        await dst.restore(key, ttl > 0 ? ttl : 0, dump, "REPLACE");
        copied++;
      }
    } while (cursor !== "0");
  } finally {
    src.disconnect();
    dst.disconnect();
  }
  return copied;
}
