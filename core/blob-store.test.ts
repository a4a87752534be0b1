// The blob store (issue 14 §1) on both of its backends: a directory, and a real S3-compatible server
// (gofakes3, built by `npm ci` from tools/s3-server) spoken to with the AWS SDK: put/get/delete/list,
// streamed writes large enough to go up in parts, keys confined to their tenant's folder, and
// STACKRAIL_BLOB_URL parsed once with a refusal that names the variable.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3_TEST_CREDENTIALS, startS3Server, type S3TestServer } from "../test/support/s3-server.ts";
import { BlobKeyError, blobKeys, createBlobStore, tenantKey, tenantPrefix, type BlobStore } from "./blob-store.ts";
import { parseBlobUrl } from "./blob-url.ts";
import { loadConfig } from "./config.ts";
import { ConfigError } from "./errors.ts";

let s3: S3TestServer;
const dir = mkdtempSync(path.join(tmpdir(), "stackrail-blobs-"));
const saved = { ...process.env };

beforeAll(async () => {
  Object.assign(process.env, S3_TEST_CREDENTIALS);
  s3 = await startS3Server({ buckets: ["blob-test"] });
});
afterAll(async () => {
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
  for (const k of Object.keys(S3_TEST_CREDENTIALS)) if (saved[k] === undefined) delete process.env[k];
});

const stores: [string, () => BlobStore][] = [
  ["file", () => createBlobStore({ kind: "file", root: dir })],
  ["s3", () => createBlobStore(parseBlobUrl(s3.blobUrl("blob-test", "install-a/blobs")))],
];

describe.each(stores)("%s blob store", (_name, make) => {
  it("puts, gets, lists and deletes by key", async () => {
    const store = make();
    const key = tenantKey("acme", "bundles", "a".repeat(64));
    expect(await store.get(key)).toBeNull();
    expect(await store.exists(key)).toBe(false);
    await store.put(key, Buffer.from("zip bytes"));
    expect((await store.get(key))?.toString()).toBe("zip bytes");
    expect(await store.exists(key)).toBe(true);
    await store.put(tenantKey("acme", "backups", "db-1.sql.gz"), "dump");
    expect((await store.list(tenantPrefix("acme"))).map((e) => [e.key, e.size])).toEqual([
      ["tenants/acme/backups/db-1.sql.gz", 4],
      [`tenants/acme/bundles/${"a".repeat(64)}`, 9],
    ]);
    await store.delete(key);
    await store.delete(key); // a missing object is not an error
    expect(await store.get(key)).toBeNull();
    expect((await store.list(tenantPrefix("acme"))).map((e) => e.key)).toEqual(["tenants/acme/backups/db-1.sql.gz"]);
  });

  it("streams a write of unknown length (17 MiB: three parts on S3) and reads it back as a stream and a file", async () => {
    const store = make();
    const part = randomBytes(1024 * 1024);
    const chunks = Array.from({ length: 17 }, (_, i) => Buffer.concat([part, Buffer.from([i])]).subarray(0, part.length));
    const key = blobKeys.backup("big-one", "t_big_one-2026.sql.gz");
    const { bytes } = await store.putStream(key, Readable.from(chunks));
    expect(bytes).toBe(17 * 1024 * 1024);
    const stream = await store.getStream(key);
    let read = 0;
    for await (const c of stream ?? []) read += (c as Buffer).length;
    expect(read).toBe(bytes);
    const file = path.join(dir, "downloads", `${_name}.gz`);
    expect(await store.download(key, file)).toBe(true);
    expect(readFileSync(file).equals(Buffer.concat(chunks))).toBe(true);
    expect(await store.download(blobKeys.backup("big-one", "missing"), file)).toBe(false);
  });

  it("keeps each tenant inside its own folder: abc's listing never shows abc-d's objects", async () => {
    const store = make();
    await store.put(blobKeys.bundle("abc-d", "b".repeat(64)), "other tenant");
    await store.put(blobKeys.bundle("abcd", "b".repeat(64)), "other tenant");
    await store.put(blobKeys.bundle("abc", "c".repeat(64)), "mine");
    expect((await store.list(blobKeys.bundles("abc"))).map((e) => e.key)).toEqual([`tenants/abc/bundles/${"c".repeat(64)}`]);
    expect((await store.list(tenantPrefix("abc"))).map((e) => e.key)).toEqual([`tenants/abc/bundles/${"c".repeat(64)}`]);
    expect(await store.list(tenantPrefix("xyz"))).toEqual([]);
  });
});

