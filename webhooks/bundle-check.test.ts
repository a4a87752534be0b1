// Issue 11, finding 11: uploaded function bundles are read as zip archives, not trusted for their
// first four bytes. Every hostile archive is built byte by byte here and sent through the real
// HTTP API over a real Redis; each must answer 400 naming its rule, store nothing in the bundle
// store and enqueue nothing.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildZip, deflatedZeros, functionZip, zerosCrc, type ZipEntrySpec } from "../test/support/zip-builder.ts";
import { api, jobCount, startEdge, type Edge } from "./edge-fixture.ts";

let edge: Edge;
const TENANT = "bundle-owner";

beforeAll(async () => {
  edge = await startEdge({ label: "bundle-check" });
  await edge.tenants.rebuild([{ id: TENANT, region: "eu-west-1", tier: "pool", version: "1.0.0" }]);
});
afterAll(async () => {
  await edge?.close();
});

// Accepted bundles go to the blob store (STACKRAIL_BLOB_URL, by default file://$STACKRAIL_DATA_DIR/blobs), under the tenant's own folder.
const bundleDir = () => path.join(edge.config.dataDir, "blobs", "tenants", TENANT, "bundles");
const storedBundles = (): string[] => (existsSync(bundleDir()) ? readdirSync(bundleDir()) : []);

const upload = (zip: Buffer, handler = "index.handler") =>
  api(edge, "PUT", `/v1/tenants/${TENANT}/functions/checked-fn`, { handler, code: zip.toString("base64") });

/** Uploads `zip` and expects a 400 naming `rule` on `field`, with nothing stored and nothing enqueued. */
async function expectRefused(zip: Buffer, rule: string, options: { handler?: string; field?: string } = {}): Promise<string> {
  const jobsBefore = await jobCount(edge);
  const storedBefore = storedBundles();
  const res = await upload(zip, options.handler);
  const body = (await res.json()) as { error?: string; field?: string; message?: string };
  expect(res.status, JSON.stringify(body)).toBe(400);
  expect(body).toMatchObject({ error: "invalid", field: options.field ?? "code" });
  expect(body.message).toContain(`(${rule})`);
  expect(await jobCount(edge)).toBe(jobsBefore);
  expect(storedBundles()).toEqual(storedBefore);
  expect(existsSync(path.join(bundleDir(), createHash("sha256").update(zip).digest("hex")))).toBe(false);
  return body.message ?? "";
}

const MIB = 1024 * 1024;
const handlerFile = (extra: ZipEntrySpec[] = []): ZipEntrySpec[] => [{ name: "index.mjs", data: "export const handler = async () => 1;\n" }, ...extra];

