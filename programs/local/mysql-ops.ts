// MySQL/MariaDB operations behind the dynamic providers: a database, a user, and the user's
// grants on that database. Loaded with require() inside the dynamic-provider host, so it holds
// the real mysql2 code while the serialized provider captures only this file's path.
// Every statement is idempotent: creating what exists adopts it, deleting what is gone succeeds.
import { createHash } from "node:crypto";
import mysql from "mysql2/promise";
import { ALLOWED_PRIVILEGES, SQL_NAME_PATTERN } from "../naming.ts";
import { CHANGED_OUTSIDE, diffProps, gone, num, str, strings, type Handler, type Props } from "./handler.ts";

const HOST_PATTERN = /^(%|localhost|[0-9a-fA-F.:%]+|[a-z0-9.-]+)$/;

function sqlName(value: string): string {
  if (!SQL_NAME_PATTERN.test(value)) throw new Error(`unsafe SQL identifier: ${JSON.stringify(value)}`);
  return `\`${value}\``;
}

function host(props: Props): string {
  const h = str(props, "host");
  if (!HOST_PATTERN.test(h)) throw new Error(`unsafe host pattern: ${JSON.stringify(h)}`);
  return h;
}

function privileges(props: Props): string {
  const list = strings(props, "privileges");
  if (list.length === 0) throw new Error("privileges must not be empty");
  for (const p of list) {
    if (!(ALLOWED_PRIVILEGES as readonly string[]).includes(p)) throw new Error(`privilege not allowed for a tenant user: ${p}`);
  }
  return list.join(", ");
}

async function withConnection<T>(serverUrl: string, fn: (conn: mysql.Connection) => Promise<T>): Promise<T> {
  const conn = await mysql.createConnection({ uri: serverUrl, connectTimeout: 10_000, multipleStatements: false });
  try {
    return await fn(conn);
  } finally {
    await conn.end();
  }
}

function errno(err: unknown): number | undefined {
  return (err as { errno?: number }).errno;
}

// ER_NONEXISTING_GRANT, ER_NONEXISTING_TABLE_GRANT, ER_CANNOT_USER, ER_PASSWORD_NO_MATCH: already gone.
const GONE = new Set([1141, 1147, 1396, 1133]);

async function ignoreGone(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (!GONE.has(errno(err) ?? 0)) throw err;
  }
}

export const databaseHandler: Handler = {
  async create(inputs) {
    const name = str(inputs, "name");
    await withConnection(str(inputs, "serverUrl"), (c) => c.query(`CREATE DATABASE IF NOT EXISTS ${sqlName(name)} CHARACTER SET ${charset(inputs)}`));
    return { id: name, outs: inputs };
  },
  diff(_id, olds, news) {
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "name"]));
  },
  async update(_id, _olds, news) {
    await withConnection(str(news, "serverUrl"), async (c) => {
      await c.query(`CREATE DATABASE IF NOT EXISTS ${sqlName(str(news, "name"))} CHARACTER SET ${charset(news)}`);
      await c.query(`ALTER DATABASE ${sqlName(str(news, "name"))} CHARACTER SET ${charset(news)}`);
    });
    return { outs: news };
  },
  async delete(_id, props) {
    await withConnection(str(props, "serverUrl"), (c) => c.query(`DROP DATABASE IF EXISTS ${sqlName(str(props, "name"))}`));
  },
  async read(id, props) {
    const name = str(props, "name");
    sqlName(name);
    const [rows] = await withConnection(str(props, "serverUrl"), (c) =>
      c.query<mysql.RowDataPacket[]>("SELECT DEFAULT_CHARACTER_SET_NAME AS cs FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [name]),
    );
    const row = rows[0];
    if (!row) return gone();
    const cs = String(row.cs);
    return { id, props: cs === props.charset ? props : { ...props, charset: cs } };
  },
};

function charset(props: Props): string {
  const cs = str(props, "charset");
  if (!/^[a-z0-9_]{1,32}$/.test(cs)) throw new Error(`unsafe charset: ${cs}`);
  return cs;
}

async function applyUser(props: Props): Promise<void> {
  const user = str(props, "user");
  sqlName(user);
  const h = host(props);
  const password = str(props, "password");
  const maxConnections = Math.trunc(num(props, "maxConnections"));
  await withConnection(str(props, "serverUrl"), async (c) => {
    await c.query("CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?", [user, h, password]);
    // Adopts a user that already existed: its password and limits become the declared ones.
    await c.query(`ALTER USER ?@? IDENTIFIED BY ? WITH MAX_USER_CONNECTIONS ${maxConnections}`, [user, h, password]);
  });
}

