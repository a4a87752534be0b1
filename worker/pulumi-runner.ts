// The Automation API runner: runs one Pulumi operation in a child process and turns its outcome
// into a typed result or a typed error that decides the job's fate. Cancellation is graceful
// first (the engine's own cancellation), then the whole process tree after a grace period.
//
// Each operation still gets a process of its own, but the next one is started ahead of time: a
// spare child loads the SDK and the programs (about 0.3 s) while the current operation runs, and
// the next operation starts on it. An idle spare does not keep the worker alive and exits by itself when
// the worker goes away.
import { fork, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { killMarked, killTree } from "./process-tree.ts";
import { Socket } from "node:net";
import path from "node:path";
import { PROJECT_ROOT, type EngineLocation } from "../core/engine.ts";
import { CancelledError, OperationTimeoutError, PolicyViolationError, ProgramError, StackLockedError, StackrailError, TransientError } from "../core/errors.ts";
import { STACK_NAME_PATTERN } from "../core/ids.ts";
import { currentJobLog } from "../jobs/job-logs.ts";
import { currentJobScope } from "./job-scope.ts";
import {
  isEngineOutput,
  PARENT_PING_MS,
  type EngineOutputMessage,
  type ChildMessage,
  type ChildSettings,
  type OperationSummary,
  type ParentMessage,
  type StackOperationRequest,
} from "./pulumi-protocol.ts";
import { localStackGuard, type OperationClaim, type StackGuard } from "./stack-guard.ts";
import { lockStoreFor } from "./stack-locks.ts";

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
  /** Keep a spare child started ahead of the next operation (default true). */
  readonly prefork?: boolean;
  /**
   * Claims a stack before its engine starts (worker/stack-guard.ts): a worker's guard records the
   * owner in Redis; without one, only locks whose process is gone from this host are cleared.
   */
  readonly guard?: StackGuard;
}

export interface RunOptions {
  readonly onProgress?: (line: string) => void;
  /**
   * The engine's own output, in chunks as it prints it (not only whole lines). Defaults to the
   * running job's log (jobs/job-logs.ts), so every handler's operations land there.
   */
  readonly onOutput?: (text: string) => void;
  /** Aborting cancels the operation; `signal.reason` may be an OperationTimeoutError. */
  readonly signal?: AbortSignal;
  /** The job the operation belongs to (recorded as the stack's holder); defaults to the current job scope. */
  readonly jobId?: string;
}

export interface StackRunner {
  run(request: StackOperationRequest, options?: RunOptions): Promise<OperationSummary>;
  /** Stops the spare child, if any (the runner can still run operations afterwards, without one). */
  close?(): void;
}

/** Whether a child keeps this process alive: its process handle, IPC channel and output pipes. */
function holdAlive(child: ChildProcess, hold: boolean): void {
  if (hold) {
    child.ref();
    child.channel?.ref();
  } else {
    child.unref();
    child.channel?.unref();
  }
  // The pipes are net.Sockets at run time (typed as plain streams).
  for (const pipe of [child.stdout, child.stderr]) {
    if (pipe instanceof Socket) {
      if (hold) pipe.ref();
      else pipe.unref();
    }
  }
}

const pulumiHome = (dataDir: string): string => path.join(dataDir, "pulumi-home");

interface Spawned {
  readonly child: ChildProcess;
  stderrTail: string;
  /** In the child's environment, so in that of everything it starts (the CLI, the language host, providers). */
  readonly marker: string;
}

/** The environment variable that marks an operation child's processes (see killMarked). */
const MARKER_VARIABLE = "STACKRAIL_OPERATION_CHILD";

const CHILD = path.join(import.meta.dirname, "pulumi-child.ts");

export class PulumiRunner implements StackRunner {
  readonly #settings: RunnerSettings;
  readonly #env: NodeJS.ProcessEnv;
  readonly #guard: StackGuard;
  #spare: Spawned | undefined;
  #closed = false;
  #started = 0;

