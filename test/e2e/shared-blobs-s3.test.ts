// Issue 14 §1: what a job must find on another machine lives in the blob store, here a real
// S3-compatible server (gofakes3, tools/s3-server) spoken to with the AWS SDK. The API stores an
// uploaded bundle in the bucket, never on its own disk; worker processes with data dirs of their
// own deploy it from the bucket and find the function's versions there; a final backup is written
// to the tenant's folder and read back; a tenant id that tries to leave its folder is refused at
// the edge and nothing is written.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blobKeys, createBlobStore, type BlobStore } from "../../core/blob-store.ts";
import { parseBlobUrl } from "../../core/blob-url.ts";
import { TenantIndex } from "../../core/tenant-index.ts";
import { backupsByTenant, dumpDatabase, listBackups, readBackup } from "../../worker/database-backup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { waitUntil } from "../support/private-services.ts";
import { S3_TEST_CREDENTIALS, startS3Server, type S3TestServer } from "../support/s3-server.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";
import { startWorkerProcess, type WorkerProcess } from "../support/worker-process.ts";
import { functionZip } from "../support/zip-builder.ts";

const BUCKET = "stackrail-shared";
const tag = randomBytes(3).toString("hex");
const id = `blob-${tag}`;
const parent = mkdtempSync(path.join(tmpdir(), "stackrail-s3blobs-"));
const saved = { ...process.env };
let s3: S3TestServer;
let h: Harness;
let bucket: BlobStore;
let redis: Redis;
const workers: WorkerProcess[] = [];

function startWorker(name: string): WorkerProcess {
  const dataDir = path.join(parent, name);
  const w = startWorkerProcess(
    {
      ...h.env,
      ...S3_TEST_CREDENTIALS,
      // A machine of its own: nothing of the API's disk is shared but the GitOps repository and state,
      // which these jobs do not touch.
      STACKRAIL_DATA_DIR: dataDir,
      PULUMI_BACKEND_URL: h.config.pulumiBackendUrl,
      GITOPS_REPO: h.config.gitopsRepo,
      LOG_LEVEL: "info",
    },
    { name, logFile: path.join(parent, `${name}.log`) },
  );
  workers.push(w);
  return w;
}

beforeAll(async () => {
  Object.assign(process.env, S3_TEST_CREDENTIALS);
  s3 = await startS3Server({ buckets: [BUCKET] });
  const blobUrl = s3.blobUrl(BUCKET, "install-1");
  h = await startHarness({ role: "api", dataDir: path.join(parent, "api"), env: { STACKRAIL_BLOB_URL: blobUrl } });
  bucket = createBlobStore(parseBlobUrl(blobUrl));
  redis = new Redis(TEST_REDIS_URL);
  // An active tenant (its stack is not what this test is about): recorded as a provision would.
  const tenants = new TenantIndex(redis, h.config.queuePrefix);
  expect((await tenants.claimProvision({ id, region: "eu-west-1", tier: "pool", version: "1.0.0" })).ok).toBe(true);
  await tenants.recordOutputs(id, {});
});

afterAll(async () => {
  for (const w of workers) await w.killAll();
  redis?.disconnect();
  await h?.close();
  await s3?.stop();
  rmSync(parent, { recursive: true, force: true });
  for (const k of Object.keys(S3_TEST_CREDENTIALS)) if (saved[k] === undefined) delete process.env[k];
});

