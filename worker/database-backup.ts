// Final backups before a tenant's data resources are destroyed (local target): a compressed
// logical dump written with the server's own dump tool and streamed, gzip on the fly, into the blob
// store under the tenant's own folder (`tenants/<id>/backups/<database>-<time>.sql.gz`), so that a
// backup outlives the worker that took it and is read back from any machine (issue 14 §1). The
// password travels in the child's environment (MYSQL_PWD), never on a command line or in a log.
//
// A backup appears only once the dump tool exited 0: the compressed stream ends in a gate that
// waits for the tool's exit and fails the write otherwise, and the blob store publishes a write
// only when its stream ends cleanly (the file store renames its temp file into place, S3 sends
// the object or completes its multipart upload only then). A tool that is missing, refused or
// killed leaves nothing that looks like a backup; anything left anyway is removed, and a removal
// that fails is logged and named in the job's error.
import { spawn } from "node:child_process";
import { Transform, type Readable } from "node:stream";
import { createGunzip, createGzip } from "node:zlib";
import mysql from "mysql2/promise";
import { blobKeys, type BlobStore } from "../core/blob-store.ts";
import { ProgramError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";

export interface BackupResult {
  /** The backup's key in the blob store. */
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

/** The dump tool: `mysqldump` on PATH (tests name another). */
export const DUMP_COMMAND = "mysqldump";

export async function dumpDatabase(options: {
  mysqlUrl: string;
  database: string;
  tenantId: string;
  blobs: BlobStore;
  now?: Date;
  logger?: Logger;
  /** The dump tool (default `mysqldump`, found on PATH). */
  command?: string;
}): Promise<BackupResult> {
  if (!SQL_NAME.test(options.database)) throw new ProgramError("refusing to dump a database with an unexpected name");
  const url = new URL(options.mysqlUrl);
  const stamp = (options.now ?? new Date()).toISOString().replace(/[:.]/g, "-");
  // A dump holds every row of the tenant: it goes only inside the tenant's own folder.
  const key = blobKeys.backup(options.tenantId, `${options.database}-${stamp}.sql.gz`);
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
  const command = options.command ?? DUMP_COMMAND;
  const child = spawn(command, args, {
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
  // Observed here so that a tool that never started is not an unhandled rejection; awaited below.
  exited.catch(() => undefined);
  /** Why the dump failed, once known: what the job's error says, whatever the write saw. */
  let dumpFailure: ProgramError | undefined;
  const failure = (err: unknown): ProgramError => {
    const code = (err as NodeJS.ErrnoException).code;
    dumpFailure ??= new ProgramError(`database dump failed: ${command} could not be run (${code ?? (err instanceof Error ? err.name : "error")})`, {
      cause: err,
    });
    return dumpFailure;
  };
  const gzip = createGzip();
  // The stream's end is held until the tool's exit is known: a dump that did not exit 0 fails the write.
  const gate = new Transform({
    transform(chunk: Buffer, _enc, done) {
      done(null, chunk);
    },
    flush(done) {
      exited.then(
        (code) => done(code === 0 ? null : (dumpFailure ??= new ProgramError(`database dump failed (exit ${code}): ${stderr.trim()}`))),
        (err: unknown) => done(failure(err)),
      );
    },
  });
  child.on("error", (err) => gzip.destroy(failure(err)));
  child.stdout.on("error", (err) => gzip.destroy(err));
  gzip.on("error", (err) => gate.destroy(err));
  // The store's write reports the gate's error; this only keeps one raised before it reads from being unhandled.
  gate.on("error", () => undefined);
  child.stdout.pipe(gzip).pipe(gate);
  let written: { bytes: number };
  try {
    written = await options.blobs.putStream(key, gate);
  } catch (err) {
    child.kill("SIGKILL");
    await exited.catch(() => undefined);
    // The tool's own failure when there was one; otherwise the store's (a transient S3 error stays transient).
    const cause: unknown = dumpFailure ?? err;
    // A failed dump is not a backup: nothing must sit beside good ones looking like one.
    const removed = await options.blobs.delete(key).then(
      () => null,
      (e: unknown) => e,
    );
    if (removed !== null) {
      const type = removed instanceof Error ? removed.name : "error";
      options.logger?.error({ key, errorType: type }, "a failed database dump could not be removed from the blob store");
      throw new ProgramError(
        `${cause instanceof Error ? cause.message : "database dump failed"}; the partial backup ${key} could not be removed (${type}): remove it by hand`,
        { cause },
      );
    }
    throw cause;
  }
  return { file: key, bytes: written.bytes };
}

/** A tenant's backups, oldest first (keys and sizes; names sort by time). */
export async function listBackups(blobs: BlobStore, tenantId: string): Promise<{ file: string; bytes: number }[]> {
  return (await blobs.list(blobKeys.backups(tenantId))).map((e) => ({ file: e.key, bytes: e.size }));
}

/** A backup's SQL, decompressed, as a stream (for a restore), or null when there is none. */
export async function readBackup(blobs: BlobStore, file: string): Promise<Readable | null> {
  const stream = await blobs.getStream(file);
  return stream === null ? null : stream.pipe(createGunzip());
}

/**
 * Every tenant's backups in the blob store (`tenants/<id>/backups/`), by tenant id: what the orphan
 * audit lists as retained (backups outlive their tenant on purpose).
 */
export async function backupsByTenant(blobs: BlobStore): Promise<Map<string, { files: number; bytes: number }>> {
  const out = new Map<string, { files: number; bytes: number }>();
  for (const e of await blobs.list("tenants/")) {
    const m = /^tenants\/([^/]+)\/backups\/[^/]+$/.exec(e.key);
    if (!m?.[1]) continue;
    const sum = out.get(m[1]) ?? { files: 0, bytes: 0 };
    out.set(m[1], { files: sum.files + 1, bytes: sum.bytes + e.size });
  }
  return out;
}
