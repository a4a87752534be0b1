// MySQL/MariaDB operations behind the dynamic providers: a database, a user, and the user's
// grants on that database. Loaded with require() inside the dynamic-provider host, so it holds
// the real mysql2 code while the serialized provider captures only this file's path.
// Nothing that exists is adopted unless the owner registry (`_stackrail`.`owners`, written only by
// the admin connection) names this stack as its owner; deleting what is gone succeeds.
import { createHash } from "node:crypto";
import mysql from "mysql2/promise";
import { ALLOWED_PRIVILEGES, SQL_NAME_PATTERN } from "../../core/naming.ts";
import { CHANGED_OUTSIDE, diffProps, gone, notRecordedError, num, ownedByOtherError, ownerOf, str, strings, type Handler, type Props } from "./handler.ts";

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
const ER_DB_CREATE_EXISTS = 1007;
const ER_CANNOT_USER = 1396;
const ER_DUP_ENTRY = 1062;
const ER_NO_SUCH_THREAD = 1094;
const ER_KILL_DENIED = 1095;

// --- owner registry -------------------------------------------------------------------------------

/**
 * Which stack owns which database and account on this server. Its schema starts with `_`: tenant
 * grants name `t_…`, `s_…` or `p_…` databases, and even the wildcard spelling older versions
 * granted (`_` matching any character) cannot reach a name whose first character is `_`.
 */
const OWNER_SCHEMA = "_stackrail";
export const OWNER_REGISTRY = `\`${OWNER_SCHEMA}\`.\`owners\``;

type OwnedKind = "database" | "user";
const WHAT: Record<OwnedKind, string> = { database: "database", user: "database user" };

/** Servers whose registry this process already made sure of (one provider host per engine run). */
const registryReady = new Set<string>();

async function ensureRegistry(c: mysql.Connection, serverUrl: string): Promise<void> {
  if (registryReady.has(serverUrl)) return;
  // The admin's own schema, so IF NOT EXISTS adopts nothing of a tenant's.
  await c.query(`CREATE DATABASE IF NOT EXISTS \`${OWNER_SCHEMA}\` CHARACTER SET ascii COLLATE ascii_bin`);
  await c.query(
    `CREATE TABLE IF NOT EXISTS ${OWNER_REGISTRY} (
       kind VARCHAR(16) NOT NULL,
       name VARCHAR(255) NOT NULL,
       owner VARCHAR(128) NOT NULL,
       created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
       PRIMARY KEY (kind, name)
     ) CHARACTER SET ascii COLLATE ascii_bin`,
  );
  registryReady.add(serverUrl);
}

