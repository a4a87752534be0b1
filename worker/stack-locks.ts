// A Pulumi stack's lock as its backend stores it, read and removed without starting the engine.
//
// The DIY backends (file://, s3://, gs://, azblob://) keep one lock object per running update at
//   <backend>/.pulumi/locks/organization/<project>/<stack>/<uuid>.json
// holding {pid, username, hostname, timestamp} of the CLI process that wrote it (pkg/backend/diy/lock.go);
// the file backend adds a `<uuid>.json.attrs` metadata sidecar. The file backend is read from disk;
// the S3 backend (`s3://bucket/prefix?endpoint=…`, any S3-compatible store) through the blob store's
// S3 client, with the credentials the engine uses (the standard AWS environment), under the URL's
// prefix: S3 writes are atomic, so there are neither sidecars nor half-written locks there. A
// bucket this process may not read (a 403, a missing bucket, no credentials in its chain while the
// engine has its own) leaves the locks unread as before, with one warning per process: the engine
// still refuses a locked stack. A transient failure (5xx, network) is worth another try. gs://
// and azblob:// locks are not read (the engine still refuses to run on a locked stack, and the job
// waits). The Pulumi Cloud backend (https://) manages its own update leases and has no lock objects.
import { existsSync } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { s3BlobStore, type BlobStore } from "../core/blob-store.ts";
import { BlobUrlError, parseBlobUrl } from "../core/blob-url.ts";
import { TransientError } from "../core/errors.ts";
import { createLogger, type Logger } from "../core/logger.ts";

export interface StackLock {
  /** Where the lock lives (a path or an object key), for messages. */
  readonly location: string;
  /** The CLI process that wrote it, on `hostname`. */
  readonly pid: number | undefined;
  readonly hostname: string | undefined;
  readonly username: string | undefined;
  /** When it was written (ms since the epoch), by the writer's clock. */
  readonly timestamp: number | undefined;
  /**
   * A lock write that never completed: the backend writes `<uuid>.json.<random>.tmp` and renames it
   * into place, so a writer cut off in between (a full disk, a kill) leaves a temp file that the
   * engine then reads as a lock and fails on ("unexpected end of JSON input"). Its timestamp is the
   * file's modification time.
   */
  readonly incomplete?: boolean;
}

/** A lock write takes milliseconds: an incomplete one older than this was abandoned by its writer. */
export const INCOMPLETE_LOCK_STALE_MS = 10_000;

/** Whether a lock is the remains of an abandoned write, safe to remove whoever wrote it. */
export function abandonedWrite(lock: StackLock, now: number = Date.now()): boolean {
  return lock.incomplete === true && now - (lock.timestamp ?? 0) >= INCOMPLETE_LOCK_STALE_MS;
}

export interface StackLockStore {
  /** The backend's scheme: `file`, `s3`, ... */
  readonly backend: string;
  /** Whether clear() can remove a lock of this backend. */
  readonly canClear: boolean;
  /** The stack's locks, or null when this backend's locks cannot be read here. */
  list(project: string, stack: string): Promise<StackLock[] | null>;
  /** Removes one lock (and its sidecar). Only called once its writer is known to be gone. */
  clear(lock: StackLock): Promise<void>;
  /** Where a stack's locks live, for a message that tells an operator where to look (no credentials). */
  where(project: string, stack: string): string;
}

const LOCKS = [".pulumi", "locks", "organization"];

function lockOf(location: string, text: string): StackLock {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = {};
  }
  const r = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>) : {};
  const ts = typeof r.timestamp === "string" ? Date.parse(r.timestamp) : NaN;
  return {
    location,
    pid: typeof r.pid === "number" && Number.isInteger(r.pid) && r.pid > 0 ? r.pid : undefined,
    hostname: typeof r.hostname === "string" ? r.hostname : undefined,
    username: typeof r.username === "string" ? r.username : undefined,
    timestamp: Number.isFinite(ts) ? ts : undefined,
  };
}

export function fileLockStore(backendUrl: string): StackLockStore {
  const root = fileURLToPath(backendUrl);
  const dir = (project: string, stack: string): string => path.join(root, ...LOCKS, project, stack);
  return {
    backend: "file",
    canClear: true,
    where: dir,
    async list(project, stack) {
      const d = dir(project, stack);
      if (!existsSync(d)) return [];
      const out: StackLock[] = [];
      const names = await readdir(d);
      for (const name of names.filter((f) => /\.json\.[^/]*\.tmp$/.test(f))) {
        const file = path.join(d, name);
        const info = await stat(file).catch(() => null);
        if (info) out.push({ location: file, pid: undefined, hostname: undefined, username: undefined, timestamp: info.mtimeMs, incomplete: true });
      }
      for (const name of names.filter((f) => f.endsWith(".json"))) {
        const file = path.join(d, name);
        // A lock removed between the listing and the read was released meanwhile.
        const text = await readFile(file, "utf8").catch(() => null);
        if (text !== null) out.push(lockOf(file, text));
      }
      return out;
    },
    async clear(lock) {
      await rm(lock.location, { force: true });
      await rm(`${lock.location}.attrs`, { force: true });
    },
  };
}