describe("file blob store folders", () => {
  it("prunes the folders a delete emptied up to the tenant's, never tenants/ or the root", async () => {
    const root = mkdtempSync(path.join(tmpdir(), "stackrail-prune-"));
    try {
      const store = createBlobStore({ kind: "file", root });
      await store.put("tenants/abc/bundles/one", "1");
      await store.put("top/deep/x", "x");
      await store.delete("tenants/abc/bundles/one");
      await store.delete("top/deep/x");
      expect(existsSync(path.join(root, "tenants"))).toBe(true);
      expect(existsSync(path.join(root, "tenants", "abc"))).toBe(false);
      expect(existsSync(path.join(root, "top"))).toBe(false);
      expect(existsSync(root)).toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("a write racing a delete that empties its folder still lands (no ENOENT)", async () => {
    const root = mkdtempSync(path.join(tmpdir(), "stackrail-race-"));
    try {
      const store = createBlobStore({ kind: "file", root });
      for (let i = 0; i < 300; i += 1) {
        await store.put("tenants/abc/bundles/old", "old");
        // The delete empties the folder the writes are about to use: each gets its object all the same.
        await Promise.all([
          store.delete("tenants/abc/bundles/old"),
          store.put("tenants/abc/bundles/new", `n${i}`),
          store.putStream("tenants/abc/bundles/streamed", Readable.from([Buffer.from(`s${i}`)])),
        ]);
        expect((await store.get("tenants/abc/bundles/new"))?.toString()).toBe(`n${i}`);
        expect((await store.get("tenants/abc/bundles/streamed"))?.toString()).toBe(`s${i}`);
        await Promise.all([store.delete("tenants/abc/bundles/new"), store.delete("tenants/abc/bundles/streamed")]);
      }
      expect(await store.list("tenants/")).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("blob keys", () => {
  it.each(["../etc", "ab/../../x", "AB", "a", "ab/", "ab\\..", "", "tenant-", "x".repeat(41)])("refuses tenant id %j", (id) => {
    expect(() => tenantPrefix(id)).toThrow(BlobKeyError);
    expect(() => blobKeys.bundle(id, "a".repeat(64))).toThrow(BlobKeyError);
  });

  it.each(["..", "x/../y", "/abs", "a//b", "a/./b", "sp ace", "a/b/"])("refuses key %j", (rest) => {
    expect(() => tenantKey("acme", rest)).toThrow(BlobKeyError);
  });

  it("refuses a bad key at the store too, before touching the disk or the bucket", async () => {
    const store = createBlobStore({ kind: "file", root: dir });
    await expect(store.put("../outside", "x")).rejects.toThrow(BlobKeyError);
    await expect(store.get("tenants/../../x")).rejects.toThrow(BlobKeyError);
  });
});

describe("STACKRAIL_BLOB_URL", () => {
  const base = { PULUMI_CONFIG_PASSPHRASE: "blob-test-passphrase", STACKRAIL_DATA_DIR: "/tmp/stackrail-blob-config" };
  const load = (env: Record<string, string>) => loadConfig({ ...base, ...env }, "/tmp");

  it("defaults to file://$STACKRAIL_DATA_DIR/blobs", () => {
    expect(load({}).blobStore).toEqual({ kind: "file", root: "/tmp/stackrail-blob-config/blobs" });
    expect(load({ STACKRAIL_BLOB_URL: "file:///srv/blobs" }).blobStore).toEqual({ kind: "file", root: "/srv/blobs" });
  });

  it("reads bucket, prefix, endpoint, region and path style from an s3:// URL", () => {
    expect(load({ STACKRAIL_BLOB_URL: "s3://stackrail-prod/eu/blobs/?endpoint=http://10.0.0.5:9000/&region=eu-west-1&forcePathStyle=true" }).blobStore).toEqual(
      {
        kind: "s3",
        bucket: "stackrail-prod",
        prefix: "eu/blobs",
        endpoint: "http://10.0.0.5:9000",
        region: "eu-west-1",
        forcePathStyle: true,
      },
    );
    expect(load({ STACKRAIL_BLOB_URL: "s3://bucket-1" }).blobStore).toEqual({
      kind: "s3",
      bucket: "bucket-1",
      prefix: "",
      endpoint: undefined,
      region: undefined,
      forcePathStyle: false,
    });
  });

  it.each([
    "http://example.com/blobs",
    "s3://Bad_Bucket/x",
    "s3://key:secret@bucket/x",
    "s3://bucket/../x",
    "s3://bucket/x?endpoint=ftp://host",
    "s3://bucket/x?forcePathStyle=maybe",
    "s3://bucket/x?accessKeyId=abc",
    "blobs",
  ])("refuses %j, naming the variable", (value) => {
    let err: unknown;
    try {
      load({ STACKRAIL_BLOB_URL: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe("STACKRAIL_BLOB_URL");
    expect((err as ConfigError).message).toMatch(/^STACKRAIL_BLOB_URL: /);
    // A refusal never repeats a credential it was given.
    expect((err as ConfigError).message).not.toContain("secret");
  });

  it("reads a Pulumi diy backend URL in gocloud's spelling", () => {
    expect(parseBlobUrl("s3://state/stackrail?endpoint=127.0.0.1:9000&disableSSL=true&s3ForcePathStyle=true&region=us-east-1", "pulumi")).toEqual({
      kind: "s3",
      bucket: "state",
      prefix: "stackrail",
      endpoint: "http://127.0.0.1:9000",
      region: "us-east-1",
      forcePathStyle: true,
    });
  });
});
