// Finding 12 of the tenant-isolation issue (11), the /metrics part: metrics were public on every
// interface. On the main listener /metrics needs a bearer token (STACKRAIL_METRICS_TOKEN or any API
// token); STACKRAIL_METRICS_PORT adds a listener that serves only /metrics, without a token, bound
// to STACKRAIL_METRICS_HOST (loopback by default), started and stopped with the service.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";

const METRICS_TOKEN = "metrics-scraper-token-0123456789";

describe("finding 12: /metrics is public on every interface", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ role: "api", env: { STACKRAIL_METRICS_TOKEN: METRICS_TOKEN, STACKRAIL_METRICS_PORT: "0" } });
  });
  afterAll(async () => {
    await h?.close();
  });

  const scrape = (url: string, token?: string) => fetch(`${url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});

  it("the main listener answers 401 without a token or with a wrong one, 200 with the metrics token or an API token", async () => {
    const main = h.service.url ?? "";
    const anonymous = await scrape(main);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await anonymous.text()).not.toContain("stackrail_");
    expect((await scrape(main, "not-the-metrics-token-0000")).status).toBe(401);

    for (const token of [METRICS_TOKEN, h.token]) {
      const res = await scrape(main, token);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("stackrail_webhook_deliveries_total");
    }
  });

  it("the metrics listener serves /metrics without a token, on loopback, and nothing else", async () => {
    const metricsUrl = h.service.metricsUrl;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(metricsUrl).not.toBe(h.service.url);
    const res = await scrape(metricsUrl ?? "");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await res.text()).toContain("stackrail_webhook_deliveries_total");

    // Only the metrics: no API, no webhook route, no body accepted.
    expect((await fetch(`${metricsUrl ?? ""}/v1/tenants`, { headers: { authorization: `Bearer ${h.token}` } })).status).toBe(404);
    expect((await fetch(`${metricsUrl ?? ""}/webhooks/github`, { method: "POST", body: "{}" })).status).toBe(404);
  });

  it("the metrics listener closes with the service", async () => {
    const metricsUrl = h.service.metricsUrl ?? "";
    await h.service.close(1_000);
    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow();
  });
});

describe("without STACKRAIL_METRICS_PORT", () => {
  it("starts no metrics listener, and the main listener refuses /metrics to anyone without a token", async () => {
    const h = await startHarness({ role: "api" });
    try {
      expect(h.service.metricsUrl).toBeUndefined();
      expect((await fetch(`${h.service.url ?? ""}/metrics`)).status).toBe(401);
      expect((await fetch(`${h.service.url ?? ""}/metrics`, { headers: { authorization: `Bearer ${h.token}` } })).status).toBe(200);
    } finally {
      await h.close();
    }
  });
});
