// Real engine, real MariaDB and Redis: the local tenant program through the Automation API on a
// fresh file backend. Provisions two tenants, proves each one's credentials cannot reach the
// other's database or keys, checks no credential is in the state, updates in place, destroys.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "@pulumi/pulumi/automation/index.js";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../test/support/services.ts";
import { programFor, type ProgramContext } from "./index.ts";
import { testWorkspace, type TestWorkspace } from "./testing.ts";

const suffix = randomBytes(3).toString("hex");
const idA = `a-${suffix}`;
const idB = `b-${suffix}`;
const previewRepo = `web-${suffix}`;

let ws: TestWorkspace;
let ctx: ProgramContext;
let admin: mysql.Connection;
let redisAdmin: Redis;

async function databases(): Promise<string[]> {
  const [rows] = await admin.query("SHOW DATABASES");
  return (rows as { Database: string }[]).map((r) => r.Database);
}

async function mysqlUsers(): Promise<string[]> {
  const [rows] = await admin.query("SELECT User FROM mysql.user");
  return (rows as { User: string }[]).map((r) => r.User);
}

async function aclUsers(): Promise<string[]> {
  return (await redisAdmin.call("ACL", "USERS")) as string[];
}

beforeAll(async () => {
  ws = await testWorkspace();
  ctx = { target: "local", dataDir: path.join(ws.root, "data"), localMysqlUrl: TEST_MYSQL_URL, localRedisUrl: TEST_REDIS_URL };
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redisAdmin = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  for (const id of [idA, idB]) {
    const db = `t_${id.replace(/-/g, "_")}`;
    await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await admin.query("DROP USER IF EXISTS ?@'%'", [db]);
    await redisAdmin.call("ACL", "DELUSER", `t-${id}`);
  }
  const previewDb = `p_${previewRepo.replace(/-/g, "_")}_pr_7`;
  await admin.query(`DROP DATABASE IF EXISTS \`${previewDb}\``);
  await admin.query("DROP USER IF EXISTS ?@'%'", [previewDb]);
  await redisAdmin.call("ACL", "DELUSER", `p-${previewRepo}-pr-7`);
  await admin.end();
  redisAdmin.disconnect();
  ws.dispose();
});

