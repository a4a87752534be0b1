// The wave gate against an Argo CD API double that checks every request and answer against
// Argo CD's API description: Progressing → Healthy, OutOfSync at an older revision, Degraded,
// Missing, timeouts, an unreachable server, a refused token, cancellation, and a token that never
// shows up in a report, a progress line or a log line.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CancelledError } from "../../core/errors.ts";
import { ArgocdDouble } from "../../test/support/argocd-double.ts";
import { capturedLogger, OLD_REVISION, runGate, scriptTenant, syncedTenant, tenantRecord, WAVE_REVISION, waveOf } from "./gate-fixtures.test-support.ts";
import { waveHealthGateFor, type WaveGateConfig, type WaveGateDeps } from "./wave-gate.ts";

const TOKEN = "argocd-canary-token-7f3e9c1d2b4a";
let double: ArgocdDouble;

beforeEach(async () => {
  double = await ArgocdDouble.start({ tokens: [TOKEN] });
});
afterEach(async () => {
  await double.close();
});

function config(overrides: Partial<WaveGateConfig> = {}): WaveGateConfig {
  return {
    argocd: { server: double.url, authToken: TOKEN },
    argocdNamespace: "argocd",
    healthUrl: undefined,
    healthTimeoutMs: 60_000,
    target: "local",
    dataDir: "/nonexistent",
    pulumiBackendUrl: "file:///nonexistent",
    pulumiPassphrase: undefined,
    ...overrides,
  };
}

function gateWith(overrides: Partial<WaveGateConfig> = {}, deps: Partial<WaveGateDeps> = {}) {
  const log = capturedLogger();
  return { gate: waveHealthGateFor(config(overrides), { logger: log.logger, pollMs: 10, ...deps }), lines: log.lines };
}

const polls = (): number => double.requests.filter((r) => r.path === "/api/v1/applications").length;

