// The embedded default gate against real MariaDB and Redis: two tenant stacks brought up through
// the runner with the real engine, then the gate logs in as each tenant with the credentials its
// stack made (read from Pulumi state), and a tenant whose password no longer works is unhealthy.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineLocation } from "../../core/engine.ts";
import { dropTenantLeftovers } from "../../test/support/cleanup.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../../test/support/services.ts";
import { tenantProject } from "../handlers/tenant-support.ts";
import { PulumiRunner } from "../pulumi-runner.ts";
import { capturedLogger, runGate, tenantRecord, waveOf } from "./gate-fixtures.test-support.ts";
import { pulumiStateCredentials, tenantStackProject } from "./stack-credentials.ts";
import { NO_HEALTH_SOURCE_NOTE, NOTHING_CHECKED_NOTE, waveHealthGateFor, type TenantCredentials, type WaveGateConfig } from "./wave-gate.ts";

const sfx = randomBytes(3).toString("hex");
const good = `hg-good-${sfx}`;
const bad = `hg-bad-${sfx}`;
const dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-health-gate-"));
const config: WaveGateConfig = {
  argocd: undefined,
  argocdNamespace: "argocd",
  healthUrl: undefined,
  healthTimeoutMs: 3_600_000,
  target: "local",
  dataDir,
  pulumiBackendUrl: `file://${path.join(dataDir, "state")}`,
  pulumiPassphrase: "health-gate-test-passphrase",
};
const runner = new PulumiRunner({
  engine: engineLocation(),
  backendUrl: config.pulumiBackendUrl,
  passphrase: config.pulumiPassphrase,
  dataDir,
  target: "local",
  localMysqlUrl: TEST_MYSQL_URL,
  localRedisUrl: TEST_REDIS_URL,
  cancelGraceMs: 5_000,
  prefork: false,
});
const stackOp = (id: string, operation: "up" | "destroy") =>
  runner.run({
    stack: `tenant-${id}`,
    projectName: tenantProject("pool"),
    operation,
    program: "tenant",
    args: { tenantId: id, tier: "pool", region: "eu-west-1", version: "2.0.0" },
    policyPacks: [],
  });

const creds = new Map<string, TenantCredentials>();
let admin: mysql.Connection;
let redisAdmin: Redis;

beforeAll(async () => {
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redisAdmin = new Redis(TEST_REDIS_URL);
  for (const id of [good, bad]) await stackOp(id, "up");
  const read = pulumiStateCredentials(config);
  for (const id of [good, bad]) creds.set(id, await read(tenantRecord(id), undefined));
});

afterAll(async () => {
  for (const id of [good, bad]) await stackOp(id, "destroy").catch(() => undefined);
  runner.close();
  await dropTenantLeftovers([good, bad]);
  await admin.end();
  redisAdmin.disconnect();
  rmSync(dataDir, { recursive: true, force: true });
});

function secretsOf(): string[] {
  return [...creds.values()].flatMap((c) => [c.database.password, c.cache.password]);
}

