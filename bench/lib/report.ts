// Result rows every benchmark returns, the printed table, the JSON file and the machine they were
// measured on. A row compares one figure of ours with the same figure of a baseline measured in the
// same run; `met` says whether the goal holds. Nothing here fails the run on a slow machine.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";

export interface Row {
  /** Benchmark (ingest, overhead, fanout, storm, memory) and the figure it reports. */
  readonly bench: string;
  readonly metric: string;
  readonly ours: number;
  readonly baseline: number;
  readonly unit: string;
  /** ours / baseline (or baseline / ours for "higher is better" durations), as the goal is phrased. */
  readonly ratio: number | null;
  readonly goal: string;
  /** null for rows that only inform (no goal applies). */
  readonly met: boolean | null;
  /** What the baseline is, exactly. */
  readonly baselineIs: string;
  readonly details?: Record<string, unknown>;
}

export interface Machine {
  readonly date: string;
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memoryMiB: number;
  readonly loadAverage: readonly number[];
  readonly node: string;
  readonly platform: string;
  readonly gitCommit: string;
}

export function machineInfo(): Machine {
  let cpuModel = os.cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) cpuModel = m[1].trim();
  } catch {
    // not Linux
  }
  let gitCommit = "unknown";
  try {
    gitCommit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    // not a checkout
  }
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpuModel,
    memoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    gitCommit,
  };
}

const fmt = (n: number): string => {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
};

/** A plain-text table: name, ours, baseline, ratio, goal, met? */
export function renderTable(rows: readonly Row[]): string {
  const header = ["benchmark", "metric", "ours", "baseline", "ratio", "goal", "met?"];
  const body = rows.map((r) => [
    r.bench,
    r.metric,
    `${fmt(r.ours)} ${r.unit}`,
    `${fmt(r.baseline)} ${r.unit}`,
    r.ratio === null ? "–" : `${fmt(r.ratio)}×`,
    r.goal,
    r.met === null ? "–" : r.met ? "yes" : "NO",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1] as number;
}

export const round = (n: number, digits = 2): number => Math.round(n * 10 ** digits) / 10 ** digits;

/** Progress on stderr, so stdout carries only the table. */
export function say(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

export function envInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be a whole number >= ${min} (got "${raw}")`);
  return n;
}
