// CPU accounting around a benchmark, to tell its own load from other processes' on a shared machine:
// this process and its reaped descendants (utime+stime+cutime+cstime from /proc/self/stat) against
// every CPU's busy time from /proc/stat. Linux only; elsewhere the figures are NaN.
import { readFileSync } from "node:fs";

interface Snapshot {
  readonly at: number;
  readonly selfTicks: number;
  readonly busyTicks: number;
}

const TICKS_PER_S = 100; // USER_HZ on Linux

function snapshot(): Snapshot {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .map(Number);
    // Fields 14-17 of proc(5) (utime, stime, cutime, cstime) are 11-14 after "(comm) ".
    const selfTicks = (fields[11] ?? 0) + (fields[12] ?? 0) + (fields[13] ?? 0) + (fields[14] ?? 0);
    const cpu = (/^cpu\s+(.+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1] ?? "").split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    const busyTicks = cpu.slice(0, 8).reduce((s, v, i) => (i === 3 || i === 4 ? s : s + v), 0);
    return { at: performance.now(), selfTicks, busyTicks };
  } catch {
    return { at: performance.now(), selfTicks: Number.NaN, busyTicks: Number.NaN };
  }
}

export interface CpuUse {
  readonly wallS: number;
  /** Average cores used by this process and its finished descendants. */
  readonly oursCores: number;
  /** Average cores used by everything else on the machine meanwhile. */
  readonly othersCores: number;
}

export function startCpu(): () => CpuUse {
  const a = snapshot();
  return () => {
    const b = snapshot();
    const wallS = (b.at - a.at) / 1000;
    const ours = (b.selfTicks - a.selfTicks) / TICKS_PER_S / wallS;
    const all = (b.busyTicks - a.busyTicks) / TICKS_PER_S / wallS;
    const r = (n: number): number => Math.round(n * 100) / 100;
    return { wallS: r(wallS), oursCores: r(ours), othersCores: r(Math.max(0, all - ours)) };
  };
}
