// Names of the per-tenant logical resources, derived from ids that already passed core/ids.ts.
// One place decides them so the programs, the tests, the worker and the edge (tenant-names.ts) agree, and so
// every name that reaches SQL or a Redis ACL rule is checked against a strict pattern here.
import { createHash } from "node:crypto";

/** MySQL 8 / Aurora limit user names to 32 characters; MariaDB allows 80. Use the smaller. */
const MYSQL_USER_MAX = 32;
const MYSQL_DB_MAX = 64;

export const SQL_NAME_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;
/** What a tenant user may be granted on its own database; nothing global, nothing with GRANT OPTION. */
export const ALLOWED_PRIVILEGES = [
  "SELECT",
  "INSERT",
  "UPDATE",
  "DELETE",
  "CREATE",
  "DROP",
  "INDEX",
  "ALTER",
  "CREATE TEMPORARY TABLES",
  "LOCK TABLES",
  "EXECUTE",
  "CREATE VIEW",
  "SHOW VIEW",
  "CREATE ROUTINE",
  "ALTER ROUTINE",
  "EVENT",
  "TRIGGER",
  "REFERENCES",
] as const;
export type AllowedPrivilege = (typeof ALLOWED_PRIVILEGES)[number];

export const REDIS_USER_PATTERN = /^[a-z][a-z0-9:_-]{0,79}$/;

/** 80 bits: finding another key with the same hash (a targeted collision) is out of reach. */
const HASH_HEX = 20;

function keyHash(value: string): string {
  return createHash("sha256").update(value).digest("hex").slice(0, HASH_HEX);
}

/**
 * Names over `max` keep a readable head and end in `_<hash>_`. The trailing `_` is the marker:
 * an untruncated name ends in the key's last character, never `_` (keys end in [a-z0-9]), so no
 * key, present or future, spells a truncated name; two truncated names meet only if their keys'
 * 80-bit hashes do. Names that fit are unchanged (existing stacks keep theirs).
 */
function fit(name: string, max: number, key: string): string {
  if (name.length <= max) return name;
  return `${name.slice(0, max - HASH_HEX - 2)}_${keyHash(key)}_`;
}

export type Scope = "tenant" | "silo" | "preview";

/** Tenant ids and preview keys (`<repo>-pr-<n>`) as names are derived from them. */
const KEY_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$/;

/** The logical names of one tenant (or preview environment) on its servers. */
export interface LogicalNames {
  /** What the names are derived from: a tenant id or a preview key (`<repo>-pr-<n>`). */
  readonly key: string;
  readonly database: string;
  readonly dbUser: string;
  /**
   * Prefix of the stack's resource names. The MySQL user name, except for ids over 30 characters:
   * there it is the user name versions before issue 11 derived, so existing stacks keep their
   * resources (and passwords) and only the MySQL user is renamed.
   */
  readonly label: string;
  readonly cacheUser: string;
  /** Every key the tenant may touch starts with this, e.g. `t:acme:`. */
  readonly keyPrefix: string;
  /** Relative folder for attachments under the data dir (local) or the EFS root (aws). */
  readonly attachmentsDir: string;
}

/**
 * Pool tenants: `t_<id>` on the shared servers. Silo tenants: `s_<id>`, their own name space
 * (on their own servers when configured), so a move between tiers provisions the target side
 * next to the source and cuts over, keeping the tenant id. Previews: `p_<repo>_pr_<n>`.
 */
export function logicalNames(scope: Scope, key: string): LogicalNames {
  // The last character is never `-`: see fit() for why names must not end in `_`.
  if (!KEY_PATTERN.test(key)) throw new RangeError(`not a usable tenant or preview key: ${key}`);
  const letter = scope === "tenant" ? "t" : scope === "silo" ? "s" : "p";
  const sql = `${letter}_${key.replace(/-/g, "_")}`;
  const names: LogicalNames = {
    key,
    database: fit(sql, MYSQL_DB_MAX, key),
    dbUser: fit(sql, MYSQL_USER_MAX, key),
    label: sql.length <= MYSQL_USER_MAX ? sql : `${sql.slice(0, MYSQL_USER_MAX - 9)}_${keyHash(key).slice(0, 8)}`,
    cacheUser: `${letter}-${key}`,
    // Pool and silo tenants share one key space contract: `t:<id>:`.
    keyPrefix: `${scope === "preview" ? "p" : "t"}:${key}:`,
    attachmentsDir: `${scope === "preview" ? "previews" : scope === "silo" ? "silo" : "tenants"}/${key}`,
  };
  for (const n of [names.database, names.dbUser]) {
    if (!SQL_NAME_PATTERN.test(n)) throw new RangeError(`derived SQL name is not safe: ${n}`);
  }
  if (!REDIS_USER_PATTERN.test(names.cacheUser)) throw new RangeError(`derived cache user is not safe: ${names.cacheUser}`);
  return names;
}
