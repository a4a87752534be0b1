// Human output: aligned tables, key/value blocks, ages, and the progress line shown while a job runs.
// Results go to stdout, progress and errors to stderr, so `stackrail ... > file` keeps only results.

export interface Writer {
  write(text: string): void;
}

export interface Terminal {
  readonly out: Writer;
  readonly err: Writer;
  /** stderr is a terminal: the progress line redraws in place instead of printing line by line. */
  readonly errIsTty: boolean;
  readonly columns: number;
  readonly now: () => number;
}

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => string;
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = [columns.map((c) => c.header), ...rows.map((r) => columns.map((c) => oneLine(c.value(r))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length)));
  return (
    cells
      .map((row) =>
        row
          .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

/** `key  value` lines, keys aligned; nested objects are indented below their key. */
export function keyValues(entries: readonly (readonly [string, unknown])[], indent = ""): string {
  const shown = entries.filter(([, v]) => v !== undefined);
  const width = Math.max(0, ...shown.map(([k]) => k.length));
  let text = "";
  for (const [key, value] of shown) {
    if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length > 0) {
      text += `${indent}${key}\n${keyValues(Object.entries(value as Record<string, unknown>), `${indent}  `)}`;
    } else if (Array.isArray(value) && value.length > 0 && value.some((v) => v !== null && typeof v === "object")) {
      // A list of records (a rollout's waves): one line each.
      text += `${indent}${key}\n${value.map((v) => `${indent}  - ${oneLine(inline(v))}\n`).join("")}`;
    } else {
      text += `${indent}${key.padEnd(width)}  ${scalar(value)}\n`;
    }
  }
  return text;
}

export function scalar(value: unknown): string {
  if (value === null || value === undefined || value === "") return "-";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** `a=1  b=x` for a record (empty values left out), the scalar otherwise. */
export function inline(value: unknown): string {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return scalar(value);
  return Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.map((x) => scalar(x)).join(",") : scalar(v)}`)
    .join("  ");
}

/** Values longer than this go on lines of their own under a record's row. */
const SHORT = 48;

/**
 * A list of records as rows: the short fields aligned in columns, each long field (a detail, a
 * repair command) on its own indented line below its row, so nothing is cut.
 */
export function records(items: readonly Record<string, unknown>[], indent = "  "): string {
  const keys = [...new Set(items.flatMap((i) => Object.keys(i)))];
  const short = keys.filter((k) => items.every((i) => i[k] === undefined || i[k] === null || (typeof i[k] !== "object" && scalar(i[k]).length <= SHORT)));
  const long = keys.filter((k) => !short.includes(k));
  const widths = short.map((k) => Math.max(k.length, ...items.map((i) => scalar(i[k]).length)));
  const row = (cells: string[]) => `${indent}${cells.map((c, n) => (n === cells.length - 1 ? c : c.padEnd(widths[n] ?? 0))).join("  ")}`.trimEnd();
  let text = short.length > 0 ? `${row(short.map((k) => k.toUpperCase()))}\n` : "";
  for (const item of items) {
    if (short.length > 0) text += `${row(short.map((k) => oneLine(scalar(item[k]))))}\n`;
    for (const k of long)
      if (item[k] !== undefined && item[k] !== null) text += `${indent}    ${k}: ${oneLine(typeof item[k] === "object" ? inline(item[k]) : scalar(item[k]))}\n`;
  }
  return text;
}

function oneLine(text: string): string {
  return text.replace(/[\r\n\t]+/g, " ");
}

/** `3m ago`, `2h ago`: how long ago an ISO time was; `-` when there is none. */
export function age(iso: string | null | undefined, now: number): string {
  if (!iso) return "-";
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return iso;
  return `${duration(Math.max(0, ms))} ago`;
}

/** `45s`, `3m12s`, `2h05m`, `3d04h`. */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

/**
 * While a job runs: on a terminal, one line redrawn in place (state, elapsed time, newest progress
 * line); elsewhere (CI logs, pipes), each progress line once, with the time since the wait began.
 */
export class ProgressLine {
  readonly #term: Terminal;
  readonly #started: number;
  #drawn = false;
  #last = "";

  constructor(term: Terminal) {
    this.#term = term;
    this.#started = term.now();
  }

  get elapsedMs(): number {
    return this.#term.now() - this.#started;
  }

  get elapsed(): string {
    return duration(this.elapsedMs);
  }

  line(jobId: string, text: string): void {
    this.#last = text;
    if (!this.#term.errIsTty) this.#term.err.write(`[${this.elapsed}] ${jobId}: ${oneLine(text)}\n`);
  }

  redraw(jobId: string, state: string): void {
    if (!this.#term.errIsTty) return;
    const text = oneLine(`${jobId} ${state} ${this.elapsed}${this.#last ? `  ${this.#last}` : ""}`).slice(0, Math.max(20, this.#term.columns - 1));
    this.#term.err.write(`\r\x1b[2K${text}`);
    this.#drawn = true;
  }

  /** Clears the redrawn line before the final message. */
  done(): void {
    if (this.#drawn) this.#term.err.write("\r\x1b[2K");
    this.#drawn = false;
  }
}
