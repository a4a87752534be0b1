// The policy pack under the real engine (analyzer plugin, TypeScript pack loaded from
// POLICY_PACK_DIR): a mandatory violation fails a preview with the rule's message and nothing is
// applied; a compliant program passes. Uses the local target's dynamic resources, which the
// `tenant-grants-confined` rule covers on both targets (no aws provider plugin exists here).
import { randomBytes } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_MYSQL_URL } from "../../test/support/services.ts";
import { OWNER_REGISTRY } from "../local/mysql-ops.ts";
import { GeneratedPassword, MysqlDatabase, MysqlGrant, MysqlUser } from "../local/resources.ts";
import { testWorkspace, type TestWorkspace } from "../testing.ts";
import { POLICY_PACK_DIR } from "./location.ts";

const suffix = randomBytes(3).toString("hex");
const dbName = `t_pol_${suffix}`;
let ws: TestWorkspace;
let admin: mysql.Connection;

function program(database: string, privileges: string[]) {
  return () => {
    const pw = new GeneratedPassword("pw", {});
    const owner = pulumi.interpolate`pol-${suffix}/${new GeneratedPassword("owner", {}).result}`;
    const db = new MysqlDatabase("db", { serverUrl: TEST_MYSQL_URL, name: dbName, owner });
    const user = new MysqlUser("user", { serverUrl: TEST_MYSQL_URL, user: dbName, password: pw.result, maxConnections: 3, owner });
    new MysqlGrant("grant", { serverUrl: TEST_MYSQL_URL, user: user.user, host: user.host, database, privileges }, { dependsOn: [db] });
    return Promise.resolve({});
  };
}

async function exists(): Promise<boolean> {
  const [rows] = await admin.query("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [dbName]);
  return (rows as unknown[]).length > 0;
}

beforeAll(async () => {
  ws = await testWorkspace();
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  await admin.query(`DROP DATABASE IF EXISTS \`${dbName}\``);
  await admin.query("DROP USER IF EXISTS ?@'%'", [dbName]);
  await admin.query(`DELETE FROM ${OWNER_REGISTRY} WHERE name IN (?, ?)`, [dbName, `${dbName}@%`]).catch(() => undefined); // no registry yet
  await admin.end();
  ws.dispose();
});

describe("policy pack under the real engine", () => {
  it("a mandatory violation fails the preview with the policy's message; nothing is applied", async () => {
    const stack = await ws.stack(`tenant-pol-${suffix}`, program("*", ["ALL PRIVILEGES"]));
    const failure = await stack.preview({ policyPacks: [POLICY_PACK_DIR] }).then(
      () => "no error",
      (err: unknown) => String(err),
    );
    expect(failure).toContain("tenant-grants-confined");
    expect(failure).toContain("mandatory");
    expect(await exists()).toBe(false);
  });

  it("a compliant program passes the pack and applies", async () => {
    const stack = await ws.stack(`tenant-pol-${suffix}`, program(dbName, ["SELECT"]));
    const up = await stack.up({ policyPacks: [POLICY_PACK_DIR] });
    expect(up.summary.result).toBe("succeeded");
    expect(up.stdout).toContain("stackrail-guardrails");
    expect(await exists()).toBe(true);
    await stack.destroy();
    expect(await exists()).toBe(false);
  });
});
