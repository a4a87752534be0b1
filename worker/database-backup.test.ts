// Issue 11 finding 1 in the backup code: whether a tenant's database exists is an exact comparison,
// not a LIKE pattern in which `_` matches any character. And a dump that fails (the tool missing,
// refused, cut short) leaves nothing in the blob store that looks like a backup, and says why.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBlobStore, type BlobStore } from "../core/blob-store.ts";
import { ProgramError } from "../core/errors.ts";
import { TEST_MYSQL_URL } from "../test/support/services.ts";
import { databaseExists, dumpDatabase, listBackups } from "./database-backup.ts";

const sfx = `b${randomBytes(3).toString("hex")}`;
const other = `t_${sfx}xab`;
const tenantId = `bk-${sfx}`;
const scratch = mkdtempSync(path.join(tmpdir(), "stackrail-backup-"));
const root = path.join(scratch, "blobs");
let admin: mysql.Connection;
let blobs: BlobStore;

beforeAll(async () => {
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await admin.query(`CREATE DATABASE \`${other}\``);
  await admin.query(`CREATE TABLE \`${other}\`.t (id INT PRIMARY KEY)`);
  blobs = createBlobStore({ kind: "file", root });
});
afterAll(async () => {
  await admin.query(`DROP DATABASE IF EXISTS \`${other}\``);
  await admin.end();
  rmSync(scratch, { recursive: true, force: true });
});

/** Every file under the store's root, temp files included. */
const filesOnDisk = (): string[] => {
  try {
    return readdirSync(root, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.join(e.parentPath, e.name));
  } catch {
    return [];
  }
};

describe("issue 11 finding 1: backup existence check", () => {
  it("tenant <sfx>-ab's database does not exist because <sfx>xab's does", async () => {
    expect(await databaseExists(TEST_MYSQL_URL, `t_${sfx}_ab`)).toBe(false);
    expect(await databaseExists(TEST_MYSQL_URL, other)).toBe(true);
  });
});

describe("a dump that fails stores nothing and says why", () => {
  it("mysqldump missing from PATH: the job's error names the tool and ENOENT, no backup object", async () => {
    const saved = process.env.PATH;
    process.env.PATH = path.join(scratch, "no-tools-here");
    try {
      const attempt = dumpDatabase({ mysqlUrl: TEST_MYSQL_URL, database: other, tenantId, blobs });
      await expect(attempt).rejects.toBeInstanceOf(ProgramError);
      await expect(attempt).rejects.toThrow(/database dump failed: mysqldump could not be run \(ENOENT\)/);
    } finally {
      process.env.PATH = saved;
    }
    expect(await listBackups(blobs, tenantId)).toEqual([]);
    expect(filesOnDisk()).toEqual([]);
  });

  it("a wrong password: the tool's refusal is the error, no backup object", async () => {
    const url = new URL(TEST_MYSQL_URL);
    url.password = "not-the-password";
    await expect(dumpDatabase({ mysqlUrl: url.toString(), database: other, tenantId, blobs })).rejects.toThrow(
      /database dump failed \(exit \d+\): .*Access denied/,
    );
    expect(await listBackups(blobs, tenantId)).toEqual([]);
    expect(filesOnDisk()).toEqual([]);
  });

  it("a dump cut short after writing output is not published", async () => {
    const tool = path.join(scratch, "dump-cut-short.sh");
    writeFileSync(tool, '#!/bin/sh\nhead -c 200000 /dev/urandom\necho "lost connection" >&2\nexit 3\n');
    chmodSync(tool, 0o755);
    await expect(dumpDatabase({ mysqlUrl: TEST_MYSQL_URL, database: other, tenantId, blobs, command: tool })).rejects.toThrow(
      /database dump failed \(exit 3\): lost connection/,
    );
    expect(await listBackups(blobs, tenantId)).toEqual([]);
    expect(filesOnDisk()).toEqual([]);
  });

  it("a clean-up that fails is named in the error", async () => {
    const failingDelete: BlobStore = { ...blobs, delete: () => Promise.reject(Object.assign(new Error("denied"), { name: "AccessDenied" })) };
    await expect(dumpDatabase({ mysqlUrl: TEST_MYSQL_URL, database: `t_${sfx}_missing`, tenantId, blobs: failingDelete })).rejects.toThrow(
      /database dump failed \(exit \d+\): .*; the partial backup tenants\/.+\.sql\.gz could not be removed \(AccessDenied\): remove it by hand/,
    );
  });

  it("a good dump is published", async () => {
    const written = await dumpDatabase({ mysqlUrl: TEST_MYSQL_URL, database: other, tenantId, blobs });
    expect(await listBackups(blobs, tenantId)).toEqual([written]);
    expect(written.bytes).toBeGreaterThan(0);
  });
});
