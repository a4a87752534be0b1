// The metrics listener (STACKRAIL_METRICS_PORT): only `GET /metrics`, without a token, bound to
// STACKRAIL_METRICS_HOST (loopback by default) so that Prometheus scrapes it on a private
// interface while the main listener asks for a token. Plain node:http: a worker process, which
// carries no HTTP stack otherwise, can serve its metrics too. No request body is ever read.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Logger } from "../core/logger.ts";
import { httpServerTimeouts } from "./server-timeouts.ts";

export interface MetricsListener {
  readonly url: string;
  close(): Promise<void>;
}

export interface MetricsListenerOptions {
  readonly registry: Registry;
  readonly host: string;
  readonly port: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

export async function startMetricsListener(options: MetricsListenerOptions): Promise<MetricsListener> {
  const { registry, logger } = options;
  const server = http.createServer(httpServerTimeouts(options.requestTimeoutMs), (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    const hasBody = req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] ?? "0") !== "0";
    // An unread body is not drained: the connection is closed after the answer.
    if (hasBody) res.setHeader("connection", "close");
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: "not_found", message: "only GET /metrics is served here" }));
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        logger.error({ err }, "metrics could not be collected");
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
  logger.info({ url }, "metrics listener started");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