export const userHandler: Handler = {
  async create(inputs) {
    await applyUser(inputs);
    return { id: `${str(inputs, "user")}@${host(inputs)}`, outs: inputs };
  },
  diff(_id, olds, news) {
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "user", "host"]));
  },
  async update(_id, _olds, news) {
    await applyUser(news);
    return { outs: news };
  },
  async delete(_id, props) {
    await withConnection(str(props, "serverUrl"), async (c) => {
      await ignoreGone(() => c.query("DROP USER IF EXISTS ?@?", [str(props, "user"), host(props)]));
    });
  },
  async read(id, props) {
    const user = str(props, "user");
    sqlName(user);
    const h = host(props);
    const [rows] = await withConnection(str(props, "serverUrl"), (c) =>
      c.query<mysql.RowDataPacket[]>(
        "SELECT plugin, authentication_string AS auth, max_user_connections AS maxConn FROM mysql.user WHERE User = ? AND Host = ?",
        [user, h],
      ),
    );
    const row = rows[0];
    if (!row) return gone();
    const live: Props = { ...props, maxConnections: Number(row.maxConn) };
    if (!passwordMatches(props.password, String(row.plugin ?? ""), String(row.auth ?? ""))) live.password = CHANGED_OUTSIDE;
    return { id, props: live };
  },
};

/**
 * Whether the account still has the password in state. Only checkable for the unsalted native
 * hash (MariaDB's default); any other plugin's hash is salted, and is then taken as matching.
 */
function passwordMatches(password: unknown, plugin: string, auth: string): boolean {
  if (typeof password !== "string") return true;
  if (plugin !== "mysql_native_password" && plugin !== "") return true;
  if (!/^\*[0-9A-F]{40}$/i.test(auth)) return true;
  const stage1 = createHash("sha1").update(password, "utf8").digest();
  const native = `*${createHash("sha1").update(stage1).digest("hex").toUpperCase()}`;
  return native === auth.toUpperCase();
}

async function applyGrant(props: Props): Promise<void> {
  const user = str(props, "user");
  sqlName(user);
  const h = host(props);
  const db = sqlName(str(props, "database"));
  const privs = privileges(props);
  await withConnection(str(props, "serverUrl"), async (c) => {
    // Replace the grant set on this one database; grants anywhere else are never touched.
    await ignoreGone(() => c.query(`REVOKE ALL PRIVILEGES ON ${db}.* FROM ?@?`, [user, h]));
    await ignoreGone(() => c.query(`REVOKE GRANT OPTION ON ${db}.* FROM ?@?`, [user, h]));
    await c.query(`GRANT ${privs} ON ${db}.* TO ?@?`, [user, h]);
  });
}

export const grantHandler: Handler = {
  async create(inputs) {
    await applyGrant(inputs);
    return { id: `${str(inputs, "user")}@${host(inputs)}/${str(inputs, "database")}`, outs: inputs };
  },
  diff(_id, olds, news) {
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "user", "host", "database"]));
  },
  async update(_id, _olds, news) {
    await applyGrant(news);
    return { outs: news };
  },
  async delete(_id, props) {
    await withConnection(str(props, "serverUrl"), async (c) => {
      await ignoreGone(() => c.query(`REVOKE ALL PRIVILEGES ON ${sqlName(str(props, "database"))}.* FROM ?@?`, [str(props, "user"), host(props)]));
    });
  },
  async read(id, props) {
    const user = str(props, "user");
    sqlName(user);
    const h = host(props);
    const database = str(props, "database");
    sqlName(database);
    // A grant may be stored with its wildcard `_` escaped; both spellings name this database.
    const [rows] = await withConnection(str(props, "serverUrl"), (c) =>
      c.query<mysql.RowDataPacket[]>(
        "SELECT PRIVILEGE_TYPE AS p, IS_GRANTABLE AS g FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA IN (?, ?)",
        [`'${user}'@'${h}'`, database, database.replace(/_/g, "\\_")],
      ),
    );
    if (rows.length === 0) return gone();
    const live = new Set(rows.map((r) => String(r.p)));
    if (rows.some((r) => r.g === "YES")) live.add("GRANT OPTION");
    const declared = Array.isArray(props.privileges) ? (props.privileges as unknown[]).map(String) : [];
    if (live.size === declared.length && declared.every((p) => live.has(p))) return { id, props };
    return { id, props: { ...props, privileges: canonicalOrder([...live]) } };
  },
};

/** Privileges in the order tenant grants are declared in; anything else after them, sorted. */
function canonicalOrder(list: string[]): string[] {
  const rank = (p: string): number => {
    const i = (ALLOWED_PRIVILEGES as readonly string[]).indexOf(p);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return [...list].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}
