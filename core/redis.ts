// Redis connections with the settings BullMQ documents for production, and the start-up check
// that Redis will not evict queue keys. (The HTTP edge's fail-fast connection is createEdgeRedis
// in webhooks/http-server.ts.)
import { Redis, type RedisOptions } from "ioredis";
import { ConfigError } from "./errors.ts";

/** Worker and blocking connections: BullMQ requires `maxRetriesPerRequest: null` here. */
export function workerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
}

/** BullMQ loses jobs if Redis evicts keys; refuse to start unless the policy is `noeviction`. */
export async function assertNoEviction(redis: Redis): Promise<void> {
  const reply = (await redis.config("GET", "maxmemory-policy")) as string[];
  const policy = reply[1];
  if (policy !== "noeviction") {
    throw new ConfigError(
      "REDIS_URL",
      `Redis maxmemory-policy is "${policy ?? "unknown"}"; queues need "noeviction" or jobs can be lost. ` +
        `Fix: redis-cli CONFIG SET maxmemory-policy noeviction (and set it in redis.conf).`,
    );
  }
}
