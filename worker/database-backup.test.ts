// Issue 11 finding 1 in the backup code: whether a tenant's database exists is an exact comparison,
// not a LIKE pattern in which `_` matches any character.
import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_MYSQL_URL } from "../test/support/services.ts";
import { databaseExists } from "./database-backup.ts";

const sfx = `b${randomBytes(3).toString("hex")}`;
const other = `t_${sfx}xab`;
let admin: mysql.Connection;

beforeAll(async () => {
  admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  await admin.query(`CREATE DATABASE \`${other}\``);
});
afterAll(async () => {
  await admin.query(`DROP DATABASE IF EXISTS \`${other}\``);
  await admin.end();
});

describe("issue 11 finding 1: backup existence check", () => {
  it("tenant <sfx>-ab's database does not exist because <sfx>xab's does", async () => {
    expect(await databaseExists(TEST_MYSQL_URL, `t_${sfx}_ab`)).toBe(false);
    expect(await databaseExists(TEST_MYSQL_URL, other)).toBe(true);
  });
});
