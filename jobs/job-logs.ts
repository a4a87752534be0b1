// A job's full log: the Pulumi engine's own output (what `pulumi up` prints, stdout and stderr)
// interleaved, in order, with the job's progress lines. The worker writes it while the job runs;
// `GET /v1/jobs/:id/logs` reads it, and follows it until the job ends.
//
// Storage sits behind JobLogStore; RedisJobLogStore keeps each job's log as a Redis stream:
//   <prefix>:joblog:<jobId>       stream of entries {k: o|p|t, d: text}; ids are the read cursor
//   <prefix>:joblog-size:<jobId>  bytes stored so far (a stream cannot say); -1 once truncated
// Both expire JOB_LOG_TTL_SECONDS after the last write: a job's record is removed that long after
// it finished (queue.ts JOB_OPTIONS), and the last write is the job's end. Once a finished job's
// log is archived to the blob store (jobs/job-log-archive.ts), the stream expires within the hour
// instead and ArchivedJobLogStore reads the archive.
//
// Text is scrubbed of every known secret value before it is stored. Engine output arrives in
// arbitrary chunks, so it is scrubbed and stored by whole lines (a secret cut in two by a chunk
// boundary would pass a per-chunk scrub); a partial last line waits at most FLUSH_MS.
import { AsyncLocalStorage } from "node:async_hooks";
import type { Redis } from "ioredis";
import type { SecretScrubber } from "../core/logger.ts";
import { JOB_OPTIONS } from "./queue.ts";

export type JobLogKind = "output" | "progress" | "truncated";

export interface JobLogEntry {
  /** Opaque, increasing: pass it back as `after` to read what came later. */
  readonly id: string;
  readonly kind: JobLogKind;
  readonly text: string;
}

export interface JobLogStore {
  /** Appends in order; past the job's byte cap, output is dropped behind one `truncated` entry. */
  append(jobId: string, entries: readonly { kind: "output" | "progress"; text: string }[]): Promise<void>;
  /** Up to `count` entries after `after` (from the start without it), oldest first. */
  read(jobId: string, options?: { after?: string; count?: number }): Promise<JobLogEntry[]>;
}

/** Records live as long as the job's record: removed this long after the job finished. */
export const JOB_LOG_TTL_SECONDS = JOB_OPTIONS.removeOnComplete.age;
/** Engine output kept per job (5 MiB); more is replaced by one `[truncated]` line. */
export const JOB_LOG_MAX_BYTES = 5 * 1024 * 1024;
/**
 * Progress lines are still kept past the cap, up to this much more: a job's last lines (what it
 * committed, why it failed) matter most and are small.
 */
export const JOB_LOG_PROGRESS_RESERVE_BYTES = 256 * 1024;

const KIND_CODE: Record<JobLogKind, string> = { output: "o", progress: "p", truncated: "t" };
const CODE_KIND: Record<string, JobLogKind> = { o: "output", p: "progress", t: "truncated" };

/** `[truncated]` marker line: says what was dropped and why. */
export function truncatedText(maxBytes: number): string {
  return `[truncated] the job's engine output reached its limit of ${Math.round(maxBytes / 1024 / 1024)} MiB; later output was not kept\n`;
}

// KEYS[1] stream, KEYS[2] size   ARGV: ttl, maxBytes, reserveBytes, marker, then kind/text pairs.
// One script per batch: the size check and the appends cannot interleave with another writer.
const APPEND = `
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local truncated = used < 0
if truncated then used = -used - 1 end
local max = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
for i = 5, #ARGV, 2 do
  local kind = ARGV[i]
  local text = ARGV[i + 1]
  local limit = max
  if kind == 'p' then limit = max + reserve end
  if used + #text <= limit then
    redis.call('XADD', KEYS[1], '*', 'k', kind, 'd', text)
    used = used + #text
  elseif not truncated then
    truncated = true
    redis.call('XADD', KEYS[1], '*', 'k', 't', 'd', ARGV[4])
  end
end
local stored = used
if truncated then stored = -used - 1 end
redis.call('SET', KEYS[2], stored, 'EX', tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return used
`;

