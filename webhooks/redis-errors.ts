// Recognises "Redis is not there" errors from ioredis/BullMQ, so the edge answers 503 (retry later)
// instead of 500 when the queue cannot take work.
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === "MaxRetriesPerRequestError") return true;
  return /Stream isn't writeable|Connection is closed|Command timed out|ECONNREFUSED|ECONNRESET|ENOTFOUND|ETIMEDOUT|EPIPE|LOADING|READONLY|enableOfflineQueue|did not answer/i.test(
    err.message,
  );
}
