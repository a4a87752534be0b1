// The plan under the real engine, through the runner and its child (issue 13 §1): a preview of a
// local tenant stack returns each resource's step with the changed property NAMES, an `up` carries
// the plan of the policy-checked preview that preceded it, a changed argument shows as an `update`
// naming the property, and a stack the policy pack refuses fails with structured violations and
// nothing created.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../core/config.ts";
import { engineLocation } from "../core/engine.ts";
import { PolicyViolationError } from "../core/errors.ts";
import { planDigest } from "../jobs/plan-types.ts";
import { logicalNames } from "../core/naming.ts";
import { dropTenantLeftovers } from "../test/support/cleanup.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL, localServiceEnv, uniqueName } from "../test/support/services.ts";
import { PulumiRunner } from "./pulumi-runner.ts";
import type { StackOperationRequest } from "./pulumi-protocol.ts";
import { policyPacksFor } from "./runner-factory.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-plan-"));
const suffix = Math.random().toString(36).slice(2, 8);
const tenant = `plan-${suffix}`;
const intruder = `plan-${suffix}-b`;
const SECRET_LOOKING = /[A-Za-z0-9+/]{32,}/;
let runner: PulumiRunner;
let db: mysql.Connection;
let redis: Redis;
let packs: string[];

function request(
  operation: StackOperationRequest["operation"],
  stack: string,
  tenantId: string,
  extra: Record<string, number | string> = {},
  options: Pick<StackOperationRequest, "savePlan" | "plan" | "expectedDigest"> = {},
): StackOperationRequest {
  return {
    stack,
    projectName: "stackrail-pool",
    operation,
    program: "tenant",
    args: { tenantId, tier: "pool", region: "eu-west-1", ...extra },
    policyPacks: packs,
    ...options,
  };
}

/** The stack's secret outputs in plaintext (the canaries a saved plan must not hold in the clear). */
async function secretOutputs(stack: string): Promise<string[]> {
  const ws = await LocalWorkspace.create({
    workDir: path.join(dataDir, "workspaces", "stackrail-pool", stack),
    pulumiHome: path.join(dataDir, "pulumi-home"),
    pulumiCommand: await PulumiCommand.get({ root: engineLocation().dir, version: undefined }),
    envVars: {
      PULUMI_BACKEND_URL: `file://${path.join(dataDir, "state")}`,
      PULUMI_CONFIG_PASSPHRASE: "plan-passphrase",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
    },
  });
  const outputs = await ws.stackOutputs(stack);
  return Object.values(outputs)
    .filter((o) => o.secret)
    .map((o) => String(o.value));
}

async function databaseExists(name: string): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [name]);
  return rows.length > 0;
}

/** The resources the file backend's checkpoint holds for a stack (none when it has no checkpoint). */
function stateResources(stack: string): unknown[] {
  const file = path.join(dataDir, "state", ".pulumi", "stacks", "stackrail-pool", `${stack}.json`);
  if (!existsSync(file)) return [];
  const checkpoint = JSON.parse(readFileSync(file, "utf8")) as { checkpoint?: { latest?: { resources?: unknown[] } } };
  return checkpoint.checkpoint?.latest?.resources ?? [];
}

