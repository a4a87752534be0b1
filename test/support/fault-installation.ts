// One Stackrail installation for a fault-injection test file: the HTTP edge in the test process,
// workers as separate OS processes, the queue on a private redis-server (faults may be injected
// into it), the GitOps repository behind a remote with fault hooks, a fresh data dir and file
// backend. Tenant objects live on the shared MariaDB and Redis (or a private MariaDB), named with
// a tag unique to the file, so the orphan audit's findings about this installation can be told
// from other tests' objects on the shared servers.
//
// Each case ends with `settle()`: every job the case started is terminal (or waits for a stated
// reason), no stack lock is left, no commit is duplicated, and the orphan audit reports nothing
// about this installation; it prints one summary line per case.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { JobView } from "../../jobs/queue.ts";
import { dropLocalLeftovers, dropTenantLeftovers } from "./cleanup.ts";
import { createGitOpsRemote, readCommits, type GitOpsCommit, type GitOpsRemote } from "./gitops-remote.ts";
import { startHarness, type Harness } from "./harness.ts";
import { startPrivateRedis, waitUntil, type PrivateRedis } from "./private-services.ts";
import { TEST_REDIS_URL } from "./services.ts";
import { commandLine, processInfo, startWorkerProcess, type WorkerProcess } from "./worker-process.ts";

export const FINAL_STATES = new Set(["succeeded", "failed", "superseded", "cancelled"]);

/** How long a process whose worker is gone may take to exit before it counts as a runaway. */
const STRAY_GRACE_MS = 10_000;

export interface FaultInstallationOptions {
  /** Short label, part of the tag every tenant id of the file carries. */
  readonly label: string;
  /** Environment for the edge and the workers (overrides the defaults below). */
  readonly env?: Record<string, string>;
  /** A data dir to use instead of a fresh one (a small tmpfs for the disk-full case); not removed. */
  readonly dataDir?: string;
  /** The bare repository GITOPS_REPO ends up in when it is not the hooked remote (e.g. the GitHub double's). */
  readonly gitopsGitDir?: string;
}

export interface CaseSummary {
  readonly jobs: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly orphans: number;
  readonly takeoverMs: number | null;
  /** The orphan audit's HTTP status (the count means nothing unless it is 200). */
  readonly auditStatus?: number;
}

export interface SettleReport extends CaseSummary {
  readonly views: Map<string, JobView | null>;
  /** Jobs neither terminal nor visibly waiting for a stated reason (with what they show). */
  readonly unsettled: { id: string; state: string; last: string | undefined }[];
  /** Lock files left in the file backend. */
  readonly locks: string[];
  /** Processes of this installation outside every live worker's tree 10 s after the case (runaways), with their command lines. */
  readonly strays: string[];
  /** The audit's answer: HTTP status and the findings about this installation. */
  readonly audit: { status: number; findings: unknown[] };
}

