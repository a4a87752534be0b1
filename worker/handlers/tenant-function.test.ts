// Function code stored before the blob store (issue 14 §1): bundles under the data dir
// (`bundles/<sha256>`) and versions as `functions/<id>/<name>/v<n>/`. A job queued before the
// upgrade still finds its bundle, and the next version follows the last one on disk instead of
// overwriting v1. The handler runs against real files (the local target: no engine).
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { blobKeys, createBlobStore } from "../../core/blob-store.ts";
import { functionZip } from "../../test/support/zip-builder.ts";
import type { JobContext } from "../job-worker.ts";
import { tenantFunctionHandler } from "./tenant-function.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-fn-legacy-"));
const blobs = createBlobStore({ kind: "file", root: path.join(dataDir, "blobs") });
const tenantId = "legacy-fn";
const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const zip = (text: string): Buffer => functionZip(`export const handler = async () => ${JSON.stringify(text)};\n`);

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const handler = tenantFunctionHandler({
  config: { target: "local", dataDir, blobStore: { kind: "file", root: path.join(dataDir, "blobs") } },
  tenants: { get: () => Promise.resolve({ id: tenantId, state: "active", region: "eu-west-1" }) },
  blobs,
} as unknown as TenantHandlerDeps);

function run(name: string, bundle: Buffer, jobId: string): Promise<Record<string, unknown>> {
  const ctx = {
    jobId,
    data: { kind: "tenant.function", tenantId, name, bundleSha256: sha(bundle), handler: "index.handler" },
    attempt: 1,
    signal: new AbortController().signal,
    logger: pino({ level: "silent" }),
    progress: () => Promise.resolve(),
  } as unknown as JobContext<"tenant.function">;
  return handler(ctx);
}

/** What an installation before the blob store left: the upload's bundle, and v1 of the function. */
function legacyFiles(name: string, v1: Buffer): void {
  mkdirSync(path.join(dataDir, "bundles"), { recursive: true });
  writeFileSync(path.join(dataDir, "bundles", sha(v1)), v1);
  const dir = path.join(dataDir, "functions", tenantId, name, "v1");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "bundle.zip"), v1);
  writeFileSync(
    path.join(dir, "function.json"),
    JSON.stringify({ version: 1, sha256: sha(v1), handler: "index.handler", jobId: "job-before-upgrade", deployedAt: "2026-11-01T00:00:00.000Z" }),
  );
}

describe("function code stored before the blob store", () => {
  it("a job queued before the upgrade finds its bundle under the data dir, and copies it into the blob store", async () => {
    const name = "queued-before";
    const code = zip("queued before the upgrade");
    mkdirSync(path.join(dataDir, "bundles"), { recursive: true });
    writeFileSync(path.join(dataDir, "bundles", sha(code)), code);
    expect(await run(name, code, "job-1")).toMatchObject({ version: 1, changed: true });
    expect(await blobs.get(blobKeys.bundle(tenantId, sha(code)))).toEqual(code);
  });

  it("a bundle on disk that does not match its digest is not used", async () => {
    const code = zip("the real one");
    mkdirSync(path.join(dataDir, "bundles"), { recursive: true });
    writeFileSync(path.join(dataDir, "bundles", sha(code)), zip("something else"));
    await expect(run("tampered", code, "job-2")).rejects.toThrow(/is no longer stored/);
  });

  it("the next version of a function deployed before the upgrade is v2, and v1 stays as it was", async () => {
    const name = "deployed-before";
    const v1 = zip("v1 before the upgrade");
    legacyFiles(name, v1);
    // The same bundle again is no change.
    expect(await run(name, v1, "job-3")).toMatchObject({ version: 1, changed: false });
    const v2 = zip("v2 after the upgrade");
    await blobs.put(blobKeys.bundle(tenantId, sha(v2)), v2);
    expect(await run(name, v2, "job-4")).toMatchObject({ version: 2, changed: true });
    const dir = path.join(dataDir, "functions", tenantId, name);
    expect(readFileSync(path.join(dir, "v1", "bundle.zip"))).toEqual(v1);
    expect(JSON.parse(readFileSync(path.join(dir, "v1", "function.json"), "utf8"))).toMatchObject({ version: 1, sha256: sha(v1), jobId: "job-before-upgrade" });
    expect(readFileSync(path.join(dir, "v2", "bundle.zip"))).toEqual(v2);
    // Both versions are in the blob store now, for any other worker.
    expect((await blobs.list(blobKeys.functions(tenantId))).map((e) => e.key)).toEqual(
      expect.arrayContaining([`tenants/${tenantId}/functions/${name}/v1.json`, `tenants/${tenantId}/functions/${name}/v2.json`]),
    );
  });
});
