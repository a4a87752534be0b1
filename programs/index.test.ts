// programFor: names and arguments are validated before anything reaches a stack or a server.
import { describe, expect, it } from "vitest";
import { ValidationError } from "../core/errors.ts";
import { POLICY_PACK_DIR, programFor, type ProgramContext } from "./index.ts";
import { logicalNames } from "../core/naming.ts";

const local: ProgramContext = { target: "local", dataDir: "/tmp/x", localMysqlUrl: "mysql://root@127.0.0.1:3306", localRedisUrl: "redis://127.0.0.1:6379" };
const aws: ProgramContext = { ...local, target: "aws" };

describe("programFor", () => {
  it("returns an inline program for each known name on its target", () => {
    expect(typeof programFor("tenant", { tenantId: "acme", tier: "pool", region: "eu-west-1" }, local)).toBe("function");
    expect(typeof programFor("tenant", { tenantId: "acme", tier: "silo", region: "us-east-2", version: "1.2.3" }, aws)).toBe("function");
    expect(typeof programFor("preview", { repo: "web", pr: 3, headSha: "c".repeat(40), expiresAt: "2030-01-01T00:00:00Z" }, local)).toBe("function");
    expect(typeof programFor("region", { region: "eu-west-1" }, aws)).toBe("function");
    const fn = {
      tenantId: "acme",
      region: "eu-west-1",
      functionName: "hook",
      codePath: "/tmp/b.zip",
      handler: "index.handler",
      assumeRoleArn: "arn:aws:iam::123456789012:role/x",
    };
    expect(typeof programFor("tenant-functions", fn, aws)).toBe("function");
  });

  it.each([
    ["unknown program", "nope", {}, local, "program"],
    ["bad tenant id", "tenant", { tenantId: "Acme;DROP", tier: "pool", region: "eu-west-1" }, local, "tenantId"],
    ["bad tier", "tenant", { tenantId: "acme", tier: "gold", region: "eu-west-1" }, local, "tier"],
    ["unknown argument", "tenant", { tenantId: "acme", tier: "pool", region: "eu-west-1", sql: "x" }, local, "args"],
    ["bad head sha", "preview", { repo: "web", pr: 3, headSha: "zz", expiresAt: "2030-01-01T00:00:00Z" }, local, "headSha"],
    ["unusable repo", "preview", { repo: "___", pr: 3, headSha: "c".repeat(40), expiresAt: "2030-01-01T00:00:00Z" }, local, "repo"],
    ["aws-only program on local", "region", { region: "eu-west-1" }, local, "target"],
  ] as const)("refuses %s with a ValidationError", (_label, name, args, ctx, field) => {
    let caught: unknown;
    try {
      programFor(name, args, ctx);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).field).toBe(field);
  });

  it("exports the policy pack folder", () => {
    expect(POLICY_PACK_DIR).toMatch(/programs\/policy$/);
  });
});

describe("logical names", () => {
  it("pool, silo and preview name spaces; user names fit MySQL 8's 32 characters", () => {
    expect(logicalNames("tenant", "acme")).toMatchObject({ database: "t_acme", dbUser: "t_acme", cacheUser: "t-acme", keyPrefix: "t:acme:" });
    expect(logicalNames("silo", "acme")).toMatchObject({ database: "s_acme", keyPrefix: "t:acme:", attachmentsDir: "silo/acme" });
    const long = logicalNames("tenant", "a".repeat(40));
    expect(long.dbUser.length).toBeLessThanOrEqual(32);
    expect(long.database).toBe(`t_${"a".repeat(40)}`);
    expect(logicalNames("tenant", "a".repeat(39) + "b").dbUser).not.toBe(long.dbUser);
  });
});
