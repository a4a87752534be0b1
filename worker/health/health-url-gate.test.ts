// The wave gate with STACKRAIL_HEALTH_URL: each tenant's endpoint (here a small HTTP server
// standing in for the tenants' applications, `{tenant}` in the path) must answer 2xx and report
// the new version, in the X-App-Version header or a JSON body's `version`.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CancelledError } from "../../core/errors.ts";
import { capturedLogger, runGate, tenantRecord, waveOf } from "./gate-fixtures.test-support.ts";
import { reportedVersion } from "./health-url-gate.ts";
import { waveHealthGateFor, type WaveGateConfig } from "./wave-gate.ts";

type Answer = { status: number; body?: string; headers?: Record<string, string> };
let server: Server;
let port: number;
/** Per tenant: the answers in order (the last repeats); and what each tenant's endpoint was asked. */
const scripts = new Map<string, Answer[]>();
const asked = new Map<string, { count: number; authorization: string | undefined }>();

beforeEach(async () => {
  scripts.clear();
  asked.clear();
  server = createServer((req, res) => {
    const id = /^\/([a-z0-9-]+)\/healthz$/.exec(req.url ?? "")?.[1] ?? "";
    const seen = asked.get(id) ?? { count: 0, authorization: undefined };
    const list = scripts.get(id) ?? [{ status: 404 }];
    const answer = list[Math.min(seen.count, list.length - 1)] as Answer;
    asked.set(id, { count: seen.count + 1, authorization: req.headers.authorization });
    res.writeHead(answer.status, answer.headers ?? {}).end(answer.body ?? "");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});
afterEach(async () => {
  await new Promise((r) => server.close(r));
});

function gate(overrides: Partial<WaveGateConfig> = {}) {
  const log = capturedLogger();
  const config: WaveGateConfig = {
    argocd: undefined,
    argocdNamespace: "argocd",
    healthUrl: `http://127.0.0.1:${port}/{tenant}/healthz`,
    healthTimeoutMs: 60_000,
    target: "local",
    dataDir: "/nonexistent",
    pulumiBackendUrl: "file:///nonexistent",
    pulumiPassphrase: undefined,
    ...overrides,
  };
  return { gate: waveHealthGateFor(config, { logger: log.logger, pollMs: 10 }), lines: log.lines };
}

const json = (v: unknown): Answer => ({ status: 200, body: JSON.stringify(v), headers: { "content-type": "application/json" } });

describe("wave health gate, health URL source", () => {
  it("retries 503 and the old version until each tenant's endpoint reports the new one", async () => {
    scripts.set("acme", [{ status: 503 }, json({ status: "ok", version: "1.0.0" }), json({ status: "ok", version: "2.0.0" })]);
    scripts.set("globex", [{ status: 200, headers: { "x-app-version": "2.0.0" } }]);
    const { gate: g } = gate();
    const { report, progress } = await runGate(g, waveOf([tenantRecord("acme"), tenantRecord("globex")]));
    expect(report).toMatchObject({ source: "health-url", passed: true });
    expect(report.note).toBeUndefined();
    expect(report.tenants).toEqual([
      { tenantId: "acme", healthy: true, detail: `http://127.0.0.1:${port}/acme/healthz answered HTTP 200 at version 2.0.0` },
      { tenantId: "globex", healthy: true, detail: `http://127.0.0.1:${port}/globex/healthz answered HTTP 200 at version 2.0.0` },
    ]);
    expect(asked.get("acme")?.count).toBe(3);
    expect(progress[0]).toMatch(/must answer http:\/\/127\.0\.0\.1:\d+\/\{tenant\}\/healthz with 2xx and their new version/);
  });

  it("fails a tenant whose endpoint keeps reporting the old version past the timeout", async () => {
    scripts.set("initech", [json({ version: "1.0.0" })]);
    const { gate: g } = gate({ healthTimeoutMs: 300 });
    const { report } = await runGate(g, waveOf([tenantRecord("initech")]));
    expect(report.passed).toBe(false);
    expect(report.tenants[0]?.detail).toBe(`not healthy within 0.3s: http://127.0.0.1:${port}/initech/healthz reports version 1.0.0, waiting for 2.0.0`);
    expect(asked.get("initech")?.count).toBeGreaterThanOrEqual(2);
  });

  it("a 2xx without a version, an error status, or nobody listening is not healthy", async () => {
    scripts.set("hooli", [{ status: 200, body: "OK" }]);
    scripts.set("umbrella", [{ status: 500, body: "boom" }]);
    const { gate: g } = gate({ healthTimeoutMs: 300 });
    const { report } = await runGate(g, waveOf([tenantRecord("hooli"), tenantRecord("umbrella")]));
    expect(report.passed).toBe(false);
    expect(report.tenants[0]?.detail).toMatch(/answered HTTP 200 without a version/);
    expect(report.tenants[1]?.detail).toMatch(/answered HTTP 500$/);

    // A port that was just free: nobody listens there.
    const spare = createServer();
    await new Promise<void>((r) => spare.listen(0, "127.0.0.1", r));
    const freePort = (spare.address() as AddressInfo).port;
    await new Promise((r) => spare.close(r));
    const closed = gate({ healthUrl: `http://127.0.0.1:${freePort}/{tenant}/healthz`, healthTimeoutMs: 300 });
    const down = await runGate(closed.gate, waveOf([tenantRecord("hooli")]));
    expect(down.report.tenants[0]?.detail).toBe(`not healthy within 0.3s: http://127.0.0.1:${freePort}/hooli/healthz unreachable (ECONNREFUSED)`);
  });

  it("sends the template's user information as Basic auth and never shows the password", async () => {
    const password = "health-canary-pw-5a1b";
    scripts.set("stark", [json({ version: "2.0.0" })]);
    const { gate: g, lines } = gate({ healthUrl: `http://probe:${password}@127.0.0.1:${port}/{tenant}/healthz` });
    const { report, progress } = await runGate(g, waveOf([tenantRecord("stark")]));
    expect(report.passed).toBe(true);
    expect(asked.get("stark")?.authorization).toBe(`Basic ${Buffer.from(`probe:${password}`).toString("base64")}`);
    for (const text of [JSON.stringify(report), ...progress, ...lines]) expect(text).not.toContain(password);
  });

  it("a cancelled job stops the gate with CancelledError", async () => {
    scripts.set("wayne", [{ status: 503 }]);
    const controller = new AbortController();
    const { gate: g } = gate();
    const running = runGate(g, waveOf([tenantRecord("wayne")]), controller.signal);
    while ((asked.get("wayne")?.count ?? 0) < 2) await new Promise((r) => setImmediate(r));
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
  });

  it("reads the version from the header first, then from a JSON body", () => {
    expect(reportedVersion(new Headers({ "x-app-version": "3.1.4" }), '{"version":"1.0.0"}')).toBe("3.1.4");
    expect(reportedVersion(new Headers(), '{"version":"1.0.0"}')).toBe("1.0.0");
    expect(reportedVersion(new Headers(), '{"version":1}')).toBeUndefined();
    expect(reportedVersion(new Headers(), "version: 1.0.0")).toBeUndefined();
  });
});
