// Tenant functions on the local target: an uploaded bundle is validated at the edge, then stored
// per tenant and function as numbered versions; the same bundle again is not a new version.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { buildZip, functionZip } from "../support/zip-builder.ts";

let h: Harness;
const id = `fn-${Math.random().toString(36).slice(2, 7)}`;
const zip = (text: string): Buffer => functionZip(`export const handler = async () => ${JSON.stringify(text)};\n`);

beforeAll(async () => {
  h = await startHarness();
  const res = await h.request("POST", "/v1/tenants", { id, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect((await h.waitForJob(res.body.jobId)).state).toBe("succeeded");
});

afterAll(async () => {
  const res = await h.request("DELETE", `/v1/tenants/${id}`);
  if (res.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
  const db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await db.query(`DROP DATABASE IF EXISTS \`t_${id.replace(/-/g, "_")}\``);
  await db.end();
  await h?.close();
  // Whatever a cancelled or half-done job left on the shared servers goes too.
  await dropTenantLeftovers([id]);
});

describe("tenant functions", () => {
  it("stores each new bundle as a new version, and the same bundle again as no change", async () => {
    const put = (code: Buffer, handler = "index.handler") =>
      h.request("PUT", `/v1/tenants/${id}/functions/invoice-hook`, { handler, code: code.toString("base64") });
    const first = await put(zip("v1 code"));
    expect(first.status).toBe(202);
    expect((await h.waitForJob(first.body.jobId)).result).toMatchObject({ version: 1, changed: true });
    const again = await put(zip("v1 code"));
    expect((await h.waitForJob(again.body.jobId)).result).toMatchObject({ version: 1, changed: false });
    const second = await put(zip("v2 code"));
    expect((await h.waitForJob(second.body.jobId)).result).toMatchObject({ version: 2, changed: true });
    const dir = path.join(h.dataDir, "functions", id, "invoice-hook");
    expect(readFileSync(path.join(dir, "v2", "bundle.zip"))).toEqual(zip("v2 code"));
    expect(JSON.parse(readFileSync(path.join(dir, "v1", "function.json"), "utf8"))).toMatchObject({ version: 1, handler: "index.handler" });
  });

  it("refuses a bad bundle or handler at the edge and stores nothing", async () => {
    const notZip = await h.request("PUT", `/v1/tenants/${id}/functions/bad`, { handler: "index.handler", code: Buffer.from("#!/bin/sh").toString("base64") });
    expect(notZip.status).toBe(400);
    expect(notZip.body.field).toBe("code");
    const badHandler = await h.request("PUT", `/v1/tenants/${id}/functions/bad`, { handler: "../../etc/passwd", code: zip("x").toString("base64") });
    expect(badHandler.status).toBe(400);
    expect(badHandler.body.field).toBe("handler");
    const badName = await h.request("PUT", `/v1/tenants/${id}/functions/..%2Fescape`, { handler: "index.handler", code: zip("x").toString("base64") });
    expect(badName.status).toBe(400);
    // Issue 11, finding 11: a zip-slip archive is read and refused, not stored for later.
    const slip = buildZip([
      { name: "index.mjs", data: "export const handler = () => 1;\n" },
      { name: "../../../../tmp/evil.js", data: "x" },
    ]);
    const slipped = await h.request("PUT", `/v1/tenants/${id}/functions/bad`, { handler: "index.handler", code: slip.toString("base64") });
    expect(slipped.status).toBe(400);
    expect(slipped.body).toMatchObject({ field: "code" });
    expect(slipped.body.message).toContain("(path-traversal)");
    expect(existsSync(path.join(h.dataDir, "functions", id, "bad"))).toBe(false);
  });
});
