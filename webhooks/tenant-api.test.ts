// The tenant API through a real server and a real Redis: authentication, validation naming the
// field, 409, Idempotency-Key, nothing enqueued on refusal, hostile identifiers, function bundles,
// the tenant index (rebuild, outputs) and GET /v1/jobs/:id; health, readiness and metrics.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { functionZip } from "../test/support/zip-builder.ts";
import { api, API_TOKEN, jobCount, OTHER_TOKEN, startEdge, type Edge } from "./edge-fixture.ts";
import { authenticate } from "./tenant-api.ts";

let edge: Edge;
beforeAll(async () => {
  edge = await startEdge({ label: "tenant-api" });
});
afterAll(async () => {
  await edge?.close();
});

const provision = (id: string, extra: Record<string, unknown> = {}) => ({ id, region: "eu-west-1", tier: "pool", version: "1.4.0", ...extra });

describe("authentication", () => {
  it("refuses requests without a token or with a wrong one, enqueuing nothing", async () => {
    const before = await jobCount(edge);
    const none = await api(edge, "POST", "/v1/tenants", provision("nobody"), { token: null });
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    expect((await api(edge, "POST", "/v1/tenants", provision("nobody"), { token: "ci-token-0123456789abcdeX" })).status).toBe(401);
    expect((await api(edge, "GET", "/v1/tenants", undefined, { token: "short" })).status).toBe(401);
    expect((await api(edge, "GET", "/v1/jobs/x", undefined, { headers: { authorization: "Basic Y2k6Y2k=" }, token: null })).status).toBe(401);
    expect(await jobCount(edge)).toBe(before);
    expect(await edge.tenants.get("nobody")).toBeNull();
  });

  it("refuses everything when no token is configured", async () => {
    const closed = await startEdge({ label: "notokens", env: { STACKRAIL_API_TOKENS: "" } });
    try {
      expect((await api(closed, "GET", "/v1/tenants")).status).toBe(401);
      expect((await api(closed, "POST", "/v1/tenants", provision("acme"))).status).toBe(401);
    } finally {
      await closed.close();
    }
  });

  it("names the token that matched, comparing every token", () => {
    const tokens = [
      { name: "ci", token: "ci-token-0123456789abcdef" },
      { name: "ops", token: "ops-token-0123456789abcdef" },
    ];
    expect(authenticate("Bearer ops-token-0123456789abcdef", tokens)).toBe("ops");
    expect(authenticate("Bearer ops-token-0123456789abcde", tokens)).toBeNull();
    expect(authenticate("ops-token-0123456789abcdef", tokens)).toBeNull();
    expect(authenticate("bearer ci-token-0123456789abcdef", tokens)).toBe("ci");
    expect(authenticate(undefined, tokens)).toBeNull();
    expect(authenticate("Bearer anything", [])).toBeNull();
  });
});

