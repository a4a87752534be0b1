// The soak: STACKRAIL_SOAK_JOBS tenant jobs (default 100: provision, upgrades, moves, deprovision
// over about a quarter as many tenants, each tenant's jobs in order as a client would send them)
// through three worker processes, one of which is SIGKILLed (with everything under it) at random
// every few seconds and replaced. At the end: 0 jobs lost, every job succeeded, 0 duplicated
// commits (one commit per job at most: the message carries the job id), 0 orphans, every stack
// unlocked. Prints the counts and the takeover times.
//
// The numbers, and why (2-core machine, measured in this file's own runs):
// - One job at a time per worker process (STACKRAIL_CONCURRENCY=1): three Pulumi runs at once are
//   what two cores carry; six (3 x 2) only stretched every job to 20-40 s, and a kill then took
//   two jobs down at once.
// - The kill interval follows the median duration of the last jobs that finished in this run (their
//   last, successful attempt: start to finish), drawn uniformly from 0.75x to 1.5x that median. One
//   of three workers is killed each time, so a worker lives about 3.4 medians on average and a job
//   of median length finishes on its first attempt about three times in four (second attempt most
//   of the rest), yet kills land all through every kind of job. Measured on this machine under
//   load (other test runs, tsc and eslint beside it): a provision's median was about 30 s, so a
//   kill every 20-45 s. With kills every 4-9 s (an earlier version), 29 jobs were given up after
//   10 crashes; at 0.5-1x the median, jobs needed 2.7 starts each and the soak alone would have
//   taken about 50 minutes. The first kill waits until KILL_WARMUP jobs have finished (there is no
//   median before). STACKRAIL_SOAK_KILL_MS=min-max fixes the interval instead.
// - STACKRAIL_MAX_JOB_CRASHES=1000 (the configuration's ceiling) for this run: a kill costs a job at
//   most one crash, and the soak kills far fewer than 1000 times (asserted), so no job is given up
//   because workers keep dying. The default (10) is for a job that kills its own worker; here the
//   deaths are the test's, not the jobs'.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobView } from "../../jobs/queue.ts";
import { expectClean } from "../support/fault-expect.ts";
import { FINAL_STATES, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers } from "../support/fault-steps.ts";
import type { WorkerProcess } from "../support/worker-process.ts";

const JOBS = Math.max(4, Number(process.env.STACKRAIL_SOAK_JOBS ?? 100));
const WORKERS = 3;
const FIXED_KILL_MS = process.env.STACKRAIL_SOAK_KILL_MS;
const [KILL_MIN_MS, KILL_MAX_MS] = (FIXED_KILL_MS ?? "4000-9000").split("-").map(Number) as [number, number];
/** Jobs that must have finished before the first kill (the interval follows their median duration). */
const KILL_WARMUP = 3;
/** The median is taken over this many most recent durations (the machine's load changes). */
const MEDIAN_OF = 15;
const MAX_JOB_CRASHES = 1000;
const SOAK_ENV = { STACKRAIL_CONCURRENCY: "1", STACKRAIL_MAX_JOB_CRASHES: String(MAX_JOB_CRASHES) };
/** How often each client polls its job (25 clients at once: the edge runs in this process). */
const POLL_MS = 1000;

type Op = { kind: "provision" } | { kind: "upgrade"; version: string } | { kind: "move" } | { kind: "deprovision" };

/** Each tenant: provision, its share of upgrades and moves, deprovision; about a third of the middle jobs are moves. */
function plan(jobs: number): Op[][] {
  const tenants = Math.max(1, Math.round(jobs / 4));
  const chains: Op[][] = Array.from({ length: tenants }, () => [{ kind: "provision" }]);
  const middle = jobs - 2 * tenants;
  for (let k = 0; k < middle; k++) {
    const chain = chains[k % tenants] as Op[];
    chain.push(k % 3 === 1 ? { kind: "move" } : { kind: "upgrade", version: `1.0.${k + 1}` });
  }
  for (const chain of chains) chain.push({ kind: "deprovision" });
  return chains;
}

let inst: FaultInstallation;

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "soak", env: SOAK_ENV });
  await ensureWorkers(inst, WORKERS);
});

afterAll(async () => {
  await inst?.close();
});

