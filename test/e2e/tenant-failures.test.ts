// Issue 11, finding 4: tenant ids that would break a derived name are refused at the edge before
// anything exists, and a provision that fails after its stack ran never forgets what it created:
// the record stays `failed`, the API shows it, and DELETE cleans it up. Finding 7 (files): a
// deprovision removes the tenant's function files and the bundles only it referenced.
// Real MariaDB, Redis, git and Pulumi engine; the one failure is injected through the GitOps
// writer the service is given (a commit of the failing tenant's manifests is refused).
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManifestInvalidError } from "../../core/errors.ts";
import { logicalNames } from "../../core/naming.ts";
import { LocalGitWriter } from "../../worker/gitops/local-git-writer.ts";
import type { GitOpsChange, GitOpsWriter } from "../../worker/gitops/writer.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";
import { functionZip } from "../support/zip-builder.ts";

let h: Harness;
let db: mysql.Connection;
let redis: Redis;
const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-failures-"));
const tag = Math.random().toString(36).slice(2, 7);
const ids = { broken: `tf-x-${tag}`, a: `tf-a-${tag}`, b: `tf-b-${tag}` };

/** The real writer, except that it refuses to commit the broken tenant's manifests, as an invalid manifest would be. */
function refusingWriter(inner: GitOpsWriter, refused: string): GitOpsWriter {
  return {
    source: inner.source,
    readFile: (file) => inner.readFile(file),
    listFiles: (prefix) => inner.listFiles(prefix),
    commit: async (change: GitOpsChange) => {
      if (Object.entries(change.files).some(([file, text]) => file.startsWith(`tenants/${refused}/`) && text !== null)) {
        throw new ManifestInvalidError(`tenants/${refused}/application.yaml: injected by the test: the manifest does not validate`);
      }
      return inner.commit(change);
    },
  };
}

async function databaseExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [name]);
  return rows.length === 1;
}

async function userExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SELECT 1 FROM mysql.user WHERE User = ?", [name]);
  return rows.length > 0;
}

async function aclUserExists(name: string): Promise<boolean> {
  return ((await redis.call("ACL", "USERS")) as string[]).includes(name);
}

async function provision(id: string): Promise<void> {
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect(res.status).toBe(202);
  const job = await h.waitForJob(res.body.jobId);
  expect(job.state, String(job.error)).toBe("succeeded");
}

beforeAll(async () => {
  const writer = refusingWriter(new LocalGitWriter({ repo: path.join(dataDir, "gitops.git"), dataDir }), ids.broken);
  h = await startHarness({ dataDir, writer });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  await h?.close();
  redis?.disconnect();
  await db?.end();
  await dropTenantLeftovers(Object.values(ids));
  rmSync(dataDir, { recursive: true, force: true });
});

describe("finding 4: tenant ids and failed provisions", () => {
  it("refuses with 400, before anything exists, an id that some derived name could not carry", async () => {
    const before = await h.service.queue?.queue.getJobCounts("waiting", "active", "delayed", "completed", "failed");
    for (const id of ["sp--", `sp-${tag}-`, "ab-", "a", "a-", `a${"b".repeat(40)}`, "1ab", "Ab-c"]) {
      const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
      expect(res.status, id).toBe(400);
      expect(res.body.field, id).toBe("id");
    }
    expect(await h.service.queue?.queue.getJobCounts("waiting", "active", "delayed", "completed", "failed")).toEqual(before);
    expect((await h.request("GET", "/v1/tenants")).body.tenants.map((t: { id: string }) => t.id)).not.toContain("sp--");
    expect(existsSync(path.join(dataDir, "attachments", "tenants", "sp--"))).toBe(false);
  });

  it("keeps the record of a provision that failed after up, shows it, and DELETE removes what it created", async () => {
    const id = ids.broken;
    const names = logicalNames("tenant", id);
    const dir = path.join(dataDir, "attachments", names.attachmentsDir);
    const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect(res.status).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(/^manifest_invalid: /);
    expect(job.attempts).toBe(1);

    // The stack ran: everything it created is still there, and the record says so.
    expect(await databaseExists(names.database)).toBe(true);
    expect(await userExists(names.dbUser)).toBe(true);
    expect(await aclUserExists(names.cacheUser)).toBe(true);
    expect(existsSync(dir)).toBe(true);
    const shown = await h.request("GET", `/v1/tenants/${id}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({
      id,
      state: "failed",
      failure: { job: "tenant.provision", jobId: res.body.jobId, stack: `tenant-${id}`, tier: "pool" },
    });
    expect(shown.body.failure.error).toMatch(/^manifest_invalid: /);
    // The id stays taken, and the failed tenant is not changed as if it were live.
    expect((await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" })).status).toBe(409);
    expect((await h.request("POST", `/v1/tenants/${id}/upgrade`, { version: "1.1.0" })).status).toBe(409);

    const del = await h.request("DELETE", `/v1/tenants/${id}`);
    expect(del.status).toBe(202);
    const gone = await h.waitForJob(del.body.jobId);
    expect(gone.state, String(gone.error)).toBe("succeeded");
    expect(await databaseExists(names.database)).toBe(false);
    expect(await userExists(names.dbUser)).toBe(false);
    expect(await aclUserExists(names.cacheUser)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect((await h.request("GET", `/v1/tenants/${id}`)).status).toBe(404);
  });
});

describe("finding 7: deprovision removes the tenant's files", () => {
  it("deletes the tenant's function versions and the bundles only it referenced, after the final backup", async () => {
    await provision(ids.a);
    await provision(ids.b);
    const shared = functionZip(`export const handler = async () => "shared ${tag}";\n`);
    const own = functionZip(`export const handler = async () => "own ${tag}";\n`);
    const put = async (id: string, name: string, code: Buffer): Promise<string> => {
      const res = await h.request("PUT", `/v1/tenants/${id}/functions/${name}`, { handler: "index.handler", code: code.toString("base64") });
      expect(res.status).toBe(202);
      const job = await h.waitForJob(res.body.jobId);
      expect(job.state, String(job.error)).toBe("succeeded");
      return res.body.bundleSha256 as string;
    };
    const sharedSha = await put(ids.a, "hook", shared);
    const ownSha = await put(ids.a, "report", own);
    expect(await put(ids.b, "hook", shared)).toBe(sharedSha);
    // Bundles are kept per tenant in the blob store (issue 14): the same bytes are stored once per tenant.
    const bundles = (id: string): string => path.join(dataDir, "blobs", "tenants", id, "bundles");
    expect(readdirSync(bundles(ids.a))).toEqual(expect.arrayContaining([sharedSha, ownSha]));
    expect(readdirSync(bundles(ids.b))).toEqual([sharedSha]);

    const del = await h.request("DELETE", `/v1/tenants/${ids.a}`);
    const job = await h.waitForJob(del.body.jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(existsSync(path.join(dataDir, "functions", ids.a))).toBe(false);
    expect(existsSync(path.join(bundles(ids.a), ownSha))).toBe(false);
    expect(existsSync(path.join(bundles(ids.a), sharedSha))).toBe(false);
    expect(existsSync(path.join(dataDir, "blobs", "tenants", ids.a, "functions"))).toBe(false);
    // Tenant B still has its version of the same bytes, and its own stored bundle stays.
    expect(existsSync(path.join(bundles(ids.b), sharedSha))).toBe(true);
    expect(existsSync(path.join(dataDir, "functions", ids.b, "hook", "v1", "bundle.zip"))).toBe(true);
    const order = ["final backup", "function files removed", "stack destroy"].map((s) => job.progress.findIndex((l) => l.includes(s)));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });
});
