// Issue 14 §2: the API and two workers as if on three machines. Each has its own data dir, and each
// worker its own host name (a UTS namespace: test/support/host-worker.ts) and identity; they share
// only the queue's Redis (a private redis-server), an S3-compatible store (gofakes3) holding the
// Pulumi state and the blobs, and a GitOps repository served over the network (git's smart HTTP:
// test/support/git-daemon.ts says why not git://) (plus the GitHub double for PR feedback and the shared MariaDB / cache server the local target
// provisions into). A tenant is provisioned; a function bundle uploaded to the API is deployed by
// a worker from the bucket, then by the other, which never saw the first version; a PR preview
// goes up and is destroyed; a release rolls out; then the worker holding a stack mid-`up` is
// SIGKILLed and the other finishes the job, clearing the lock the dead one left by its identity
// (its owner record and heartbeat), not by a host name match; the orphan audit ends clean.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blobKeys, createBlobStore, type BlobStore } from "../../core/blob-store.ts";
import { parseBlobUrl } from "../../core/blob-url.ts";
import type { JobView } from "../../jobs/queue.ts";
import { lockStoreFor, type StackLock } from "../../worker/stack-locks.ts";
import { stackOwnerKey, workerKey, type StackOwnerRecord } from "../../worker/worker-identity.ts";
import { GitHubDouble } from "../github-double/server.ts";
import { dropLocalLeftovers, dropTenantLeftovers } from "../support/cleanup.ts";
import { FINAL_STATES } from "../support/fault-installation.ts";
import { startGitServer, type GitServerRepo } from "../support/git-daemon.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { startHostWorker, type HostWorker } from "../support/host-worker.ts";
import { startPrivateRedis, waitUntil, type PrivateRedis } from "../support/private-services.ts";
import { pullRequestEvent } from "../support/pull-request-events.ts";
import { S3_TEST_CREDENTIALS, startS3Server, type S3TestServer } from "../support/s3-server.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";
import { functionZip } from "../support/zip-builder.ts";

const GH_TOKEN = "ghp_multihost000000000000000000000000000";
const tag = Math.random().toString(36).slice(2, 7);
const id = `mh-${tag}`;
const PROJECT = "stackrail-pool";
const stack = `tenant-${id}`;
const repoName = `mh-app-${tag}`;
const saved = { ...process.env };
/** Each step runs the real engine (an `up` takes minutes on a loaded 2-core machine). */
const STEP_MS = 600_000;

let dir: string;
let s3: S3TestServer;
let queueRedis: PrivateRedis;
let git: GitServerRepo;
let gh: GitHubDouble;
let h: Harness;
let blobs: BlobStore;
let state: BlobStore;
let redis: Redis;
let db: mysql.Connection;
const workers: HostWorker[] = [];
let previewKey = "";

async function view(jobId: string): Promise<JobView | null> {
  const res = await h.request("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
  return res.status === 200 ? (res.body as JobView) : null;
}

async function finished(jobId: string, timeoutMs = STEP_MS - 30_000): Promise<JobView> {
  let last: JobView | null = null;
  await waitUntil(`job ${jobId} to end`, async () => FINAL_STATES.has((last = await view(jobId))?.state ?? ""), timeoutMs, 200);
  return last as unknown as JobView;
}

async function succeeded(jobId: string): Promise<JobView> {
  const job = await finished(jobId);
  expect(job.state, `${job.error ?? ""} | ${job.progress.slice(-8).join(" | ")}`).toBe("succeeded");
  return job;
}

/** The worker that logged the start of the job (the last one, after a takeover). */
function ranOn(jobId: string): HostWorker[] {
  return workers.filter((w) => w.started(jobId));
}

async function databaseExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [name]);
  return rows.length === 1;
}

