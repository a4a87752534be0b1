// The data job's script (programs/aws/data-job-script.ts) run for real, outside its pod: against
// the test MariaDB with a tenant-like user whose password is a canary, and an `aws` stand-in on
// PATH that keeps what it is asked to upload (and refuses an upload without SSE-KMS). A move loads
// the dump into the target and reports equal row counts and CHECKSUM TABLE values on both sides;
// a target that differs is reported as a mismatch (and the pod fails); a backup reports the dump.
// The result parses with the worker's schema, and the canary appears in no output of the script.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_MYSQL_URL, checkMariaDb } from "../../test/support/services.ts";
import { dataJobResultSchema } from "../../worker/aws-data-job.ts";
import { DATA_JOB_SCRIPT } from "./data-job-script.ts";

const CANARY = `Cn${createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 20)}`;
const tag = createHash("sha256").update(`${process.pid}-${Date.now()}`).digest("hex").slice(0, 8);
const SRC = `dj_src_${tag}`;
const USER = `dj_${tag}`;
let root: string;
let admin: mysql.Connection;
const created: string[] = [];

/** The `aws` CLI as far as the script uses it: `aws s3 cp FILE s3://BUCKET/KEY --sse aws:kms ...`. */
const FAKE_AWS = [
  "#!/bin/sh",
  '[ "$1" = s3 ] && [ "$2" = cp ] || exit 2',
  'case " $* " in *" --sse aws:kms --sse-kms-key-id "*) ;; *) echo "upload without SSE-KMS" >&2; exit 3 ;; esac',
  'dst="$FAKE_S3/$(printf %s "$4" | sed "s#^s3://##")"',
  'mkdir -p "$(dirname "$dst")" && cp "$3" "$dst"',
  "",
].join("\n");

beforeAll(async () => {
  await checkMariaDb();
  root = mkdtempSync(path.join(tmpdir(), "stackrail-data-script-"));
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL, multipleStatements: true });
  const url = new URL(TEST_MYSQL_URL);
  await admin.query(`CREATE DATABASE ${SRC}`);
  created.push(SRC);
  await admin.query(
    `USE ${SRC};
     CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(80));
     CREATE TABLE orders (id INT PRIMARY KEY, user_id INT, total DECIMAL(10,2), note BLOB);
     INSERT INTO users VALUES (1,'Ann','a@example.com'),(2,'Bo\\'b','b@example.com'),(3,'Cé','c@example.com');
     INSERT INTO orders VALUES (1,1,10.50,X'00FF10'),(2,3,99.99,NULL);
     CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 50;`,
  );
  // The tenant's own user, as on aws: its password is the canary.
  await admin.query(`CREATE USER '${USER}'@'%' IDENTIFIED BY '${CANARY}'`);
  await admin.query(`GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES ON ${SRC}.* TO '${USER}'@'%'`);
  writeFileSync(
    path.join(root, "cnf"),
    ["[client]", `host=${url.hostname}`, `port=${url.port || "3306"}`, `user=${USER}`, `password="${CANARY}"`, ""].join("\n"),
    { mode: 0o600 },
  );
  mkdirSync(path.join(root, "bin"));
  writeFileSync(path.join(root, "bin", "aws"), FAKE_AWS);
  chmodSync(path.join(root, "bin", "aws"), 0o755);
  writeFileSync(path.join(root, "data-job.sh"), DATA_JOB_SCRIPT);
});

afterAll(async () => {
  for (const db of created) await admin?.query(`DROP DATABASE IF EXISTS ${db}`);
  await admin?.query(`DROP USER IF EXISTS '${USER}'@'%'`);
  await admin?.end();
  if (root) rmSync(root, { recursive: true, force: true });
});

async function targetDatabase(name: string, extra?: string): Promise<string> {
  const db = `dj_${name}_${tag}`;
  await admin.query(`CREATE DATABASE ${db}`);
  created.push(db);
  await admin.query(`GRANT ALL ON ${db}.* TO '${USER}'@'%'`);
  if (extra) await admin.query(`USE ${db}; ${extra}`);
  return db;
}