beforeAll(async () => {
  const config = loadConfig({ ...localServiceEnv({ dataDir, prefix: uniqueName("plan"), apiToken: "t".repeat(32), passphrase: "plan-passphrase" }) });
  expect(config.target).toBe("local");
  packs = policyPacksFor(config);
  runner = new PulumiRunner({
    engine: engineLocation(),
    backendUrl: `file://${path.join(dataDir, "state")}`,
    passphrase: "plan-passphrase",
    dataDir,
    target: "local",
    localMysqlUrl: TEST_MYSQL_URL,
    localRedisUrl: config.localRedisUrl,
    cancelGraceMs: 5_000,
  });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  await runner?.run(request("destroy", `tenant-${tenant}`, tenant)).catch(() => undefined);
  runner?.close();
  await dropTenantLeftovers([tenant, intruder]);
  await db?.end();
  redis?.disconnect();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("the plan of a local stack (real engine, policy pack on local)", () => {
  it("the local target runs the policy pack", () => {
    expect(packs).toHaveLength(1);
  });

  it("preview: every resource to create, by type, with no property values; nothing applied", async () => {
    const lines: string[] = [];
    const summary = await runner.run(request("preview", `tenant-${tenant}`, tenant), { onProgress: (l) => lines.push(l) });
    // The job's progress says the engine plans, never as if it created something.
    expect(lines.some((l) => l.startsWith("plan: create "))).toBe(true);
    expect(lines.filter((l) => /^(create|done) /.test(l))).toEqual([]);
    const types = summary.diff?.map((d) => `${d.op} ${d.type.split(":").pop()}`).sort();
    expect(types).toEqual([
      "create Directory",
      "create GeneratedPassword",
      "create GeneratedPassword",
      "create GeneratedPassword",
      "create MysqlDatabase",
      "create MysqlGrant",
      "create MysqlUser",
      "create RedisAclUser",
    ]);
    expect(summary.violations).toEqual([]);
    for (const d of summary.diff ?? []) {
      expect(d.urn).toMatch(new RegExp(`^urn:pulumi:tenant-${tenant}::stackrail-pool::`));
      expect(d.properties).toEqual([]);
    }
    expect(await databaseExists(logicalNames("tenant", tenant).database)).toBe(false);
  }, 120_000);

  it("up: carries the plan of its policy-checked preview, then applies it", async () => {
    const lines: string[] = [];
    const summary = await runner.run(request("up", `tenant-${tenant}`, tenant), { onProgress: (l) => lines.push(l) });
    expect(lines.some((l) => l.startsWith("policy check passed"))).toBe(true);
    expect(summary.diff?.filter((d) => d.op === "create")).toHaveLength(8);
    expect(await databaseExists(logicalNames("tenant", tenant).database)).toBe(true);
  }, 120_000);

  it("a changed argument previews as an update naming the changed property, and nothing else", async () => {
    const summary = await runner.run(request("preview", `tenant-${tenant}`, tenant, { maxConnections: 7 }));
    expect(summary.diff?.map((d) => ({ op: d.op, type: d.type.split(":").pop(), properties: d.properties }))).toEqual([
      { op: "update", type: "MysqlUser", properties: ["maxConnections"] },
    ]);
    // Names only: the diff, serialised, holds no value of the stack (no number, no password-like text).
    const text = JSON.stringify(summary.diff);
    expect(text).not.toContain(":7");
    expect(text).not.toMatch(SECRET_LOOKING);
    const unchanged = await runner.run(request("preview", `tenant-${tenant}`, tenant));
    expect(unchanged.diff).toEqual([]);
  }, 120_000);

  it("a saved update plan constrains the up: no separate preview, one engine run; the plan holds no secret in the clear", async () => {
    const stack = `tenant-${tenant}`;
    mkdirSync(path.join(dataDir, "plans"), { recursive: true });
    const file = path.join(dataDir, "plans", "v1.json");
    const previewed = await runner.run(request("preview", stack, tenant, { version: "1.2.3" }, { savePlan: file }));
    expect(previewed.engineRuns).toBe(1);
    expect(existsSync(file)).toBe(true);
    const text = readFileSync(file, "utf8");
    const canaries = await secretOutputs(stack);
    expect(canaries.length).toBeGreaterThanOrEqual(2); // the database and cache passwords
    for (const secret of canaries) {
      expect(secret.length).toBeGreaterThanOrEqual(16);
      expect(text).not.toContain(secret);
    }
    const lines: string[] = [];
    const summary = await runner.run(request("up", stack, tenant, { version: "1.2.3" }, { plan: file }), { onProgress: (l) => lines.push(l) });
    expect(summary.planUse).toBe("constrained");
    expect(summary.engineRuns).toBe(1);
    expect(lines.filter((l) => l.startsWith("policy check"))).toEqual([]);
    expect(summary.outputs.version).toBe("1.2.3");

    // No change at all: the plan is saved and used the same way.
    const same = path.join(dataDir, "plans", "same.json");
    await runner.run(request("preview", stack, tenant, { version: "1.2.3" }, { savePlan: same }));
    const again = await runner.run(request("up", stack, tenant, { version: "1.2.3" }, { plan: same }));
    expect(again.planUse).toBe("constrained");
    expect(again.engineRuns).toBe(1);
  }, 240_000);

  it("a plan the stack no longer matches is refused by the engine; the up falls back to the policy check and applies", async () => {
    const stack = `tenant-${tenant}`;
    const file = path.join(dataDir, "plans", "stale.json");
    await runner.run(request("preview", stack, tenant, { version: "1.2.4" }, { savePlan: file }));
    // Another job changes the stack after the plan was saved.
    await runner.run(request("up", stack, tenant, { version: "1.2.3", maxConnections: 9 }));
    const lines: string[] = [];
    const summary = await runner.run(request("up", stack, tenant, { version: "1.2.4" }, { plan: file }), { onProgress: (l) => lines.push(l) });
    expect(summary.planUse).toBe("fallback");
    expect(summary.planFallback).toBe("program");
    expect(summary.engineRuns).toBe(3);
    expect(lines.some((l) => l.startsWith("the saved plan could not be used"))).toBe(true);
    expect(lines.some((l) => l.startsWith("policy check passed"))).toBe(true);
    expect(summary.outputs.version).toBe("1.2.4");
    // What the fallback applied is the program's goal: maxConnections is back to the tier's default.
    expect(summary.diff?.map((d) => `${d.op} ${d.type.split(":").pop()} ${d.properties.join(",")}`)).toEqual(["update MysqlUser maxConnections"]);
    const after = await runner.run(request("preview", stack, tenant, { version: "1.2.4" }));
    expect(after.diff).toEqual([]);
  }, 240_000);

  it("expectedDigest: the preview before the up must find the approved diff, else nothing is applied (one preview only)", async () => {
    const stack = `tenant-${tenant}`;
    const lines: string[] = [];
    // Approved: no resource change; found: the user's connection limit changes.
    const refused = await runner.run(request("up", stack, tenant, { version: "1.2.5", maxConnections: 11 }, { expectedDigest: planDigest([]) }), {
      onProgress: (l) => lines.push(l),
    });
    expect(refused.result).toBe("plan-changed");
    expect(refused.engineRuns).toBe(1);
    expect(refused.diff?.map((d) => `${d.op} ${d.type.split(":").pop()}`)).toEqual(["update MysqlUser"]);
    expect(lines.filter((l) => /^(create|update|done) /.test(l))).toEqual([]);
    expect((await runner.run(request("preview", stack, tenant, { version: "1.2.4" }))).diff).toEqual([]);
    // The same diff approved: one preview, then the up.
    const applied = await runner.run(
      request("up", stack, tenant, { version: "1.2.5", maxConnections: 11 }, { expectedDigest: planDigest(refused.diff ?? []) }),
    );
    expect(applied.result).toBe("succeeded");
    expect(applied.engineRuns).toBe(2);
    expect(applied.outputs.version).toBe("1.2.5");
  }, 240_000);

  it("a stack the pack refuses (another tenant's objects in this stack) fails with structured violations; nothing is created", async () => {
    // The stack of tenant `<intruder>-x`, asked to hold the objects of tenant `<intruder>`.
    const stack = `tenant-${intruder}-x`;
    const failure = await runner.run(request("up", stack, intruder)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(PolicyViolationError);
    const findings = (failure as PolicyViolationError).findings;
    const owned = findings.filter((f) => f.policy === "tenant-names-owned");
    expect(owned.length).toBeGreaterThanOrEqual(5); // database, user, grant, cache user, folder
    expect(owned.some((f) => f.message.includes("does not belong to this stack"))).toBe(true);
    for (const f of owned) {
      expect(f).toMatchObject({ pack: "stackrail-guardrails", level: "mandatory" });
      expect(f.urn).toMatch(new RegExp(`^urn:pulumi:${stack}::`));
    }
    expect((failure as PolicyViolationError).violations.length).toBeGreaterThan(0);
    expect(stateResources(stack)).toEqual([]);
    expect(await databaseExists(logicalNames("tenant", intruder).database)).toBe(false);
    expect(await redis.call("ACL", "GETUSER", logicalNames("tenant", intruder).cacheUser)).toBeNull();
    expect(existsSync(path.join(dataDir, "attachments", "tenants", intruder))).toBe(false);
  }, 120_000);
});