async function recordedOwner(c: mysql.Connection, kind: OwnedKind, name: string): Promise<string | undefined> {
  const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT owner FROM ${OWNER_REGISTRY} WHERE kind = ? AND name = ?`, [kind, name]);
  return rows[0] ? String(rows[0].owner) : undefined;
}

/**
 * Makes `owner` the recorded owner of `name` before anything is created or changed. `fresh` is
 * true when this call recorded it (a create must then make the object, not find it); false when
 * the registry already named this owner (an earlier attempt of the same stack, picked up again).
 * `previous` is the owner the resource's state held: a stack whose token changed keeps what it had.
 * `exists` is asked only when nothing is recorded and the object may not be adopted (create).
 */
async function claim(
  c: mysql.Connection,
  kind: OwnedKind,
  name: string,
  owner: string,
  options: { exists?: () => Promise<boolean>; previous?: string },
): Promise<{ fresh: boolean }> {
  const current = await recordedOwner(c, kind, name);
  if (current === owner) return { fresh: false };
  if (current !== undefined) {
    if (options.previous === undefined || current !== options.previous) throw ownedByOtherError(WHAT[kind], name);
    await c.query(`UPDATE ${OWNER_REGISTRY} SET owner = ? WHERE kind = ? AND name = ? AND owner = ?`, [owner, kind, name, current]);
    return claim(c, kind, name, owner, {});
  }
  if (options.exists && (await options.exists())) throw notRecordedError(WHAT[kind], name);
  try {
    // The primary key decides a race between two stacks claiming the same name.
    await c.query(`INSERT INTO ${OWNER_REGISTRY} (kind, name, owner) VALUES (?, ?, ?)`, [kind, name, owner]);
  } catch (err) {
    if (errno(err) !== ER_DUP_ENTRY) throw err;
    if ((await recordedOwner(c, kind, name)) !== owner) throw ownedByOtherError(WHAT[kind], name);
    return { fresh: false };
  }
  return { fresh: true };
}

/** Undoes a claim this call just made, when the object turned out to exist after all. */
async function release(c: mysql.Connection, kind: OwnedKind, name: string, owner: string): Promise<void> {
  await c.query(`DELETE FROM ${OWNER_REGISTRY} WHERE kind = ? AND name = ? AND owner = ?`, [kind, name, owner]);
}

/**
 * Before a delete: the object may go when the registry names this resource's owner, or names
 * nobody (state written before owners existed). Returns the record to remove afterwards.
 */
async function mayDelete(c: mysql.Connection, kind: OwnedKind, name: string, props: Props): Promise<string | undefined> {
  const current = await recordedOwner(c, kind, name);
  if (current !== undefined && current !== ownerOf(props)) throw ownedByOtherError(WHAT[kind], name);
  return current;
}

function required(props: Props): string {
  const owner = ownerOf(props);
  if (owner === undefined) throw new Error("input owner must be <key>/<token>");
  return owner;
}

async function ignoreGone(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (!GONE.has(errno(err) ?? 0)) throw err;
  }
}

async function databaseExists(c: mysql.Connection, name: string): Promise<boolean> {
  const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [name]);
  return rows.length > 0;
}

export const databaseHandler: Handler = {
  async create(inputs) {
    const name = str(inputs, "name");
    const db = sqlName(name);
    const owner = required(inputs);
    const serverUrl = str(inputs, "serverUrl");
    await withConnection(serverUrl, async (c) => {
      await ensureRegistry(c, serverUrl);
      const { fresh } = await claim(c, "database", name, owner, { exists: () => databaseExists(c, name) });
      if (!fresh) {
        await c.query(`CREATE DATABASE IF NOT EXISTS ${db} CHARACTER SET ${charset(inputs)}`);
        return;
      }
      try {
        // No IF NOT EXISTS: one made since the check above is somebody else's.
        await c.query(`CREATE DATABASE ${db} CHARACTER SET ${charset(inputs)}`);
      } catch (err) {
        if (errno(err) !== ER_DB_CREATE_EXISTS) throw err;
        await release(c, "database", name, owner);
        throw notRecordedError(WHAT.database, name);
      }
    });
    return { id: name, outs: inputs };
  },
  diff(_id, olds, news) {
    // `owner` is not a replace key: adding it to an existing stack claims in place.
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "name"]));
  },
  async update(_id, olds, news) {
    const name = str(news, "name");
    const serverUrl = str(news, "serverUrl");
    await withConnection(serverUrl, async (c) => {
      await ensureRegistry(c, serverUrl);
      // The state says this stack made it: claim what is not recorded (stacks from before owners).
      await claim(c, "database", name, required(news), { previous: ownerOf(olds) });
      await c.query(`CREATE DATABASE IF NOT EXISTS ${sqlName(name)} CHARACTER SET ${charset(news)}`);
      await c.query(`ALTER DATABASE ${sqlName(name)} CHARACTER SET ${charset(news)}`);
    });
    return { outs: news };
  },
  async delete(_id, props) {
    const name = str(props, "name");
    const serverUrl = str(props, "serverUrl");
    await withConnection(serverUrl, async (c) => {
      await ensureRegistry(c, serverUrl);
      const recorded = await mayDelete(c, "database", name, props);
      await c.query(`DROP DATABASE IF EXISTS ${sqlName(name)}`);
      if (recorded !== undefined) await release(c, "database", name, recorded);
    });
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

function account(props: Props): { user: string; host: string; registryName: string } {
  const user = str(props, "user");
  sqlName(user);
  const h = host(props);
  return { user, host: h, registryName: `${user}@${h}` };
}

/**
 * Whether an account with this user name exists that is not recorded as `owner`'s, on any host:
 * `name@localhost` made by somebody else would win over `name@%` for local logins.
 */
async function foreignAccount(c: mysql.Connection, user: string, owner: string): Promise<boolean> {
  const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT Host AS h FROM mysql.user WHERE User = ?", [user]);
  for (const row of rows) {
    if ((await recordedOwner(c, "user", `${user}@${String(row.h)}`)) !== owner) return true;
  }
  return false;
}

async function setPasswordAndLimits(c: mysql.Connection, props: Props): Promise<void> {
  const { user, host: h } = account(props);
  const maxConnections = Math.trunc(num(props, "maxConnections"));
  await c.query(`ALTER USER ?@? IDENTIFIED BY ? WITH MAX_USER_CONNECTIONS ${maxConnections}`, [user, h, str(props, "password")]);
}

/** Ends every session of `user` (sessions outlive DROP USER, and keep what they had opened). */
async function killSessions(c: mysql.Connection, user: string): Promise<void> {
  const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ?", [user]);
  for (const row of rows) {
    const id = Math.trunc(Number(row.id));
    try {
      await c.query(`KILL CONNECTION ${id}`);
    } catch (err) {
      if (errno(err) === ER_NO_SUCH_THREAD) continue; // ended meanwhile
      if (errno(err) !== ER_KILL_DENIED) throw err;
      // RDS and Aurora admins kill other users' sessions through this procedure.
      await c.query("CALL mysql.rds_kill(?)", [id]);
    }
  }
}

export const userHandler: Handler = {
  async create(inputs) {
    const { user, host: h, registryName } = account(inputs);
    const owner = required(inputs);
    const serverUrl = str(inputs, "serverUrl");
    await withConnection(serverUrl, async (c) => {
      await ensureRegistry(c, serverUrl);
      const { fresh } = await claim(c, "user", registryName, owner, { exists: () => foreignAccount(c, user, owner) });
      try {
        // No IF NOT EXISTS for a fresh claim: an account made since the check is somebody else's.
        await c.query(`CREATE USER ${fresh ? "" : "IF NOT EXISTS "}?@? IDENTIFIED BY ?`, [user, h, str(inputs, "password")]);
      } catch (err) {
        if (errno(err) !== ER_CANNOT_USER) throw err;
        await release(c, "user", registryName, owner);
        throw notRecordedError(WHAT.user, registryName);
      }
      await setPasswordAndLimits(c, inputs);
    });
    return { id: registryName, outs: inputs };
  },
  diff(_id, olds, news) {
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "user", "host"]));
  },
  async update(_id, olds, news) {
    const { user, host: h, registryName } = account(news);
    const serverUrl = str(news, "serverUrl");
    await withConnection(serverUrl, async (c) => {
      await ensureRegistry(c, serverUrl);
      await claim(c, "user", registryName, required(news), { previous: ownerOf(olds) });
      await c.query("CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?", [user, h, str(news, "password")]);
      await setPasswordAndLimits(c, news);
    });
    return { outs: news };
  },
  async delete(_id, props) {
    const { user, host: h, registryName } = account(props);
    const serverUrl = str(props, "serverUrl");
    await withConnection(serverUrl, async (c) => {
      await ensureRegistry(c, serverUrl);
      const recorded = await mayDelete(c, "user", registryName, props);
      // Sessions first (no new statement runs as the tenant), then the account (no new login),
      // then whatever logged in between the two.
      await killSessions(c, user);
      await ignoreGone(() => c.query("DROP USER IF EXISTS ?@?", [user, h]));
      const [others] = await c.query<mysql.RowDataPacket[]>("SELECT 1 FROM mysql.user WHERE User = ?", [user]);
      if (others.length === 0) await killSessions(c, user);
      if (recorded !== undefined) await release(c, "user", registryName, recorded);
    });
  },
  async read(id, props) {
    const { user, host: h } = account(props);
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

/**
 * In GRANT and REVOKE a database name is a pattern: `_` and `%` match any character, so
 * `t_sp_ab`.* would also grant `t_spxab` (tenant `spxab`) and let the tenant create `t_spqab`.
 * Escaped, the grant names exactly one database.
 */
export function exactGrantName(database: string): string {
  sqlName(database);
  return database.replace(/[\\_%]/g, (ch) => `\\${ch}`);
}

function exactGrantTarget(database: string): string {
  return `\`${exactGrantName(database)}\``;
}

