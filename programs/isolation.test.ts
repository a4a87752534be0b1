// Issue 11 isolation matrix on the local target, through the real engine: tenants whose ids
// collide under every naming rule we could think of (`_` as a grant wildcard, `-` folded to `_`,
// prefixes, truncation of long MySQL user names) are brought up side by side; then every tenant's
// credentials are tried on every other tenant's objects and on the names future tenants would get.
// Also: provisioning over an object somebody else made is refused, and an existing stack (grants
// in the old wildcard spelling, no owner recorded) migrates in place on its next `up`.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "@pulumi/pulumi/automation/index.js";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "../test/support/services.ts";
import { programFor, type ProgramContext } from "./index.ts";
import { OWNER_REGISTRY } from "./local/mysql-ops.ts";
import { ACL_OWNERS_KEY } from "./local/redis-ops.ts";
import { logicalNames } from "../core/naming.ts";
import { testWorkspace, type TestWorkspace } from "./testing.ts";

// A letter and three characters: ids stay unique per run and within 40 characters.
const s = `i${randomBytes(2).toString("hex")}`;
const LONG = `${s}-a-very-long-tenant-name-to-truncate-1`.slice(0, 40);
/** What a 30-character id had to be to take LONG's MySQL user under the old naming scheme. */
const TWIN = `${LONG.slice(0, 21)}-${createHash("sha256").update(LONG).digest("hex").slice(0, 8)}`;
const TENANTS = [`${s}-ab`, `${s}xab`, `${s}ab-c`, `${s}abc`, `${s}ab-cd`, LONG, TWIN];
const PRE = `${s}pre`; // a tenant whose database somebody else made first
const ALL = [...TENANTS, PRE];

type Outputs = Record<string, { value: unknown; secret: boolean }>;
let ws: TestWorkspace;
let ctx: ProgramContext;
let admin: mysql.Connection;
let redisAdmin: Redis;
const stacks = new Map<string, Stack>();
const outs = new Map<string, Outputs>();
const out = (id: string, key: string): string => String(outs.get(id)?.[key]?.value);
const mysqlAddress = new URL(TEST_MYSQL_URL);

const program = (id: string) => programFor("tenant", { tenantId: id, tier: "pool", region: "eu-west-1" }, ctx);

/** Runs `fn` over `items`, at most `width` at a time (each is an engine process on a small machine). */
async function limited<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
    }),
  );
}

function login(id: string, as?: { user?: string; database?: string }): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: mysqlAddress.hostname,
    port: Number(mysqlAddress.port || 3306),
    user: as?.user ?? out(id, "databaseUser"),
    password: out(id, "databasePassword"),
    ...(as?.database ? { database: as.database } : {}),
  });
}

function redisAs(id: string): Redis {
  return new Redis(TEST_REDIS_URL, {
    username: out(id, "cacheUser"),
    password: out(id, "cachePassword"),
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
  });
}

/** Database names a future tenant could get that A's grant would have matched as a pattern. */
function futureNames(database: string): string[] {
  const body = database.slice(2);
  const out = new Set<string>();
  for (let i = 0; i < body.length; i++) if (body[i] === "_") out.add(`t_${body.slice(0, i)}q${body.slice(i + 1)}`);
  out.add(`t_${body}x`);
  return [...out];
}

beforeAll(async () => {
  ws = await testWorkspace();
  ctx = { target: "local", dataDir: path.join(ws.root, "data"), localMysqlUrl: TEST_MYSQL_URL, localRedisUrl: TEST_REDIS_URL };
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  redisAdmin = new Redis(TEST_REDIS_URL);
  await limited(TENANTS, 3, async (id) => {
    const stack = await ws.stack(`tenant-${id}`, program(id));
    stacks.set(id, stack);
    outs.set(id, (await stack.up()).outputs);
  });
});

afterAll(async () => {
  await limited([...stacks.values()], 3, async (stack) => {
    await stack.destroy().catch(() => undefined);
  });
  for (const id of ALL) {
    const n = logicalNames("tenant", id);
    for (const db of [n.database, ...futureNames(n.database)]) await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await admin.query("DROP USER IF EXISTS ?@'%'", [n.dbUser]);
    await admin.query(`DELETE FROM ${OWNER_REGISTRY} WHERE name IN (?, ?)`, [n.database, `${n.dbUser}@%`]).catch(() => undefined);
    await redisAdmin.call("ACL", "DELUSER", n.cacheUser);
    await redisAdmin.hdel(ACL_OWNERS_KEY, n.cacheUser);
  }
  await admin.end();
  redisAdmin.disconnect();
  ws.dispose();
});