/**
 * Locks in an object store, read and removed through a blob store rooted at the backend's prefix
 * (`.pulumi/locks/organization/<project>/<stack>/<uuid>.json`). Each lock's location is its key.
 */
export function objectLockStore(backend: string, blobs: BlobStore, options: LockStoreOptions = {}): StackLockStore {
  const dir = (project: string, stack: string): string => `${LOCKS.join("/")}/${project}/${stack}/`;
  const read = async (prefix: string): Promise<StackLock[]> => {
    const out: StackLock[] = [];
    for (const entry of await blobs.list(prefix)) {
      // Only the stack's own lock objects: not a deeper key, not another stack whose name starts the same.
      const name = entry.key.slice(prefix.length);
      if (name.includes("/") || !name.endsWith(".json")) continue;
      // A lock removed between the listing and the read was released meanwhile.
      const body = await blobs.get(entry.key);
      if (body !== null) out.push(lockOf(entry.key, body.toString("utf8")));
    }
    return out;
  };
  return {
    backend,
    canClear: true,
    where: (project, stack) => `${blobs.location}/${dir(project, stack)}`,
    async list(project, stack) {
      try {
        return await read(dir(project, stack));
      } catch (err) {
        if (err instanceof TransientError) throw err;
        // Not readable with this process's credentials: as unknown as on a backend not read at all.
        unreadable(backend, blobs.location, err, options.logger);
        return null;
      }
    },
    async clear(lock) {
      await blobs.delete(lock.location);
    },
  };
}

export interface LockStoreOptions {
  /** Where the one warning about unreadable locks goes (the process's logger); a default logger otherwise. */
  readonly logger?: Logger;
}

/** Backends already warned about in this process. */
const warned = new Set<string>();
let fallbackLogger: Logger | undefined;

function unreadable(backend: string, location: string, err: unknown, logger: Logger | undefined): void {
  if (warned.has(location)) return;
  warned.add(location);
  // The error's type and status only: its message and cause may carry request details.
  const errorType = err instanceof Error ? (err.cause instanceof Error ? err.cause.name : err.name) : typeof err;
  const status = (err as { cause?: { $metadata?: { httpStatusCode?: unknown } } } | undefined)?.cause?.$metadata?.httpStatusCode;
  fallbackLogger ??= createLogger({ base: { component: "stack-locks" } });
  (logger ?? fallbackLogger).warn(
    { backend, location, errorType, ...(typeof status === "number" ? { status } : {}) },
    "stack locks on the state backend cannot be read with this process's credentials; stale locks are not recovered here, and the engine still refuses a locked stack",
  );
}

/** A backend whose locks are not read here: the engine is the one to find them. */
function opaqueLockStore(backend: string, base: string): StackLockStore {
  return {
    backend,
    canClear: false,
    where: (project, stack) => `${base}/${LOCKS.join("/")}/${project}/${stack}/`,
    list: () => Promise.resolve(null),
    clear: () => Promise.reject(new Error(`locks on the ${backend} backend cannot be cleared by Stackrail yet`)),
  };
}

/** The lock store of a backend URL. Object-store URLs are shown as scheme, bucket and path only. */
export function lockStoreFor(backendUrl: string, options: LockStoreOptions = {}): StackLockStore {
  if (backendUrl.startsWith("file://")) return fileLockStore(backendUrl);
  if (backendUrl.startsWith("s3://")) {
    try {
      const location = parseBlobUrl(backendUrl, "pulumi");
      if (location.kind === "s3") return objectLockStore("s3", s3BlobStore(location), options);
    } catch (err) {
      // A URL the engine may still accept but Stackrail cannot read: its locks are left to the engine.
      if (!(err instanceof BlobUrlError)) throw err;
      return opaqueLockStore("s3", backendUrl.split("?")[0] ?? "s3");
    }
  }
  let url: URL | undefined;
  try {
    url = new URL(backendUrl);
  } catch {
    url = undefined;
  }
  const scheme = url?.protocol.replace(/:$/, "") ?? "unknown";
  const base = url ? `${url.protocol}//${url.hostname}${url.pathname.replace(/\/$/, "")}` : scheme;
  return opaqueLockStore(scheme, base);
}