describe("provisioning", () => {
  it("provisions, shows the job with who asked, and answers 409 for a tenant that exists", async () => {
    const res = await api(edge, "POST", "/v1/tenants", provision("acme-corp"));
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    const job = await api(edge, "GET", `/v1/jobs/${jobId}`);
    expect(job.status).toBe(200);
    const view = (await job.json()) as Record<string, unknown>;
    expect(view).toMatchObject({
      id: jobId,
      kind: "tenant.provision",
      stack: "tenant-acme-corp",
      state: "waiting",
      trigger: { type: "api", tokenName: "ci" },
      data: { tenantId: "acme-corp", region: "eu-west-1", tier: "pool", version: "1.4.0" },
    });
    expect(JSON.stringify(view)).not.toContain("0123456789abcdef");

    const tenant = await api(edge, "GET", "/v1/tenants/acme-corp");
    expect(await tenant.json()).toMatchObject({ id: "acme-corp", state: "provisioning", region: "eu-west-1", tier: "pool", version: "1.4.0" });

    const again = await api(edge, "POST", "/v1/tenants", provision("acme-corp"));
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: "conflict" });
  });

  it("two concurrent provisions of one id: one 202, one 409, one job", async () => {
    const before = await jobCount(edge);
    const [a, b] = await Promise.all([api(edge, "POST", "/v1/tenants", provision("racer")), api(edge, "POST", "/v1/tenants", provision("racer"))]);
    expect([a.status, b.status].sort()).toEqual([202, 409]);
    expect(await jobCount(edge)).toBe(before + 1);
  });

  it("answers 400 naming the field, leaving nothing behind", async () => {
    const before = await jobCount(edge);
    const cases: [unknown, string][] = [
      [provision("Acme"), "id"],
      [provision("../x"), "id"],
      [provision("a; rm -rf /"), "id"],
      [provision("ab"), "id"],
      [provision("a".repeat(41)), "id"],
      [provision("ténant"), "id"],
      [provision("acme-two", { region: "eu-west-1/../../x" }), "region"],
      [provision("acme-two", { tier: "gold" }), "tier"],
      [provision("acme-two", { version: "1.0.0 && curl evil" }), "version"],
      [provision("acme-two", { admin: true }), "admin"],
      [{ region: "eu-west-1", tier: "pool" }, "id"],
    ];
    for (const [body, field] of cases) {
      const res = await api(edge, "POST", "/v1/tenants", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json(), JSON.stringify(body)).toMatchObject({ error: "invalid", field });
    }
    const broken = await api(edge, "POST", "/v1/tenants", '{"id": "acme-two",');
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ field: "body" });
    expect(await jobCount(edge)).toBe(before);
    expect(await edge.tenants.get("acme-two")).toBeNull();
  });

  it("needs a version when none has been rolled out, and uses the current one otherwise", async () => {
    const res = await api(edge, "POST", "/v1/tenants", { id: "noversion", region: "eu-west-1", tier: "pool" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ field: "version" });
    await edge.tenants.setCurrentVersion("2.0.1");
    const ok = await api(edge, "POST", "/v1/tenants", { id: "noversion", region: "eu-west-1", tier: "silo" });
    expect(ok.status).toBe(202);
    expect(await edge.tenants.get("noversion")).toMatchObject({ version: "2.0.1", tier: "silo" });
  });
});

describe("Idempotency-Key", () => {
  it("returns the first answer to a retried POST, per token, and refuses reuse for another request", async () => {
    const headers = { "idempotency-key": "retry-key-1" };
    const before = await jobCount(edge);
    const first = await api(edge, "POST", "/v1/tenants", provision("idem-tenant"), { headers });
    expect(first.status).toBe(202);
    const firstBody = await first.json();
    const retry = await api(edge, "POST", "/v1/tenants", provision("idem-tenant"), { headers });
    expect(retry.status).toBe(202);
    expect(await retry.json()).toEqual(firstBody);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await jobCount(edge)).toBe(before + 1);

    // The same key from another token is another key: this is a second provision, so 409.
    const other = await api(edge, "POST", "/v1/tenants", provision("idem-tenant"), { headers, token: OTHER_TOKEN });
    expect(other.status).toBe(409);

    const reused = await api(edge, "POST", "/v1/tenants", provision("idem-other"), { headers });
    expect(reused.status).toBe(422);
    expect(await edge.tenants.get("idem-other")).toBeNull();

    // Concurrent retries also get one answer.
    const key = { "idempotency-key": "retry-key-2" };
    const answers = await Promise.all(Array.from({ length: 10 }, () => api(edge, "POST", "/v1/releases", { version: "1.5.0" }, { headers: key })));
    const bodies = await Promise.all(answers.map((r) => r.json()));
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
    expect(answers.every((r) => r.status === 202)).toBe(true);
  });

  it("does not remember a refusal: after fixing the body the same key succeeds", async () => {
    const headers = { "idempotency-key": "fix-then-retry" };
    expect((await api(edge, "POST", "/v1/releases", { version: "bad version" }, { headers })).status).toBe(400);
    // A different body with the same key: the 400 was not stored, so this is the first answer.
    expect((await api(edge, "POST", "/v1/releases", { version: "1.6.0" }, { headers })).status).toBe(202);
  });
});

