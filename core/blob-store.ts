// The blob store (STACKRAIL_BLOB_URL; issue 14 §1): what a job must find on whichever machine runs
// it — tenant code bundles uploaded through the API, final database backups. Keys are `/`-separated
// relative names (`tenants/<id>/bundles/<sha256>`); a directory on one machine (`file://`, the
// default) or an S3-compatible bucket and prefix shared by every machine (`s3://`), spoken to with
// the AWS SDK v3. Both the edge and the worker use it; nothing here imports from either.
//
// Credentials come from the SDK's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a
// profile, web identity, an instance role) and are never logged: messages name the bucket and key.
import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { describeBlobLocation, type BlobLocation, type FileBlobLocation, type S3BlobLocation } from "./blob-url.ts";
import { StackrailError, TransientError } from "./errors.ts";
import { tenantIdSchema } from "./ids.ts";

export interface BlobEntry {
  /** Relative to the store's root, as given to put(). */
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
}

export interface BlobStore {
  /** `file:///dir` or `s3://bucket/prefix`, for messages (never credentials or the endpoint's query). */
  readonly location: string;
  readonly kind: "file" | "s3";
  /** Writes a whole object; the object appears complete or not at all. */
  put(key: string, body: Buffer | string): Promise<void>;
  /** Writes an object from a stream of unknown length (large backups): never held in memory whole. */
  putStream(key: string, body: Readable): Promise<{ bytes: number }>;
  /** The object's bytes, or null when there is none. */
  get(key: string): Promise<Buffer | null>;
  /** The object as a stream, or null when there is none. */
  getStream(key: string): Promise<Readable | null>;
  /** Copies the object into a local file (written whole, then renamed); false when there is none. */
  download(key: string, file: string): Promise<boolean>;
  exists(key: string): Promise<boolean>;
  /** Removes one object; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix` (a folder: end it with `/`), in key order. */
  list(prefix: string): Promise<BlobEntry[]>;
}

/** A key or prefix that is not a plain relative name: a bug or hostile input, never written. */
export class BlobKeyError extends StackrailError {
  override readonly code = "invalid";
}

const SEGMENT = /^[A-Za-z0-9._-]{1,200}$/;
/** The file store's temp files: `.<name>.<uuid>.tmp`, renamed into place when complete. */
const TEMP_FILE = /^\..+\.[0-9a-f-]{36}\.tmp$/;
const MAX_KEY = 900;

/** Validates a key: relative, `/`-separated, each segment [A-Za-z0-9._-], no `.` or `..`. */
export function checkKey(key: string, what = "key"): string {
  // The empty prefix lists the whole store.
  if (what === "prefix" && key === "") return key;
  if (key.length === 0 || key.length > MAX_KEY) throw new BlobKeyError(`blob ${what} must be 1 to ${MAX_KEY} characters`);
  const segments = key.split("/");
  // A prefix may end with `/` (a folder); a key may not.
  if (what === "prefix" && segments.at(-1) === "") segments.pop();
  for (const s of segments) {
    if (!SEGMENT.test(s) || s === "." || s === "..") throw new BlobKeyError(`blob ${what} "${key}" has a segment that is not [A-Za-z0-9._-] or is . or ..`);
  }
  return key;
}

/**
 * The folder of one tenant: `tenants/<id>/`. The id is validated here again (the edge already did):
 * a tenant's keys can only ever be inside its own folder, and the trailing `/` keeps tenant `ab-c`
 * out of a listing of `ab`'s.
 */
export function tenantPrefix(tenantId: string): string {
  const r = tenantIdSchema.safeParse(tenantId);
  if (!r.success) throw new BlobKeyError("tenant id is not valid for a blob key");
  return `tenants/${r.data}/`;
}

/** A key inside a tenant's folder: `tenants/<id>/<rest>`. */
export function tenantKey(tenantId: string, ...rest: string[]): string {
  const key = tenantPrefix(tenantId) + rest.join("/");
  checkKey(key);
  return key;
}

/** Keys of the objects this code keeps per tenant. */
export const blobKeys = {
  /** An uploaded function bundle, content-addressed within the tenant. */
  bundle: (tenantId: string, sha256: string): string => tenantKey(tenantId, "bundles", sha256),
  bundles: (tenantId: string): string => `${tenantPrefix(tenantId)}bundles/`,
  /** A final database backup. */
  backup: (tenantId: string, file: string): string => tenantKey(tenantId, "backups", file),
  backups: (tenantId: string): string => `${tenantPrefix(tenantId)}backups/`,
  /** A function's numbered version records (`<name>/v<n>.json`). */
  functions: (tenantId: string): string => `${tenantPrefix(tenantId)}functions/`,
};

export function createBlobStore(location: BlobLocation): BlobStore {
  return location.kind === "file" ? fileBlobStore(location) : s3BlobStore(location);
}

