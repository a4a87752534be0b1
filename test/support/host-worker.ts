// A worker on a "machine" of its own: `main.ts --role worker` in a UTS namespace of its own
// (`unshare --uts`, plus a user namespace when not root), so the OS host name its processes see,
// and that the Pulumi engine writes into its stack locks, is the one given here, while the rest of
// the machine (process table, boot id, disk) stays shared. With its own STACKRAIL_DATA_DIR in the
// environment, nothing of another worker's or the API's disk is reachable through configuration.
// Its pino log (at info, whatever the environment says) goes to a file the test reads (ready, job starts).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { engineLocation, PROJECT_ROOT } from "../../core/engine.ts";
import { descendants } from "../../worker/process-tree.ts";
import { waitUntil } from "./private-services.ts";

export interface HostWorker {
  readonly name: string;
  /** The host name the worker's processes see (and its identity carries). */
  readonly host: string;
  readonly dataDir: string;
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  logs(): Record<string, unknown>[];
  /** Waits for "worker started"; throws with the log's tail when the worker exits first. */
  ready(timeoutMs?: number): Promise<void>;
  /** Whether this worker logged the start of the job. */
  started(jobId: string): boolean;
  /** SIGSTOP of the worker and everything under it, the worker first (a frozen machine). */
  freezeAll(): number[];
  /** SIGKILL of the worker and everything under it (a machine that died). */
  killAll(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The `unshare` arguments that give a process its own host name here, or an error naming what is missing. */
function unsharePrefix(): string[] {
  const asRoot = process.getuid?.() === 0;
  const prefix = asRoot ? ["--uts"] : ["--user", "--map-root-user", "--uts"];
  try {
    execFileSync("unshare", [...prefix, "--", "sh", "-c", 'hostname stackrail-probe && test "$(hostname)" = stackrail-probe'], { stdio: "ignore" });
  } catch (err) {
    throw new Error(
      `a worker on a host name of its own needs \`unshare ${prefix.join(" ")}\` (util-linux; user namespaces when not root): ${(err as Error).message}`,
    );
  }
  return prefix;
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export function startHostWorker(options: { name: string; host: string; dataDir: string; env: Record<string, string>; logFile: string }): HostWorker {
  const fd = openSync(options.logFile, "a");
  // `unshare` execs the shell, which sets the name and execs node: the pid is the worker's throughout.
  const child: ChildProcess = spawn(
    "unshare",
    [...unsharePrefix(), "--", "sh", "-c", 'hostname "$1" && exec "$0" main.ts --role worker', engineLocation().node, options.host],
    { cwd: PROJECT_ROOT, env: { ...process.env, ...options.env, LOG_LEVEL: "info", STACKRAIL_DATA_DIR: options.dataDir }, stdio: ["ignore", fd, fd] },
  );
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`worker ${options.name} did not start`);
  const pid = child.pid;
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      gone = true;
      resolve({ code, signal });
    }),
  );
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
  const tree = (): number[] => [pid, ...descendants(pid)];
  return {
    name: options.name,
    host: options.host,
    dataDir: options.dataDir,
    pid,
    logFile: options.logFile,
    exited,
    alive: () => !gone,
    logs,
    async ready(timeoutMs = 90_000) {
      await waitUntil(`worker ${options.name} to start`, () => gone || logs().some((l) => l.msg === "worker started"), timeoutMs, 100);
      if (gone) {
        const tail = existsSync(options.logFile) ? readFileSync(options.logFile, "utf8").trim().split("\n").slice(-3).join(" | ") : "";
        throw new Error(`worker ${options.name} exited while starting: ${tail.slice(0, 600)}`);
      }
    },
    started: (jobId) => logs().some((l) => l.msg === "job started" && l.jobId === jobId),
    freezeAll() {
      const pids = tree();
      for (const p of pids) signalQuietly(p, "SIGSTOP");
      return pids;
    },
    async killAll() {
      // Stopped first (the worker first, so it reacts to nothing), then killed: a machine that died.
      const pids = tree();
      for (const p of pids) signalQuietly(p, "SIGSTOP");
      for (const p of descendants(pid)) if (!pids.includes(p)) pids.push(p);
      for (const p of pids) signalQuietly(p, "SIGSTOP");
      for (const p of pids) signalQuietly(p, "SIGKILL");
      return exited;
    },
  };
}
