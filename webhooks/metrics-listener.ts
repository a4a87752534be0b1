// The small plain listeners beside the HTTP edge, on node:http so that a worker process, which
// carries no HTTP stack otherwise, can serve them too. No request body is ever read.
//
// - The metrics listener (STACKRAIL_METRICS_PORT): only `GET /metrics`, without a token, bound to
//   STACKRAIL_METRICS_HOST (loopback by default) so that Prometheus scrapes it on a private
//   interface while the main listener asks for a token.
// - The probe listener of a `--role worker` process (HOST:PORT, where the API would listen): only
//   `GET /healthz` (the event loop answers) and `GET /readyz` (what the worker role says about its
//   Redis connections and its BullMQ worker), so orchestrators probe every role the same way.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Logger } from "../core/logger.ts";
import { httpServerTimeouts } from "./server-timeouts.ts";

export interface MetricsListener {
  readonly url: string;
  close(): Promise<void>;
}

interface ListenerBase {
  readonly host: string;
  readonly port: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

export interface MetricsListenerOptions extends ListenerBase {
  readonly registry: Registry;
}

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** A path's answer; a rejection is logged and answered with a 500 that says nothing more. */
type Route = () => Promise<Answer>;

const json = (status: number, body: unknown): Answer => ({ status, contentType: "application/json", body: JSON.stringify(body) });

async function startPlainListener(
  options: ListenerBase & { readonly name: string; readonly routes: Readonly<Record<string, Route>> },
): Promise<MetricsListener> {
  const { logger, routes, name } = options;
  const served = Object.keys(routes).join(", ");
  const server = http.createServer(httpServerTimeouts(options.requestTimeoutMs), (req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    const hasBody = req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] ?? "0") !== "0";
    // An unread body is not drained: the connection is closed after the answer.
    if (hasBody) res.setHeader("connection", "close");
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route || (req.method !== "GET" && req.method !== "HEAD")) {
      const answer = json(404, { error: "not_found", message: `only GET ${served} ${Object.keys(routes).length > 1 ? "are" : "is"} served here` });
      res.writeHead(answer.status, { "content-type": answer.contentType }).end(answer.body);
      return;
    }
    route().then(
      (answer) => {
        res.writeHead(answer.status, { "content-type": answer.contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : answer.body);
      },
      (err: unknown) => {
        logger.error({ err, path }, "a plain listener's route failed");
        res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: "internal", message: "internal error" }));
      },
    );
  });
  server.timeout = options.requestTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, listener: name }, "listener started");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function startMetricsListener(options: MetricsListenerOptions): Promise<MetricsListener> {
  const { registry } = options;
  return startPlainListener({
    ...options,
    name: "metrics",
    routes: { "/metrics": async () => ({ status: 200, contentType: registry.contentType, body: await registry.metrics() }) },
  });
}

/** What /readyz reports: every check must hold for a 200. */
export type ProbeChecks = Readonly<Record<string, boolean>>;

/** How long /readyz waits for the checks before answering 503 (a probe's own timeout is longer). */
export const PROBE_READINESS_TIMEOUT_MS = 2_000;

export interface ProbeListenerOptions extends ListenerBase {
  /** Liveness needs nothing but an answer; readiness is these checks, all true. */
  readonly readiness: () => Promise<ProbeChecks>;
}

export function startProbeListener(options: ProbeListenerOptions): Promise<MetricsListener> {
  const readyz = async (): Promise<Answer> => {
    let timer: NodeJS.Timeout | undefined;
    const checks = await Promise.race([
      options.readiness().catch((err: unknown) => {
        options.logger.warn({ err }, "readiness could not be checked");
        return undefined;
      }),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), PROBE_READINESS_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    const ready = checks !== undefined && Object.values(checks).every(Boolean);
    return json(ready ? 200 : 503, { status: ready ? "ready" : "not ready", ...(checks ?? {}) });
  };
  return startPlainListener({
    ...options,
    name: "probes",
    routes: { "/healthz": () => Promise.resolve(json(200, { status: "ok" })), "/readyz": readyz },
  });
}