describe("wave health gate, tenant credentials source (embedded default)", () => {
  it("reads each tenant's own logins from its stack's state: its user, not the admin", () => {
    const c = creds.get(good);
    expect(c?.database).toMatchObject({ name: `t_${good.replace(/-/g, "_")}`, user: `t_${good.replace(/-/g, "_")}` });
    expect(c?.database.password).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(c?.cache).toMatchObject({ user: `t-${good}`, keyPrefix: `t:${good}:` });
    expect(c?.cache.password).toMatch(/^[A-Za-z0-9]{32}$/);
  });

  it("logs in as each tenant to its database and cache, passes, and says plainly that the application was not checked", async () => {
    const { logger, lines } = capturedLogger();
    const gate = waveHealthGateFor(config, { logger });
    const { report, progress } = await runGate(gate, waveOf([tenantRecord(good), tenantRecord(bad)]));
    expect(report).toMatchObject({ source: "credentials", passed: true, note: NO_HEALTH_SOURCE_NOTE });
    expect(report.note).toMatch(/No application health source is configured \(set ARGOCD_SERVER and ARGOCD_AUTH_TOKEN, or STACKRAIL_HEALTH_URL\)/);
    const dbUser = `t_${good.replace(/-/g, "_")}`;
    expect(report.tenants[0]).toEqual({ tenantId: good, healthy: true, detail: `database ${dbUser} as ${dbUser}: SELECT 1 ok; cache as t-${good}: PING ok` });
    expect(progress.some((l) => l.includes(NO_HEALTH_SOURCE_NOTE))).toBe(true);
    const all = [JSON.stringify(report), ...progress, ...lines].join("\n");
    for (const s of secretsOf()) expect(all).not.toContain(s);
  });

  it("a tenant whose database password no longer works is unhealthy at once; the other stays healthy", async () => {
    const user = creds.get(bad)?.database.user ?? "";
    await admin.query("ALTER USER ?@'%' IDENTIFIED BY ?", [user, `changed-${sfx}-by-hand`]);
    try {
      const { logger, lines } = capturedLogger();
      // The timeout is an hour: only a refusal treated as final lets this finish.
      const gate = waveHealthGateFor(config, { logger });
      const { report, progress } = await runGate(gate, waveOf([tenantRecord(good), tenantRecord(bad)]));
      expect(report.passed).toBe(false);
      expect(report.tenants.find((t) => t.tenantId === good)?.healthy).toBe(true);
      expect(report.tenants.find((t) => t.tenantId === bad)).toEqual({
        tenantId: bad,
        healthy: false,
        detail: `database ${user}: login as ${user} failed (ER_ACCESS_DENIED_ERROR)`,
      });
      const all = [JSON.stringify(report), ...progress, ...lines].join("\n");
      for (const s of [...secretsOf(), `changed-${sfx}-by-hand`]) expect(all).not.toContain(s);
    } finally {
      await admin.query("ALTER USER ?@'%' IDENTIFIED BY ?", [user, creds.get(bad)?.database.password ?? ""]);
    }
  }, 60_000);

  it("a tenant whose cache password no longer works is unhealthy too", async () => {
    const c = creds.get(bad)?.cache;
    await redisAdmin.call("ACL", "SETUSER", c?.user ?? "", "resetpass", `>changed-${sfx}-by-hand`);
    try {
      const gate = waveHealthGateFor(config, { logger: capturedLogger().logger });
      const { report } = await runGate(gate, waveOf([tenantRecord(bad)]));
      expect(report.passed).toBe(false);
      expect(report.tenants[0]).toMatchObject({ tenantId: bad, healthy: false });
      expect(report.tenants[0]?.detail).toMatch(new RegExp(`^cache: login as t-${bad} failed \\((WRONGPASS|NOAUTH|ERR)`));
    } finally {
      await redisAdmin.call("ACL", "SETUSER", c?.user ?? "", "resetpass", `>${c?.password ?? ""}`);
    }
  }, 60_000);

  it("a tenant without a stack is unhealthy, with the reason and no stack trace", async () => {
    const gate = waveHealthGateFor(config, { logger: capturedLogger().logger });
    const { report } = await runGate(gate, waveOf([tenantRecord(`hg-none-${sfx}`)]));
    expect(report.passed).toBe(false);
    expect(report.tenants[0]?.detail).toMatch(new RegExp(`^could not read the tenant's own credentials from stack tenant-hg-none-${sfx} \\(`));
  }, 60_000);

  it("on the aws target without Argo CD or a health URL it passes and says nothing could be checked", async () => {
    const gate = waveHealthGateFor({ ...config, target: "aws" }, { logger: capturedLogger().logger });
    const { report } = await runGate(gate, waveOf([tenantRecord(good)]));
    expect(report).toEqual({
      source: "credentials",
      passed: true,
      note: NOTHING_CHECKED_NOTE,
      tenants: [{ tenantId: good, healthy: true, detail: "not checked: no application health source on the aws target" }],
    });
  });

  it("looks for tenant stacks in the project the handlers put them in", () => {
    for (const tier of ["pool", "silo"] as const) expect(tenantStackProject(tier)).toBe(tenantProject(tier));
  });
});
