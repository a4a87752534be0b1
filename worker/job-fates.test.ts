// Typed errors decide a job's fate: transient failures are retried with backoff and, once their
// attempts are used up, wait in the dead-letter list, from which the API sends them back; a
// program error fails at once. Real Redis and BullMQ; the handlers are Stackrail's own seams.
import { QueueEvents } from "bullmq";
import Fastify from "fastify";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../core/config.ts";
import { ProgramError, TransientError } from "../core/errors.ts";
import { JOBS_QUEUE, type JobData } from "../core/jobs.ts";
import { createLogger, SecretScrubber } from "../core/logger.ts";
import { createMetrics } from "../core/metrics.ts";
import { TEST_REDIS_URL, uniqueName } from "../test/support/services.ts";
import { STACK_OPERATION, enqueueStackOperation, stackOperationJob, stackOperationKindWith, type StackOperationJob } from "../test/support/stack-operation.ts";
import { registerOperationsApi } from "../webhooks/operations-api.ts";
import { DeadLetters } from "../jobs/dead-letters.ts";
import { createJobWorker, type JobWorker } from "./job-worker.ts";
import { JobQueue, stackFor } from "../jobs/queue.ts";
import { StackLanes } from "../jobs/stack-lanes.ts";

const prefix = uniqueName("fates");
const TOKEN = "fates-token-0123456789abcdef";
let redis: Redis;
let queue: JobQueue;
let worker: JobWorker;
let events: QueueEvents;
const calls = new Map<string, number>();
let healed = false;

function job(stack: string, program: string): StackOperationJob {
  return stackOperationJob({ stack, operation: "up", program });
}

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  queue = new JobQueue({ connection: redis, prefix });
  events = new QueueEvents(JOBS_QUEUE, { connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }), prefix });
  await events.waitUntilReady();
  worker = createJobWorker({
    connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }),
    prefix,
    concurrency: 2,
    lanes: new StackLanes(redis, prefix),
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics({ defaultMetrics: false }),
    scrubber: new SecretScrubber(),
    stackOf: (j) => stackFor(j.data as JobData),
    timeoutMs: () => 60_000,
    laneRetryMs: 100,
    deadLetters: new DeadLetters(redis, prefix),
    // A test-only kind whose handler fails on purpose, injected like any dependency.
    handlers: {},
    extraKinds: {
      [STACK_OPERATION]: stackOperationKindWith(async (ctx) => {
        calls.set(ctx.jobId, (calls.get(ctx.jobId) ?? 0) + 1);
        await Promise.resolve();
        if (ctx.data.program === "flaky" && !healed) throw new TransientError("network unreachable");
        if (ctx.data.program === "broken") throw new ProgramError("resource failed: bad input");
        return { ok: true };
      }),
    },
  });
});

afterAll(async () => {
  await worker?.close(1000);
  await events?.close();
  await queue?.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("job fates", () => {
  it("fails a program error at once, without retries and without a dead letter", async () => {
    const { jobId } = await enqueueStackOperation(queue, job("tenant-fates-broken", "broken"));
    await (await queue.queue.getJob(jobId))?.waitUntilFinished(events).catch(() => undefined);
    const view = await queue.getJobView(jobId);
    expect(view?.state).toBe("failed");
    expect(view?.error).toBe("program: resource failed: bad input");
    expect(calls.get(jobId)).toBe(1);
    expect(await new DeadLetters(redis, prefix).has(jobId)).toBe(false);
  });

  it("retries a transient failure with backoff, dead-letters it after the last attempt, and retries it from the API", async () => {
    const { jobId } = await enqueueStackOperation(queue, job("tenant-fates-flaky", "flaky"));
    const started = Date.now();
    await (await queue.queue.getJob(jobId))?.waitUntilFinished(events, 60_000).catch(() => undefined);
    expect(calls.get(jobId)).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(5_000 + 10_000 - 500); // exponential backoff 5 s, 10 s

    const app = Fastify();
    const config = loadConfig({ PULUMI_CONFIG_PASSPHRASE: "x", STACKRAIL_API_TOKENS: `ops=${TOKEN}`, STACKRAIL_QUEUE_PREFIX: prefix });
    await registerOperationsApi(app, { config, redis, queue, deadLetters: new DeadLetters(redis, prefix) });
    const auth = { authorization: `Bearer ${TOKEN}` };
    const list = await app.inject({ method: "GET", url: "/v1/dead-letters", headers: auth });
    expect(list.statusCode).toBe(200);
    expect(list.json<{ jobs: { id: string; error: string }[] }>().jobs.map((j) => [j.id, j.error])).toEqual([[jobId, "transient: network unreachable"]]);
    expect((await app.inject({ method: "GET", url: "/v1/dead-letters" })).statusCode).toBe(401);

    healed = true;
    const retry = await app.inject({ method: "POST", url: `/v1/dead-letters/${jobId}/retry`, headers: auth });
    expect(retry.statusCode).toBe(202);
    await (await queue.queue.getJob(jobId))?.waitUntilFinished(events, 30_000);
    expect((await queue.getJobView(jobId))?.state).toBe("succeeded");
    expect(calls.get(jobId)).toBe(4);
    expect((await app.inject({ method: "GET", url: "/v1/dead-letters", headers: auth })).json()).toEqual({ jobs: [] });
    await app.close();
  });
});
