// The service's worker as a separate OS process (`main.ts --role worker`), as production runs it,
// so that a test can SIGKILL, SIGSTOP or SIGTERM it and everything it started. Its log lines go
// to a file (pino JSON), which the test reads to know when the worker is ready and how it ended.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { engineLocation, PROJECT_ROOT } from "../../core/engine.ts";
import { descendants } from "../../worker/process-tree.ts";
import { waitUntil } from "./private-services.ts";

export interface WorkerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: number;
}

export interface WorkerProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly startedAt: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<WorkerExit>;
  alive(): boolean;
  /** Whether ready() has seen the worker take jobs. */
  isReady(): boolean;
  /** The log file's lines, parsed (lines that are not JSON are skipped). */
  logs(): Record<string, unknown>[];
  /** Waits until the worker logged "worker started" (its BullMQ worker takes jobs from then on). */
  ready(timeoutMs?: number): Promise<void>;
  /** A signal to the worker process only. */
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL of the worker and every process under it (a killed container or cgroup). */
  killAll(): Promise<WorkerExit>;
  /** SIGSTOP / SIGCONT of the worker and every process under it (a frozen VM or cgroup). */
  freezeAll(): number[];
  thawAll(pids: number[]): void;
  /** The processes under the worker now. */
  tree(): number[];
}

/** A process's command line ("" when it is gone). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** The parent pid and age (seconds) of a process, from /proc. */
export function processInfo(pid: number): { ppid: number; ageS: number } | null {
  try {
    // Fields after the command name (which may hold spaces): state ppid ... starttime is field 22.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const uptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    const ticks = 100; // USER_HZ on Linux
    return { ppid: Number(fields[1]), ageS: Math.round(uptime - Number(fields[19]) / ticks) };
  } catch {
    return null;
  }
}

/** Pids of every process whose command line contains `needle` (the Pulumi CLI names the stack it runs). */
export function processesMatching(needle: string): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => pid !== process.pid && commandLine(pid).includes(needle));
}

/** The worker's Pulumi operation children that are running an operation (they have processes under them). */
export function operationChildren(workerPid: number): number[] {
  return descendants(workerPid).filter((pid) => commandLine(pid).includes("pulumi-child.ts") && descendants(pid).length > 0);
}

export function startWorkerProcess(env: Record<string, string>, options: { name: string; logFile: string }): WorkerProcess {
  const fd = openSync(options.logFile, "a");
  const child: ChildProcess = spawn(engineLocation().node, ["main.ts", "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`worker ${options.name} did not start`);
  const pid = child.pid;
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  let gone = false;
  let isReady = false;
  void exited.then(() => {
    gone = true;
  });
  const logs = (): Record<string, unknown>[] => {
    if (!existsSync(options.logFile)) return [];
    const out: Record<string, unknown>[] = [];
    for (const line of readFileSync(options.logFile, "utf8").split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut off by a kill
      }
    }
    return out;
  };
  return {
    name: options.name,
    pid,
    logFile: options.logFile,
    startedAt: Date.now(),
    exited,
    alive: () => !gone,
    isReady: () => isReady,
    logs,
    async ready(timeoutMs = 60_000) {
      await waitUntil(`worker ${options.name} to start`, () => gone || logs().some((l) => l.msg === "worker started"), timeoutMs);
      if (gone) {
        // A worker that refuses to start says why on its last lines (configuration, engine missing).
        const tail = existsSync(options.logFile) ? readFileSync(options.logFile, "utf8").trim().split("\n").slice(-3).join(" | ") : "";
        throw new Error(`worker ${options.name} exited while starting: ${tail.slice(0, 600)}`);
      }
      isReady = true;
    },
    signal(signal) {
      if (!gone) process.kill(pid, signal);
    },
    async killAll() {
      // Everything at once, as a killed container: stopped first (the worker first, so it reacts to
      // nothing, e.g. a child's death), then killed. Killing leaves first would let the worker see
      // its children die and act on it in the gap.
      const pids = [pid, ...descendants(pid)];
      for (const p of pids) signalQuietly(p, "SIGSTOP");
      for (const p of descendants(pid)) {
        if (pids.includes(p)) continue;
        pids.push(p);
        signalQuietly(p, "SIGSTOP");
      }
      for (const p of pids) signalQuietly(p, "SIGKILL");
      return exited;
    },
    freezeAll() {
      // The worker first, so that it starts nothing new while its tree is being stopped.
      const pids = [pid, ...descendants(pid)];
      for (const p of pids) signalQuietly(p, "SIGSTOP");
      return pids;
    },
    thawAll(pids) {
      for (const p of pids) signalQuietly(p, "SIGCONT");
    },
    tree: () => descendants(pid),
  };
}