interface Outcome {
  readonly tenant: string;
  readonly op: string;
  readonly jobId: string | null;
  readonly state: string;
  readonly error?: string;
}

/** For each job, the worker (of `workers`) whose log shows its latest start: each log is read once. */
function lastStarters(workers: readonly WorkerProcess[]): Map<string, WorkerProcess> {
  const best = new Map<string, { w: WorkerProcess; time: number }>();
  for (const w of workers) {
    for (const line of w.logs()) {
      if (line.msg !== "job started" || typeof line.jobId !== "string" || typeof line.time !== "number") continue;
      const seen = best.get(line.jobId);
      if (!seen || line.time >= seen.time) best.set(line.jobId, { w, time: line.time });
    }
  }
  return new Map([...best].map(([id, b]) => [id, b.w]));
}

describe("soak", () => {
  const every = FIXED_KILL_MS ? `${KILL_MIN_MS / 1000}-${KILL_MAX_MS / 1000} s` : "0.75-1.5x the median job duration";
  it(`${JOBS} tenant jobs with a worker SIGKILLed every ${every}`, async () => {
    const started = Date.now();
    const chains = plan(JOBS);
    const outcomes: Outcome[] = [];
    /** Jobs running on a worker when it was killed: their start then, and the kill's time. */
    const pendingTakeovers = new Map<string, { startedAt: string | null; killedAt: number }>();
    const takeovers: number[] = [];
    let kills = 0;
    let done = false;
    /** Duration of each succeeded job's last attempt (ms). */
    const durations: number[] = [];
    const median = (xs: readonly number[]): number | undefined => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const intervals: number[] = [];
    const nextInterval = async (): Promise<number> => {
      if (FIXED_KILL_MS) return KILL_MIN_MS + Math.random() * (KILL_MAX_MS - KILL_MIN_MS);
      while (durations.length < KILL_WARMUP && !done) await new Promise((r) => setTimeout(r, 250));
      return (median(durations.slice(-MEDIAN_OF)) ?? KILL_MAX_MS) * (0.75 + Math.random() * 0.75);
    };

    const observe = (view: JobView): void => {
      const pending = pendingTakeovers.get(view.id);
      if (!pending) return;
      // Timed when seen running again (to within POLL_MS): BullMQ's start time is the worker's clock when it asked.
      if (view.startedAt !== null && view.startedAt !== pending.startedAt) {
        takeovers.push(Date.now() - pending.killedAt);
        pendingTakeovers.delete(view.id);
      } else if (FINAL_STATES.has(view.state)) pendingTakeovers.delete(view.id);
    };

    const running = new Map<string, JobView>();
    const wait = async (jobId: string): Promise<JobView> => {
      for (;;) {
        const view = await inst.job(jobId).catch(() => undefined);
        if (view) {
          observe(view);
          if (view.state === "running") running.set(jobId, view);
          else running.delete(jobId);
          if (FINAL_STATES.has(view.state)) return view;
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    };

    /** As a client would: a 503 or a dropped connection is retried with the same Idempotency-Key. */
    const send = async (method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> => {
      const key = randomUUID();
      for (let attempt = 1; ; attempt++) {
        const res = await inst.api(method, url, body, { "idempotency-key": key }).catch(() => ({ status: 0, body: null }));
        if ((res.status !== 503 && res.status !== 0) || attempt >= 20) return res;
        await new Promise((r) => setTimeout(r, 1000));
      }
    };

    const runChain = async (index: number, ops: Op[]): Promise<void> => {
      const tenant = inst.tenantId(`t${index}`);
      let tier: "pool" | "silo" = "pool";
      for (const op of ops) {
        let res: { status: number; body: any };
        if (op.kind === "provision") res = await send("POST", "/v1/tenants", { id: tenant, region: "eu-west-1", tier, version: "1.0.0" });
        else if (op.kind === "upgrade") res = await send("POST", `/v1/tenants/${tenant}/upgrade`, { version: op.version });
        else if (op.kind === "move") res = await send("POST", `/v1/tenants/${tenant}/move`, { tier: tier === "pool" ? "silo" : "pool" });
        else res = await send("DELETE", `/v1/tenants/${tenant}`);
        if (res.status !== 202) {
          outcomes.push({ tenant, op: op.kind, jobId: null, state: `refused ${res.status}`, error: JSON.stringify(res.body) });
          continue;
        }
        const jobId = res.body.jobId as string;
        const view = await wait(jobId);
        if (view.state === "succeeded" && view.startedAt && view.finishedAt) durations.push(Date.parse(view.finishedAt) - Date.parse(view.startedAt));
        outcomes.push({ tenant, op: op.kind, jobId, state: view.state, ...(view.error ? { error: view.error } : {}) });
        if (op.kind === "move" && view.state === "succeeded") tier = tier === "pool" ? "silo" : "pool";
      }
    };

    // One worker at a time is killed, only while at least two are up and taking jobs; its
    // replacement starts at once (without waiting for it), so kills keep their pace.
    const starting: Promise<unknown>[] = [];
    const killer = (async () => {
      while (!done) {
        const interval = await nextInterval();
        intervals.push(interval);
        await new Promise((r) => setTimeout(r, interval));
        if (done) break;
        const live = inst.workers.filter((w) => w.alive() && w.isReady());
        if (live.length < 2) continue;
        const victim = live[Math.floor(Math.random() * live.length)] as WorkerProcess;
        // The jobs it runs now (a running job's latest start is on a live worker): a takeover is timed for each.
        const starters = lastStarters(live);
        const mine = [...running.values()].filter((v) => starters.get(v.id) === victim);
        await victim.killAll();
        const killedAt = Date.now();
        kills++;
        for (const v of mine) pendingTakeovers.set(v.id, { startedAt: v.startedAt, killedAt });
        starting.push(
          inst.startWorker().catch((err: unknown) => process.stdout.write(`faults-detail: soak replacement worker failed to start: ${String(err)}\n`)),
        );
      }
    })();

    try {
      await Promise.all(chains.map((ops, i) => runChain(i, ops)));
    } finally {
      done = true;
      await killer;
      await Promise.all(starting);
    }
    const wallMs = Date.now() - started;

    const submitted = outcomes.filter((o) => o.jobId !== null).map((o) => o.jobId as string);
    const notSucceeded = outcomes.filter((o) => o.state !== "succeeded");
    const stalledOut = outcomes.filter((o) => o.state === "failed" && /stalled/i.test(o.error ?? ""));
    for (const r of inst.refusals)
      process.stdout.write(`faults-detail: soak edge answered ${r.status} to ${r.method} ${r.url}: ${JSON.stringify(r.body).slice(0, 200)}\n`);
    const report = await inst.settle("soak", submitted, { takeoverMs: takeovers.length > 0 ? Math.max(...takeovers) : null, timeoutMs: 60_000 });
    const sorted = [...takeovers].sort((a, b) => a - b);
    process.stdout.write(
      `faults-detail: soak summary jobs=${submitted.length} planned=${JOBS} succeeded=${outcomes.filter((o) => o.state === "succeeded").length} ` +
        `not_succeeded=${notSucceeded.length} failed_stalled_limit=${stalledOut.length} kills=${kills} takeovers=${takeovers.length} takeover_ms_median=${sorted[Math.floor(sorted.length / 2)] ?? "n/a"} ` +
        `takeover_ms_max=${sorted.at(-1) ?? "n/a"} job_ms_median=${median(durations) ?? "n/a"} kill_interval_ms_median=${Math.round(median(intervals) ?? 0)} ` +
        `workers_started=${inst.workers.length} wall_s=${Math.round(wallMs / 1000)}\n`,
    );
    for (const o of notSucceeded)
      process.stdout.write(`faults-detail: soak not succeeded: ${o.op} ${o.tenant} ${o.jobId ?? "-"} ${o.state} ${o.error ?? ""}\n`);
    for (const f of report.audit.findings) process.stdout.write(`faults-detail: soak orphan ${JSON.stringify(f)}\n`);
    for (const l of report.locks) process.stdout.write(`faults-detail: soak lock left ${l}\n`);
    expectClean(report);
    expect(submitted.length, "every planned job was accepted").toBe(JOBS);
    expect(notSucceeded, "every job succeeded despite the kills").toEqual([]);
    expect(kills, "workers were killed during the soak").toBeGreaterThan(0);
    // What makes STACKRAIL_MAX_JOB_CRASHES a bound no job reached because of the kills.
    expect(kills, "fewer kills than the crash limit").toBeLessThan(MAX_JOB_CRASHES);
  }, 2_400_000);
});