const shared = new WeakMap<BlobLocation, BlobStore>();

/**
 * The process's store for a configured location (`config.blobStore`): one S3 client (and its
 * connection pool) per configuration, however many handlers and routes use it.
 */
export function blobStoreFor(location: BlobLocation): BlobStore {
  let store = shared.get(location);
  if (store === undefined) {
    store = createBlobStore(location);
    shared.set(location, store);
  }
  return store;
}

// ---------------------------------------------------------------------------------------------
// file://

function fileBlobStore(location: FileBlobLocation): BlobStore {
  const root = location.root;
  const fileOf = (key: string): string => path.join(root, ...checkKey(key).split("/"));
  const missing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR";

  /**
   * Writes through a temp file in the same folder and renames it: readers never see half an object.
   * A delete in the same folder prunes the folders it emptied, which can take this folder between
   * the mkdir and the temp file's creation (ENOENT): that step is tried once more. Once the temp
   * file exists the folder is not empty, so nothing prunes it before the rename.
   */
  async function atomically(key: string, write: (tmp: FileHandle) => Promise<void>): Promise<void> {
    const file = fileOf(key);
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
    const create = async (): Promise<FileHandle> => {
      // Bundles and backups hold tenant code and every row of a tenant: this user only.
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      return open(tmp, "wx", 0o600);
    };
    const handle = await create().catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return create();
    });
    try {
      try {
        await write(handle);
      } finally {
        await handle.close().catch(() => undefined);
      }
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * The folders a delete may prune: those below `tenants/<id>/` for a tenant's key (the tenant's
   * folder itself may go), below the key's first folder otherwise; never `tenants/` or the root,
   * which every writer shares.
   */
  const pruneFloor = (key: string): string => {
    const segments = key.split("/");
    const keep = segments[0] === "tenants" ? 1 : 0;
    return path.join(root, ...segments.slice(0, keep + 1));
  };

  async function getStream(key: string): Promise<Readable | null> {
    const file = fileOf(key);
    const info = await stat(file).catch(() => null);
    return info?.isFile() ? createReadStream(file) : null;
  }

  async function walk(dir: string, rel: string, out: BlobEntry[]): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      if (missing(err)) return [];
      throw err;
    });
    for (const e of entries) {
      if (TEMP_FILE.test(e.name)) continue; // a write in progress
      const key = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(dir, e.name), key, out);
      else if (e.isFile()) {
        const info = await stat(path.join(dir, e.name)).catch(() => null);
        if (info) out.push({ key, size: info.size, lastModified: info.mtime });
      }
    }
  }

  return {
    location: describeBlobLocation(location),
    kind: "file",
    put: (key, body) => atomically(key, (tmp) => tmp.writeFile(body)),
    async putStream(key, body) {
      let bytes = 0;
      await atomically(key, async (tmp) => {
        body.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        await pipeline(body, tmp.createWriteStream());
      });
      return { bytes };
    },
    async get(key) {
      return readFile(fileOf(key)).catch((err: unknown) => {
        if (missing(err)) return null;
        throw err;
      });
    },
    getStream,
    async download(key, file) {
      const stream = await getStream(key);
      if (stream === null) return false;
      await writeLocal(file, stream);
      return true;
    },
    async exists(key) {
      const info = await stat(fileOf(key)).catch(() => null);
      return info?.isFile() ?? false;
    },
    async delete(key) {
      const file = fileOf(key);
      await rm(file, { force: true });
      // Folders emptied by the delete go too: an object store has none, and a folder left behind
      // would look like a tenant's files to anyone reading the disk. Not the shared ones above.
      const floor = pruneFloor(key);
      for (let dir = path.dirname(file); dir.startsWith(floor + path.sep) || dir === floor; dir = path.dirname(dir)) {
        if (dir === root || !dir.startsWith(root + path.sep)) break;
        const removed = await rmdir(dir).then(
          () => true,
          () => false,
        );
        if (!removed) break;
      }
    },
    async list(prefix) {
      checkKey(prefix, "prefix");
      // Walk the deepest folder the prefix names, then filter on the whole prefix.
      const folder = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "";
      const out: BlobEntry[] = [];
      await walk(folder ? path.join(root, ...folder.split("/")) : root, folder, out);
      return out.filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
  };
}