beforeAll(async () => {
  Object.assign(process.env, S3_TEST_CREDENTIALS);
  dir = mkdtempSync(path.join(tmpdir(), `stackrail-multihost-${tag}-`));
  s3 = await startS3Server({ buckets: ["state", "blobs"] });
  queueRedis = await startPrivateRedis(path.join(dir, "queue-redis"));
  git = await startGitServer(dir);
  gh = await GitHubDouble.start({ tokens: [GH_TOKEN] });
  await gh.createRepo("acme", repoName);
  const env: Record<string, string> = {
    ...S3_TEST_CREDENTIALS,
    REDIS_URL: queueRedis.url,
    // Tenant caches go to the shared server (the local target's cache server), not the queue's.
    LOCAL_REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    PULUMI_BACKEND_URL: s3.pulumiBackendUrl("state", "stackrail"),
    STACKRAIL_BLOB_URL: s3.blobUrl("blobs", "install"),
    GITOPS_REPO: git.url,
    GITHUB_TOKEN: GH_TOKEN,
    GITHUB_API_URL: gh.url,
    STACKRAIL_ROLLOUT_WAVES: "eu-west-1",
    STACKRAIL_APPROVAL_WAVES: "none",
    STACKRAIL_ORPHAN_SCOPE: "installation",
    STACKRAIL_MOVE_ROLLBACK_WINDOW_S: "0",
    // A dead worker's job is taken over within seconds (not minutes), with room for a loaded machine.
    STACKRAIL_JOB_LOCK_MS: "15000",
    STACKRAIL_STALLED_INTERVAL_MS: "5000",
  };
  mkdirSync(path.join(dir, "api"));
  h = await startHarness({ role: "api", dataDir: path.join(dir, "api"), env });
  for (const name of ["a", "b"]) {
    workers.push(
      startHostWorker({
        name,
        host: `stackrail-node-${name}-${tag}`,
        dataDir: path.join(dir, `node-${name}`),
        env: h.env,
        logFile: path.join(dir, `worker-${name}.log`),
      }),
    );
  }
  await Promise.all(workers.map((w) => w.ready()));
  blobs = createBlobStore(h.config.blobStore);
  state = createBlobStore(parseBlobUrl(h.config.pulumiBackendUrl, "pulumi"));
  redis = new Redis(queueRedis.url);
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
}, 240_000);

afterAll(async () => {
  const live = workers.filter((w) => w.alive());
  if (h && live.length > 0) {
    const del = await h.request("DELETE", `/v1/tenants/${id}`).catch(() => null);
    if (del?.status === 202) await finished(del.body.jobId as string).catch(() => undefined);
  }
  for (const w of workers) await w.killAll();
  redis?.disconnect();
  await db?.end();
  await h?.close();
  await gh?.close();
  await git?.stop();
  await queueRedis?.stop();
  await s3?.stop();
  await dropTenantLeftovers([id]);
  if (previewKey) await dropLocalLeftovers("preview", [previewKey]);
  if (process.env.STACKRAIL_KEEP_MULTIHOST !== "1") rmSync(dir, { recursive: true, force: true });
  for (const k of Object.keys(S3_TEST_CREDENTIALS)) if (saved[k] === undefined) delete process.env[k];
}, 600_000);

