// Small pieces the three gate sources share: cancellation as a typed error, an abortable pause,
// bounded parallelism, and one-line details that stay short and carry no known secret.
import { setTimeout as delay } from "node:timers/promises";
import { CancelledError } from "../../core/errors.ts";

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled(signal);
}

export function cancelled(signal: AbortSignal): CancelledError {
  return signal.reason instanceof CancelledError ? signal.reason : new CancelledError("wave health gate cancelled");
}

/** The default pause: abortable, so a cancelled job never waits out a poll interval. */
export async function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, signal ? { signal } : {});
  } catch (err) {
    if (signal?.aborted) throw cancelled(signal);
    throw err;
  }
}

/** Runs `work` over `items` with at most `limit` at a time, keeping the order of the results. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** A detail line: bounded, on one line, with every given secret removed. */
export function detailLine(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(/\s+/g, " ").trim();
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("[REDACTED]");
  return out.length > 300 ? `${out.slice(0, 297)}...` : out;
}

/** Node's fetch hides the reason behind "fetch failed"; the cause's code (ECONNREFUSED, ...) says it. */
export function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (cause && typeof cause.code === "string") return cause.code;
  if (err instanceof Error && err.name === "TimeoutError") return "request timed out";
  return err instanceof Error ? err.message : "request failed";
}

export const seconds = (ms: number): string => `${Math.round(ms / 100) / 10}s`;
