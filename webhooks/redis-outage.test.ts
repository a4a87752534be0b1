// With Redis gone (stopped, or hung), a delivery gets 503 within a second and nothing claims it;
// once Redis is back, GitHub's redelivery is accepted. Runs against a private redis-server this
// test starts and stops itself (the shared one is never touched).
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { createRequire } from "node:module";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deliver, startEdge, waitReady, type Edge } from "./edge-fixture.ts";

const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];
const opened = examples.find((e) => e.name === "pull_request")?.examples.find((p) => (p as { action?: string }).action === "opened");

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  // Wait until it accepts connections.
  const { Redis } = await import("ioredis");
  for (let i = 0; i < 100; i++) {
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on("error", () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return child;
    } catch {
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error("private redis-server did not start");
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

let port: number;
let redis: ChildProcess;
let edge: Edge;

beforeAll(async () => {
  port = await freePort();
  redis = await startRedis(port);
  edge = await startEdge({ label: "outage", redisUrl: `redis://127.0.0.1:${port}` });
});

afterAll(async () => {
  if (redis.pid && redis.exitCode === null) {
    try {
      process.kill(redis.pid, "SIGCONT");
    } catch {
      // already gone
    }
  }
  await edge?.close();
  await stopRedis(redis);
});

describe("Redis outage", () => {
  it("answers 503 while Redis is stopped, and accepts the redelivery once it is back", async () => {
    const body = JSON.stringify(opened);
    const ok = await deliver(edge, body, { event: "pull_request" });
    expect(ok.status).toBe(202);

    await stopRedis(redis);
    const deliveryId = crypto.randomUUID();
    const started = Date.now();
    const down = await deliver(edge, body, { event: "pull_request", deliveryId });
    expect(down.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(1_000);

    redis = await startRedis(port);
    await waitReady(edge.redis);
    const again = await deliver(edge, body, { event: "pull_request", deliveryId });
    expect(again.status).toBe(202);
    const answer = (await again.json()) as { jobs: string[] };
    expect(answer.jobs).toHaveLength(1);
    const view = await edge.queue.getJobView(answer.jobs[0] ?? "");
    expect(view).toMatchObject({ kind: "preview.up", state: "waiting" });
  });

  it("answers 503 within a second while Redis hangs, and accepts the redelivery once it answers again", async () => {
    const body = JSON.stringify(opened);
    const deliveryId = crypto.randomUUID();
    if (!redis.pid) throw new Error("no redis pid");
    process.kill(redis.pid, "SIGSTOP");
    try {
      const started = Date.now();
      const hung = await deliver(edge, body, { event: "pull_request", deliveryId });
      expect(hung.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      process.kill(redis.pid, "SIGCONT");
    }
    await waitReady(edge.redis);
    // The hung attempt may have left a short-lived pending marker; GitHub redelivers later.
    let status = 0;
    for (let i = 0; i < 100 && status !== 202; i++) {
      status = (await deliver(edge, body, { event: "pull_request", deliveryId })).status;
      if (status !== 202) await new Promise((r) => setTimeout(r, 500));
    }
    expect(status).toBe(202);
  });
});
