// Timeouts for every HTTP listener of the edge (the API and the metrics listener), from
// STACKRAIL_REQUEST_TIMEOUT_MS: a request's headers and body must arrive within it, so a sender
// that trickles bytes cannot hold a connection (and whatever it buffered) for longer.
import type { ServerOptions } from "node:http";

export function httpServerTimeouts(requestTimeoutMs: number): Pick<ServerOptions, "requestTimeout" | "headersTimeout" | "connectionsCheckingInterval"> {
  return {
    requestTimeout: requestTimeoutMs,
    // Node requires headersTimeout <= requestTimeout; headers trickled in are cut off just the same.
    headersTimeout: requestTimeoutMs,
    // Node enforces both on this interval; its default (30 s) would let a trickle live up to 30 s longer.
    connectionsCheckingInterval: Math.max(250, Math.min(1_000, Math.floor(requestTimeoutMs / 4))),
  };
}