describe("wave health gate, Argo CD source", () => {
  it("waits through Progressing and passes when every Application is Synced at the wave's commit and Healthy, one list call per poll", async () => {
    const ids = ["alpha", "bravo", "charlie"];
    syncedTenant(double, "alpha", ["Progressing", "Progressing", "Healthy"]);
    syncedTenant(double, "bravo", ["Healthy"]);
    syncedTenant(double, "charlie", ["Progressing", "Healthy"]);
    const { gate, lines } = gateWith();
    const { report, progress } = await runGate(gate, waveOf(ids.map((id) => tenantRecord(id))));

    expect(report).toMatchObject({ source: "argocd", passed: true });
    expect(report.note).toBeUndefined();
    expect(report.tenants.map((t) => [t.tenantId, t.healthy])).toEqual(ids.map((id) => [id, true]));
    expect(report.tenants[0]?.detail).toMatch(/Synced at 2\.0\.0 .*Healthy/);
    // alpha was Progressing twice: the gate looked three times, and said so as it went.
    expect(double.served("tenant-alpha")).toBeGreaterThanOrEqual(3);
    expect(progress.some((l) => /tenant alpha: .*Progressing/.test(l))).toBe(true);
    // O(1) calls per poll whatever the number of tenants: the list endpoint, never one GET per Application.
    expect(double.requests.every((r) => r.path === "/api/v1/applications" && r.authorized)).toBe(true);
    expect(polls()).toBe(double.served("tenant-alpha"));
    expect(double.requests[0]?.query).toMatchObject({
      appNamespace: ["argocd"],
      selector: ["app.kubernetes.io/managed-by=stackrail,stackrail.io/region=eu-west-1"],
    });
    expect(lines.some((l) => l.includes("wave health gate decided"))).toBe(true);
    expect(double.violations).toEqual([]);
  });

  it("keeps waiting while the tenant's GitOps Application is OutOfSync at an older revision, even though the old version is Healthy", async () => {
    scriptTenant(double, "delta", {
      gitops: [
        { sync: "OutOfSync", revision: OLD_REVISION },
        { sync: "OutOfSync", revision: OLD_REVISION },
        { sync: "Synced", revision: WAVE_REVISION },
      ],
      app: [
        { sync: "Synced", version: "1.0.0", health: "Healthy" },
        { sync: "Synced", version: "1.0.0", health: "Healthy" },
        { sync: "OutOfSync", version: "2.0.0", health: "Healthy" },
        { sync: "Synced", version: "2.0.0", health: "Progressing" },
        { sync: "Synced", version: "2.0.0", health: "Healthy" },
      ],
    });
    const { gate } = gateWith();
    const { report, progress } = await runGate(gate, waveOf([tenantRecord("delta")]));
    expect(report.passed).toBe(true);
    expect(double.served("tenant-delta")).toBeGreaterThanOrEqual(5);
    expect(progress.some((l) => l.includes(`OutOfSync at ${OLD_REVISION.slice(0, 12)}`))).toBe(true);
    expect(progress.some((l) => /tenant delta: tenant-delta OutOfSync .*waiting for a sync to 2\.0\.0/.test(l))).toBe(true);
    expect(double.violations).toEqual([]);
  });

  it("fails when the GitOps Application stays OutOfSync at an older revision until the timeout", async () => {
    scriptTenant(double, "echo", { gitops: [{ sync: "OutOfSync", revision: OLD_REVISION }], app: [{ sync: "Synced", version: "1.0.0", health: "Healthy" }] });
    const { gate } = gateWith({ healthTimeoutMs: 300 });
    const { report } = await runGate(gate, waveOf([tenantRecord("echo")]));
    expect(report.passed).toBe(false);
    expect(report.tenants[0]?.healthy).toBe(false);
    expect(report.tenants[0]?.detail).toMatch(/^not healthy within 0\.3s: tenant-echo-gitops OutOfSync at 0bad01/);
    expect(polls()).toBeGreaterThanOrEqual(2);
    expect(double.violations).toEqual([]);
  });

  it("fails a tenant at once when its application turns Degraded at the wave's version, without waiting for the timeout", async () => {
    syncedTenant(double, "foxtrot", ["Progressing", "Healthy"]);
    scriptTenant(double, "golf", {
      gitops: [{ sync: "Synced", revision: WAVE_REVISION }],
      app: [
        { sync: "Synced", version: "2.0.0", health: "Progressing" },
        { sync: "Synced", version: "2.0.0", health: "Degraded", message: "Deployment golf: 0/2 replicas available (CrashLoopBackOff)" },
      ],
    });
    // A timeout far beyond the test's own limit: the gate can only finish in time by failing fast.
    const { gate } = gateWith({ healthTimeoutMs: 3_600_000 });
    const { report } = await runGate(gate, waveOf([tenantRecord("foxtrot"), tenantRecord("golf")]));
    expect(report.passed).toBe(false);
    const golf = report.tenants.find((t) => t.tenantId === "golf");
    expect(golf).toMatchObject({ healthy: false });
    expect(golf?.detail).toMatch(/Degraded: Deployment golf: 0\/2 replicas available/);
    expect(report.tenants.find((t) => t.tenantId === "foxtrot")?.healthy).toBe(true);
    expect(double.violations).toEqual([]);
  }, 20_000);

  it("a Degraded application at the OLD version does not fail the wave: it is not the wave's yet", async () => {
    scriptTenant(double, "hotel", {
      gitops: [
        { sync: "OutOfSync", revision: OLD_REVISION },
        { sync: "Synced", revision: WAVE_REVISION },
      ],
      app: [
        { sync: "Synced", version: "1.0.0", health: "Degraded" },
        { sync: "Synced", version: "2.0.0", health: "Healthy" },
      ],
    });
    const { gate } = gateWith();
    const { report } = await runGate(gate, waveOf([tenantRecord("hotel")]));
    expect(report.passed).toBe(true);
  });

  it("Missing or Unknown after the sync at the wave's version fail the tenant once they outlast the grace", async () => {
    syncedTenant(double, "india", ["Missing"]);
    syncedTenant(double, "juliett", ["Unknown"]);
    const { gate } = gateWith({ healthTimeoutMs: 3_600_000 }, { settleMs: 100 });
    const { report } = await runGate(gate, waveOf([tenantRecord("india"), tenantRecord("juliett")]));
    expect(report.passed).toBe(false);
    expect(report.tenants.find((t) => t.tenantId === "india")?.detail).toMatch(/Synced at 2\.0\.0 .*, Missing for /);
    // Decided by the first failure: the other is either failed itself or reported as undecided.
    expect(report.tenants.every((t) => !t.healthy)).toBe(true);
    expect(polls()).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it("fails with the last state seen when an application stays Progressing past the timeout", async () => {
    syncedTenant(double, "kilo", ["Progressing"]);
    const { gate } = gateWith({ healthTimeoutMs: 300 });
    const { report } = await runGate(gate, waveOf([tenantRecord("kilo")]));
    expect(report).toMatchObject({ passed: false, tenants: [{ tenantId: "kilo", healthy: false }] });
    expect(report.tenants[0]?.detail).toMatch(/^not healthy within 0\.3s: tenant-kilo Synced at 2\.0\.0 .*Progressing/);
  });

  it("reports an Application Argo CD does not have", async () => {
    syncedTenant(double, "lima", ["Healthy"]);
    const { gate } = gateWith({ healthTimeoutMs: 300 });
    const { report } = await runGate(gate, waveOf([tenantRecord("lima"), tenantRecord("mike")]));
    expect(report.passed).toBe(false);
    expect(report.tenants.find((t) => t.tenantId === "mike")?.detail).toMatch(/Application tenant-mike not found in Argo CD namespace argocd/);
    expect(report.tenants.find((t) => t.tenantId === "lima")?.healthy).toBe(true);
  });

  it("asks each region of the wave once per poll", async () => {
    syncedTenant(double, "november", ["Progressing", "Healthy"], "2.0.0", "eu-west-1");
    syncedTenant(double, "oscar", ["Healthy"], "2.0.0", "us-east-2");
    const { gate } = gateWith();
    const { report } = await runGate(gate, waveOf([tenantRecord("november"), tenantRecord("oscar", "2.0.0", "us-east-2")]));
    expect(report.passed).toBe(true);
    const selectors = double.requests.map((r) => r.query.selector?.[0]);
    expect(new Set(selectors)).toEqual(
      new Set(["app.kubernetes.io/managed-by=stackrail,stackrail.io/region=eu-west-1", "app.kubernetes.io/managed-by=stackrail,stackrail.io/region=us-east-2"]),
    );
    expect(double.violations).toEqual([]);
  });

  it("retries an unreachable server with backoff and passes once it answers again", async () => {
    syncedTenant(double, "papa", ["Healthy"]);
    await double.stop();
    let failures = 0;
    let resolveTwoFailures: () => void = () => undefined;
    const twoFailures = new Promise<void>((r) => (resolveTwoFailures = r));
    const counting: typeof fetch = async (input, init) => {
      try {
        return await fetch(input, init);
      } catch (err) {
        if (++failures === 2) resolveTwoFailures();
        throw err;
      }
    };
    const { gate } = gateWith({}, { fetch: counting });
    const running = runGate(gate, waveOf([tenantRecord("papa")]));
    await twoFailures;
    await double.start();
    const { report, progress } = await running;
    expect(report.passed).toBe(true);
    expect(failures).toBeGreaterThanOrEqual(2);
    expect(progress.some((l) => l.includes("Argo CD unreachable (ECONNREFUSED)"))).toBe(true);
    expect(double.violations).toEqual([]);
  });

  it("fails with a clear detail when the server stays unreachable until the timeout", async () => {
    syncedTenant(double, "quebec", ["Healthy"]);
    await double.stop();
    const { gate } = gateWith({ healthTimeoutMs: 400 });
    const { report } = await runGate(gate, waveOf([tenantRecord("quebec")]));
    expect(report.passed).toBe(false);
    expect(report.tenants[0]?.detail).toBe("not healthy within 0.4s: Argo CD unreachable (ECONNREFUSED)");
  });

  it("keeps the last state Argo CD reported when the server goes away mid-wave", async () => {
    syncedTenant(double, "quebec", ["Progressing"]);
    const { gate } = gateWith({ healthTimeoutMs: 1000 });
    const running = runGate(gate, waveOf([tenantRecord("quebec")]));
    while (double.served("tenant-quebec") < 1) await new Promise((r) => setImmediate(r));
    await double.stop();
    const { report, progress } = await running;
    expect(report.passed).toBe(false);
    expect(report.tenants[0]?.detail).toMatch(
      /^not healthy within 1s: Argo CD unreachable \(ECONNREFUSED\); last seen: tenant-quebec Synced at 2\.0\.0 .*Progressing$/,
    );
    // One line for the outage, however many polls it lasted.
    expect(progress.filter((l) => l.includes("unreachable")).length).toBe(1);
  });

  it("stops at once when Argo CD refuses the token (401), naming the setting, never the token", async () => {
    syncedTenant(double, "romeo", ["Healthy"]);
    const wrong = "wrong-canary-token-000000000000";
    const { gate, lines } = gateWith({ argocd: { server: double.url, authToken: wrong }, healthTimeoutMs: 3_600_000 });
    const { report, progress } = await runGate(gate, waveOf([tenantRecord("romeo")]));
    expect(report.passed).toBe(false);
    expect(report.note).toMatch(/HTTP 401.*ARGOCD_AUTH_TOKEN/);
    expect(report.tenants[0]).toMatchObject({ tenantId: "romeo", healthy: false });
    expect(double.requests.map((r) => r.status)).toEqual([401]);
    for (const text of [JSON.stringify(report), ...progress, ...lines]) expect(text).not.toContain(wrong);
    expect(double.violations).toEqual([]);
  }, 20_000);

  it("never puts the token in a report, a progress line or a log line, whatever happens", async () => {
    syncedTenant(double, "sierra", ["Progressing", "Healthy"]);
    syncedTenant(double, "tango", ["Degraded"]);
    const { gate, lines } = gateWith();
    const seen: string[] = [];
    const ok = await runGate(gate, waveOf([tenantRecord("sierra")]));
    const degraded = await runGate(gate, waveOf([tenantRecord("tango")]));
    await double.stop();
    const down = await runGate(
      waveHealthGateFor(config({ healthTimeoutMs: 200 }), { logger: capturedLogger().logger, pollMs: 10 }),
      waveOf([tenantRecord("sierra")]),
    );
    for (const r of [ok, degraded, down]) seen.push(JSON.stringify(r.report), ...r.progress);
    seen.push(...lines);
    expect(lines.length).toBeGreaterThan(0);
    expect(seen.join("\n")).not.toContain(TOKEN);
    expect(seen.join("\n")).not.toContain(TOKEN.slice(6, 20));
    // The token did travel, as a Bearer header, on every request that reached the server.
    expect(double.requests.length).toBeGreaterThan(0);
    expect(double.requests.every((r) => r.authorized)).toBe(true);
  });

  it("a cancelled job stops the gate with CancelledError", async () => {
    syncedTenant(double, "uniform", ["Progressing"]);
    const controller = new AbortController();
    const { gate } = gateWith();
    const running = runGate(gate, waveOf([tenantRecord("uniform")]), controller.signal);
    while (double.served("tenant-uniform") < 2) await new Promise((r) => setImmediate(r));
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
  });
});

describe("Argo CD API double", () => {
  it("records requests the API description does not allow", async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    await fetch(`${double.url}/api/v1/applications?bogus=1`, { headers: auth });
    await fetch(`${double.url}/api/v1/no-such-thing`, { headers: auth });
    expect(double.violations).toEqual([
      "request: query parameter bogus is not declared for GET /api/v1/applications",
      "request: GET /api/v1/no-such-thing is not an operation of the Argo CD API",
    ]);
  });

  it("catches answers that do not match the description: a misspelt field, a wrong type", () => {
    const app = { metadata: { name: "x" }, status: { health: { status: "Healthy" }, sync: { status: "Synced", revision: "abc" } } };
    expect(ArgocdDouble.checkAnswer("GET", "/api/v1/applications/x", 200, app)).toEqual([]);
    const misspelt = { ...app, status: { ...app.status, healthStatus: "Healthy" } };
    expect(ArgocdDouble.checkAnswer("GET", "/api/v1/applications/x", 200, misspelt).join()).toMatch(/must NOT have additional properties/);
    const wrongType = { ...app, status: { ...app.status, sync: { status: 1 } } };
    expect(ArgocdDouble.checkAnswer("GET", "/api/v1/applications/x", 200, wrongType).join()).toMatch(/\/status\/sync\/status must be string/);
    expect(ArgocdDouble.checkAnswer("GET", "/api/v1/applications", 200, { items: [misspelt] }).length).toBeGreaterThan(0);
    expect(ArgocdDouble.checkAnswer("GET", "/api/v1/applications", 401, { code: "16" }).join()).toMatch(/code must be integer/);
  });

  it("answers single Applications and 401s as Argo CD does, valid against the description", async () => {
    syncedTenant(double, "victor", ["Healthy"]);
    const ok = await fetch(`${double.url}/api/v1/applications/tenant-victor?appNamespace=argocd`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { status: { health: { status: string } } }).status.health.status).toBe("Healthy");
    const missing = await fetch(`${double.url}/api/v1/applications/tenant-nobody`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(missing.status).toBe(403);
    const anonymous = await fetch(`${double.url}/api/v1/applications`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ code: 16 });
    expect(double.violations).toEqual([]);
  });
});