/** The unescaped (pattern) spelling older versions granted; only ever revoked. */
function patternGrantTarget(database: string): string {
  return sqlName(database);
}

function grantProps(props: Props): { user: string; host: string; database: string } {
  const user = str(props, "user");
  sqlName(user);
  const database = str(props, "database");
  sqlName(database);
  // Only exact grants are made; the input exists so that stacks from before it update in place.
  if (props.databaseMatch !== undefined && props.databaseMatch !== "exact") throw new Error('input databaseMatch must be "exact"');
  return { user, host: host(props), database };
}

async function revokeBothSpellings(c: mysql.Connection, user: string, h: string, database: string): Promise<void> {
  for (const target of [exactGrantTarget(database), patternGrantTarget(database)]) {
    await ignoreGone(() => c.query(`REVOKE ALL PRIVILEGES ON ${target}.* FROM ?@?`, [user, h]));
    await ignoreGone(() => c.query(`REVOKE GRANT OPTION ON ${target}.* FROM ?@?`, [user, h]));
  }
}

async function applyGrant(props: Props): Promise<void> {
  const { user, host: h, database } = grantProps(props);
  const privs = privileges(props);
  await withConnection(str(props, "serverUrl"), async (c) => {
    // Replace the grant set on this one database (either spelling); grants elsewhere are never touched.
    await revokeBothSpellings(c, user, h, database);
    await c.query(`GRANT ${privs} ON ${exactGrantTarget(database)}.* TO ?@?`, [user, h]);
  });
}