async function writeLocal(file: string, stream: Readable): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomUUID()}.tmp`;
  try {
    await pipeline(stream, createWriteStream(tmp, { mode: 0o600 }));
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// s3://

/** Objects above this size go up in parts of this size (S3's minimum part is 5 MiB). */
const PART_BYTES = 8 * 1024 * 1024;

/** An S3 client for a location: endpoint, region and path style from the URL, credentials from the AWS environment. */
export function s3ClientFor(location: S3BlobLocation): S3Client {
  return new S3Client({
    ...(location.endpoint ? { endpoint: location.endpoint } : {}),
    // A custom endpoint needs some region for signing; S3 itself resolves it from the environment.
    region: location.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (location.endpoint ? "us-east-1" : undefined),
    forcePathStyle: location.forcePathStyle,
    // S3-compatible stores do not all accept the SDK's default CRC checksums on every request.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

const isMissing = (err: unknown): boolean =>
  err instanceof NoSuchKey ||
  err instanceof NotFound ||
  (err instanceof S3ServiceException && (err.name === "NoSuchKey" || err.$metadata.httpStatusCode === 404));

/** An S3 failure as a Stackrail error: 5xx and network errors are worth retrying, the rest is not. */
function s3Error(action: string, where: string, err: unknown): Error {
  // A refused key (BlobKeyError) and the like are not S3 failures.
  if (err instanceof StackrailError) return err;
  const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
  const name = err instanceof Error ? err.name : "error";
  const message = `blob store ${action} ${where} failed: ${name}${status ? ` (HTTP ${status})` : ""}`;
  // No credentials anywhere in the AWS chain: a configuration to fix, not a moment to wait out.
  if (name === "CredentialsProviderError")
    return new StackrailError(`${message}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role)`, { cause: err });
  if (status === undefined || status >= 500 || status === 429) return new TransientError(message, { cause: err });
  return new StackrailError(message, { cause: err });
}

export function s3BlobStore(location: S3BlobLocation, client: S3Client = s3ClientFor(location)): BlobStore & { readonly client: S3Client } {
  const { bucket } = location;
  const base = location.prefix ? `${location.prefix}/` : "";
  const objectKey = (key: string): string => base + checkKey(key);
  const where = (key: string): string => `s3://${bucket}/${base}${key}`;

  async function call<T>(action: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw s3Error(action, where(key), err);
    }
  }

  async function getStream(key: string): Promise<Readable | null> {
    try {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey(key) }));
      return out.Body instanceof Readable
        ? out.Body
        : Readable.from([Buffer.from(await (out.Body?.transformToByteArray() ?? Promise.resolve(new Uint8Array())))]);
    } catch (err) {
      if (isMissing(err)) return null;
      throw s3Error("get", where(key), err);
    }
  }

  return {
    client,
    location: describeBlobLocation(location),
    kind: "s3",
    put: (key, body) =>
      call("put", key, async () => {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: objectKey(key), Body: typeof body === "string" ? Buffer.from(body) : body }));
      }),
    async putStream(key, body) {
      const k = objectKey(key);
      // Read up to one part: a small object is one PutObject, a large one a multipart upload.
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let bytes = 0;
      let uploadId: string | undefined;
      const parts: { ETag: string | undefined; PartNumber: number }[] = [];
      const flushPart = async (): Promise<void> => {
        const chunk = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        if (uploadId === undefined) {
          const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: k }));
          uploadId = created.UploadId;
        }
        const PartNumber = parts.length + 1;
        const out = await client.send(
          new UploadPartCommand({ Bucket: bucket, Key: k, UploadId: uploadId, PartNumber, Body: chunk, ContentLength: chunk.length }),
        );
        parts.push({ ETag: out.ETag, PartNumber });
      };
      try {
        for await (const c of body) {
          const chunk = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
          pending.push(chunk);
          pendingBytes += chunk.length;
          bytes += chunk.length;
          if (pendingBytes >= PART_BYTES) await flushPart();
        }
        if (uploadId === undefined) {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: Buffer.concat(pending, pendingBytes) }));
        } else {
          if (pendingBytes > 0) await flushPart();
          await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: k, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
        }
        return { bytes };
      } catch (err) {
        if (uploadId !== undefined) {
          await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: k, UploadId: uploadId })).catch(() => undefined);
        }
        throw s3Error("put", where(key), err);
      }
    },
    async get(key) {
      const stream = await getStream(key);
      if (stream === null) return null;
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
      return Buffer.concat(chunks);
    },
    getStream,
    async download(key, file) {
      const stream = await getStream(key);
      if (stream === null) return false;
      await writeLocal(file, stream);
      return true;
    },
    async exists(key) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey(key) }));
        return true;
      } catch (err) {
        if (isMissing(err)) return false;
        throw s3Error("head", where(key), err);
      }
    },
    delete: (key) =>
      call("delete", key, async () => {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey(key) }));
      }),
    list: (prefix) =>
      call("list", prefix, async () => {
        checkKey(prefix, "prefix");
        const out: BlobEntry[] = [];
        let token: string | undefined;
        do {
          const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: base + prefix, ContinuationToken: token }));
          for (const o of page.Contents ?? []) {
            if (o.Key === undefined || !o.Key.startsWith(base)) continue;
            out.push({ key: o.Key.slice(base.length), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) });
          }
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token !== undefined);
        return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      }),
  };
}