export interface FaultInstallation {
  readonly tag: string;
  readonly dir: string;
  readonly harness: Harness;
  readonly redis: PrivateRedis;
  readonly remote: GitOpsRemote;
  /** Environment a worker process of this installation gets. */
  readonly workerEnv: Record<string, string>;
  readonly workers: WorkerProcess[];
  /** Every job id the file created (requests through api() are recorded). */
  readonly jobIds: Set<string>;
  /** A tenant id carrying the file's tag. */
  tenantId(label: string): string;
  /** Starts a worker process and waits until it takes jobs. */
  startWorker(extraEnv?: Record<string, string>): Promise<WorkerProcess>;
  /** An HTTP request to the edge; a 202 with a jobId records the job; any other non-2xx answer is kept in `refusals`. */
  api(method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  /** Every answer of the edge that was not 2xx (or a request that failed), in order. */
  readonly refusals: { method: string; url: string; status: number; body: unknown; at: number }[];
  /** GET /v1/jobs/:id (null when the edge answers 404). */
  job(id: string): Promise<JobView | null>;
  /** Polls GET /v1/jobs/:id until `until` holds. */
  watch(id: string, what: string, until: (view: JobView) => boolean, timeoutMs?: number): Promise<JobView>;
  waitForFinal(id: string, timeoutMs?: number): Promise<JobView>;
  /** POST /v1/tenants, expecting 202; the job id. */
  provision(id: string, tier?: "pool" | "silo", version?: string): Promise<string>;
  commits(): GitOpsCommit[];
  /** Job ids with more than one commit in the GitOps history. */
  duplicatedCommits(): string[];
  /** Lock files in the file backend (`.pulumi/locks/...`). */
  locks(): string[];
  /**
   * Processes started for this installation (their environment carries its marker) that no
   * live worker owns: what a dead worker or child left running.
   */
  strays(): { pid: number; command: string }[];
  /** GET /v1/audit/orphans?scope=installation: its findings (this installation's objects only). */
  audit(): Promise<{ status: number; findings: unknown[] }>;
  /** Waits for the given jobs to settle, then checks everything a case must end with and prints the summary line. */
  settle(caseName: string, jobIds: Iterable<string>, options?: { takeoverMs?: number | null; timeoutMs?: number }): Promise<SettleReport>;
  /** Marks preview keys (`<repo>-pr-<n>`) whose objects close() removes from the shared servers. */
  trackPreview(key: string): void;
  close(): Promise<void>;
}

/** Fast takeover for tests: a dead worker's job is picked up within about lock + stalled interval. */
export const FAST_TAKEOVER_ENV = { STACKRAIL_JOB_LOCK_MS: "5000", STACKRAIL_STALLED_INTERVAL_MS: "1000" } as const;

export function printSummary(caseName: string, s: CaseSummary): void {
  const orphans = s.auditStatus === undefined || s.auditStatus === 200 ? String(s.orphans) : `n/a(audit answered ${s.auditStatus})`;
  const line = `faults: ${caseName} jobs=${s.jobs} lost=${s.lost} duplicated=${s.duplicated} orphans=${orphans} takeover_ms=${s.takeoverMs ?? "n/a"}`;
  process.stdout.write(`${line}\n`);
}

function listLocks(backendDir: string): string[] {
  const root = path.join(backendDir, ".pulumi", "locks");
  const out: string[] = [];
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".json")) out.push(path.relative(root, p));
    }
  };
  walk(root);
  return out;
}

export interface EngineUpdate {
  readonly kind: string;
  readonly result: string;
  /** Seconds since the epoch, as the engine records them. */
  readonly startTime: number;
  readonly endTime: number;
}

/** The engine's own record of every finished operation on a stack (the file backend's history). */
export function engineHistory(inst: FaultInstallation, project: string, stack: string): EngineUpdate[] {
  const dir = path.join(fileURLToPath(inst.harness.config.pulumiBackendUrl), ".pulumi", "history", project, stack);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith(".history.json"))
    .map((n) => JSON.parse(readFileSync(path.join(dir, n), "utf8")) as EngineUpdate)
    .sort((a, b) => a.startTime - b.startTime);
}

/** Pairs of the stack's operations that ran at the same time (by the engine's timestamps). */
export function overlappingUpdates(updates: readonly EngineUpdate[]): [EngineUpdate, EngineUpdate][] {
  const out: [EngineUpdate, EngineUpdate][] = [];
  for (let i = 1; i < updates.length; i++) {
    const prev = updates[i - 1] as EngineUpdate;
    const next = updates[i] as EngineUpdate;
    if (next.startTime < prev.endTime) out.push([prev, next]);
  }
  return out;
}