describe("tenant code bundles through S3", () => {
  it("the API stores the upload in the tenant's folder of the bucket; a worker on another data dir deploys it from there", async () => {
    const code = functionZip(`export const handler = async () => "v1 ${tag}";\n`);
    const res = await h.request("PUT", `/v1/tenants/${id}/functions/hook`, { handler: "index.handler", code: code.toString("base64") });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const sha = res.body.bundleSha256 as string;
    expect((await bucket.get(blobKeys.bundle(id, sha)))?.equals(code)).toBe(true);
    // Nothing of it on the API's disk.
    expect(existsSync(path.join(h.dataDir, "blobs"))).toBe(false);
    expect(existsSync(path.join(h.dataDir, "bundles"))).toBe(false);

    const first = startWorker("worker-a");
    await first.ready();
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(job.result).toMatchObject({ tenantId: id, name: "hook", version: 1, sha256: sha, changed: true });
    const record = JSON.parse((await bucket.get(`tenants/${id}/functions/hook/v1.json`))?.toString() ?? "null") as Record<string, unknown>;
    expect(record).toMatchObject({ version: 1, sha256: sha, handler: "index.handler", jobId: res.body.jobId });
    // The worker's own copy (Pulumi reads archives from a path) holds the uploaded bytes.
    expect(readFileSync(path.join(parent, "worker-a", "functions", id, "hook", "v1", "bundle.zip")).equals(code)).toBe(true);
    await first.killAll();
  });

  it("a second worker that never saw the first version finds it in the bucket: the same upload is no new version, a new one is v2", async () => {
    const second = startWorker("worker-b");
    await second.ready();
    const again = await h.request("PUT", `/v1/tenants/${id}/functions/hook`, {
      handler: "index.handler",
      code: functionZip(`export const handler = async () => "v1 ${tag}";\n`).toString("base64"),
    });
    const same = await h.waitForJob(again.body.jobId);
    expect(same.state, JSON.stringify(same.error)).toBe("succeeded");
    expect(same.result).toMatchObject({ version: 1, changed: false });

    const v2 = functionZip(`export const handler = async () => "v2 ${tag}";\n`);
    const next = await h.request("PUT", `/v1/tenants/${id}/functions/hook`, { handler: "index.handler", code: v2.toString("base64") });
    const done = await h.waitForJob(next.body.jobId);
    expect(done.state, JSON.stringify(done.error)).toBe("succeeded");
    expect(done.result).toMatchObject({ version: 2, changed: true, sha256: next.body.bundleSha256 });
    expect((await bucket.list(`tenants/${id}/functions/hook/`)).map((e) => e.key)).toEqual([
      `tenants/${id}/functions/hook/v1.json`,
      `tenants/${id}/functions/hook/v2.json`,
    ]);
    expect(readFileSync(path.join(parent, "worker-b", "functions", id, "hook", "v2", "bundle.zip")).equals(v2)).toBe(true);
    await second.killAll();
  });

  it("refuses at the edge a tenant id or function name that would leave the tenant's folder, and writes nothing", async () => {
    const before = (await bucket.list("tenants/")).map((e) => e.key);
    const code = functionZip("export const handler = async () => 1;\n").toString("base64");
    for (const [url, field] of [
      [`/v1/tenants/..%2F${id}/functions/hook`, "id"],
      [`/v1/tenants/${id}%2F..%2Fother/functions/hook`, "id"],
      [`/v1/tenants/..%2F..%2Fetc/functions/hook`, "id"],
      [`/v1/tenants/${id}/functions/..%2F..%2Fbackups`, "name"],
      [`/v1/tenants/${id.toUpperCase()}/functions/hook`, "id"],
    ] as const) {
      const res = await h.request("PUT", url, { handler: "index.handler", code });
      expect(res.status, url).toBe(400);
      expect(res.body, url).toMatchObject({ field });
    }
    expect((await bucket.list("tenants/")).map((e) => e.key)).toEqual(before);
    // Every object the installation wrote is inside a tenant's folder of a valid tenant id.
    for (const key of before) expect(key).toMatch(/^tenants\/[a-z][a-z0-9-]{1,38}[a-z0-9]\/(bundles|functions|backups)\//);
  });
});

describe("final backups through S3", () => {
  const database = `t_${id.replace(/-/g, "_")}`;
  let admin: mysql.Connection;

  beforeAll(async () => {
    admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
    await admin.query(`CREATE DATABASE \`${database}\``);
    await admin.query(`CREATE TABLE \`${database}\`.invoices (id INT PRIMARY KEY, note VARCHAR(64))`);
    await admin.query(`INSERT INTO \`${database}\`.invoices VALUES (1, 'backup-${tag}')`);
  });
  afterAll(async () => {
    await admin?.query(`DROP DATABASE IF EXISTS \`${database}\``);
    await admin?.end();
  });

  it("streams the dump into the tenant's backups folder and reads it back from any machine", async () => {
    const written = await dumpDatabase({ mysqlUrl: TEST_MYSQL_URL, database, tenantId: id, blobs: bucket });
    expect(written.file).toMatch(new RegExp(`^tenants/${id}/backups/${database}-.+\\.sql\\.gz$`));
    expect(written.bytes).toBeGreaterThan(0);
    // Another process's store over the same bucket sees it.
    const elsewhere = createBlobStore(parseBlobUrl(s3.blobUrl(BUCKET, "install-1")));
    expect(await listBackups(elsewhere, id)).toEqual([written]);
    expect((await backupsByTenant(elsewhere)).get(id)).toEqual({ files: 1, bytes: written.bytes });
    const stream = await readBackup(elsewhere, written.file);
    let sql = "";
    for await (const c of stream ?? []) sql += (c as Buffer).toString();
    expect(sql).toContain(`CREATE DATABASE`);
    expect(sql).toContain(`backup-${tag}`);
  });

  it("a failed dump leaves no object that looks like a backup", async () => {
    await expect(dumpDatabase({ mysqlUrl: TEST_MYSQL_URL, database: `t_missing_${tag}`, tenantId: id, blobs: bucket })).rejects.toThrow(/dump failed/);
    await waitUntil("the failed dump's object to be gone", async () => (await listBackups(bucket, id)).every((b) => !b.file.includes("missing")), 10_000);
    expect(readdirSync(parent).some((f) => f.endsWith(".sql.gz"))).toBe(false);
  });
});

describe("the object store away", () => {
  it("an upload answers 503 (retry later), enqueues nothing, and names no credential", async () => {
    await s3.stop();
    const code = functionZip(`export const handler = async () => "away ${tag}";\n`).toString("base64");
    const res = await h.request("PUT", `/v1/tenants/${id}/functions/away`, { handler: "index.handler", code });
    expect(res.status, JSON.stringify(res.body)).toBe(503);
    expect(JSON.stringify(res.body)).not.toContain(S3_TEST_CREDENTIALS.AWS_SECRET_ACCESS_KEY);
    const jobs = await h.request("GET", `/v1/jobs?tenant=${id}`);
    expect(JSON.stringify(jobs.body)).not.toContain('"name":"away"');
  });
});
