// Issue 16, item 2: a tenant function on aws. A real zip goes in through the tenant API (which
// stores it content-addressed, without an extension), the tenant.function handler hands the
// tenant-functions program a path Pulumi's FileArchive accepts (the engine picks the archive
// format by extension: a bundle without `.zip` is refused) and the handler the tenant uploaded,
// and the program runs under Pulumi's runtime mocks with it. The aws provider cannot run here.
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobData } from "../../core/jobs.ts";
import { programFor } from "../../programs/index.ts";
import { runWithMocks, type MockRun } from "../../programs/aws/mock-harness.ts";
import { tenantFunctionsArgsSchema } from "../../programs/aws/schemas.ts";
import { startHarness, type Harness } from "../../test/support/harness.ts";
import { TEST_REDIS_URL } from "../../test/support/services.ts";
import { buildZip } from "../../test/support/zip-builder.ts";
import { checkBundle } from "../../webhooks/bundle-check.ts";
import { TenantIndex } from "../../core/tenant-index.ts";
import { MemoryWriter, RecordingRunner, jobContext } from "./handler-doubles.test-support.ts";
import { tenantFunctionHandler } from "./tenant-function.ts";

const ROLE = "arn:aws:iam::210987654321:role/stackrail-deployer";
const POLICY = "/policy/pack";
const id = `fnaws-${Math.random().toString(36).slice(2, 7)}`;
let h: Harness;
let redis: Redis;
let tenants: TenantIndex;
const runs: MockRun[] = [];

const bundle = buildZip([
  { name: "src/", data: "" },
  { name: "src/hook.mjs", data: "export const run = async (event) => ({ statusCode: 200, body: JSON.stringify(event) });\n" },
]);

beforeAll(async () => {
  // The API side only: the bundle is stored as production stores it; the job is run here, by hand.
  h = await startHarness({ role: "api", env: { STACKRAIL_TARGET: "aws", STACKRAIL_TENANT_CODE_ROLE_ARN: ROLE } });
  redis = new Redis(TEST_REDIS_URL);
  tenants = new TenantIndex(redis, h.config.queuePrefix);
  expect((await tenants.claimProvision({ id, region: "eu-west-1", tier: "pool", version: "1.0.0" })).ok).toBe(true);
  await tenants.recordOutputs(id, {});
});

afterAll(async () => {
  redis?.disconnect();
  await h?.close();
});

function handlerFor(runner: RecordingRunner) {
  return tenantFunctionHandler({ config: h.config, runner, writer: new MemoryWriter(), tenants, policyPacks: [POLICY], tenantCodeRoleArn: ROLE });
}

/** The program the worker's child would run, under runtime mocks instead of the engine. */
const mockedProgram = new RecordingRunner(async (req) => {
  const program = programFor(req.program, req.args, { target: "aws", dataDir: h.config.dataDir, localMysqlUrl: "", localRedisUrl: "" });
  const run = await runWithMocks(program as () => Promise<Record<string, unknown>>);
  runs.push(run);
  return run.outputs;
});

async function upload(handler: string): Promise<Extract<JobData, { kind: "tenant.function" }>> {
  const res = await h.request("PUT", `/v1/tenants/${id}/functions/invoice-hook`, { handler, code: bundle.toString("base64") });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const view = await h.service.queue?.getJobView(res.body.jobId);
  return view?.data as Extract<JobData, { kind: "tenant.function" }>;
}

describe("item 2: tenant functions on aws", () => {
  it("deploys the uploaded handler from an archive path the SDK accepts, holding the uploaded bytes", async () => {
    const data = await upload("src/hook.run");
    const result = await handlerFor(mockedProgram)(jobContext("fn-job-1", data));
    const req = mockedProgram.requests.at(-1);
    expect(req).toMatchObject({ program: "tenant-functions", operation: "up", policyPacks: [POLICY], args: { handler: "src/hook.run", tenantId: id } });
    const args = tenantFunctionsArgsSchema.parse(req?.args);
    expect(args.codePath).toMatch(/\.zip$/);
    expect(readFileSync(args.codePath)).toEqual(bundle);
    // It is still a zip whose handler file is there (the same check the API made on the upload).
    await expect(checkBundle(readFileSync(args.codePath), "src/hook.run")).resolves.toBeDefined();

    const fn = runs.at(-1)?.one("aws:lambda/function:Function");
    expect(fn?.inputs.handler).toBe("src/hook.run");
    const code = fn?.inputs.code as pulumi.asset.FileArchive;
    expect(pulumi.asset.Archive.isInstance(code)).toBe(true);
    expect(await code.path).toBe(args.codePath);
    expect(result).toMatchObject({ tenantId: id, name: "invoice-hook" });
  });

  it("the same bundle and handler again deploys from the same stored archive; a new handler is honoured", async () => {
    const first = tenantFunctionsArgsSchema.parse(mockedProgram.requests.at(-1)?.args).codePath;
    await handlerFor(mockedProgram)(jobContext("fn-job-2", await upload("src/hook.run")));
    expect(tenantFunctionsArgsSchema.parse(mockedProgram.requests.at(-1)?.args).codePath).toBe(first);
    await handlerFor(mockedProgram)(jobContext("fn-job-3", await upload("src/hook.handler")));
    expect(runs.at(-1)?.one("aws:lambda/function:Function").inputs.handler).toBe("src/hook.handler");
  });

  it("the program refuses an archive path Pulumi cannot read, before anything is registered", () => {
    const base = { tenantId: id, region: "eu-west-1", functionName: "invoice-hook", handler: "src/hook.run", assumeRoleArn: ROLE };
    expect(tenantFunctionsArgsSchema.safeParse({ ...base, codePath: "/data/bundles/0123abcd" }).success).toBe(false);
    expect(tenantFunctionsArgsSchema.safeParse({ ...base, codePath: "/data/functions/x/v1/bundle.zip" }).success).toBe(true);
    expect(tenantFunctionsArgsSchema.safeParse({ ...base, codePath: "/data/functions/x/v1/bundle.zip", handler: "../x.run" }).success).toBe(false);
  });
});
