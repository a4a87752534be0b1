// Stack locks on the S3 backend (issue 14 §1), read and removed through the blob store's S3 client
// against a real S3-compatible server: only the stack's own lock objects (not a stack whose name
// starts the same), under the backend URL's prefix, each removed by its key.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { s3BlobStore } from "../core/blob-store.ts";
import { TransientError } from "../core/errors.ts";
import { parseBlobUrl } from "../core/blob-url.ts";
import { S3_TEST_CREDENTIALS, startS3Server, type S3TestServer } from "../test/support/s3-server.ts";
import { lockStoreFor } from "./stack-locks.ts";

let s3: S3TestServer;
const saved = { ...process.env };

beforeAll(async () => {
  Object.assign(process.env, S3_TEST_CREDENTIALS);
  s3 = await startS3Server({ buckets: ["state"] });
});
afterAll(async () => {
  await s3.stop();
  for (const k of Object.keys(S3_TEST_CREDENTIALS)) if (saved[k] === undefined) delete process.env[k];
});

describe("s3 lock store", () => {
  it("lists the stack's own locks under the backend's prefix and clears one by its key", async () => {
    const url = s3.pulumiBackendUrl("state", "team-a");
    const location = parseBlobUrl(url, "pulumi");
    if (location.kind !== "s3") throw new Error("expected s3");
    const bucket = s3BlobStore(location);
    const lock = (pid: number) => JSON.stringify({ pid, username: "u", hostname: "h1", timestamp: "2026-11-29T20:00:00Z" });
    await bucket.put(".pulumi/locks/organization/p/tenant-abc/11111111-1111-1111-1111-111111111111.json", lock(1));
    await bucket.put(".pulumi/locks/organization/p/tenant-abc-d/22222222-2222-2222-2222-222222222222.json", lock(2));
    await bucket.put(".pulumi/locks/organization/p/tenant-abc/notes.txt", "not a lock");
    // Another installation's prefix in the same bucket is not this backend's.
    const other = s3BlobStore({ ...location, prefix: "team-b" });
    await other.put(".pulumi/locks/organization/p/tenant-abc/33333333-3333-3333-3333-333333333333.json", lock(3));

    const store = lockStoreFor(url);
    expect(store.backend).toBe("s3");
    expect(store.canClear).toBe(true);
    expect(store.where("p", "tenant-abc")).toBe("s3://state/team-a/.pulumi/locks/organization/p/tenant-abc/");
    const locks = (await store.list("p", "tenant-abc")) ?? [];
    expect(locks).toEqual([
      {
        location: ".pulumi/locks/organization/p/tenant-abc/11111111-1111-1111-1111-111111111111.json",
        pid: 1,
        hostname: "h1",
        username: "u",
        timestamp: Date.parse("2026-11-29T20:00:00Z"),
      },
    ]);
    await store.clear(locks[0] as (typeof locks)[number]);
    expect(await store.list("p", "tenant-abc")).toEqual([]);
    expect((await store.list("p", "tenant-abc-d"))?.map((l) => l.pid)).toEqual([2]);
    expect(await other.exists(".pulumi/locks/organization/p/tenant-abc/33333333-3333-3333-3333-333333333333.json")).toBe(true);
  });

  it("shows an object-store URL without its query (endpoint, credentials) and leaves gs:// locks to the engine", () => {
    expect(lockStoreFor("gs://bucket/x?foo=bar").canClear).toBe(false);
    expect(lockStoreFor("gs://bucket/x").where("p", "s")).toBe("gs://bucket/x/.pulumi/locks/organization/p/s/");
  });

  /** A logger whose lines the test reads. */
  function capture(): { logger: pino.Logger; warnings: () => Record<string, unknown>[] } {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    return { logger: pino({ level: "info" }, sink), warnings: () => lines.filter((l) => l.level === 40) };
  }

  it("treats locks it has no credentials to read as not readable here (null), warning once with the error's type", async () => {
    const { logger, warnings } = capture();
    // This process has no credentials in its chain (the engine may have its own): no env keys, no profile, no instance role.
    const env = {
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_PROFILE: "stackrail-no-such-profile",
      AWS_CONFIG_FILE: "/nonexistent/config",
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials",
      AWS_EC2_METADATA_DISABLED: "true",
    };
    const before = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(env))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    try {
      const store = lockStoreFor(s3.pulumiBackendUrl("state", "no-creds"), { logger });
      expect(await store.list("p", "tenant-abc")).toBeNull();
      expect(await store.list("p", "tenant-abd")).toBeNull();
    } finally {
      for (const [k, v] of Object.entries(before))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ backend: "s3", location: "s3://state/no-creds", errorType: "CredentialsProviderError" });
  });

  it("treats a 403 as locks not readable here, warning once without credentials", async () => {
    // S3 refusing this process's identity (AccessDenied) as AWS answers it: a double, gofakes3 accepts any key.
    const server = createServer((_req, res) => {
      res.writeHead(403, { "content-type": "application/xml" });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { logger, warnings } = capture();
      const port = (server.address() as AddressInfo).port;
      const store = lockStoreFor(`s3://state/denied?endpoint=127.0.0.1:${port}&disableSSL=true&s3ForcePathStyle=true&region=us-east-1`, { logger });
      expect(await store.list("p", "tenant-abc")).toBeNull();
      expect(await store.list("p", "tenant-abc")).toBeNull();
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toMatchObject({ backend: "s3", location: "s3://state/denied", errorType: "AccessDenied", status: 403 });
      const text = JSON.stringify(warnings()[0]);
      expect(text).not.toContain(S3_TEST_CREDENTIALS.AWS_SECRET_ACCESS_KEY);
      expect(text).not.toContain(S3_TEST_CREDENTIALS.AWS_ACCESS_KEY_ID);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("keeps a transient failure (the store unreachable) transient", async () => {
    const store = lockStoreFor("s3://state/team-a?endpoint=127.0.0.1:1&disableSSL=true&s3ForcePathStyle=true&region=us-east-1");
    await expect(store.list("p", "tenant-abc")).rejects.toBeInstanceOf(TransientError);
  });
});
