// The Automation API runner: runs one Pulumi operation in a child process and turns its outcome
// into a typed result or a typed error that decides the job's fate. Cancellation is graceful
// first (the engine's own cancellation), then the whole process tree after a grace period.
import { fork, execFileSync } from "node:child_process";
import path from "node:path";
import type { EngineLocation } from "../core/engine.ts";
import { CancelledError, OperationTimeoutError, PolicyViolationError, ProgramError, StackBusyError, StackrailError, TransientError } from "../core/errors.ts";
import { STACK_NAME_PATTERN } from "../core/ids.ts";
import type { ChildMessage, ChildSettings, OperationSummary, ParentMessage, StackOperationRequest } from "./pulumi-protocol.ts";

export interface RunnerSettings {
  readonly engine: EngineLocation;
  readonly backendUrl: string;
  readonly passphrase: string | undefined;
  readonly dataDir: string;
  readonly target: "local" | "aws";
  readonly localMysqlUrl: string;
  readonly localRedisUrl: string;
  /** How long a cancelled operation may take to stop by itself before its process tree is killed. */
  readonly cancelGraceMs: number;
}

export interface RunOptions {
  readonly onProgress?: (line: string) => void;
  /** Aborting cancels the operation; `signal.reason` may be an OperationTimeoutError. */
  readonly signal?: AbortSignal;
}

export interface StackRunner {
  run(request: StackOperationRequest, options?: RunOptions): Promise<OperationSummary>;
}

const CHILD = path.join(import.meta.dirname, "pulumi-child.ts");

/** Every descendant of `pid` (plugins start their own process groups, so a group kill is not enough). */
function descendants(pid: number): number[] {
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

export function killTree(pid: number, signal: NodeJS.Signals = "SIGKILL"): void {
  for (const p of [...descendants(pid).reverse(), pid]) {
    try {
      process.kill(p, signal);
    } catch {
      // already gone
    }
  }
}

export class PulumiRunner implements StackRunner {
  readonly #settings: RunnerSettings;

  constructor(settings: RunnerSettings) {
    this.#settings = settings;
  }

  run(request: StackOperationRequest, options: RunOptions = {}): Promise<OperationSummary> {
    if (!STACK_NAME_PATTERN.test(request.stack) || !/^[a-z][a-z0-9-]{0,63}$/.test(request.projectName)) {
      return Promise.reject(new ProgramError("refusing a stack or project name outside Stackrail's naming scheme"));
    }
    const s = this.#settings;
    const settings: ChildSettings = {
      workDir: path.join(s.dataDir, "workspaces", request.projectName, request.stack),
      pulumiHome: path.join(s.dataDir, "pulumi-home"),
      backendUrl: s.backendUrl,
      engineDir: s.engine.dir,
      engineVersion: s.engine.version,
      target: s.target,
      dataDir: s.dataDir,
      localMysqlUrl: s.localMysqlUrl,
      localRedisUrl: s.localRedisUrl,
    };
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_HOME: settings.pulumiHome,
      PATH: `${s.engine.binDir}:${path.dirname(s.engine.node)}:${process.env.PATH ?? ""}`,
      // Every operation starts several Node processes (this child, the dynamic-provider hosts, policy
      // packs) that load the same modules; V8's on-disk code cache halves their start-up CPU.
      NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? path.join(s.dataDir, "node-compile-cache"),
    };
    if (s.passphrase !== undefined) env.PULUMI_CONFIG_PASSPHRASE = s.passphrase;

    return new Promise<OperationSummary>((resolve, reject) => {
      const child = fork(CHILD, [], {
        execPath: s.engine.node,
        env,
        stdio: ["ignore", "pipe", "pipe", "ipc"],
        serialization: "json",
      });
      let stderrTail = "";
      child.stderr?.on("data", (c: Buffer) => {
        stderrTail = (stderrTail + c.toString()).slice(-4000);
      });
      child.stdout?.resume();
      let settled = false;
      let killTimer: NodeJS.Timeout | undefined;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        if (killTimer) clearTimeout(killTimer);
        options.signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const applied: Record<string, number> = {};
      const cancelError = (): Error => {
        const reason: unknown = options.signal?.reason;
        // The reason says why: a user's cancel, a time limit, or a shutdown (retryable); the
        // message adds what the engine had applied before it stopped.
        const base = reason instanceof StackrailError ? reason : new CancelledError("operation cancelled");
        const done =
          Object.entries(applied)
            .map(([op, n]) => `${op}=${n}`)
            .join(", ") || "nothing";
        const Ctor = base.constructor as new (message: string) => Error;
        return base instanceof CancelledError || base instanceof OperationTimeoutError ? new Ctor(`${base.message}; applied before stopping: ${done}`) : base;
      };
      const onAbort = (): void => {
        if (child.connected) child.send({ type: "cancel" } satisfies ParentMessage);
        killTimer = setTimeout(() => {
          if (child.pid !== undefined) killTree(child.pid);
        }, s.cancelGraceMs);
      };
      if (options.signal?.aborted) {
        child.kill("SIGKILL");
        reject(cancelError());
        return;
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });

      child.on("message", (message: ChildMessage) => {
        switch (message.type) {
          case "progress":
            if (message.applied) applied[message.applied.op] = (applied[message.applied.op] ?? 0) + 1;
            options.onProgress?.(message.line);
            break;
          case "done":
            // Asked to stop but the operation finished first: the job still ends as cancelled,
            // saying what was applied, and the handler's later steps (commits) do not run.
            settle(() => (options.signal?.aborted ? reject(cancelError()) : resolve(message.summary)));
            break;
          case "failed": {
            const f = message.failure;
            settle(() => {
              if (f.kind === "cancelled" || options.signal?.aborted) reject(cancelError());
              else if (f.kind === "policy") reject(new PolicyViolationError(f.message, f.violations ?? []));
              else if (f.kind === "concurrent") reject(new StackBusyError(f.message));
              else if (f.kind === "program") reject(new ProgramError(f.message));
              else reject(new TransientError(f.message));
            });
            break;
          }
        }
      });
      child.on("error", (err) => {
        settle(() => reject(new TransientError(`could not start the Pulumi process: ${err.message}`)));
      });
      child.on("exit", (code, signal) => {
        settle(() => {
          if (options.signal?.aborted) reject(cancelError());
          // A child that dies without answering (killed, out of memory) is worth another try.
          else reject(new TransientError(`Pulumi process ended without a result (code ${code}, signal ${signal}): ${stderrTail.trim()}`));
        });
      });
      child.send({ type: "start", request, settings } satisfies ParentMessage);
    });
  }
}
