// The soak: STACKRAIL_SOAK_JOBS tenant jobs (default 100: provision, upgrades, moves, deprovision
// over about a quarter as many tenants, each tenant's jobs in order as a client would send them)
// through three worker processes, one of which is SIGKILLed (with everything under it) at random
// every few seconds and replaced. At the end: 0 jobs lost, every job succeeded, 0 duplicated
// commits (one commit per job at most: the message carries the job id), 0 orphans, every stack
// unlocked. Prints the counts and the takeover times.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobView } from "../../worker/queue.ts";
import { expectClean } from "../support/fault-expect.ts";
import { FINAL_STATES, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers } from "../support/fault-steps.ts";
import type { WorkerProcess } from "../support/worker-process.ts";

const JOBS = Math.max(4, Number(process.env.STACKRAIL_SOAK_JOBS ?? 100));
const WORKERS = 3;
const [KILL_MIN_MS, KILL_MAX_MS] = (process.env.STACKRAIL_SOAK_KILL_MS ?? "4000-9000").split("-").map(Number) as [number, number];

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
  inst = await startFaultInstallation({ label: "soak" });
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

/** The worker whose log shows the job's latest start. */
function lastStarter(jobId: string, workers: readonly WorkerProcess[]): WorkerProcess | undefined {
  let best: { w: WorkerProcess; time: number } | undefined;
  for (const w of workers) {
    for (const line of w.logs()) {
      if (line.msg === "job started" && line.jobId === jobId && typeof line.time === "number" && (!best || line.time >= best.time))
        best = { w, time: line.time };
    }
  }
  return best?.w;
}

describe("soak", () => {
  it(`${JOBS} tenant jobs with a worker SIGKILLed every ${KILL_MIN_MS / 1000}-${KILL_MAX_MS / 1000} s`, async () => {
    const started = Date.now();
    const chains = plan(JOBS);
    const outcomes: Outcome[] = [];
    /** Jobs running on a worker when it was killed: their start then, and the kill's time. */
    const pendingTakeovers = new Map<string, { startedAt: string | null; killedAt: number }>();
    const takeovers: number[] = [];
    let kills = 0;
    let done = false;

    const observe = (view: JobView): void => {
      const pending = pendingTakeovers.get(view.id);
      if (!pending) return;
      // Timed when seen running again (polls every 400 ms): BullMQ's start time is the worker's clock when it asked.
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
        await new Promise((r) => setTimeout(r, 400));
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
        outcomes.push({ tenant, op: op.kind, jobId, state: view.state, ...(view.error ? { error: view.error } : {}) });
        if (op.kind === "move" && view.state === "succeeded") tier = tier === "pool" ? "silo" : "pool";
      }
    };

    // One worker at a time is killed, only while at least two are up and taking jobs; its
    // replacement starts at once (without waiting for it), so kills keep their pace.
    const starting: Promise<unknown>[] = [];
    const killer = (async () => {
      while (!done) {
        await new Promise((r) => setTimeout(r, KILL_MIN_MS + Math.random() * (KILL_MAX_MS - KILL_MIN_MS)));
        if (done) break;
        const live = inst.workers.filter((w) => w.alive() && w.isReady());
        if (live.length < 2) continue;
        const victim = live[Math.floor(Math.random() * live.length)] as WorkerProcess;
        // The jobs it runs now: a takeover is timed for each.
        const mine = [...running.values()].filter((v) => lastStarter(v.id, inst.workers) === victim);
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
        `takeover_ms_max=${sorted.at(-1) ?? "n/a"} wall_s=${Math.round(wallMs / 1000)}\n`,
    );
    for (const o of notSucceeded)
      process.stdout.write(`faults-detail: soak not succeeded: ${o.op} ${o.tenant} ${o.jobId ?? "-"} ${o.state} ${o.error ?? ""}\n`);
    for (const f of report.audit.findings) process.stdout.write(`faults-detail: soak orphan ${JSON.stringify(f)}\n`);
    for (const l of report.locks) process.stdout.write(`faults-detail: soak lock left ${l}\n`);
    expectClean(report);
    expect(submitted.length, "every planned job was accepted").toBe(JOBS);
    expect(notSucceeded, "every job succeeded despite the kills").toEqual([]);
    expect(kills, "workers were killed during the soak").toBeGreaterThan(0);
  }, 2_400_000);
});
