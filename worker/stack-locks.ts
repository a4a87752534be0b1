// A Pulumi stack's lock as its backend stores it, read and removed without starting the engine.
//
// The DIY backends (file://, s3://, gs://, azblob://) keep one lock object per running update at
//   <backend>/.pulumi/locks/organization/<project>/<stack>/<uuid>.json
// holding {pid, username, hostname, timestamp} of the CLI process that wrote it (pkg/backend/diy/lock.go);
// the file backend adds a `<uuid>.json.attrs` metadata sidecar. Only the file backend is read here:
// the object stores need a client that arrives with issue 14, so until then their locks are
// neither read nor cleared (the engine still refuses to run on a locked stack, and the job waits).
// The Pulumi Cloud backend (https://) manages its own update leases and has no lock objects.
import { existsSync } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

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
export function lockStoreFor(backendUrl: string): StackLockStore {
  if (backendUrl.startsWith("file://")) return fileLockStore(backendUrl);
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
