// Issue 16, item 3: POST /v1/regions/:region through the whole service on the local target
// (real Redis, the real worker, a real GitOps repository). The local target has no region stack
// (its servers serve every region): the job commits the region's Argo CD objects and records the
// region as ready. Token-authenticated, the region validated, settings validated and remembered.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../test/support/harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.close();
});

describe("item 3: POST /v1/regions/:region", () => {
  it("needs a token and a region name, and checks its settings before enqueueing anything", async () => {
    const anonymous = await fetch(`${h.service.url}/v1/regions/eu-west-1`, { method: "POST" });
    expect(anonymous.status).toBe(401);
    const bad = await h.request("POST", "/v1/regions/eu-west-1;rm");
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe("region");
    const env = await h.request("POST", "/v1/regions/eu-west-1", { environment: "staging" });
    expect(env).toMatchObject({ status: 400, body: { field: "environment" } });
    const unknown = await h.request("POST", "/v1/regions/eu-west-1", { vpcCidr: "0.0.0.0/0" });
    expect(unknown).toMatchObject({ status: 400, body: { field: "vpcCidr" } });
    expect((await h.request("GET", "/v1/regions/eu-west-1")).status).toBe(404);
  });

  it("provisions the region: 202 {jobId}, the regional Argo CD objects committed, the region ready", async () => {
    const res = await h.request("POST", "/v1/regions/us-east-2", { costCentre: "platform-us" });
    expect(res.status).toBe(202);
    expect(typeof res.body.jobId).toBe("string");
    const job = await h.waitForJob(res.body.jobId);
    expect(job).toMatchObject({ state: "succeeded", kind: "region.provision", stack: "region-us-east-2", trigger: { type: "api" } });
    expect(job.result).toMatchObject({ region: "us-east-2", target: "local", stack: null, settings: { environment: "production", costCentre: "platform-us" } });
    expect(h.gitShow("regions/us-east-2/tenants.yaml")).toContain("tenants-us-east-2");
    expect(h.gitLog()[0]).toContain("region region-us-east-2");

    const region = await h.request("GET", "/v1/regions/us-east-2");
    expect(region.body).toMatchObject({ region: "us-east-2", state: "ready", jobId: res.body.jobId, settings: { costCentre: "platform-us" } });
    // A second request keeps the remembered settings and changes nothing in the repository.
    const again = await h.request("POST", "/v1/regions/us-east-2");
    const second = await h.waitForJob(again.body.jobId);
    expect(second.result).toMatchObject({ settings: { costCentre: "platform-us" }, commit: null });
    const list = await h.request("GET", "/v1/regions");
    expect(list.body.regions.map((r: { region: string }) => r.region)).toContain("us-east-2");
  });
});
