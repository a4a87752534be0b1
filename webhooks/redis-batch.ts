// One socket write for all the Redis commands a process issues in one turn of the event loop.
// Each command ioredis sends is its own write() on the connection's socket, and on a loaded
// machine the system call, not Redis, is what a webhook delivery waits for. batchWrites() corks
// the socket for the rest of the current turn: every command written meanwhile (the delivery
// claims, BullMQ's adds and the stored answers of all the requests being handled) leaves in one
// writev() when the turn's I/O is done (setImmediate). Replies, order and timeouts are unchanged:
// only when the bytes leave changes, by less than one turn.
// On a Redis Cluster (core/redis.ts) there is no one socket to cork: each node has its own,
// and the batcher does nothing (commands leave as ioredis writes them).
import type { Redis } from "ioredis";
import { isCluster } from "../core/redis.ts";

export type BatchWrites = () => void;

export function redisWriteBatcher(redis: Redis): BatchWrites {
  if (isCluster(redis)) return () => undefined;
  let corked = false;
  const uncork = (stream: Redis["stream"]) => {
    corked = false;
    stream.uncork();
  };
  return () => {
    // A connection that is not ready refuses commands itself (enableOfflineQueue: false).
    if (corked || redis.status !== "ready") return;
    const stream = redis.stream;
    corked = true;
    stream.cork();
    setImmediate(uncork, stream);
  };
}