function runJob(name: string, mode: "move" | "backup", target: string) {
  const dir = path.join(root, name);
  const credentials = path.join(dir, "credentials");
  mkdirSync(path.join(dir, "work"), { recursive: true });
  mkdirSync(credentials);
  writeFileSync(path.join(credentials, "source.cnf"), readFileSync(path.join(root, "cnf")));
  writeFileSync(path.join(credentials, "target.cnf"), readFileSync(path.join(root, "cnf")));
  const env = {
    PATH: `${path.join(root, "bin")}:${process.env.PATH ?? ""}`,
    HOME: dir,
    WORK_DIR: path.join(dir, "work"),
    CREDENTIALS_DIR: credentials,
    DUMP_FLAVOUR_OPTIONS: "", // MariaDB's dump tool has no GTID option
    FAKE_S3: path.join(dir, "s3"),
    RUN_ID: `run-${name}`,
    TENANT: "acme",
    MODE: mode,
    SOURCE_DATABASE: SRC,
    TARGET_DATABASE: target,
    BUCKET: "region-bucket",
    KMS_KEY_ARN: "arn:aws:kms:eu-west-1:123456789012:key/k",
    BACKUP_KEY: `tenants/acme/backups/${SRC}-x.sql.gz`,
    RESULT_KEY: `tenants/acme/data-jobs/run-${name}.json`,
  };
  const script = path.join(root, "data-job.sh");
  const dump = spawnSync("sh", [script, "dump"], { env, encoding: "utf8" });
  const upload = spawnSync("sh", [script, "upload"], { env, encoding: "utf8" });
  const s3 = (key: string): string => path.join(env.FAKE_S3, env.BUCKET, key);
  const text = existsSync(s3(env.RESULT_KEY)) ? readFileSync(s3(env.RESULT_KEY), "utf8") : "";
  const output = [dump.stdout, dump.stderr, upload.stdout, upload.stderr].join("\n");
  return { dump, upload, text, output, backupFile: s3(env.BACKUP_KEY), env };
}

describe("data job script (real MariaDB, aws stand-in)", () => {
  it("move: the dump loads into the target; rows and CHECKSUM TABLE agree; backup and result uploaded with SSE-KMS", async () => {
    const target = await targetDatabase("dst");
    const r = runJob("move", "move", target);
    expect(r.dump.status, r.output).toBe(0);
    expect(r.upload.status, r.output).toBe(0);
    const result = dataJobResultSchema.parse(JSON.parse(r.text));
    if (result.status === "failed") throw new Error(`unexpected failure: ${result.reason}`);
    expect(result).toMatchObject({ runId: "run-move", tenant: "acme", mode: "move", status: "ok", reason: null });
    expect(result.source.tables.map((t) => [t.table, t.rows])).toEqual([
      ["orders", 2],
      ["users", 3],
    ]);
    expect(result.source.tables.every((t) => /^\d+$/.test(t.checksum))).toBe(true);
    expect(result.target?.tables).toEqual(result.source.tables);
    const [rows] = await admin.query<mysql.RowDataPacket[]>(`SELECT name FROM ${target}.users ORDER BY id`);
    expect(rows.map((row) => String(row.name))).toEqual(["Ann", "Bo'b", "Cé"]);
    // The backup: the source's dump, gzip, as reported.
    const backup = readFileSync(r.backupFile);
    expect(result.backup).toEqual({ key: r.env.BACKUP_KEY, bytes: backup.length, sha256: createHash("sha256").update(backup).digest("hex") });
    expect(gunzipSync(backup).toString("utf8")).toContain("CREATE TABLE `users`");
    expect(r.output + r.text).not.toContain(CANARY);
  });

  it("a target that differs from the source is a mismatch: reported, and the pod fails", async () => {
    const target = await targetDatabase("bad", "CREATE TABLE zz_extra (id INT PRIMARY KEY); INSERT INTO zz_extra VALUES (1);");
    const r = runJob("mismatch", "move", target);
    expect(r.upload.status, r.output).not.toBe(0);
    const result = dataJobResultSchema.parse(JSON.parse(r.text));
    expect(result.status).toBe("mismatch");
    if (result.status === "mismatch") expect(result.target?.tables.map((t) => t.table)).toContain("zz_extra");
    expect(r.output + r.text).not.toContain(CANARY);
  });

  it("a load that fails is reported as failed with a static reason", () => {
    const r = runJob("noload", "move", `dj_missing_${tag}`);
    expect(r.upload.status).not.toBe(0);
    const result = dataJobResultSchema.parse(JSON.parse(r.text));
    expect(result).toMatchObject({ status: "failed", reason: "loading the dump into the target database failed" });
    expect(r.output + r.text).not.toContain(CANARY);
  });

  it("backup: the dump and the source's tables, no target", () => {
    const r = runJob("backup", "backup", "");
    expect(r.upload.status, r.output).toBe(0);
    const result = dataJobResultSchema.parse(JSON.parse(r.text));
    expect(result).toMatchObject({ mode: "backup", status: "ok", target: null, backup: { key: r.env.BACKUP_KEY } });
    expect(existsSync(r.backupFile)).toBe(true);
  });
});