describe("finding 11: function bundles are checked as zip archives", () => {
  it("accepts a well-formed bundle whose handler file exists, and stores it", async () => {
    const zip = buildZip([
      { name: "src/" },
      { name: "src/lib/" },
      { name: "src/lib/util.js", data: "module.exports = {};\n" },
      { name: "src/app.js", data: "exports.main = async () => 1;\n".repeat(50) },
      { name: "README.md", data: "" },
    ]);
    const res = await upload(zip, "src/app.main");
    expect(res.status).toBe(202);
    const { bundleSha256 } = (await res.json()) as { bundleSha256: string };
    expect(readFileSync(path.join(bundleDir(), bundleSha256))).toEqual(zip);
  });

  it("path-traversal: an entry with a .. segment", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "../evil.js", data: "x" }])), "path-traversal");
    await expectRefused(buildZip(handlerFile([{ name: "lib/../../evil.js", data: "x" }])), "path-traversal");
  });

  it("absolute-path: a leading slash or a drive letter", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "/etc/cron.d/evil", data: "x" }])), "absolute-path");
    await expectRefused(buildZip(handlerFile([{ name: "C:/Windows/evil.js", data: "x" }])), "absolute-path");
  });

  it("backslash: a Windows separator, which some extractors turn into a path", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "..\\evil.js", data: "x" }])), "backslash");
  });

  it("non-canonical-path: empty or . segments", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "lib//a.js", data: "x" }])), "non-canonical-path");
    await expectRefused(buildZip(handlerFile([{ name: "./a.js", data: "x" }])), "non-canonical-path");
  });

  it("symlink: an entry whose unix mode is a symbolic link", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "passwd", data: "/etc/passwd", mode: 0o120777, method: 0 }])), "symlink");
  });

  it("not-regular-file: a fifo or a device", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "pipe", mode: 0o010644 }])), "not-regular-file");
    await expectRefused(buildZip(handlerFile([{ name: "tty", mode: 0o020666 }])), "not-regular-file");
  });

  it("special-permissions: setuid, setgid or sticky bits", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "run.sh", data: "#!/bin/sh\n", mode: 0o104755 }])), "special-permissions");
  });

  it("too-many-entries", async () => {
    const many = Array.from({ length: 5001 }, (_, i) => ({ name: `f/${i}.js`, data: "" }));
    await expectRefused(buildZip(handlerFile(many)), "too-many-entries");
  });

  it("total-size: a 1 GiB zip bomb that declares its size honestly", async () => {
    const bomb = buildZip(handlerFile([{ name: "zeros.bin", compressed: deflatedZeros(1024), size: 1024 * MIB, crc: 0 }]));
    expect(bomb.length).toBeLessThan(2 * MIB);
    await expectRefused(bomb, "total-size");
  });

  it("total-size: many entries that are each small but too large together", async () => {
    // 260 entries of 1 MiB each (at the size below which the ratio is not judged): 260 MiB from about 300 KiB.
    const chunk = deflatedZeros(1);
    const crc = zerosCrc(1);
    const entries = Array.from({ length: 260 }, (_, i) => ({ name: `part-${i}.bin`, compressed: chunk, size: MIB, crc }));
    await expectRefused(buildZip(handlerFile(entries)), "total-size");
  });

  it("compression-ratio: one entry that inflates more than 100 times", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "zeros.bin", compressed: deflatedZeros(10), size: 10 * MIB, crc: zerosCrc(10) }])), "compression-ratio");
  });

  it("size-mismatch: a header that lies about the size cannot get a bomb past the limits", async () => {
    // Declares 1 MiB at an unremarkable ratio; inflates to 1 GiB. Refused after 1 MiB + 1 byte.
    const liar = buildZip(handlerFile([{ name: "small.txt", compressed: deflatedZeros(1024), size: 1024 * 1024, crc: 0 }]));
    const stored = buildZip(handlerFile([{ name: "short.txt", data: "only a few bytes", method: 0, size: 4 }]));
    await expectRefused(liar, "size-mismatch");
    await expectRefused(stored, "size-mismatch");
  });

  it("checksum-mismatch: the data does not match the declared CRC-32", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "a.js", data: "console.log(1)", crc: 1234 }])), "checksum-mismatch");
  });

  it("duplicate-name: two entries with the same path", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "index.mjs", data: "export const handler = () => 'evil';\n" }])), "duplicate-name");
    await expectRefused(buildZip(handlerFile([{ name: "lib", data: "x" }, { name: "lib/" }])), "duplicate-name");
  });

  it("encrypted: an entry with the encryption flag", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "secret.js", data: "x", flags: 0x1 }])), "encrypted");
  });

  it("name-not-utf8: a name that is not valid UTF-8", async () => {
    await expectRefused(buildZip(handlerFile([{ name: Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x6a, 0x73]), data: "x" }])), "name-not-utf8");
  });

  it("control-character: a name with a control character", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "a\nb.js", data: "x" }])), "control-character");
    await expectRefused(buildZip(handlerFile([{ name: "bell\u0007.js", data: "x" }])), "control-character");
    await expectRefused(buildZip(handlerFile([{ name: "c1\u009b.js", data: "x" }])), "control-character");
  });

  it("name-mismatch: the local header names another file than the central directory", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "fine.js", localName: "../../evil.js", data: "x" }])), "name-mismatch");
  });

  it("overlapping-entries: two entries that share their data", async () => {
    await expectRefused(
      buildZip(
        handlerFile([
          { name: "a.js", data: "x" },
          { name: "b.js", data: "x", dataOf: 1 },
        ]),
      ),
      "overlapping-entries",
    );
  });

  it("unlisted-data: a local entry no central-directory entry lists, or bytes in front", async () => {
    await expectRefused(
      buildZip(
        handlerFile([
          { name: "../../hidden.js", data: "evil", hidden: true },
          { name: "b.js", data: "x" },
        ]),
      ),
      "unlisted-data",
    );
    await expectRefused(buildZip(handlerFile([{ name: "../../hidden.js", data: "evil", hidden: true }])), "unlisted-data");
    await expectRefused(buildZip(handlerFile(), { prefix: Buffer.from("#!/bin/sh\nexit 0\n") }), "unlisted-data");
  });

  it("unsupported-compression: a method other than stored or deflated", async () => {
    await expectRefused(buildZip(handlerFile([{ name: "a.bz2", data: "BZh", method: 12 }])), "unsupported-compression");
  });

  it("corrupt-archive: zip magic bytes in front of anything else", async () => {
    await expectRefused(Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.from("fake zip body")]), "corrupt-archive");
    await expectRefused(functionZip().subarray(0, 40), "corrupt-archive");
  });

  it("handler-missing: the handler names a file the archive does not hold", async () => {
    await expectRefused(functionZip(), "handler-missing", { handler: "main.handler", field: "handler" });
    // A directory of that name is not the file.
    await expectRefused(buildZip([{ name: "main.js/" }]), "handler-missing", { handler: "main.handler", field: "handler" });
  });
});
