// Fan-out: provisioning N tenants (default 20) on the local target through the tenant API with the
// worker's configured concurrency, against the same N provisions run one after another (the same
// service with STACKRAIL_CONCURRENCY=1). Each side provisions its own fresh tenants; the wall time
// runs from the first POST to the last job done. Afterwards the tenants' objects are dropped
// (BENCH_FANOUT_CLEANUP=deprovision deprovisions them through the service first instead).
import { randomBytes } from "node:crypto";
import { startHarness, type Harness } from "../test/support/harness.ts";
import { dropLocalLeftovers } from "./lib/cleanup.ts";
import { startCpu, type CpuUse } from "./lib/cpu.ts";
import { expectSucceeded, waitFinal } from "./lib/jobs.ts";
import { envInt, round, say, type Row } from "./lib/report.ts";

function concurrencies(): number[] {
  const raw = process.env.BENCH_FANOUT_CONCURRENCY ?? process.env.STACKRAIL_CONCURRENCY ?? "2";
  const list = raw.split(",").map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 2 || n > 64)) throw new Error(`BENCH_FANOUT_CONCURRENCY must be whole numbers 2..64 (got "${raw}")`);
  return list;
}

async function provisionAll(h: Harness, ids: readonly string[]): Promise<number> {
  const queue = h.service.queue;
  if (!queue) throw new Error("harness has no queue");
  const t0 = performance.now();
  const jobIds: string[] = [];
  for (const id of ids) {
    let res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    // 503 means "Redis did not take it in time, retry": what a control plane does, a few times.
    for (let attempt = 1; res.status === 503 && attempt <= 5; attempt++) {
      await new Promise((r) => setTimeout(r, 500 * attempt));
      res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    }
    if (res.status !== 202) throw new Error(`POST /v1/tenants ${id}: ${res.status} ${JSON.stringify(res.body)}`);
    jobIds.push((res.body as { jobId: string }).jobId);
  }
  for (const jobId of jobIds) expectSucceeded(await waitFinal(queue, jobId, 900_000, 50), "tenant.provision");
  return performance.now() - t0;
}

async function deprovisionAll(h: Harness, ids: readonly string[]): Promise<void> {
  const queue = h.service.queue;
  if (!queue) return;
  const jobIds: string[] = [];
  for (const id of ids) {
    const res = await h.request("DELETE", `/v1/tenants/${id}`);
    if (res.status === 202) jobIds.push((res.body as { jobId: string }).jobId);
  }
  for (const jobId of jobIds) await waitFinal(queue, jobId, 900_000, 100).catch(() => undefined);
}

/** One side: a fresh service at `concurrency`, N fresh tenants, the wall time. */
async function side(concurrency: number, n: number, created: string[]): Promise<{ ms: number; cpu: CpuUse }> {
  const tag = randomBytes(2).toString("hex");
  const ids = Array.from({ length: n }, (_, i) => `bf${concurrency}-${tag}-${i}`);
  const h = await startHarness({ env: { STACKRAIL_CONCURRENCY: String(concurrency), STACKRAIL_DELETE_MAX: "10000" } });
  created.push(...ids);
  try {
    say(`fanout: provisioning ${n} tenants at concurrency ${concurrency}`);
    const cpuOf = startCpu();
    const ms = await provisionAll(h, ids);
    // Jobs' processes are reaped by now, so their CPU time counts as ours.
    const cpu = cpuOf();
    say(`fanout: concurrency ${concurrency}: ${Math.round(ms)} ms, ${cpu.oursCores} cores busy with it, ${cpu.othersCores} with other processes`);
    if (process.env.BENCH_FANOUT_CLEANUP === "deprovision") {
      say(`fanout: deprovisioning ${n} tenants through the service`);
      await deprovisionAll(h, ids);
    }
    return { ms, cpu };
  } finally {
    await h.close();
  }
}

export async function benchFanout(): Promise<Row[]> {
  const n = envInt("BENCH_FANOUT_TENANTS", 20);
  const created: string[] = [];
  try {
    const { ms: sequential, cpu: seqCpu } = await side(1, n, created);
    const rows: Row[] = [];
    for (const c of concurrencies()) {
      const { ms, cpu } = await side(c, n, created);
      const speedup = sequential / ms;
      rows.push({
        bench: "fanout",
        metric: `${n} provisions at concurrency ${c}`,
        ours: round(ms / 1000, 1),
        baseline: round(sequential / 1000, 1),
        unit: "s",
        ratio: round(speedup),
        goal: c === 2 ? "≥ 1.8× faster" : "(info)",
        met: c === 2 ? speedup >= 1.8 : null,
        baselineIs: `the same ${n} tenant provisions (POST /v1/tenants, up + commit each) run one after another: STACKRAIL_CONCURRENCY=1`,
        details: {
          tenants: n,
          concurrency: c,
          sequentialMs: round(sequential, 0),
          concurrentMs: round(ms, 0),
          // Cores busy on average: a sequential run that already keeps most cores busy cannot be sped up by concurrency.
          sequentialCpu: seqCpu,
          concurrentCpu: cpu,
          cleanup: process.env.BENCH_FANOUT_CLEANUP ?? "drop",
        },
      });
    }
    return rows;
  } finally {
    say(`fanout: dropping the objects of ${created.length} tenants`);
    await dropLocalLeftovers("tenant", created);
  }
}
