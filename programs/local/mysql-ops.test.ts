// The MySQL operations against the real MariaDB, without the engine: issue 11 findings 1 (a grant
// names exactly one database, wildcard grants migrate in place), 2 (nothing that exists is adopted
// unless the owner registry says it is this tenant's) and 7 (dropping a user ends its sessions).
import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_MYSQL_URL } from "../../test/support/services.ts";
import type { Props } from "./handler.ts";
import { databaseHandler, grantHandler, OWNER_REGISTRY, userHandler } from "./mysql-ops.ts";

const sfx = `m${randomBytes(3).toString("hex")}`;
const token = (): string => randomBytes(24).toString("hex");
// Tenants `<sfx>-ab` and `<sfx>xab`, and the name a future tenant `<sfx>qab` would get.
const A = `t_${sfx}_ab`;
const B = `t_${sfx}xab`;
const FUTURE = `t_${sfx}qab`;
const ownerA = `${sfx}-ab/${token()}`;
const ownerB = `${sfx}xab/${token()}`;
const names = (label: string): string => `t_${sfx}_${label}`;
const dropDbs = [A, B, FUTURE, ...["pre", "own", "mig", "del", "kill", "race"].map(names)];

let admin: mysql.Connection;
const url = new URL(TEST_MYSQL_URL);

function dbProps(name: string, owner: string): Props {
  return { serverUrl: TEST_MYSQL_URL, name, charset: "utf8mb4", owner };
}
function userProps(user: string, owner: string, password = "pw-" + token()): Props {
  return { serverUrl: TEST_MYSQL_URL, user, host: "%", password, maxConnections: 5, owner };
}
function grantProps(user: string, database: string, privileges = ["SELECT", "INSERT", "CREATE"]): Props {
  return { serverUrl: TEST_MYSQL_URL, user, host: "%", database, privileges, databaseMatch: "exact" };
}
function login(user: string, password: string): Promise<mysql.Connection> {
  return mysql.createConnection({ host: url.hostname, port: Number(url.port || 3306), user, password });
}
async function registryOwner(kind: string, name: string): Promise<string | undefined> {
  try {
    const [rows] = await admin.query<mysql.RowDataPacket[]>(`SELECT owner FROM ${OWNER_REGISTRY} WHERE kind = ? AND name = ?`, [kind, name]);
    return rows[0] ? String(rows[0].owner) : undefined;
  } catch {
    return undefined;
  }
}
async function grantDbs(user: string): Promise<string[]> {
  const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT Db FROM mysql.db WHERE User = ? ORDER BY Db", [user]);
  return rows.map((r) => String(r.Db));
}

beforeAll(async () => {
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  for (const db of dropDbs) {
    await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await admin.query("DROP USER IF EXISTS ?@'%'", [db]);
    await admin.query(`DELETE FROM ${OWNER_REGISTRY} WHERE name IN (?, ?)`, [db, `${db}@%`]).catch(() => undefined);
  }
  await admin.end();
});