export class RedisJobLogStore implements JobLogStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #maxBytes: number;
  readonly #ttlSeconds: number;

  constructor(redis: Redis, prefix: string, options: { maxBytes?: number; ttlSeconds?: number } = {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#maxBytes = options.maxBytes ?? JOB_LOG_MAX_BYTES;
    this.#ttlSeconds = options.ttlSeconds ?? JOB_LOG_TTL_SECONDS;
  }

  streamKey(jobId: string): string {
    return `${this.#prefix}:joblog:${jobId}`;
  }

  #sizeKey(jobId: string): string {
    return `${this.#prefix}:joblog-size:${jobId}`;
  }

  async append(jobId: string, entries: readonly { kind: "output" | "progress"; text: string }[]): Promise<void> {
    if (entries.length === 0) return;
    const reserve = Math.min(JOB_LOG_PROGRESS_RESERVE_BYTES, this.#maxBytes);
    await this.#redis.eval(
      APPEND,
      2,
      this.streamKey(jobId),
      this.#sizeKey(jobId),
      String(this.#ttlSeconds),
      String(this.#maxBytes),
      String(reserve),
      truncatedText(this.#maxBytes),
      ...entries.flatMap((e) => [KIND_CODE[e.kind], e.text]),
    );
  }

  /**
   * Sets both keys to expire in `ttlSeconds` (once the log is archived: jobs/job-log-archive.ts).
   * Only after the job's last write: a later append would set the long TTL again.
   */
  async expire(jobId: string, ttlSeconds: number): Promise<void> {
    await this.#redis.multi().expire(this.streamKey(jobId), ttlSeconds).expire(this.#sizeKey(jobId), ttlSeconds).exec();
  }

  async read(jobId: string, options: { after?: string; count?: number } = {}): Promise<JobLogEntry[]> {
    const start = options.after === undefined ? "-" : `(${options.after}`;
    const raw = (await this.#redis.xrange(this.streamKey(jobId), start, "+", "COUNT", options.count ?? 1000)) as [string, string[]][];
    return raw.map(([id, fields]) => {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] ?? ""] = fields[i + 1] ?? "";
      return { id, kind: CODE_KIND[f.k ?? ""] ?? "output", text: f.d ?? "" };
    });
  }
}

/** A stream id as RedisJobLogStore hands it out (the read cursor the API accepts). */
export const LOG_CURSOR_PATTERN = /^\d{1,20}-\d{1,20}$/;

/** The text an entry is shown as: engine output as the engine printed it, Stackrail's own lines marked. */
export function renderEntry(entry: Pick<JobLogEntry, "kind" | "text">): string {
  if (entry.kind === "progress") return `[stackrail] ${entry.text}\n`;
  return entry.text;
}

/**
 * Renders successive batches of one log as the API answers it: engine output as printed, and each
 * Stackrail line on a line of its own even when the engine's output stopped mid-line (progress
 * dots). The archive (jobs/job-log-archive.ts) stores exactly this text.
 */
export function logRenderer(): (entries: readonly Pick<JobLogEntry, "kind" | "text">[]) => string {
  let lineStart = true;
  return (entries) => {
    let out = "";
    for (const entry of entries) {
      if (entry.kind !== "output" && !lineStart) out += "\n";
      const rendered = renderEntry(entry);
      out += rendered;
      if (rendered.length > 0) lineStart = rendered.endsWith("\n");
    }
    return out;
  };
}

/** What the runner writes to while a job runs. */
export interface JobLogSink {
  /** A chunk of the engine's output, as it came (need not end at a line). */
  output(text: string): void;
  /** One of the job's progress lines, after everything output before it. */
  progress(line: string): void;
}

export interface JobLogWriter extends JobLogSink {
  /** Stores whatever is buffered; resolves once everything written so far is stored. */
  flush(): Promise<void>;
}

const FLUSH_MS = 250;
/** A buffer this large is stored at once, whole lines or not. */
const FLUSH_BYTES = 64 * 1024;

/**
 * The per-job writer: buffers engine output into whole lines, scrubs, and appends in order (one
 * store call at a time, so entries never overtake each other). A failing store never fails the
 * job: the entries are dropped and `onError` is told.
 */
export function jobLogWriter(
  store: JobLogStore,
  jobId: string,
  deps: { scrubber: SecretScrubber; onError?: (err: unknown) => void; flushMs?: number },
): JobLogWriter {
  let pending = "";
  let queue: { kind: "output" | "progress"; text: string }[] = [];
  let chain: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const ship = (): Promise<void> => {
    const batch = queue;
    queue = [];
    if (batch.length === 0) return chain;
    chain = chain.then(() => store.append(jobId, batch)).catch((err: unknown) => deps.onError?.(err));
    return chain;
  };
  const takeLines = (all: boolean): void => {
    const cut = all ? pending.length : pending.lastIndexOf("\n") + 1;
    if (cut <= 0) return;
    queue.push({ kind: "output", text: deps.scrubber.scrub(pending.slice(0, cut)) });
    pending = pending.slice(cut);
  };
  let held: string | undefined;
  const schedule = (): void => {
    timer ??= setTimeout(() => {
      timer = undefined;
      takeLines(false);
      // A partial line that sat a whole interval unchanged goes out as it is (a prompt, dots).
      if (pending.length > 0 && pending === held) takeLines(true);
      held = pending.length > 0 ? pending : undefined;
      if (held !== undefined) schedule();
      void ship();
    }, deps.flushMs ?? FLUSH_MS);
  };

  return {
    output(text) {
      if (text.length === 0) return;
      pending += text;
      if (pending.length >= FLUSH_BYTES) {
        takeLines(true);
        void ship();
        return;
      }
      takeLines(false);
      schedule();
    },
    progress(line) {
      takeLines(true);
      queue.push({ kind: "progress", text: deps.scrubber.scrub(line) });
      void ship();
    },
    flush() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      takeLines(true);
      return ship();
    },
  };
}

const scope = new AsyncLocalStorage<JobLogSink>();

/** Runs a job's handler with its log: Pulumi operations started inside write their output to it. */
export function runWithJobLog<T>(sink: JobLogSink, fn: () => T): T {
  return scope.run(sink, fn);
}

/** The log of the job whose handler is running here, if any. */
export function currentJobLog(): JobLogSink | undefined {
  return scope.getStore();
}
