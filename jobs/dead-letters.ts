// The dead-letter list: jobs whose transient failures used up every retry. They stay in
// BullMQ's failed set (with their record); this sorted set names them so operators can list
// them and send them back to the queue through the API.
import { Job, type Queue } from "bullmq";
import type { Redis } from "ioredis";

export class DeadLetters {
  readonly #redis: Redis;
  readonly #key: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#key = `${prefix}:dead-letters`;
  }

  async add(jobId: string, reason: string): Promise<void> {
    void reason; // the reason stays in the job's own record (failedReason)
    await this.#redis.zadd(this.#key, Date.now(), jobId);
  }

  async list(limit = 100): Promise<string[]> {
    return this.#redis.zrevrange(this.#key, 0, limit - 1);
  }

  async has(jobId: string): Promise<boolean> {
    return (await this.#redis.zscore(this.#key, jobId)) !== null;
  }

  /** Back to the queue with fresh attempts; it rejoins its stack's lane at the back. */
  async retry(queue: Queue, jobId: string): Promise<boolean> {
    const job = await Job.fromId(queue, jobId);
    if (!job || (await job.getState()) !== "failed") return false;
    await job.retry("failed", { resetAttemptsMade: true });
    await this.#redis.zrem(this.#key, jobId);
    return true;
  }
}