  constructor(settings: RunnerSettings) {
    this.#settings = settings;
    this.#env = {
      ...process.env,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_HOME: pulumiHome(settings.dataDir),
      PATH: `${settings.engine.binDir}:${path.dirname(settings.engine.node)}:${process.env.PATH ?? ""}`,
      // Every operation starts several Node processes (the child, the dynamic-provider hosts, policy
      // packs) that load the same modules; V8's on-disk code cache halves their start-up CPU.
      // The cache is keyed by file contents and Node version, so one per project serves every data dir.
      NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? path.join(PROJECT_ROOT, ".build", "node-compile-cache"),
    };
    if (settings.passphrase !== undefined) this.#env.PULUMI_CONFIG_PASSPHRASE = settings.passphrase;
    this.#guard = settings.guard ?? localStackGuard(lockStoreFor(settings.backendUrl));
    this.#ensureSpare();
  }

  /** How many operations reached a Pulumi process (a job that waits for a busy stack starts none). */
  get operationsStarted(): number {
    return this.#started;
  }

  /** The pid of the idle spare child (tests). */
  get sparePid(): number | undefined {
    return this.#spare?.child.pid;
  }

  close(): void {
    this.#closed = true;
    this.#spare?.child.kill("SIGKILL");
    this.#spare = undefined;
  }

  #spawn(): Spawned {
    const marker = randomUUID();
    const child = fork(CHILD, [], {
      execPath: this.#settings.engine.node,
      env: { ...this.#env, [MARKER_VARIABLE]: marker },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      serialization: "json",
    });
    const spawned: Spawned = { child, stderrTail: "", marker };
    child.stderr?.on("data", (c: Buffer) => {
      spawned.stderrTail = (spawned.stderrTail + c.toString()).slice(-4000);
    });
    child.stdout?.resume();
    // A spawn failure surfaces when the child is used; an idle spare that fails is just dropped.
    child.on("error", () => undefined);
    return spawned;
  }

  #ensureSpare(): void {
    if (this.#closed || this.#settings.prefork === false || this.#spare) return;
    const spare = this.#spawn();
    // An idle spare must not keep the worker alive.
    holdAlive(spare.child, false);
    spare.child.once("exit", () => {
      if (this.#spare === spare) this.#spare = undefined;
    });
    this.#spare = spare;
  }

  /** The spare child if it is still alive, or a new one; then starts the next spare. */
  #take(): Spawned {
    const spare = this.#spare;
    this.#spare = undefined;
    let taken: Spawned;
    if (spare && spare.child.exitCode === null && spare.child.signalCode === null && spare.child.connected) {
      holdAlive(spare.child, true);
      taken = spare;
    } else {
      spare?.child.kill("SIGKILL");
      taken = this.#spawn();
    }
    // The next operation's process starts now, so it is ready even for a job that follows this one
    // at once; it loads while this operation mostly waits on the engine.
    this.#ensureSpare();
    return taken;
  }

  async run(request: StackOperationRequest, options: RunOptions = {}): Promise<OperationSummary> {
    if (!STACK_NAME_PATTERN.test(request.stack) || !/^[a-z][a-z0-9-]{0,63}$/.test(request.projectName)) {
      throw new ProgramError("refusing a stack or project name outside Stackrail's naming scheme");
    }
    // The stack's lock is looked at before any engine starts: a busy stack costs no Pulumi run.
    // A cancelled job skips the claim and ends as cancelled below, not as waiting.
    const claim = options.signal?.aborted
      ? undefined
      : await this.#guard.claim(request, { jobId: options.jobId ?? currentJobScope()?.jobId ?? "", progress: (line) => options.onProgress?.(line) });
    try {
      return await this.#operate(request, options, claim);
    } finally {
      // Before the next operation of the same job claims the stack again.
      await claim?.release().catch(() => undefined);
    }
  }

  #operate(request: StackOperationRequest, options: RunOptions, claim: OperationClaim | undefined): Promise<OperationSummary> {
    const s = this.#settings;
    const settings: ChildSettings = {
      workDir: path.join(s.dataDir, "workspaces", request.projectName, request.stack),
      pulumiHome: pulumiHome(s.dataDir),
      backendUrl: s.backendUrl,
      engineDir: s.engine.dir,
      engineVersion: s.engine.version,
      target: s.target,
      dataDir: s.dataDir,
      localMysqlUrl: s.localMysqlUrl,
      localRedisUrl: s.localRedisUrl,
    };
    return new Promise<OperationSummary>((resolve, reject) => {
      const spawned = this.#take();
      const child = spawned.child;
      let settled = false;
      let killTimer: NodeJS.Timeout | undefined;
      const ping: { timer?: NodeJS.Timeout } = {};
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        if (killTimer) clearTimeout(killTimer);
        if (ping.timer) clearInterval(ping.timer);
        options.signal?.removeEventListener("abort", onAbort);
        fn();
        // Normally a spare exists already (see #take); this replaces one that died meanwhile.
        this.#ensureSpare();
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
        this.#ensureSpare();
        return;
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });

      const jobLog = currentJobLog();
      const sink = options.onOutput ?? (jobLog ? (text: string) => jobLog.output(text) : undefined);
      child.on("message", (message: ChildMessage | EngineOutputMessage) => {
        if (isEngineOutput(message)) {
          sink?.(message.text);
          return;
        }
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
              else if (f.kind === "policy") reject(new PolicyViolationError(f.message, f.violations ?? [], f.policyViolations ?? []));
              // A lock the guard could not see (a backend whose locks are not read here, or one taken
              // since): the engine's own account of the holder, and the same bounded back-off.
              else if (f.kind === "concurrent") reject(new StackLockedError(`stack ${request.stack} is locked (the engine says: ${f.message.slice(0, 600)})`));
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
        // A child killed mid-operation (SIGKILL, out of memory) cannot stop what it started: the
        // language host and providers, handed to init, would run on. Found by their marker.
        if (signal !== null) killMarked(MARKER_VARIABLE, spawned.marker);
        settle(() => {
          if (options.signal?.aborted) reject(cancelError());
          // A child that dies without answering (killed, out of memory) is worth another try.
          else reject(new TransientError(`Pulumi process ended without a result (code ${code}, signal ${signal}): ${spawned.stderrTail.trim()}`));
        });
      });
      claim?.started(child.pid);
      this.#started += 1;
      child.send({ type: "start", request, settings } satisfies ParentMessage);
      // The child cancels its operation when it stops hearing from this process (stopped, frozen):
      // the stack's lock is then released before this worker's heartbeat runs out.
      ping.timer = setInterval(() => {
        if (child.connected) child.send({ type: "ping" } satisfies ParentMessage);
      }, PARENT_PING_MS);
    });
  }
}