describe("issue 11 finding 1: a grant names exactly one database", () => {
  it("tenant <sfx>-ab's login is refused on <sfx>xab's database and on a future tenant's name", async () => {
    await admin.query(`CREATE DATABASE \`${B}\``);
    await admin.query(`CREATE TABLE \`${B}\`.secret (v TEXT)`);
    await admin.query(`INSERT INTO \`${B}\`.secret VALUES ('b-only')`);
    const password = `pw-${token()}`;
    await databaseHandler.create(dbProps(A, ownerA));
    await userHandler.create(userProps(A, ownerA, password));
    await grantHandler.create(grantProps(A, A));
    const a = await login(A, password);
    try {
      await a.query(`CREATE TABLE \`${A}\`.notes (v TEXT)`);
      await a.query(`INSERT INTO \`${A}\`.notes VALUES ('mine')`);
      await expect(a.query(`SELECT * FROM \`${B}\`.secret`)).rejects.toMatchObject({ code: expect.stringMatching(/ACCESS_DENIED/) });
      await expect(a.query(`INSERT INTO \`${B}\`.secret VALUES ('x')`)).rejects.toMatchObject({ code: expect.stringMatching(/ACCESS_DENIED/) });
      await expect(a.query(`CREATE TABLE \`${B}\`.planted (v TEXT)`)).rejects.toMatchObject({ code: expect.stringMatching(/ACCESS_DENIED/) });
      await expect(a.query(`CREATE DATABASE \`${FUTURE}\``)).rejects.toMatchObject({ code: "ER_DBACCESS_DENIED_ERROR" });
    } finally {
      await a.end();
    }
    expect(await grantDbs(A)).toEqual([A.replace(/_/g, "\\_")]);
  });

  it("an existing wildcard grant migrates in place: read reports it, update revokes both spellings and grants the exact one", async () => {
    const user = names("mig");
    await databaseHandler.create(dbProps(user, ownerA));
    await userHandler.create(userProps(user, ownerA));
    // What the old code left: the unescaped (pattern) spelling, and no databaseMatch in the state.
    await admin.query(`GRANT SELECT, INSERT ON \`${user}\`.* TO ?@'%'`, [user]);
    const legacy: Props = { serverUrl: TEST_MYSQL_URL, user, host: "%", database: user, privileges: ["SELECT", "INSERT"] };
    const news: Props = { ...legacy, databaseMatch: "exact" };
    const diff = await grantHandler.diff(`${user}@%/${user}`, legacy, news);
    expect(diff).toMatchObject({ changes: true, replaces: [] });
    const live = await grantHandler.read(`${user}@%/${user}`, news);
    expect(live.props?.databaseMatch).not.toBe("exact");
    await grantHandler.update(`${user}@%/${user}`, legacy, news);
    expect(await grantDbs(user)).toEqual([user.replace(/_/g, "\\_")]);
    const after = await grantHandler.read(`${user}@%/${user}`, news);
    expect(after.props).toEqual(news);
    // A destroy of a stack that was never migrated still removes the old spelling.
    await admin.query(`GRANT SELECT ON \`${user}\`.* TO ?@'%'`, [user]);
    await grantHandler.delete(`${user}@%/${user}`, legacy);
    expect(await grantDbs(user)).toEqual([]);
  });
});