export async function startFaultInstallation(options: FaultInstallationOptions): Promise<FaultInstallation> {
  const tag = `${options.label.replace(/[^a-z0-9]/g, "").slice(0, 6)}${Math.random().toString(36).slice(2, 6)}`;
  const dir = mkdtempSync(path.join(tmpdir(), `stackrail-faults-${tag}-`));
  const redis = await startPrivateRedis(path.join(dir, "redis"));
  const remote = createGitOpsRemote(dir);
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    // Tenant cache users stay on the shared server: a restart of the queue's Redis must not take them along.
    LOCAL_REDIS_URL: TEST_REDIS_URL,
    GITOPS_REPO: remote.url,
    STACKRAIL_MOVE_ROLLBACK_WINDOW_S: "0",
    STACKRAIL_SHUTDOWN_GRACE_MS: "10000",
    STACKRAIL_ORPHAN_SCOPE: "installation",
    ...FAST_TAKEOVER_ENV,
    ...options.env,
  };
  let harness: Harness;
  try {
    harness = await startHarness({ role: "api", env, ...(options.dataDir ? { dataDir: options.dataDir } : {}) });
  } catch (err) {
    // The file's afterAll has no installation to close: what was started so far goes now.
    await redis.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  // The marker tells this installation's processes (and whatever they start) from everyone else's.
  const marker = `STACKRAIL_FAULTS_INSTALLATION=${tag}`;
  const workerEnv: Record<string, string> = { ...harness.env, LOG_LEVEL: "info", STACKRAIL_FAULTS_INSTALLATION: tag };
  const workers: WorkerProcess[] = [];
  const jobIds = new Set<string>();
  const tenants = new Set<string>();
  const previews = new Set<string>();
  const backendDir = fileURLToPath(harness.config.pulumiBackendUrl);

  const refusals: FaultInstallation["refusals"] = [];
  const api: FaultInstallation["api"] = async (method, url, body, headers) => {
    let res: { status: number; body: any };
    try {
      res = await harness.request(method, url, body, headers);
    } catch (err) {
      refusals.push({ method, url, status: 0, body: (err as Error).message, at: Date.now() });
      throw err;
    }
    const jobId = (res.body as { jobId?: unknown } | null)?.jobId;
    if (res.status === 202 && typeof jobId === "string") jobIds.add(jobId);
    if (res.status >= 300) refusals.push({ method, url, status: res.status, body: res.body, at: Date.now() });
    return res;
  };

  const job = async (id: string): Promise<JobView | null> => {
    const res = await harness.request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`GET /v1/jobs/${id} answered ${res.status}`);
    return res.body as JobView;
  };

  const watch: FaultInstallation["watch"] = async (id, what, until, timeoutMs = 180_000) => {
    let last: JobView | null = null;
    await waitUntil(
      `job ${id}: ${what}`,
      async () => {
        last = await job(id);
        return last !== null && until(last);
      },
      timeoutMs,
      25,
    );
    return last as unknown as JobView;
  };

  const commits = (): GitOpsCommit[] => (options.gitopsGitDir ? readCommits(options.gitopsGitDir) : remote.commits());
  const duplicatedCommits = (): string[] => {
    const n = new Map<string, number>();
    for (const c of commits()) if (c.jobId) n.set(c.jobId, (n.get(c.jobId) ?? 0) + 1);
    return [...n].filter(([, count]) => count > 1).map(([id]) => id);
  };

  const audit: FaultInstallation["audit"] = async () => {
    // The shared servers hold other tests' objects too: the audit is asked about this installation's only.
    const res = await harness.request("GET", "/v1/audit/orphans?scope=installation&fresh=1");
    const body = res.body as { findings?: unknown } | null;
    return { status: res.status, findings: Array.isArray(body?.findings) ? (body.findings as unknown[]) : [] };
  };

  const strays = (): { pid: number; command: string }[] => {
    const owned = new Set<number>();
    for (const w of workers) {
      if (!w.alive()) continue;
      owned.add(w.pid);
      for (const p of w.tree()) owned.add(p);
    }
    const out: { pid: number; command: string }[] = [];
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      if (owned.has(pid)) continue;
      let environ: string;
      try {
        environ = readFileSync(`/proc/${pid}/environ`, "utf8");
      } catch {
        continue;
      }
      if (!environ.split("\0").includes(marker)) continue;
      const command = commandLine(pid);
      // A zombie (empty command line) waits only for its parent to read its status.
      const info = processInfo(pid);
      if (command !== "") out.push({ pid, command: `${command.slice(0, 200)} (ppid ${info?.ppid ?? "?"}, up ${info?.ageS ?? "?"} s)` });
    }
    return out;
  };

  /** Whatever this installation's faults left running (by pid: only its own processes). */
  const killStrays = (): void => {
    for (const p of strays()) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  };

  const installation: FaultInstallation = {
    tag,
    dir,
    harness,
    redis,
    remote,
    workerEnv,
    workers,
    jobIds,
    tenantId(label) {
      const id = `${tag}-${label}`;
      tenants.add(id);
      return id;
    },
    async startWorker(extraEnv = {}) {
      const name = `w${workers.length + 1}`;
      const w = startWorkerProcess({ ...workerEnv, ...extraEnv }, { name, logFile: path.join(dir, `worker-${name}.log`) });
      workers.push(w);
      await w.ready();
      return w;
    },
    api,
    refusals,
    job,
    watch,
    waitForFinal: (id, timeoutMs = 240_000) => watch(id, "a final state", (v) => FINAL_STATES.has(v.state), timeoutMs),
    async provision(id, tier = "pool", version = "1.0.0") {
      tenants.add(id);
      const res = await api("POST", "/v1/tenants", { id, region: "eu-west-1", tier, version });
      if (res.status !== 202) throw new Error(`POST /v1/tenants ${id} answered ${res.status}: ${JSON.stringify(res.body)}`);
      return (res.body as { jobId: string }).jobId;
    },
    commits,
    duplicatedCommits,
    locks: () => listLocks(backendDir),
    strays,
    audit,
    async settle(caseName, ids, settleOptions = {}) {
      const list = [...ids];
      const views = new Map<string, JobView | null>();
      const deadline = Date.now() + (settleOptions.timeoutMs ?? 240_000);
      for (const id of list) {
        let view = await job(id);
        while (view !== null && !FINAL_STATES.has(view.state) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
          view = await job(id);
        }
        views.set(id, view);
      }
      const unsettled: SettleReport["unsettled"] = [];
      for (const [id, view] of views) {
        if (view === null) unsettled.push({ id, state: "missing", last: undefined });
        else if (!FINAL_STATES.has(view.state)) {
          const last = view.progress.at(-1);
          // Waiting is fine only when the job says why.
          if (!(view.state === "waiting" && last !== undefined && /wait|busy|held|until|retry/i.test(last))) unsettled.push({ id, state: view.state, last });
        }
      }
      // A child of a stopped worker gets a few seconds to notice and exit (pulumi-child.ts: 1 s watchdog,
      // 5 s for a running operation to stop): only what is still there after that is a runaway.
      await waitUntil("the installation's orphaned processes to exit", () => strays().length === 0, STRAY_GRACE_MS, 250).catch(() => undefined);
      const auditResult = await audit();
      const duplicated = duplicatedCommits();
      const report: SettleReport = {
        jobs: list.length,
        lost: unsettled.length,
        duplicated: duplicated.length,
        orphans: auditResult.findings.length,
        takeoverMs: settleOptions.takeoverMs ?? null,
        auditStatus: auditResult.status,
        views,
        unsettled,
        locks: listLocks(backendDir),
        strays: strays().map((p) => `${p.pid}: ${p.command}`),
        audit: auditResult,
      };
      // Each case is judged on its own: what this one left running does not count against the next.
      killStrays();
      printSummary(caseName, report);
      return report;
    },
    trackPreview(key) {
      previews.add(key);
    },
    async close() {
      await Promise.all(workers.filter((w) => w.alive()).map((w) => w.killAll()));
      killStrays();
      await harness.close().catch(() => undefined);
      await redis.stop().catch(() => undefined);
      await dropTenantLeftovers([...tenants]).catch(() => undefined);
      await dropLocalLeftovers("preview", [...previews]).catch(() => undefined);
      // STACKRAIL_FAULTS_KEEP=1 keeps the worker logs, the remote and the private Redis's dir for a post-mortem.
      if (process.env.STACKRAIL_FAULTS_KEEP === "1") process.stdout.write(`faults-detail: kept ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    },
  };
  return installation;
}