describe("local tenant program, real engine", () => {
  it("up creates the database, destroy removes it", async () => {
    const stack: Stack = await ws.stack(`tenant-${idA}`, programFor("tenant", { tenantId: idA, tier: "pool", region: "eu-west-1" }, ctx));
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    const dbName = up.outputs.databaseName?.value as string;
    expect(dbName).toBe(`t_${idA.replace(/-/g, "_")}`);
    expect(await databases()).toContain(dbName);
    expect(await mysqlUsers()).toContain(dbName);
    expect(await aclUsers()).toContain(`t-${idA}`);
    expect(up.outputs.databasePassword?.secret).toBe(true);
    expect(existsSync(up.outputs.attachmentsPath?.value as string)).toBe(true);

    const destroyed = await stack.destroy();
    expect(destroyed.summary.result).toBe("succeeded");
    expect(await databases()).not.toContain(dbName);
    expect(await mysqlUsers()).not.toContain(dbName);
    expect(await aclUsers()).not.toContain(`t-${idA}`);
  });

  describe("two tenants", () => {
    let stackA: Stack;
    let stackB: Stack;
    const outs: Record<string, Record<string, { value: unknown; secret: boolean }>> = {};
    const out = (id: string, key: string): string => String(outs[id]?.[key]?.value);

    async function connectAs(id: string, database?: string): Promise<mysql.Connection> {
      const url = new URL(TEST_MYSQL_URL);
      return mysql.createConnection({
        host: url.hostname,
        port: Number(url.port || 3306),
        user: out(id, "databaseUser"),
        password: out(id, "databasePassword"),
        ...(database ? { database } : {}),
      });
    }

    function redisAs(id: string): Redis {
      return new Redis(TEST_REDIS_URL, {
        username: out(id, "cacheUser"),
        password: out(id, "cachePassword"),
        enableReadyCheck: false,
        maxRetriesPerRequest: 0,
      });
    }

    it("provisions a and b: databases, users, Redis users, directories", async () => {
      stackA = await ws.stack(`tenant-${idA}`, programFor("tenant", { tenantId: idA, tier: "pool", region: "eu-west-1" }, ctx));
      stackB = await ws.stack(`tenant-${idB}`, programFor("tenant", { tenantId: idB, tier: "pool", region: "eu-west-1" }, ctx));
      const [upA, upB] = await Promise.all([stackA.up(), stackB.up()]);
      outs[idA] = upA.outputs;
      outs[idB] = upB.outputs;
      for (const id of [idA, idB]) {
        expect(await databases()).toContain(out(id, "databaseName"));
        expect(await mysqlUsers()).toContain(out(id, "databaseUser"));
        expect(await aclUsers()).toContain(out(id, "cacheUser"));
        expect(out(id, "cacheKeyPrefix")).toBe(`t:${id}:`);
        expect(existsSync(out(id, "attachmentsPath"))).toBe(true);
        expect(outs[id]?.databasePassword?.secret).toBe(true);
        expect(outs[id]?.cachePassword?.secret).toBe(true);
      }
      expect(out(idA, "databasePassword")).not.toBe(out(idB, "databasePassword"));
    });

    it("a's database credentials cannot reach b's database", async () => {
      const a = await connectAs(idA, out(idA, "databaseName"));
      try {
        await a.query("CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)");
        await a.query("INSERT INTO notes VALUES (1, 'kept')");
        await expect(a.query(`SELECT * FROM \`${out(idB, "databaseName")}\`.notes`)).rejects.toThrow(/denied/);
        await expect(a.query(`USE \`${out(idB, "databaseName")}\``)).rejects.toMatchObject({ code: "ER_DBACCESS_DENIED_ERROR" });
        await expect(a.query(`CREATE DATABASE \`${out(idA, "databaseName")}_x\``)).rejects.toMatchObject({ code: "ER_DBACCESS_DENIED_ERROR" });
        await expect(a.query("SELECT User FROM mysql.user")).rejects.toMatchObject({ code: "ER_TABLEACCESS_DENIED_ERROR" });
      } finally {
        await a.end();
      }
      await expect(connectAs(idA, out(idB, "databaseName"))).rejects.toMatchObject({ code: "ER_DBACCESS_DENIED_ERROR" });
    });

    it("a's cache credentials cannot read or write b's keys", async () => {
      await redisAdmin.set(`t:${idB}:secret`, "b-only");
      const a = redisAs(idA);
      try {
        expect(await a.set(`t:${idA}:k`, "v")).toBe("OK");
        expect(await a.get(`t:${idA}:k`)).toBe("v");
        await expect(a.get(`t:${idB}:secret`)).rejects.toThrow(/NOPERM/);
        await expect(a.set(`t:${idB}:secret`, "overwritten")).rejects.toThrow(/NOPERM/);
        await expect(a.keys("*")).rejects.toThrow(/NOPERM/);
        await expect(a.scan("0")).rejects.toThrow(/NOPERM/);
        await expect(a.flushall()).rejects.toThrow(/NOPERM/);
      } finally {
        a.disconnect();
      }
      expect(await redisAdmin.get(`t:${idB}:secret`)).toBe("b-only");
    });

    it("the state holds no plaintext credential", () => {
      const state = ws.stateText();
      expect(state.length).toBeGreaterThan(1000);
      for (const id of [idA, idB]) {
        for (const key of ["databasePassword", "cachePassword"]) {
          const canary = out(id, key);
          expect(canary).toMatch(/^[A-Za-z0-9]{32}$/);
          expect(state).not.toContain(canary);
        }
      }
    });

    it("changing grants and limits updates in place and keeps the data", async () => {
      stackA = await ws.stack(
        `tenant-${idA}`,
        programFor("tenant", { tenantId: idA, tier: "pool", region: "eu-west-1", readOnly: true, maxConnections: 7 }, ctx),
      );
      const preview = await stackA.preview({ diff: true });
      expect(preview.changeSummary.replace ?? 0).toBe(0);
      expect(preview.changeSummary.create ?? 0).toBe(0);
      expect(preview.changeSummary.delete ?? 0).toBe(0);
      expect(preview.changeSummary.update).toBe(3); // grant, user limit, cache ACL
      const up = await stackA.up();
      expect(up.summary.resourceChanges).toMatchObject({ update: 3 });
      expect(up.summary.resourceChanges?.replace).toBeUndefined();
      expect(up.outputs.databasePassword?.value).toBe(out(idA, "databasePassword"));

      const [grants] = await admin.query(`SHOW GRANTS FOR ?@'%'`, [out(idA, "databaseUser")]);
      expect(JSON.stringify(grants)).toContain("MAX_USER_CONNECTIONS 7");
      const a = await connectAs(idA, out(idA, "databaseName"));
      try {
        const [rows] = await a.query("SELECT body FROM notes");
        expect(rows).toEqual([{ body: "kept" }]);
        await expect(a.query("INSERT INTO notes VALUES (2, 'no')")).rejects.toMatchObject({ code: "ER_TABLEACCESS_DENIED_ERROR" });
      } finally {
        await a.end();
      }
      const r = redisAs(idA);
      try {
        expect(await r.get(`t:${idA}:k`)).toBe("v");
        await expect(r.set(`t:${idA}:k`, "w")).rejects.toThrow(/NOPERM/);
      } finally {
        r.disconnect();
      }
    });

    it("destroy removes databases, users, cache users, keys and directories", async () => {
      await Promise.all([stackA.destroy(), stackB.destroy()]);
      for (const id of [idA, idB]) {
        expect(await databases()).not.toContain(out(id, "databaseName"));
        expect(await mysqlUsers()).not.toContain(out(id, "databaseUser"));
        expect(await aclUsers()).not.toContain(out(id, "cacheUser"));
        expect(existsSync(out(id, "attachmentsPath"))).toBe(false);
      }
      expect(await redisAdmin.exists(`t:${idA}:k`, `t:${idB}:secret`)).toBe(0);
    });

    it("a second destroy of what is already gone succeeds (idempotent delete)", async () => {
      // Recreate the state by up, remove the objects behind Pulumi's back, then destroy.
      const stack = await ws.stack(`tenant-${idB}`, programFor("tenant", { tenantId: idB, tier: "pool", region: "eu-west-1" }, ctx));
      await stack.up();
      await admin.query(`DROP DATABASE \`${out(idB, "databaseName")}\``);
      await admin.query("DROP USER ?@'%'", [out(idB, "databaseUser")]);
      await redisAdmin.call("ACL", "DELUSER", out(idB, "cacheUser"));
      const destroyed = await stack.destroy();
      expect(destroyed.summary.result).toBe("succeeded");
    });
  });

  it("preview environment: same shape, small, labelled with PR and expiry", async () => {
    const headSha = "a".repeat(40);
    const stack = await ws.stack(
      `preview-${previewRepo}-pr-7`,
      programFor("preview", { repo: previewRepo, pr: 7, headSha, expiresAt: "2030-01-02T03:04:05Z" }, ctx),
    );
    const up = await stack.up();
    const db = String(up.outputs.databaseName?.value);
    expect(db).toBe(`p_${previewRepo.replace(/-/g, "_")}_pr_7`);
    expect(up.outputs.cacheKeyPrefix?.value).toBe(`p:${previewRepo}-pr-7:`);
    expect(up.outputs.labels?.value).toMatchObject({ "stackrail.io/pr": "7", "stackrail.io/head-sha": headSha, "stackrail.io/expires-at": "1893553445" });
    const [grants] = await admin.query(`SHOW GRANTS FOR ?@'%'`, [String(up.outputs.databaseUser?.value)]);
    expect(JSON.stringify(grants)).toContain("MAX_USER_CONNECTIONS 5");
    await stack.destroy();
    expect(await databases()).not.toContain(db);
  });
});
