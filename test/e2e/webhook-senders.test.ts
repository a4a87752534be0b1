// Finding 8 of the tenant-isolation issue (11): "webhooks from any repository act". A GitHub App
// installed on many repositories signs all their deliveries with one secret, so a valid signature
// says nothing about which repository sent it. Only repositories in STACKRAIL_REPOSITORIES act,
// and a signed body replayed under a new X-GitHub-Delivery never enqueues twice.
// Runs the real service (API role: nothing consumes the queue, so every job stays visible).
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_REDIS_URL } from "../support/services.ts";

let h: Harness;
let redis: Redis;

beforeAll(async () => {
  h = await startHarness({ role: "api", env: { STACKRAIL_REPOSITORIES: "Acme/Shop" } });
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  redis?.disconnect();
  await h?.close();
});

const prefix = () => h.config.queuePrefix;

async function jobCount(): Promise<number> {
  const counts = await h.service.queue?.queue.getJobCounts();
  return Object.values(counts ?? {}).reduce((a, b) => a + b, 0);
}

async function laneKeys(): Promise<string[]> {
  return redis.keys(`${prefix()}:lane:*`);
}

/** A push to the default branch that touches a deployable path: it rolls out when its repository may act. */
function push(fullName: string, after: string): Record<string, unknown> {
  const [owner = "", name = ""] = fullName.split("/");
  return {
    ref: "refs/heads/main",
    before: "0".repeat(39) + "1",
    after,
    deleted: false,
    repository: { id: 7, name, full_name: fullName, default_branch: "main", owner: { login: owner, name: owner } },
    sender: { login: "mallory" },
    commits: [{ id: after, added: [], removed: [], modified: ["src/app.ts"] }],
  };
}

const sha = (n: number) => n.toString(16).padStart(40, "a");

describe("finding 8: webhooks from any repository act", () => {
  it("a signed push from an unrelated repository starts nothing: no job, no lane entry", async () => {
    const res = await h.deliver("push", push("mallory/unrelated", sha(1)));
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ jobs: [], ignored: expect.stringContaining("STACKRAIL_REPOSITORIES") });
    expect(await jobCount()).toBe(0);
    expect(await laneKeys()).toEqual([]);

    // A release (whose schema needs no repository) and a delivery that names none do nothing either.
    const release = await h.deliver("release", { action: "published", release: { tag_name: "v9.9.9", draft: false, prerelease: false } });
    expect(release.status).toBe(202);
    expect(release.body).toMatchObject({ jobs: [], ignored: expect.any(String) });
    const ping = await h.deliver("ping", { zen: "Keep it logically awesome.", hook_id: 1 });
    expect(ping.status).toBe(202);
    expect(ping.body.jobs).toEqual([]);
    expect(await jobCount()).toBe(0);
    expect(await laneKeys()).toEqual([]);
  });

  it("a push from a listed repository rolls out, whatever the case of its name", async () => {
    const res = await h.deliver("push", push("ACME/shop", sha(2)));
    expect(res.status).toBe(202);
    expect(res.body.jobs).toHaveLength(1);
    expect(res.body.ignored).toBeUndefined();
    expect(await h.service.queue?.getJobView(res.body.jobs[0])).toMatchObject({ kind: "release.rollout", stack: "releases" });
  });

  it("a signed body replayed under a new X-GitHub-Delivery enqueues nothing and answers the first delivery's jobs", async () => {
    const payload = push("acme/shop", sha(3));
    const first = await h.deliver("push", payload);
    expect(first.body.jobs).toHaveLength(1);
    const before = await jobCount();
    const lane = await redis.lrange(`${prefix()}:lane:releases`, 0, -1);

    const replay = await h.deliver("push", payload);
    expect(replay.status).toBe(202);
    expect(replay.body.jobs).toEqual(first.body.jobs);
    expect(replay.body.duplicateOf).toBe(first.body.deliveryId);
    expect(await jobCount()).toBe(before);
    expect(await redis.lrange(`${prefix()}:lane:releases`, 0, -1)).toEqual(lane);

    // GitHub's own "redeliver": the same delivery id and the same body answer the same job ids.
    const redelivery = await h.deliver("push", payload, first.body.deliveryId);
    expect(redelivery.body).toEqual(first.body);
    expect(await jobCount()).toBe(before);
  });

  it("20 concurrent replays of one signed body under 20 delivery ids enqueue exactly one job", async () => {
    const payload = push("acme/shop", sha(4));
    const before = await jobCount();
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.deliver("push", payload)));
    for (const a of answers) expect(a.status).toBe(202);
    const jobSets = new Set(answers.map((a) => JSON.stringify(a.body.jobs)));
    expect(jobSets.size).toBe(1);
    expect(answers[0]?.body.jobs).toHaveLength(1);
    expect(await jobCount()).toBe(before + 1);
  });

  it("the same replay under another X-GitHub-Event header is the same body: nothing more", async () => {
    const payload = push("acme/shop", sha(5));
    const first = await h.deliver("push", payload);
    const before = await jobCount();
    const replay = await h.deliver("release", payload);
    expect(replay.status).toBe(202);
    expect(replay.body.jobs).toEqual(first.body.jobs);
    expect(await jobCount()).toBe(before);
  });
});
