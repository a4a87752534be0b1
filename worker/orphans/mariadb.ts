// MariaDB (local target) against the records: databases and accounts in the tenant and preview
// name spaces (`t_`, `s_`, `p_`) and the ownership registry (`_stackrail`.`owners`, written by
// programs/local/mysql-ops.ts), in both directions.
import mysql from "mysql2/promise";
import { OWNER_REGISTRY } from "../../programs/local/mysql-ops.ts";
import { SQL_NAME_PATTERN } from "../../core/naming.ts";
import type { AuditContext } from "./context.ts";
import { finding, findingId } from "../../jobs/orphan-report.ts";

const NAME_SPACE = /^[tsp]_/;
const ER_NO_SUCH_TABLE = 1146;
const ER_BAD_DB_ERROR = 1049;

interface RegistryRow {
  readonly kind: "database" | "user";
  readonly name: string;
  /** The key part of the recorded owner (`<key>/<digest>`): whose it is. */
  readonly ownerKey: string;
}

function sqlString(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function dropDatabase(name: string): string {
  return `SQL as the server's admin: DROP DATABASE \`${name}\`; DELETE FROM ${OWNER_REGISTRY} WHERE kind = 'database' AND name = ${sqlString(name)};`;
}

function dropUser(user: string, host: string): string {
  return `SQL as the server's admin: DROP USER ${sqlString(user)}@${sqlString(host)}; DELETE FROM ${OWNER_REGISTRY} WHERE kind = 'user' AND name = ${sqlString(`${user}@${host}`)};`;
}

async function readRegistry(c: mysql.Connection): Promise<RegistryRow[]> {
  try {
    const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT kind, name, owner FROM ${OWNER_REGISTRY}`);
    return rows
      .filter((r) => r.kind === "database" || r.kind === "user")
      .map((r) => ({ kind: r.kind as "database" | "user", name: String(r.name), ownerKey: String(r.owner).split("/")[0] ?? "" }));
  } catch (err) {
    // No registry yet: nothing was ever made through the owner-checking providers on this server.
    const errno = (err as { errno?: number }).errno;
    if (errno === ER_NO_SUCH_TABLE || errno === ER_BAD_DB_ERROR) return [];
    throw err;
  }
}

export async function checkMariaDb(ctx: AuditContext, mysqlUrl: string): Promise<void> {
  const c = await mysql.createConnection({ uri: mysqlUrl, connectTimeout: 10_000 });
  try {
    const [dbRows] = await c.query<mysql.RowDataPacket[]>("SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA");
    const databases = new Set(dbRows.map((r) => String(r.name)).filter((n) => NAME_SPACE.test(n) && SQL_NAME_PATTERN.test(n)));
    const [userRows] = await c.query<mysql.RowDataPacket[]>("SELECT User AS user, Host AS host FROM mysql.user");
    const accounts = userRows
      .map((r) => ({ user: String(r.user), host: String(r.host) }))
      .filter((a) => NAME_SPACE.test(a.user) && SQL_NAME_PATTERN.test(a.user));
    const registry = await readRegistry(c);
    const recorded = new Map(registry.map((r) => [`${r.kind}:${r.name}`, r]));

    for (const name of databases) {
      const side = ctx.names.database(name, recorded.get(`database:${name}`)?.ownerKey);
      if (!ctx.inScope(side)) continue;
      const owner = ctx.owner(side);
      if (!owner.owned) {
        ctx.add(
          finding("database", name, "unowned", ctx.repairFor(side, dropDatabase(name)), {
            ...(owner.owner
              ? { owner: owner.owner }
              : recorded.has(`database:${name}`)
                ? { owner: `registry: ${recorded.get(`database:${name}`)?.ownerKey}` }
                : {}),
            detail: owner.why,
          }),
          side,
        );
      } else if (!recorded.has(`database:${name}`)) {
        ctx.add(
          finding("database", name, "unregistered", ctx.reRecord(side, findingId("database", name)), {
            owner: owner.owner,
            detail: `no row in ${OWNER_REGISTRY}: another stack could not adopt it, but its owner is not on record`,
          }),
          side,
        );
      }
    }
    for (const { user, host } of accounts) {
      const account = `${user}@${host}`;
      const side = ctx.names.dbUser(user, recorded.get(`user:${account}`)?.ownerKey);
      if (!ctx.inScope(side)) continue;
      const owner = ctx.owner(side);
      if (!owner.owned) {
        ctx.add(
          finding("database-user", account, "unowned", ctx.repairFor(side, dropUser(user, host)), {
            ...(owner.owner
              ? { owner: owner.owner }
              : recorded.has(`user:${account}`)
                ? { owner: `registry: ${recorded.get(`user:${account}`)?.ownerKey}` }
                : {}),
            detail: owner.why,
          }),
          side,
        );
      } else if (!recorded.has(`user:${account}`)) {
        ctx.add(
          finding("database-user", account, "unregistered", ctx.reRecord(side, findingId("database-user", account)), {
            owner: owner.owner,
            detail: `no row in ${OWNER_REGISTRY}`,
          }),
          side,
        );
      }
    }
    // Registry rows whose object is gone: the owner's object is missing (reported below), or nobody's.
    const accountNames = new Set(accounts.map((a) => `${a.user}@${a.host}`));
    for (const row of registry) {
      const exists = row.kind === "database" ? databases.has(row.name) : accountNames.has(row.name);
      if (exists) continue;
      const side = row.kind === "database" ? ctx.names.database(row.name, row.ownerKey) : ctx.names.dbUser(row.name.split("@")[0] ?? "", row.ownerKey);
      if (!ctx.inScope(side)) continue;
      if (ctx.owner(side).owned) continue; // the object itself is reported missing for its owner
      ctx.add(
        finding("database-owner-row", `${row.kind}:${row.name}`, "stale-registry", `npm run orphans -- --repair database-owner-row:${row.kind}:${row.name}`, {
          owner: `registry: ${row.ownerKey}`,
          detail: `its ${row.kind === "database" ? "database" : "account"} is gone and no record owns ${row.ownerKey}; SQL: DELETE FROM ${OWNER_REGISTRY} WHERE kind = '${row.kind}' AND name = ${sqlString(row.name)};`,
        }),
        side,
      );
    }
    // Owned but missing: what an active tenant's (or committed preview's) records say exists.
    for (const expected of ctx.expected()) {
      const { names, owner } = expected;
      const account = `${names.dbUser}@%`;
      if (!databases.has(names.database)) {
        ctx.add(
          finding("database", names.database, "missing", expected.repairMissing(findingId("database", names.database)), {
            owner,
            detail: "the record says it exists; the server has no such database",
          }),
          expected.subject,
        );
      }
      if (!accountNames.has(account)) {
        ctx.add(
          finding("database-user", account, "missing", expected.repairMissing(findingId("database-user", account)), {
            owner,
            detail: "the record says it exists; the server has no such account",
          }),
          expected.subject,
        );
      }
    }
  } finally {
    await c.end();
  }
}
