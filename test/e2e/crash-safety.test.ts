// A worker process killed with SIGKILL in the middle of an `up` loses nothing: the job runs
// again on the next worker, the stale lock of the dead process is cleared, pending operations are
// resolved by a refresh, and the final state matches the request.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation, PROJECT_ROOT } from "../../core/engine.ts";
import { killTree } from "../../worker/process-tree.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";

let h: Harness;
let db: mysql.Connection;
const workers: ChildProcess[] = [];
const id = `crash-${Math.random().toString(36).slice(2, 7)}`;
const dbName = `t_${id.replace(/-/g, "_")}`;

function startWorker(): ChildProcess {
  const child = spawn(engineLocation().node, ["main.ts", "--role", "worker"], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...h.env, STACKRAIL_JOB_LOCK_MS: "10000", STACKRAIL_STALLED_INTERVAL_MS: "1000", LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  workers.push(child);
  return child;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  h = await startHarness({ role: "api" });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  for (const w of workers) if (w.pid && w.exitCode === null) killTree(w.pid);
  const res = await h.request("DELETE", `/v1/tenants/${id}`);
  void res;
  await db?.query(`DROP DATABASE IF EXISTS \`${dbName}\``);
  await db?.query(`DROP USER IF EXISTS '${dbName}'@'%'`);
  const redis = new Redis(TEST_REDIS_URL);
  await redis.call("ACL", "DELUSER", `t-${id}`);
  redis.disconnect();
  await db?.end();
  await h?.close();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers([id]);
});

describe("crash safety", () => {
  it("recovers a provision whose worker was SIGKILLed mid-up", async () => {
    const first = startWorker();
    const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect(res.status).toBe(202);
    const jobId = res.body.jobId as string;

    // Kill the worker (and the Pulumi processes under it) as soon as the engine starts creating.
    await waitFor("the up to start creating resources", async () => {
      const view = await h.service.queue?.getJobView(jobId).catch(() => undefined);
      return view?.progress.some((l) => l.startsWith("create ")) ?? false;
    });
    killTree(first.pid as number, "SIGKILL");
    await new Promise((r) => first.once("exit", r));

    // The dead update left its lock behind in the file backend.
    const locks = path.join(fileURLToPath(h.config.pulumiBackendUrl), ".pulumi", "locks", "organization", "stackrail-pool", `tenant-${id}`);
    expect(existsSync(locks) && readdirSync(locks).length).toBeGreaterThan(0);
    expect((await h.service.queue?.getJobView(jobId))?.state).toBe("running");

    // A new worker takes the stalled job over and finishes it.
    startWorker();
    const job = await h.waitForJob(jobId, 170_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.progress.some((l) => l.startsWith("cleared a stale lock left by process"))).toBe(true);

    // Final state matches the request: database, user, cache user, one commit, tenant active.
    const [dbs] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [dbName]);
    expect(dbs).toHaveLength(1);
    const [users] = await db.query<mysql.RowDataPacket[]>("SELECT User FROM mysql.user WHERE User = ?", [dbName]);
    expect(users).toHaveLength(1);
    const redis = new Redis(TEST_REDIS_URL);
    expect((await redis.call("ACL", "USERS")) as string[]).toContain(`t-${id}`);
    redis.disconnect();
    expect(h.gitLog().filter((l) => l.includes(`tenant-${id}`))).toHaveLength(1);
    expect(readdirSync(locks).filter((f) => f.endsWith(".json"))).toEqual([]);
    expect((await h.request("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
  });
});
