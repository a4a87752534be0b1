// Each worker process has an identity (a random id, its host and pid) and a heartbeat in Redis.
// A stack lock is cleared by another worker only when its owner is provably dead, and the
// heartbeat is that proof across machines and backends: a worker whose key ran out stopped
// renewing it for longer than the TTL.
//
// Keys (prefix = config.queuePrefix):
//   <prefix>:worker:<id>          JSON {id, host, pid, startedAt, bootId, pidNs}, expires after ttlMs unless renewed
//   <prefix>:worker:<id>:stacks   set of `<project>/<stack>` this worker is operating on now, same TTL
//   <prefix>:stack-owner:<project>/<stack>
//                                 JSON {workerId, host, jobId, childPid, childHost, enginePids,
//                                 startedAt}: who runs the stack's current Pulumi operation
//                                 (worker/stack-guard.ts); removed when it ends, left behind by a
//                                 worker that died. Its expiry is renewed on every beat, so what is
//                                 left of it tells when its worker last beat.
//
// The TTL is larger than what a live worker's operation needs to stop once its worker goes
// silent: a Pulumi child hears from its worker every few seconds and cancels its operation when
// it stops hearing (worker/pulumi-child.ts), so by the time the key runs out the engine is gone.
import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import type { Redis } from "ioredis";
import type { Logger } from "../core/logger.ts";

export interface WorkerIdentity {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: number;
  /**
   * Where `pid` means something: the kernel's boot id and the inode of the process's pid
   * namespace. A host name does not say it (containers share one: hostNetwork pods, compose's
   * `hostname:`), and from another pid namespace a live process looks gone. Absent where /proc
   * is not readable: then no other worker judges this one by its pid, only by its heartbeat.
   */
  readonly bootId?: string;
  readonly pidNs?: number;
}

/** This process's boot id and pid namespace (see WorkerIdentity), or nothing where /proc does not tell. */
export function pidSpace(): { bootId?: string; pidNs?: number } {
  try {
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const pidNs = statSync("/proc/self/ns/pid").ino;
    return bootId && pidNs > 0 ? { bootId, pidNs } : {};
  } catch {
    return {};
  }
}

/** Whether two identities' pids are in the same process table (same boot, same pid namespace). */
export function samePidSpace(a: Pick<WorkerIdentity, "bootId" | "pidNs">, b: Pick<WorkerIdentity, "bootId" | "pidNs">): boolean {
  return a.bootId !== undefined && a.pidNs !== undefined && a.bootId === b.bootId && a.pidNs === b.pidNs;
}

/** A fresh identity for this process; the host (and, in tests, the pid space) may be named: tests run "two machines" on one. */
export function newWorkerIdentity(options: { host?: string; bootId?: string; pidNs?: number } = {}): WorkerIdentity {
  const space = pidSpace();
  const bootId = options.bootId ?? space.bootId;
  const pidNs = options.pidNs ?? space.pidNs;
  return {
    id: randomBytes(8).toString("hex"),
    host: options.host ?? hostname(),
    pid: process.pid,
    startedAt: Date.now(),
    ...(bootId !== undefined ? { bootId } : {}),
    ...(pidNs !== undefined ? { pidNs } : {}),
  };
}

export const HEARTBEAT_INTERVAL_MS = 5_000;
export const HEARTBEAT_TTL_MS = 30_000;

export function workerKey(prefix: string, workerId: string): string {
  return `${prefix}:worker:${workerId}`;
}

export function stackOwnerKey(prefix: string, project: string, stack: string): string {
  return `${prefix}:stack-owner:${project}/${stack}`;
}

/** The owner record of a stack's running operation. */
export interface StackOwnerRecord {
  readonly workerId: string;
  readonly host: string;
  readonly workerPid: number;
  readonly jobId: string;
  /** The operation's Pulumi process (worker/pulumi-child.ts). */
  readonly childPid?: number;
  /**
   * The OS host name the operation's processes run on (what the engine writes into its lock;
   * `host` may be a configured name), and the pids of the child's descendants (the Pulumi CLI
   * that writes the lock) as seen while it ran: a lock is this operation's only if it names one
   * of these pids on this host.
   */
  readonly childHost?: string;
  readonly enginePids?: readonly number[];
  /** When the operation was claimed (ms since the epoch, the owner's clock). */
  readonly startedAt: number;
}

