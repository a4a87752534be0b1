// The tenant-functions program under runtime mocks: Lambda in the tenant-code account (assumed
// role), explicit deny of everything not granted, DLQ, reserved concurrency, correlation id, tags.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkResource } from "../policy/policies.ts";
import { runWithMocks, type MockRun } from "./mock-harness.ts";
import { tenantFunctionsArgsSchema } from "./schemas.ts";
import { GRANTED_ACTIONS, tenantFunctionsProgram } from "./tenant-functions.ts";
import { functionZip } from "../../test/support/zip-builder.ts";

let run: MockRun;
let dir: string;
const roleArn = "arn:aws:iam::210987654321:role/stackrail-deployer";

afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "stackrail-fn-"));
  const codePath = path.join(dir, "bundle.zip");
  // A real archive, as the API accepts it (the handler file is in it).
  writeFileSync(codePath, functionZip("export const handle = async () => ({ statusCode: 200 });\n", "hooks/invoice.mjs"));
  run = await runWithMocks(
    tenantFunctionsProgram(
      tenantFunctionsArgsSchema.parse({
        tenantId: "acme",
        region: "eu-west-1",
        functionName: "invoice-hook",
        codePath,
        handler: "hooks/invoice.handle",
        assumeRoleArn: roleArn,
      }),
    ),
  );
});

interface Stmt {
  Sid?: string;
  Effect: string;
  Action?: string[];
  NotAction?: string[];
  Resource?: string | string[];
  NotResource?: string[];
}

describe("tenant functions program (mocked)", () => {
  it("deploys into the tenant-code account through an assumed role", () => {
    const provider = run.one("pulumi:providers:aws");
    expect(provider.inputs.assumeRoles).toBeDefined();
    expect(JSON.stringify(provider.inputs.assumeRoles)).toContain(roleArn);
  });

  it("the Lambda has a DLQ, reserved concurrency, a correlation-id setting and cost tags", async () => {
    const fn = run.one("aws:lambda/function:Function");
    const dlq = run.one("aws:sqs/queue:Queue");
    expect(fn.inputs).toMatchObject({
      handler: "hooks/invoice.handle",
      reservedConcurrentExecutions: 5,
      deadLetterConfig: { targetArn: expect.stringContaining(":sqs:") as unknown },
      environment: { variables: { CORRELATION_ID_HEADER: "x-correlation-id", STACKRAIL_TENANT: "acme" } },
      tags: { tenant: "acme", environment: "production", "cost-centre": "tenant-code" },
    });
    expect(dlq.inputs.sqsManagedSseEnabled).toBe(true);
    expect(run.one("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig").inputs).toMatchObject({ maximumRetryAttempts: 2 });
    for (const r of run.resources) expect(await checkResource(r.type, r.inputs, r.name), `${r.type} ${r.name}`).toEqual([]);
  });

  it("the execution role allows only its own logs and DLQ and explicitly denies everything else", () => {
    const policy = JSON.parse(String(run.one("aws:iam/rolePolicy:RolePolicy").inputs.policy)) as { Statement: Stmt[] };
    const allows = policy.Statement.filter((s) => s.Effect === "Allow");
    expect(allows.flatMap((s) => s.Action ?? []).sort()).toEqual([...GRANTED_ACTIONS].sort());
    for (const s of allows) expect(s.Resource).not.toContain("*");
    const denyOthers = policy.Statement.find((s) => s.Effect === "Deny" && s.NotAction);
    expect(denyOthers).toMatchObject({ NotAction: [...GRANTED_ACTIONS], Resource: "*" });
    const denyElsewhere = policy.Statement.find((s) => s.Effect === "Deny" && s.NotResource);
    expect(denyElsewhere?.Action).toEqual([...GRANTED_ACTIONS]);
    expect(run.one("aws:iam/role:Role").inputs.name).toMatch(/^tenant-acme-fn-/);
  });
});