export const grantHandler: Handler = {
  async create(inputs) {
    await applyGrant(inputs);
    return { id: `${str(inputs, "user")}@${host(inputs)}/${str(inputs, "database")}`, outs: inputs };
  },
  diff(_id, olds, news) {
    // A new `databaseMatch` is an in-place update: it revokes the pattern spelling, grants the exact one.
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "user", "host", "database"]));
  },
  async update(_id, _olds, news) {
    await applyGrant(news);
    return { outs: news };
  },
  async delete(_id, props) {
    const { user, host: h, database } = grantProps(props);
    await withConnection(str(props, "serverUrl"), (c) => revokeBothSpellings(c, user, h, database));
  },
  async read(id, props) {
    const { user, host: h, database } = grantProps(props);
    const exact = exactGrantName(database);
    const [rows] = await withConnection(str(props, "serverUrl"), (c) =>
      c.query<mysql.RowDataPacket[]>(
        "SELECT TABLE_SCHEMA AS db, PRIVILEGE_TYPE AS p, IS_GRANTABLE AS g FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA IN (?, ?)",
        [`'${user}'@'${h}'`, exact, database],
      ),
    );
    if (rows.length === 0) return gone();
    const live = new Set(rows.map((r) => String(r.p)));
    if (rows.some((r) => r.g === "YES")) live.add("GRANT OPTION");
    const declared = Array.isArray(props.privileges) ? (props.privileges as unknown[]).map(String) : [];
    const out: Props = { ...props };
    if (live.size !== declared.length || !declared.every((p) => live.has(p))) out.privileges = canonicalOrder([...live]);
    // A grant in the pattern spelling also matches other databases: drift the next `up` repairs.
    if (exact !== database && rows.some((r) => String(r.db) === database)) out.databaseMatch = "pattern";
    return { id, props: out };
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