describe("issue 11 isolation matrix (local target, real engine)", () => {
  it("every derived name is distinct, and each grant names exactly one database", async () => {
    for (const key of ["databaseName", "databaseUser", "cacheUser", "cacheKeyPrefix", "attachmentsPath"]) {
      expect(new Set(TENANTS.map((id) => out(id, key))).size).toBe(TENANTS.length);
    }
    expect(out(TWIN, "databaseUser")).not.toBe(out(LONG, "databaseUser"));
    for (const id of TENANTS) {
      const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT Db FROM mysql.db WHERE User = ?", [out(id, "databaseUser")]);
      expect(rows.map((r) => String(r.Db))).toEqual([out(id, "databaseName").replace(/_/g, "\\_")]);
    }
  });

  it("each tenant's database login is refused on every other tenant's database and on future tenants' names", async () => {
    for (const id of TENANTS) {
      const own = await login(id, { database: out(id, "databaseName") });
      try {
        await own.query("CREATE TABLE probe (v VARCHAR(64))");
        await own.query("INSERT INTO probe VALUES (?)", [id]);
      } finally {
        await own.end();
      }
    }
    for (const a of TENANTS) {
      const conn = await login(a);
      try {
        for (const b of TENANTS.filter((x) => x !== a)) {
          const db = `\`${out(b, "databaseName")}\``;
          const denied = { code: expect.stringMatching(/ACCESS_DENIED/) };
          await expect(conn.query(`SELECT * FROM ${db}.probe`), `${a} reads ${b}`).rejects.toMatchObject(denied);
          await expect(conn.query(`INSERT INTO ${db}.probe VALUES ('x')`), `${a} writes ${b}`).rejects.toMatchObject(denied);
          await expect(conn.query(`CREATE TABLE ${db}.planted (v INT)`), `${a} creates in ${b}`).rejects.toMatchObject(denied);
          await expect(conn.query(`DROP TABLE ${db}.probe`), `${a} drops in ${b}`).rejects.toMatchObject(denied);
          await expect(conn.query(`USE ${db}`), `${a} uses ${b}`).rejects.toMatchObject(denied);
          // A's password is no key to B's account either.
          await expect(login(a, { user: out(b, "databaseUser") }), `${a} logs in as ${b}`).rejects.toMatchObject({ code: "ER_ACCESS_DENIED_ERROR" });
        }
        for (const future of futureNames(out(a, "databaseName"))) {
          await expect(conn.query(`CREATE DATABASE \`${future}\``), `${a} creates ${future}`).rejects.toMatchObject({ code: "ER_DBACCESS_DENIED_ERROR" });
        }
        const [visible] = await conn.query<mysql.RowDataPacket[]>("SHOW DATABASES");
        expect(visible.map((r) => String(r.Database)).filter((d) => d !== "information_schema")).toEqual([out(a, "databaseName")]);
      } finally {
        await conn.end();
      }
    }
    for (const b of TENANTS) {
      const [rows] = await admin.query<mysql.RowDataPacket[]>(`SELECT v FROM \`${out(b, "databaseName")}\`.probe`);
      expect(rows.map((r) => r.v)).toEqual([b]);
    }
  });

  it("each tenant's cache login is refused on every other tenant's keys and on future prefixes", async () => {
    for (const b of TENANTS) await redisAdmin.set(`${out(b, "cacheKeyPrefix")}secret`, b);
    for (const a of TENANTS) {
      const r = redisAs(a);
      r.on("error", () => undefined);
      await r.connect();
      try {
        expect(await r.set(`${out(a, "cacheKeyPrefix")}mine`, "1")).toBe("OK");
        for (const b of TENANTS.filter((x) => x !== a)) {
          const key = `${out(b, "cacheKeyPrefix")}secret`;
          await expect(r.get(key), `${a} reads ${b}`).rejects.toThrow(/NOPERM/);
          await expect(r.set(key, "x"), `${a} writes ${b}`).rejects.toThrow(/NOPERM/);
          await expect(r.del(key), `${a} deletes ${b}`).rejects.toThrow(/NOPERM/);
        }
        for (const future of [`t:${a}x:k`, `t:${a}-x:k`, `t:${a}:`.replace(/:$/, "") + "x", `t:${a.slice(0, -1)}:k`]) {
          await expect(r.set(future, "x"), `${a} writes ${future}`).rejects.toThrow(/NOPERM/);
        }
        await expect(r.call("ACL", "SETUSER", `t-${a}x`, "on"), `${a} makes a user`).rejects.toThrow(/NOPERM/);
      } finally {
        r.disconnect();
      }
      const anon = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 0 });
      try {
        for (const b of TENANTS.filter((x) => x !== a)) {
          await expect(anon.call("AUTH", out(b, "cacheUser"), out(a, "cachePassword")), `${a} logs in as ${b}`).rejects.toThrow(/WRONGPASS/);
        }
      } finally {
        anon.disconnect();
      }
    }
    for (const b of TENANTS) expect(await redisAdmin.get(`${out(b, "cacheKeyPrefix")}secret`)).toBe(b);
  });

  it("each tenant's directory is its own: private, and neither inside nor above another's", () => {
    for (const a of TENANTS) {
      const dir = out(a, "attachmentsPath");
      expect(existsSync(dir)).toBe(true);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      for (const b of TENANTS.filter((x) => x !== a)) {
        const rel = path.relative(dir, out(b, "attachmentsPath"));
        expect(rel.startsWith(`..${path.sep}`), `${b}'s folder is outside ${a}'s`).toBe(true);
        expect(path.relative(out(b, "attachmentsPath"), dir).startsWith(`..${path.sep}`)).toBe(true);
      }
    }
    // The owner markers live outside every tenant's folder.
    const owners = path.join(ctx.dataDir, "attachments", ".owners");
    expect(statSync(owners).mode & 0o777).toBe(0o700);
    for (const a of TENANTS) expect(statSync(path.join(owners, "tenants", a)).mode & 0o777).toBe(0o600);
  });

  it("provisioning over a database somebody else made fails with a clear error and touches nothing of it", async () => {
    const db = logicalNames("tenant", PRE).database;
    await admin.query(`CREATE DATABASE \`${db}\``);
    await admin.query(`CREATE TABLE \`${db}\`.theirs (v TEXT)`);
    const stack = await ws.stack(`tenant-${PRE}`, program(PRE));
    stacks.set(PRE, stack);
    const failure = await stack.up().then(
      () => "succeeded",
      (err: unknown) => String(err),
    );
    expect(failure).toContain(`database ${db} exists but is not recorded as this tenant's`);
    const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", [db]);
    expect(rows.map((r) => r.t)).toEqual(["theirs"]);
    const [grants] = await admin.query<mysql.RowDataPacket[]>("SELECT Db FROM mysql.db WHERE Db IN (?, ?)", [db, db.replace(/_/g, "\\_")]);
    expect(grants).toEqual([]);
  });

  it("an existing stack (wildcard grant, nothing recorded) migrates in place on its next up", async () => {
    const id = `${s}-ab`;
    const stack = stacks.get(id) as Stack;
    const user = out(id, "databaseUser");
    const db = out(id, "databaseName");
    // Make the state and the server what the previous version left: no owner input, no owner
    // token resource, no databaseMatch on the grant, the grant in the wildcard spelling, no records.
    const exported = (await stack.exportStack()) as { deployment: { resources: Record<string, unknown>[] } };
    const ownerUrn = (r: Record<string, unknown>): boolean => String(r.urn).endsWith(`::${id}-owner`);
    const strip = (o: unknown): void => {
      if (o && typeof o === "object") for (const k of ["owner", "databaseMatch"]) delete (o as Record<string, unknown>)[k];
    };
    exported.deployment.resources = exported.deployment.resources
      .filter((r) => !ownerUrn(r))
      .map((r) => {
        strip(r.inputs);
        strip(r.outputs);
        strip(r.propertyDependencies);
        const urn = exported.deployment.resources.find(ownerUrn)?.urn;
        if (Array.isArray(r.dependencies)) r.dependencies = r.dependencies.filter((d) => d !== urn);
        return r;
      });
    await stack.importStack(exported as never);
    await admin.query(`REVOKE ALL PRIVILEGES ON \`${db.replace(/_/g, "\\_")}\`.* FROM ?@'%'`, [user]);
    await admin.query(`GRANT SELECT, INSERT ON \`${db}\`.* TO ?@'%'`, [user]);
    await admin.query(`DELETE FROM ${OWNER_REGISTRY} WHERE name IN (?, ?)`, [db, `${user}@%`]);
    await redisAdmin.hdel(ACL_OWNERS_KEY, out(id, "cacheUser"));
    rmSync(path.join(ctx.dataDir, "attachments", ".owners", "tenants", id));

    const preview = await stack.preview();
    expect(preview.changeSummary).toMatchObject({ create: 1, update: 5 });
    expect(preview.changeSummary.replace ?? 0).toBe(0);
    expect(preview.changeSummary.delete ?? 0).toBe(0);
    const up = await stack.up();
    expect(up.summary.resourceChanges).toMatchObject({ create: 1, update: 5 });
    expect(up.outputs.databasePassword?.value).toBe(out(id, "databasePassword"));
    const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT Db FROM mysql.db WHERE User = ?", [user]);
    expect(rows.map((r) => String(r.Db))).toEqual([db.replace(/_/g, "\\_")]);
    const [owners] = await admin.query<mysql.RowDataPacket[]>(`SELECT kind, name FROM ${OWNER_REGISTRY} WHERE name IN (?, ?) ORDER BY kind`, [db, `${user}@%`]);
    expect(owners.map((r) => `${r.kind}:${r.name}`)).toEqual([`database:${db}`, `user:${user}@%`]);
    const conn = await login(id, { database: db });
    try {
      expect((await conn.query<mysql.RowDataPacket[]>("SELECT v FROM probe"))[0].map((r) => r.v)).toEqual([id]);
    } finally {
      await conn.end();
    }
  });
});
