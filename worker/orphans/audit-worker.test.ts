// A fresh orphan audit on request, across the seam: the edge's side (jobs/orphan-audit.ts) queues it
// and waits, a worker (audit-worker.ts) runs it, against a real Redis and real BullMQ. The audit
// itself is a stand-in here (test/e2e/orphan-audit.test.ts runs the real one through the route).
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../core/logger.ts";
import { workerConnection } from "../../core/redis.ts";
import { ORPHAN_AUDIT_QUEUE, OrphanAuditRequests } from "../../jobs/orphan-audit.ts";
import { finding, type OrphanReport, type OrphanScope } from "../../jobs/orphan-report.ts";
import { TEST_REDIS_URL, uniqueName } from "../../test/support/services.ts";
import { deleteKeys } from "../../webhooks/edge-fixture.ts";
import { startOrphanAuditWorker, type OrphanAuditWorker } from "./audit-worker.ts";

const logger = createLogger({ level: "silent" });
const prefixes: string[] = [];
let redis: Redis;
let workerRedis: Redis;
const open: { close(): Promise<void> }[] = [];

function report(scope: OrphanScope, name: string): OrphanReport {
  return {
    scope,
    checkedAt: new Date().toISOString(),
    durationMs: 1,
    findings: [finding("database", name, "unowned", `DROP DATABASE \`${name}\``)],
    retained: [],
    failed: [],
    skipped: [],
    incomplete: [],
  };
}

function setup(audit: (scope: OrphanScope) => Promise<OrphanReport>, withWorker = true): { requests: OrphanAuditRequests; prefix: string; start: () => OrphanAuditWorker } {
  const prefix = uniqueName("orphaudit");
  prefixes.push(prefix);
  const requests = new OrphanAuditRequests({ connection: redis, redisUrl: TEST_REDIS_URL, prefix });
  open.push(requests);
  const start = (): OrphanAuditWorker => {
    const worker = startOrphanAuditWorker({ connection: workerRedis, prefix, audit, logger });
    open.push(worker);
    return worker;
  };
  if (withWorker) start();
  return { requests, prefix, start };
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
  workerRedis = workerConnection(TEST_REDIS_URL);
});

afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

afterAll(async () => {
  for (const p of prefixes) await deleteKeys(p);
  redis.disconnect();
  workerRedis.disconnect();
});

describe("orphan audit on request", () => {
  it("answers the worker's report; requests made while one runs share it, a later one gets a fresh audit", async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { requests } = setup(async (scope) => {
      runs += 1;
      if (runs === 1) await gate;
      return report(scope, `t_run${runs}`);
    });

    const first = requests.run("server", 10_000);
    const second = requests.run("server", 10_000);
    await until(() => runs === 1, "the worker to start the audit");
    release();
    const [a, b] = await Promise.all([first, second]);
    expect(a.state).toBe("done");
    expect(b).toEqual(a);
    expect(a.state === "done" && a.report.findings.map((f) => f.name)).toEqual(["t_run1"]);
    expect(runs).toBe(1);

    // A report finished moments ago is answered again, no audit runs; `fresh` asks for a new one.
    const cached = await requests.run("server", 10_000);
    expect(cached).toEqual(a);
    expect(runs).toBe(1);
    const later = await requests.run("server", 10_000, { fresh: true });
    expect(later.state === "done" && later.report.findings.map((f) => f.name)).toEqual(["t_run2"]);
    const other = await requests.run("installation", 10_000);
    expect(other.state === "done" && other.report.scope).toBe("installation");
    expect(runs).toBe(3);
  });

  it("answers a finished report only while it is fresh; fresh requests made together still share one audit", async () => {
    let runs = 0;
    let clock = Date.now();
    const { prefix } = setup((scope) => {
      runs += 1;
      return Promise.resolve(report(scope, `t_run${runs}`));
    });
    const requests = new OrphanAuditRequests({ connection: redis, redisUrl: TEST_REDIS_URL, prefix, freshForMs: 30_000, now: () => clock });
    open.push(requests);
    const a = await requests.run("server", 10_000);
    expect(a.state === "done" && a.report.findings.map((f) => f.name)).toEqual(["t_run1"]);
    clock += 29_000;
    expect(await requests.run("server", 10_000)).toEqual(a);
    clock += 2_000;
    const b = await requests.run("server", 10_000);
    expect(b.state === "done" && b.report.findings.map((f) => f.name)).toEqual(["t_run2"]);
    const together = await Promise.all([requests.run("server", 10_000, { fresh: true }), requests.run("server", 10_000, { fresh: true })]);
    expect(together[1]).toEqual(together[0]);
    expect(runs).toBe(3);
  });

  it("says when no worker answered in time; the audit stays queued and a worker runs it later", async () => {
    let runs = 0;
    const { requests, start } = setup(
      (scope) => {
        runs += 1;
        return Promise.resolve(report(scope, "t_late"));
      },
      false,
    );
    const outcome = await requests.run("installation", 300);
    expect(outcome.state).toBe("timeout");
    expect(outcome.jobId).not.toBe("");

    start();
    await until(() => runs === 1, "a worker to run the queued audit");
    // Asked again while it ran or after: the answer comes from a worker, never from the edge.
    const again = await requests.run("installation", 10_000);
    expect(again.state).toBe("done");
  });

  it("reports a failed audit with its reason", async () => {
    const { requests } = setup(() => Promise.reject(new Error("records unreadable")));
    const outcome = await requests.run("server", 10_000);
    expect(outcome).toMatchObject({ state: "failed", message: "records unreadable" });
  });

  it("stores a failed audit's reason scrubbed of secrets: known values and URL credentials", async () => {
    const canary = `canary-${Math.random().toString(36).slice(2)}`;
    const urlCanary = `urlpw-${Math.random().toString(36).slice(2)}`;
    const prefix = uniqueName("orphaudit");
    prefixes.push(prefix);
    const requests = new OrphanAuditRequests({ connection: redis, redisUrl: TEST_REDIS_URL, prefix });
    open.push(requests);
    open.push(
      startOrphanAuditWorker({
        connection: workerRedis,
        prefix,
        logger,
        scrub: (text) => text.split(canary).join("[REDACTED]"),
        audit: () => Promise.reject(new Error(`backend mysql://root:${urlCanary}@db:3306 refused; passphrase ${canary} rejected`)),
      }),
    );
    const outcome = await requests.run("server", 10_000);
    expect(outcome.state).toBe("failed");
    expect(outcome.state === "failed" && outcome.message).toBe("backend mysql://[REDACTED]@db:3306 refused; passphrase [REDACTED] rejected");
    // Nothing BullMQ stored for the job holds either secret (failedReason, stacktrace).
    const stored = JSON.stringify(await redis.hgetall(`${prefix}:${ORPHAN_AUDIT_QUEUE}:${outcome.jobId}`));
    expect(stored).toContain("[REDACTED]");
    expect(stored).not.toContain(canary);
    expect(stored).not.toContain(urlCanary);
  });
});
