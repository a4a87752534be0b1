// A process and everything it started. Pulumi plugins start their own process groups, so a group
// kill misses them: the tree is read from the process table instead.
import { execFileSync } from "node:child_process";

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