describe("lifecycle routes", () => {
  it("upgrades, moves, deprovisions and lists, with 404 for unknown tenants", async () => {
    await edge.tenants.rebuild([
      { id: "globex", region: "us-east-2", tier: "pool", version: "1.3.0" },
      { id: "initech", region: "eu-central-1", tier: "silo", version: "1.3.0", protected: true },
    ]);
    const upgrade = await api(edge, "POST", "/v1/tenants/globex/upgrade", { version: "1.4.0" });
    expect(upgrade.status).toBe(202);
    const up = (await (await api(edge, "GET", `/v1/jobs/${((await upgrade.json()) as { jobId: string }).jobId}`)).json()) as Record<string, unknown>;
    expect(up).toMatchObject({ kind: "tenant.upgrade", stack: "tenant-globex", data: { version: "1.4.0" } });

    const move = await api(edge, "POST", "/v1/tenants/globex/move", { tier: "silo" });
    expect(move.status).toBe(202);
    expect((await api(edge, "POST", "/v1/tenants/globex/move", { tier: "platinum" })).status).toBe(400);
    expect((await api(edge, "POST", "/v1/tenants/nosuch/upgrade", { version: "1.4.0" })).status).toBe(404);
    expect((await api(edge, "GET", "/v1/tenants/nosuch")).status).toBe(404);
    expect((await api(edge, "GET", "/v1/jobs/nosuch")).status).toBe(404);

    const list = (await (await api(edge, "GET", "/v1/tenants")).json()) as { tenants: { id: string }[] };
    expect(list.tenants.map((t) => t.id)).toEqual(expect.arrayContaining(["globex", "initech"]));

    // A protected tenant is not deprovisioned through the API.
    expect((await api(edge, "DELETE", "/v1/tenants/initech")).status).toBe(409);
    const del = await api(edge, "DELETE", "/v1/tenants/globex");
    expect(del.status).toBe(202);
    expect(await edge.tenants.get("globex")).toMatchObject({ state: "deprovisioning" });
    // A job that finishes late (an upgrade ahead in the lane) does not bring it back to active.
    await edge.tenants.recordOutputs("globex", { url: "https://globex.example" });
    expect(await edge.tenants.get("globex")).toMatchObject({ state: "deprovisioning", outputs: { url: "https://globex.example" } });
    expect((await api(edge, "DELETE", "/v1/tenants/globex")).status).toBe(409);
    expect((await api(edge, "POST", "/v1/tenants/globex/upgrade", { version: "1.5.0" })).status).toBe(409);
    expect((await api(edge, "DELETE", "/v1/tenants/nosuch")).status).toBe(404);
    expect((await api(edge, "DELETE", "/v1/tenants/..%2F..%2Fetc")).status).toBe(400);
  });

  it("shows last outputs and never a secret; rebuild keeps tenants still being provisioned or deprovisioned", async () => {
    await edge.tenants.recordOutputs("initech", {
      dbHost: "aurora.eu-central-1",
      dbPassword: "hunter2-hunter2",
      redisAuthToken: "x",
      url: "https://initech.example",
    });
    const t = (await (await api(edge, "GET", "/v1/tenants/initech")).json()) as { outputs: Record<string, unknown>; state: string };
    expect(t.state).toBe("active");
    expect(t.outputs).toEqual({ dbHost: "aurora.eu-central-1", url: "https://initech.example" });

    expect((await api(edge, "POST", "/v1/tenants", provision("pending-one"))).status).toBe(202);
    await edge.tenants.rebuild([{ id: "initech", region: "eu-central-1", tier: "silo", version: "1.3.0" }]);
    expect(await edge.tenants.get("pending-one")).toMatchObject({ state: "provisioning" });
    // Being deprovisioned: its manifests are gone but its resources may not be (issue 11, finding 4).
    expect(await edge.tenants.get("globex")).toMatchObject({ state: "deprovisioning" });
    expect((await edge.tenants.get("initech"))?.outputs).toEqual({ dbHost: "aurora.eu-central-1", url: "https://initech.example" });
  });

  it("rolls out a release", async () => {
    const res = await api(edge, "POST", "/v1/releases", { version: "v2.0.0" });
    expect(res.status).toBe(202);
    expect((await api(edge, "POST", "/v1/releases", { version: "$(reboot)" })).status).toBe(400);
  });
});