describe("issue 11 finding 2: an object that exists is adopted only when recorded as this tenant's", () => {
  it("an existing database with somebody else's tables is refused, and left as it was", async () => {
    const db = names("pre");
    await admin.query(`CREATE DATABASE \`${db}\``);
    await admin.query(`CREATE TABLE \`${db}\`.theirs (v TEXT)`);
    await expect(databaseHandler.create(dbProps(db, ownerA))).rejects.toThrow(/exists but is not recorded as this tenant's/);
    const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", [db]);
    expect(rows.map((r) => r.t)).toEqual(["theirs"]);
    expect(await registryOwner("database", db)).toBeUndefined();
  });

  it("an existing user is refused and keeps its password", async () => {
    const user = names("pre");
    await admin.query("CREATE USER ?@'%' IDENTIFIED BY 'their-password-1'", [user]);
    await expect(userHandler.create(userProps(user, ownerA))).rejects.toThrow(/exists but is not recorded as this tenant's/);
    const c = await login(user, "their-password-1");
    await c.end();
    // Any host counts: an account `user@localhost` would shadow `user@%` for local logins.
    await admin.query("DROP USER ?@'%'", [user]);
    await admin.query("CREATE USER ?@'localhost' IDENTIFIED BY 'their-password-1'", [user]);
    await expect(userHandler.create(userProps(user, ownerA))).rejects.toThrow(/exists but is not recorded as this tenant's/);
    await admin.query("DROP USER ?@'localhost'", [user]);
  });

  it("another owner's objects are refused; the same owner's earlier attempt is adopted (retry)", async () => {
    const name = names("own");
    await databaseHandler.create(dbProps(name, ownerA));
    await userHandler.create(userProps(name, ownerA));
    expect(await registryOwner("database", name)).toMatch(new RegExp(`^${sfx}-ab/[0-9a-f]{64}$`));
    await expect(databaseHandler.create(dbProps(name, ownerB))).rejects.toThrow(/recorded as owned by another tenant/);
    await expect(userHandler.create(userProps(name, ownerB))).rejects.toThrow(/recorded as owned by another tenant/);
    await expect(databaseHandler.update(name, dbProps(name, ownerB), dbProps(name, ownerB))).rejects.toThrow(/recorded as owned by another tenant/);
    await expect(databaseHandler.delete(name, dbProps(name, ownerB))).rejects.toThrow(/recorded as owned by another tenant/);
    // The same owner again: a crashed attempt of the same stack is picked up.
    await databaseHandler.create(dbProps(name, ownerA));
    await userHandler.create(userProps(name, ownerA));
    // A stack whose state holds the recorded owner may hand it to its new token.
    const ownerA2 = `${sfx}-ab/${token()}`;
    await databaseHandler.update(name, dbProps(name, ownerA), dbProps(name, ownerA2));
    expect(await registryOwner("database", name)).not.toBe(await registryOwner("user", `${name}@%`));
    await expect(databaseHandler.create(dbProps(name, ownerA))).rejects.toThrow(/recorded as owned by another tenant/);
  });

  it("a claim made but not followed by a create is finished by the same owner, refused to others", async () => {
    const name = names("race");
    await admin.query(`INSERT INTO ${OWNER_REGISTRY} (kind, name, owner) VALUES ('database', ?, 'someone/0000')`, [name]);
    await expect(databaseHandler.create(dbProps(name, ownerA))).rejects.toThrow(/recorded as owned by another tenant/);
    await admin.query(`DELETE FROM ${OWNER_REGISTRY} WHERE kind = 'database' AND name = ?`, [name]);
    await databaseHandler.create(dbProps(name, ownerA));
    await databaseHandler.delete(name, dbProps(name, ownerA));
  });

  it("update claims what the state already holds (migration of existing stacks), in place", async () => {
    const name = names("mig");
    await admin.query(`DELETE FROM ${OWNER_REGISTRY} WHERE name IN (?, ?)`, [name, `${name}@%`]);
    const oldDb: Props = { serverUrl: TEST_MYSQL_URL, name, charset: "utf8mb4" };
    const oldUser: Props = { serverUrl: TEST_MYSQL_URL, user: name, host: "%", password: "pw-legacy-123456", maxConnections: 5 };
    expect(await databaseHandler.diff(name, oldDb, dbProps(name, ownerA))).toMatchObject({ changes: true, replaces: [] });
    expect(await userHandler.diff(`${name}@%`, oldUser, { ...oldUser, owner: ownerA })).toMatchObject({ changes: true, replaces: [] });
    await databaseHandler.update(name, oldDb, dbProps(name, ownerA));
    await userHandler.update(`${name}@%`, oldUser, { ...oldUser, owner: ownerA });
    expect(await registryOwner("database", name)).toMatch(/^m[0-9a-f]{6}-ab\//);
    expect(await registryOwner("user", `${name}@%`)).toMatch(/^m[0-9a-f]{6}-ab\//);
    await expect(userHandler.update(`${name}@%`, oldUser, { ...oldUser, owner: ownerB })).rejects.toThrow(/recorded as owned by another tenant/);
  });

  it("delete removes the object, then its registry row; the name is then free", async () => {
    const name = names("del");
    await databaseHandler.create(dbProps(name, ownerA));
    await userHandler.create(userProps(name, ownerA));
    await databaseHandler.delete(name, dbProps(name, ownerA));
    await userHandler.delete(`${name}@%`, userProps(name, ownerA));
    expect(await registryOwner("database", name)).toBeUndefined();
    expect(await registryOwner("user", `${name}@%`)).toBeUndefined();
    await databaseHandler.create(dbProps(name, ownerB));
    await userHandler.create(userProps(name, ownerB));
  });
});

describe("issue 11 finding 7: deprovision cuts the tenant's sessions", () => {
  it("deleting a user kills its open sessions", async () => {
    const name = names("kill");
    const password = `pw-${token()}`;
    await databaseHandler.create(dbProps(name, ownerA));
    await userHandler.create(userProps(name, ownerA, password));
    await grantHandler.create(grantProps(name, name));
    const session = await login(name, password);
    session.on("error", () => undefined);
    await session.query("SELECT 1");
    await userHandler.delete(`${name}@%`, userProps(name, ownerA, password));
    await expect(session.query(`SELECT * FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${name}'`)).rejects.toThrow();
    const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", [name]);
    expect(rows).toEqual([]);
    session.destroy();
  });
});
