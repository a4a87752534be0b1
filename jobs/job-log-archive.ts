// A finished job's full log, kept with the job in the blob store (issue 15 §4): when a job ends
// (succeeded, failed, cancelled, superseded) the worker renders its Redis stream (job-logs.ts) to
// the text `GET /v1/jobs/:id/logs` answers, already scrubbed, and stores it as
//   jobs/<jobId>/log.txt
// then lets the stream expire within JOB_LOG_ARCHIVED_TTL_SECONDS instead of the job record's
// seven days. The edge reads through ArchivedJobLogStore: the stream while it exists, the archive
// once it is gone. An archive that cannot be written leaves the stream with its normal TTL.
//
// Retention: an archive goes when the job's record would (JOB_OPTIONS' removeOnComplete/removeOnFail
// ages, counted from the job's end; the archive's own time is the job's end). The worker's scheduler
// sweeps `jobs/` for archives older than that (sweepJobLogArchives).
import { BlobKeyError, checkKey, type BlobStore } from "../core/blob-store.ts";
import { jobIdSchema } from "../core/jobs.ts";
import { logRenderer, type JobLogEntry, type JobLogStore, type RedisJobLogStore } from "./job-logs.ts";
import { JOB_OPTIONS } from "./queue.ts";

/** How long the Redis stream stays once archived: readers that started on it finish on it. */
export const JOB_LOG_ARCHIVED_TTL_SECONDS = 3600;
/** Archives are deleted this long after the job ended: when its record is removed. */
export const JOB_LOG_ARCHIVE_RETENTION_MS = Math.max(JOB_OPTIONS.removeOnComplete.age, JOB_OPTIONS.removeOnFail.age) * 1000;

const ARCHIVE_FOLDER = "jobs/";
const ARCHIVE_FILE = "log.txt";
/** Entries read from the stream per call while archiving. */
const PAGE = 1000;
/** The archive is answered in entries of this many characters (the API reads 1000 entries at a time). */
const CHUNK_CHARS = 64 * 1024;
/** Archive entries' ids: `a:<character offset>`, never a stream id (`<ms>-<seq>`). */
const ARCHIVE_CURSOR = /^a:(\d{1,12})$/;

/** `jobs/<jobId>/log.txt`; the id is validated again (and `.`/`..` refused by checkKey). */
export function jobLogArchiveKey(jobId: string): string {
  if (!jobIdSchema.safeParse(jobId).success) throw new BlobKeyError("job id is not valid for a blob key");
  return checkKey(`${ARCHIVE_FOLDER}${jobId}/${ARCHIVE_FILE}`);
}

/**
 * Copies a finished job's log from its stream to the blob store, then shortens the stream's life.
 * Resolves null when the job has no log (superseded before it ever ran). Throws when the archive
 * cannot be written: the caller logs it, and the stream keeps its normal TTL.
 */
export async function archiveJobLog(store: RedisJobLogStore, blobs: BlobStore, jobId: string): Promise<{ key: string; bytes: number } | null> {
  const key = jobLogArchiveKey(jobId);
  const render = logRenderer();
  let text = "";
  let after: string | undefined;
  let entries = 0;
  for (;;) {
    const batch = await store.read(jobId, { ...(after ? { after } : {}), count: PAGE });
    entries += batch.length;
    text += render(batch);
    if (batch.length < PAGE) break;
    after = batch[batch.length - 1]?.id;
  }
  if (entries === 0) return null;
  const body = Buffer.from(text, "utf8");
  await blobs.put(key, body);
  await store.expire(jobId, JOB_LOG_ARCHIVED_TTL_SECONDS);
  return { key, bytes: body.length };
}

/**
 * The log as the edge reads it: the live stream (job-logs.ts) while it has the job's entries, the
 * archive once the stream is gone. A reader that started on the stream stays on it (its cursor is a
 * stream id); the stream outlives its archiving by an hour, longer than any read of a finished log.
 */
export class ArchivedJobLogStore implements JobLogStore {
  readonly #live: JobLogStore;
  readonly #blobs: BlobStore;

  constructor(live: JobLogStore, blobs: BlobStore) {
    this.#live = live;
    this.#blobs = blobs;
  }

  append(jobId: string, entries: readonly { kind: "output" | "progress"; text: string }[]): Promise<void> {
    return this.#live.append(jobId, entries);
  }

  async read(jobId: string, options: { after?: string; count?: number } = {}): Promise<JobLogEntry[]> {
    const archived = options.after === undefined ? undefined : ARCHIVE_CURSOR.exec(options.after);
    if (!archived) {
      const live = await this.#live.read(jobId, options);
      // Entries, or a reader on the stream's cursor: the stream answers.
      if (live.length > 0 || options.after !== undefined) return live;
    }
    const body = await this.#blobs.get(jobLogArchiveKey(jobId));
    if (body === null) return [];
    const text = body.toString("utf8");
    const out: JobLogEntry[] = [];
    const count = options.count ?? 1000;
    for (let at = Number(archived?.[1] ?? 0); at < text.length && out.length < count; at += CHUNK_CHARS) {
      // An entry's id is where the next read starts: the end of the entry.
      const end = Math.min(text.length, at + CHUNK_CHARS);
      out.push({ id: `a:${end}`, kind: "output", text: text.slice(at, end) });
    }
    return out;
  }
}

/**
 * Deletes archived logs older than `retentionMs` (their job's record is gone too); returns how many.
 * Keys under `jobs/` that are not a job's log are left alone.
 */
export async function sweepJobLogArchives(blobs: BlobStore, options: { retentionMs?: number; now?: number } = {}): Promise<number> {
  const cutoff = (options.now ?? Date.now()) - (options.retentionMs ?? JOB_LOG_ARCHIVE_RETENTION_MS);
  let deleted = 0;
  for (const entry of await blobs.list(ARCHIVE_FOLDER)) {
    const [folder, jobId, file, ...rest] = entry.key.split("/");
    if (`${folder ?? ""}/` !== ARCHIVE_FOLDER || file !== ARCHIVE_FILE || rest.length > 0 || !jobIdSchema.safeParse(jobId).success) continue;
    if (entry.lastModified.getTime() >= cutoff) continue;
    await blobs.delete(entry.key);
    deleted += 1;
  }
  return deleted;
}
