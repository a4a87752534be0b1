// A process and everything it started. Pulumi plugins start their own process groups, so a group
// kill misses them: the tree is read from the process table instead.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Every descendant of `pid`, parents before children. */
export function descendants(pid: number): number[] {
  let table: string;
  try {
    table = execFileSync("ps", ["-eo", "pid=,ppid="], { encoding: "utf8" });
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const line of table.split("\n")) {
    const [p, pp] = line.trim().split(/\s+/).map(Number);
    if (p === undefined || pp === undefined || Number.isNaN(p)) continue;
    children.set(pp, [...(children.get(pp) ?? []), p]);
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const next = stack.pop() as number;
    for (const c of children.get(next) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

/**
 * SIGKILLs every process whose environment holds `name=value`: what a process started (and they
 * started) after it died, when they were handed to init and no tree leads to them any more.
 */
export function killMarked(name: string, value: string): number[] {
  const needle = `${name}=${value}`;
  const killed: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, "utf8");
    } catch {
      continue; // gone, or not ours to read
    }
    if (!environ.split("\0").includes(needle)) continue;
    try {
      process.kill(Number(entry), "SIGKILL");
      killed.push(Number(entry));
    } catch {
      // already gone
    }
  }
  return killed;
}

/** Signals the descendants of `pid`, leaves first, and then `pid` itself unless told not to. */
export function killTree(pid: number, signal: NodeJS.Signals = "SIGKILL", options: { includeRoot?: boolean } = {}): void {
  const targets = descendants(pid).reverse();
  if (options.includeRoot ?? true) targets.push(pid);
  for (const p of targets) {
    try {
      process.kill(p, signal);
    } catch {
      // already gone
    }
  }
}