describe("tenant functions", () => {
  const zip = functionZip();

  it("stores the bundle content-addressed in the tenant's blob folder and enqueues a reference to it", async () => {
    await edge.tenants.rebuild([{ id: "hooli", region: "eu-west-1", tier: "pool", version: "1.0.0" }]);
    const res = await api(edge, "PUT", "/v1/tenants/hooli/functions/resize-image", { handler: "index.handler", code: zip.toString("base64") });
    expect(res.status).toBe(202);
    const { jobId, bundleSha256 } = (await res.json()) as { jobId: string; bundleSha256: string };
    expect(bundleSha256).toBe(createHash("sha256").update(zip).digest("hex"));
    const file = path.join(edge.config.dataDir, "blobs", "tenants", "hooli", "bundles", bundleSha256);
    expect(readFileSync(file)).toEqual(zip);
    const view = (await (await api(edge, "GET", `/v1/jobs/${jobId}`)).json()) as { data: Record<string, unknown> };
    expect(view.data).toMatchObject({ kind: "tenant.function", tenantId: "hooli", name: "resize-image", bundleSha256, handler: "index.handler" });
    expect(JSON.stringify(view)).not.toContain(zip.toString("base64"));
  });

  it("refuses bad handlers, names, non-zip and oversized bundles", async () => {
    const before = await jobCount(edge);
    const put = (name: string, body: unknown) => api(edge, "PUT", `/v1/tenants/hooli/functions/${name}`, body);
    const cases: [Response, string][] = [
      [await put("fn", { handler: "../../etc/passwd", code: zip.toString("base64") }), "handler"],
      [await put("fn", { handler: "index.handler; rm", code: zip.toString("base64") }), "handler"],
      [await put("Bad_Name", { handler: "index.handler", code: zip.toString("base64") }), "name"],
      [await put("fn", { handler: "index.handler", code: Buffer.from("not a zip").toString("base64") }), "code"],
      [await put("fn", { handler: "index.handler", code: "%%%" }), "code"],
      [await put("fn", { handler: "index.handler", code: Buffer.concat([zip, Buffer.alloc(10 * 1024 * 1024)]).toString("base64") }), "code"],
    ];
    for (const [res, field] of cases) {
      expect(res.status, field).toBe(400);
      expect(await res.json()).toMatchObject({ field });
    }
    expect(await jobCount(edge)).toBe(before);
    expect(existsSync(path.join(edge.config.dataDir, "blobs", "tenants", "hooli", "bundles", createHash("sha256").update("not a zip").digest("hex")))).toBe(
      false,
    );
  });
});

describe("health, readiness, metrics", () => {
  it("healthz is always 200; readyz says what is missing; metrics are Prometheus text", async () => {
    expect((await fetch(`${edge.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
    edge.readiness.value = { redis: true, engine: false };
    const notReady = await fetch(`${edge.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ redis: true, engine: false });
    edge.readiness.value = { redis: true, engine: true };
    const metrics = await fetch(`${edge.url}/metrics`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    expect(await metrics.text()).toContain("stackrail_api_jobs_enqueued_total");
  });
});
