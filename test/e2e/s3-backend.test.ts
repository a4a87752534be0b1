// Issue 14 §1: the Pulumi state on an S3-compatible store. A real tenant is provisioned with
// PULUMI_BACKEND_URL=s3://… (the engine's diy backend through gocloud) against gofakes3, and crash
// recovery works there too: a lock left in the bucket by a worker that died mid-operation (its
// owner record names it, its heartbeat is gone, its Pulumi process ran on another machine) is
// cleared by identity through the blob store's S3 client, and the next job completes. A lock that
// nobody can vouch for stays, and the job waits naming its holder.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBlobStore, s3BlobStore, type BlobStore } from "../../core/blob-store.ts";
import { parseBlobUrl } from "../../core/blob-url.ts";
import { StackLockedError } from "../../core/errors.ts";
import { RedisStackGuard } from "../../worker/stack-guard.ts";
import { lockStoreFor } from "../../worker/stack-locks.ts";
import { newWorkerIdentity, OWNER_RECORD_TTL_S, stackOwnerKey, WorkerPresence } from "../../worker/worker-identity.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { S3_TEST_CREDENTIALS, startS3Server, type S3TestServer } from "../support/s3-server.ts";
import { TEST_REDIS_URL } from "../support/services.ts";

const STATE_BUCKET = "pulumi-state";
const id = `s3be-${Math.random().toString(36).slice(2, 7)}`;
const project = "stackrail-pool";
const stack = `tenant-${id}`;
const saved = { ...process.env };
let s3: S3TestServer;
let h: Harness;
let state: BlobStore;
let redis: Redis;

const lockDir = `.pulumi/locks/organization/${project}/${stack}/`;

beforeAll(async () => {
  Object.assign(process.env, S3_TEST_CREDENTIALS);
  s3 = await startS3Server({ buckets: [STATE_BUCKET, "blobs"] });
  h = await startHarness({
    env: { ...S3_TEST_CREDENTIALS, PULUMI_BACKEND_URL: s3.pulumiBackendUrl(STATE_BUCKET, "stackrail"), STACKRAIL_BLOB_URL: s3.blobUrl("blobs") },
  });
  const location = parseBlobUrl(h.config.pulumiBackendUrl, "pulumi");
  if (location.kind !== "s3") throw new Error("expected an s3 backend");
  state = s3BlobStore(location);
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  if (h) {
    const del = await h.request("DELETE", `/v1/tenants/${id}`);
    if (del.status === 202) await h.waitForJob(del.body.jobId).catch(() => undefined);
  }
  redis?.disconnect();
  await h?.close();
  await dropTenantLeftovers([id]);
  await s3?.stop();
  for (const k of Object.keys(S3_TEST_CREDENTIALS)) if (saved[k] === undefined) delete process.env[k];
});

describe("Pulumi state on S3 (gofakes3)", () => {
  it("provisions a real tenant with its checkpoint in the bucket, under the URL's prefix", async () => {
    const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
    expect(res.status).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    const keys = (await state.list(".pulumi/stacks/")).map((e) => e.key);
    // The diy backend's project layout: `.pulumi/stacks/<project>/<stack>.json` (gzipped when asked).
    expect(
      keys.some((k) => new RegExp(`^\\.pulumi/stacks/${project}/${stack}\\.json(\\.gz)?$`).test(k)),
      keys.join(", "),
    ).toBe(true);
    // The raw bucket: everything is under `stackrail/`, nothing at the bucket's root.
    const root = createBlobStore({ kind: "s3", bucket: STATE_BUCKET, prefix: "", endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true });
    expect((await root.list("")).every((e) => e.key.startsWith("stackrail/"))).toBe(true);
    // The update released its lock.
    expect(await state.list(lockDir)).toEqual([]);
  });

  it("clears, by identity, the lock a dead worker left in the bucket, and the next job completes", async () => {
    // What a worker on another machine leaves when it dies mid-`up`: its owner record in Redis (its
    // heartbeat gone with it) and the engine's lock object, written by a process on its host.
    const deadWorker = `dead-${randomUUID().slice(0, 8)}`;
    const startedAt = Date.now() - 60_000;
    await redis.set(
      stackOwnerKey(h.config.queuePrefix, project, stack),
      JSON.stringify({
        workerId: deadWorker,
        host: "node-b.internal",
        workerPid: 4242,
        jobId: "job-of-the-dead",
        childPid: 4300,
        childHost: "node-b.internal",
        enginePids: [4343],
        startedAt,
      }),
      // Its last beat renewed the record's expiry 30 s ago: what is left of it says so.
      "PX",
      OWNER_RECORD_TTL_S * 1000 - 30_000,
    );
    const lockKey = `${lockDir}${randomUUID()}.json`;
    await state.put(
      lockKey,
      JSON.stringify({ pid: 4343, username: "stackrail", hostname: "node-b.internal", timestamp: new Date(startedAt + 5_000).toISOString() }),
    );
    expect((await lockStoreFor(h.config.pulumiBackendUrl).list(project, stack))?.map((l) => l.hostname)).toEqual(["node-b.internal"]);

    const res = await h.request("POST", `/v1/tenants/${id}/upgrade`, { version: "1.1.0" });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const job = await h.waitForJob(res.body.jobId);
    expect(job.state, JSON.stringify(job.error)).toBe("succeeded");
    expect(job.progress.find((l) => l.startsWith("cleared a stale lock"))).toMatch(
      new RegExp(
        `cleared a stale lock left by worker ${deadWorker} on node-b\\.internal \\(job job-of-the-dead, Pulumi process 4343 on node-b\\.internal\\): its heartbeat is gone`,
      ),
    );
    expect(await state.exists(lockKey)).toBe(false);
    expect(await state.list(lockDir)).toEqual([]);
    expect((await h.request("GET", `/v1/tenants/${id}`)).body).toMatchObject({ version: "1.1.0" });
  });

  it("keeps a lock nobody can vouch for (another machine's process, no dead owner): the claim waits naming its holder", async () => {
    const lockKey = `${lockDir}${randomUUID()}.json`;
    await state.put(lockKey, JSON.stringify({ pid: 777, username: "operator", hostname: "laptop.example", timestamp: new Date().toISOString() }));
    const presence = new WorkerPresence(redis, h.config.queuePrefix, newWorkerIdentity({ host: "probe-host" }));
    await presence.start();
    try {
      const guard = new RedisStackGuard(redis, presence, lockStoreFor(h.config.pulumiBackendUrl));
      const claim = guard.claim({ projectName: project, stack }, { jobId: "probe", progress: () => undefined });
      await expect(claim).rejects.toBeInstanceOf(StackLockedError);
      await expect(claim).rejects.toThrow(/process 777 on laptop\.example \(user operator\)/);
      expect(await state.exists(lockKey)).toBe(true);
    } finally {
      await presence.stop();
      await state.delete(lockKey);
    }
  });
});