describe("API and two workers on different machines", () => {
  it(
    "provisions a tenant: state in the bucket, the commit on the remote git server",
    async () => {
      const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const jobId = res.body.jobId as string;
      await succeeded(jobId);
      expect(ranOn(jobId)).toHaveLength(1);
      const keys = (await state.list(`.pulumi/stacks/${PROJECT}/`)).map((e) => e.key);
      expect(
        keys.some((k) => k.startsWith(`.pulumi/stacks/${PROJECT}/${stack}.json`)),
        keys.join(", "),
      ).toBe(true);
      // Through the network: the workers cloned and pushed over HTTP.
      expect(git.requests()).toBeGreaterThan(0);
      const commit = git.commits().find((c) => c.jobId === jobId);
      expect(commit?.files.filter((f) => f.startsWith("tenants/")).sort()).toEqual([
        `tenants/${id}/application.yaml`,
        `tenants/${id}/appproject.yaml`,
        `tenants/${id}/tenant.yaml`,
      ]);
      // Neither the API's disk nor any worker's holds the state or the repository.
      for (const d of [h.dataDir, ...workers.map((w) => w.dataDir)]) {
        expect(existsSync(path.join(d, "state")), d).toBe(false);
        expect(existsSync(path.join(d, "gitops.git")), d).toBe(false);
      }
    },
    STEP_MS,
  );

  it(
    "deploys a function uploaded to the API from the bucket, on either worker",
    async () => {
      const v1 = functionZip(`export const handler = async () => "v1 ${tag}";\n`);
      const put = await h.request("PUT", `/v1/tenants/${id}/functions/hook`, { handler: "index.handler", code: v1.toString("base64") });
      expect(put.status, JSON.stringify(put.body)).toBe(202);
      expect((await blobs.get(blobKeys.bundle(id, put.body.bundleSha256 as string)))?.equals(v1)).toBe(true);
      const first = await succeeded(put.body.jobId as string);
      expect(first.result).toMatchObject({ version: 1, changed: true });
      const [deployer] = ranOn(put.body.jobId as string);
      const other = workers.find((w) => w !== deployer) as HostWorker;
      expect(deployer?.dataDir).not.toBe(h.dataDir);
      expect(readFileSync(path.join(deployer?.dataDir ?? "", "functions", id, "hook", "v1", "bundle.zip")).equals(v1)).toBe(true);

      // The next version goes to the other machine (the first one is frozen meanwhile): it never saw
      // v1 on its disk, and finds it (and v2's bundle) in the bucket.
      const frozen = deployer?.freezeAll() ?? [];
      try {
        const v2 = functionZip(`export const handler = async () => "v2 ${tag}";\n`);
        const next = await h.request("PUT", `/v1/tenants/${id}/functions/hook`, { handler: "index.handler", code: v2.toString("base64") });
        expect(next.status, JSON.stringify(next.body)).toBe(202);
        const second = await succeeded(next.body.jobId as string);
        expect(second.result).toMatchObject({ version: 2, changed: true });
        expect(ranOn(next.body.jobId as string)).toEqual([other]);
        expect(readFileSync(path.join(other.dataDir, "functions", id, "hook", "v2", "bundle.zip")).equals(v2)).toBe(true);
        expect(existsSync(path.join(other.dataDir, "functions", id, "hook", "v1"))).toBe(false);
      } finally {
        for (const p of frozen) process.kill(p, "SIGCONT");
      }
      // Nothing of either upload on the API's disk.
      for (const sub of ["blobs", "bundles", "functions"]) expect(existsSync(path.join(h.dataDir, sub)), sub).toBe(false);
    },
    STEP_MS,
  );

  it(
    "brings a PR preview up and destroys it, with feedback on the PR",
    async () => {
      const headSha = await gh.push("acme", repoName, "feature", "src/app.ts", "export const v = 1;\n");
      const pr = (await gh.openPullRequest("acme", repoName, { head: "feature", title: "A change" })).number;
      previewKey = `${repoName}-pr-${pr}`;
      const database = `p_${repoName.replace(/-/g, "_")}_pr_${pr}`;
      const deliver = async (action: string): Promise<JobView> => {
        const res = await h.deliver("pull_request", pullRequestEvent({ owner: "acme", repo: repoName, pr, action, headSha }));
        expect(res.status, JSON.stringify(res.body)).toBe(202);
        return succeeded((res.body.jobs as string[])[0] as string);
      };
      await deliver("opened");
      expect(await databaseExists(database)).toBe(true);
      expect(git.show(`previews/${previewKey}/application.yaml`)).toContain(headSha);
      expect(gh.comments("acme", repoName, pr)[0]?.body).toContain("Preview environment is ready");
      await deliver("closed");
      expect(await databaseExists(database)).toBe(false);
      expect(git.show(`previews/${previewKey}/application.yaml`)).toBeNull();
    },
    STEP_MS,
  );

  it(
    "rolls a release out",
    async () => {
      const res = await h.request("POST", "/v1/releases", { version: "1.1.0" });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      await succeeded(res.body.jobId as string);
      expect((await h.request("GET", `/v1/tenants/${id}`)).body).toMatchObject({ version: "1.1.0" });
      expect(git.show(`tenants/${id}/tenant.yaml`)).toContain("1.1.0");
    },
    STEP_MS,
  );

  it(
    "SIGKILL of the worker holding the stack mid-up: the other finishes the job, clearing the lock by the dead worker's identity",
    async () => {
      const res = await h.request("POST", `/v1/tenants/${id}/upgrade`, { version: "1.2.0" });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const jobId = res.body.jobId as string;
      const ownerKey = stackOwnerKey(h.config.queuePrefix, PROJECT, stack);
      const locks = lockStoreFor(h.config.pulumiBackendUrl);
      // Mid-`up`: the engine's lock is in the bucket and the stack's owner record names the Pulumi
      // process that wrote it (the worker publishes its engine pids about once a second).
      let record: StackOwnerRecord | undefined;
      let lock: StackLock | undefined;
      await waitUntil(
        "the upgrade's engine to hold the stack's lock",
        async () => {
          const text = await redis.get(ownerKey);
          record = text ? (JSON.parse(text) as StackOwnerRecord) : undefined;
          if (record?.jobId !== jobId) return false;
          lock = (await locks.list(PROJECT, stack))?.[0];
          return lock?.pid !== undefined && (record.enginePids ?? []).includes(lock.pid);
        },
        STEP_MS - 60_000,
        25,
      );
      const victim = workers.find((w) => w.pid === record?.workerPid);
      const survivor = workers.find((w) => w !== victim);
      expect(victim, `the owner record names worker pid ${record?.workerPid}`).toBeDefined();
      const dead = record as StackOwnerRecord;
      const exit = await victim?.killAll();
      const killedAt = Date.now();
      expect(exit?.signal).toBe("SIGKILL");
      // What the dead machine left: its lock in the bucket, written on its own host name (which no
      // other worker has: a host name match cannot clear it), and its owner record naming its identity.
      const left = (await locks.list(PROJECT, stack)) ?? [];
      expect(left.map((l) => l.hostname)).toEqual([victim?.host]);
      expect(dead).toMatchObject({ host: victim?.host, childHost: victim?.host, jobId });
      expect(JSON.parse((await redis.get(workerKey(h.config.queuePrefix, dead.workerId))) ?? "{}")).toMatchObject({ host: victim?.host });

      const job = await succeeded(jobId);
      expect(survivor?.started(jobId)).toBe(true);
      // Figures: from the kill until the survivor first took the job (BullMQ's stalled check), and
      // until its last start (the one that cleared the lock, once the dead worker's heartbeat ran out).
      const starts = (survivor?.logs() ?? [])
        .filter((l) => l.msg === "job started" && l.jobId === jobId && typeof l.time === "number" && l.time >= killedAt)
        .map((l) => l.time as number);
      process.stdout.write(
        `multi-host: takeover picked_up_ms=${(starts[0] ?? NaN) - killedAt} lock_cleared_ms=${(starts.at(-1) ?? NaN) - killedAt} finished_ms=${Date.now() - killedAt}\n`,
      );
      expect(job.progress.find((l) => l.startsWith("cleared a stale lock"))).toBe(
        `cleared a stale lock left by worker ${dead.workerId} on ${victim?.host} (job ${jobId}, Pulumi process ${lock?.pid} on ${victim?.host}): its heartbeat is gone`,
      );
      expect(await locks.list(PROJECT, stack)).toEqual([]);
      expect(await redis.exists(ownerKey, workerKey(h.config.queuePrefix, dead.workerId))).toBe(0);
      expect((await h.request("GET", `/v1/tenants/${id}`)).body).toMatchObject({ version: "1.2.0", state: "active" });
      expect(git.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    },
    STEP_MS,
  );

  it(
    "ends with an orphan audit that finds nothing about this installation",
    async () => {
      const res = await h.request("GET", "/v1/audit/orphans?scope=installation&fresh=1");
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.findings).toEqual([]);
    },
    STEP_MS,
  );
});