/** Owner records outlive a dead worker so that the next one can tell whose lock it finds; not forever. */
export const OWNER_RECORD_TTL_S = 7 * 24 * 3600;

const BEAT = `
-- KEYS[1] worker key, KEYS[2] its stacks set   ARGV: identity JSON, ttlMs, ownerTtlS, then pairs (member, ownerKey, record)
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
-- Rewritten from what runs now: a member whose removal failed (Redis away at the time) goes here.
redis.call('DEL', KEYS[2])
local n = 0
for i = 4, #ARGV, 3 do
  redis.call('SADD', KEYS[2], ARGV[i])
  -- A Redis that lost its data (restart without persistence) gets the running operations' records back;
  -- a record still there has its expiry renewed: what is left of it says when its worker last beat.
  if redis.call('GET', ARGV[i + 1]) == ARGV[i + 2] then
    redis.call('EXPIRE', ARGV[i + 1], tonumber(ARGV[3]))
  else
    redis.call('SET', ARGV[i + 1], ARGV[i + 2], 'NX', 'EX', tonumber(ARGV[3]))
  end
  n = n + 1
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2])) end
return n
`;

export interface PresenceOptions {
  readonly intervalMs?: number;
  readonly ttlMs?: number;
  readonly logger?: Logger;
}

/** The heartbeat of one worker process, and the operations it runs (re-asserted on every beat). */
export class WorkerPresence {
  readonly identity: WorkerIdentity;
  readonly prefix: string;
  readonly ttlMs: number;
  readonly #redis: Redis;
  readonly #intervalMs: number;
  readonly #logger: Logger | undefined;
  /** member `<project>/<stack>` -> [owner key, record JSON] */
  readonly #operating = new Map<string, [string, string]>();
  #timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis, prefix: string, identity: WorkerIdentity, options: PresenceOptions = {}) {
    this.#redis = redis;
    this.prefix = prefix;
    this.identity = identity;
    this.#intervalMs = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.ttlMs = options.ttlMs ?? HEARTBEAT_TTL_MS;
    this.#logger = options.logger;
    if (this.ttlMs < 2 * this.#intervalMs) throw new TypeError("the heartbeat TTL must be at least twice its interval");
  }

  get key(): string {
    return workerKey(this.prefix, this.identity.id);
  }

  get stacksKey(): string {
    return `${this.key}:stacks`;
  }

  /** Beats once (so the identity exists before any operation claims a stack), then every interval. */
  async start(): Promise<void> {
    await this.beat();
    this.#timer = setInterval(() => {
      this.beat().catch((err: unknown) => this.#logger?.warn({ err, workerId: this.identity.id }, "worker heartbeat failed"));
    }, this.#intervalMs);
    // The heartbeat says the process is alive; it must not be what keeps it alive.
    this.#timer.unref();
  }

  async beat(): Promise<void> {
    const args: string[] = [JSON.stringify(this.identity), String(this.ttlMs), String(OWNER_RECORD_TTL_S)];
    for (const [member, [ownerKey, record]] of this.#operating) args.push(member, ownerKey, record);
    await this.#redis.eval(BEAT, 2, this.key, this.stacksKey, ...args);
  }

  /** Remembers a running operation's owner record, re-asserted on each beat while it runs. */
  operating(member: string, ownerKey: string, record: string): void {
    this.#operating.set(member, [ownerKey, record]);
  }

  done(member: string): void {
    this.#operating.delete(member);
  }

  /** A clean stop: the identity goes at once, so whatever it left is recoverable without waiting for the TTL. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#operating.size > 0) return; // still running something: let the key run out instead
    await this.#redis.del(this.key, this.stacksKey).catch(() => undefined);
  }
}
