// Rules for the per-tenant logical resources (programs/local/resources.ts): the database, user and
// grant both targets make, and the Redis ACL user and attachments directory of the local target.
// The dynamic providers refuse unsafe input too; these rules make the same promises visible in the
// plan, before anything is applied, and add what a provider cannot see: which stack a name belongs
// to (a `tenant-<id>` stack may only hold names derived from `<id>`).
import path from "node:path";
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { TENANT_CACHE_DENIALS } from "../cache-acl.ts";
import { ALLOWED_PRIVILEGES, SQL_NAME_PATTERN, logicalNames, type LogicalNames } from "../../core/naming.ts";
import { POLICY_ATTACHMENTS_ROOT_ENV } from "./location.ts";

type Props = Record<string, unknown>;

const DYNAMIC = "pulumi-nodejs:dynamic/stackrail";
export const MYSQL_DATABASE_TYPE = `${DYNAMIC}:MysqlDatabase`;
export const MYSQL_USER_TYPE = `${DYNAMIC}:MysqlUser`;
export const MYSQL_GRANT_TYPE = `${DYNAMIC}:MysqlGrant`;
export const REDIS_ACL_USER_TYPE = `${DYNAMIC}:RedisAclUser`;
export const DIRECTORY_TYPE = `${DYNAMIC}:Directory`;

type Check = (args: { type: string; props: Props; urn: string }, report: (message: string) => void) => void;

function rule(name: string, description: string, check: Check): ResourceValidationPolicy {
  return {
    name,
    description,
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
      check({ type: args.type, props: args.props as Props, urn: args.urn }, (message) => report(message));
    },
  };
}

/** A string input, or undefined while it is unknown (a preview before its source exists). */
const known = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

// --- MySQL ------------------------------------------------------------------------------------

export const tenantGrantsConfined = rule(
  "tenant-grants-confined",
  "Tenant database grants name exactly one database (no `*`, `%`, and `_` matched literally) and only data privileges, never GRANT OPTION.",
  ({ type, props }, report) => {
    if (type !== MYSQL_GRANT_TYPE) return;
    const db = props.database;
    if (typeof db === "string" && !SQL_NAME_PATTERN.test(db)) report(`tenant grant must name a single database, not ${JSON.stringify(db)}.`);
    // In a GRANT, `_` is a one-character wildcard: `t_a_b` would also match `t_axb`, another tenant's.
    if (props.databaseMatch !== "exact") report('tenant grant must match its database name exactly (databaseMatch: "exact"), not as a pattern.');
    const privs = Array.isArray(props.privileges) ? (props.privileges as unknown[]) : [];
    if (Array.isArray(props.privileges) && privs.length === 0) report("tenant grant names no privileges.");
    const bad = privs.filter((p) => typeof p !== "string" || !(ALLOWED_PRIVILEGES as readonly string[]).includes(p));
    if (bad.length > 0) report(`tenant grant has privileges outside the allowed set: ${bad.map(String).join(", ")}.`);
  },
);

export const tenantDatabaseUserLimited = rule(
  "tenant-db-user-limited",
  "Tenant database users have a plain name and a connection limit (MySQL reads 0 as unlimited).",
  ({ type, props }, report) => {
    if (type === MYSQL_USER_TYPE) {
      const user = known(props.user);
      if (user !== undefined && !SQL_NAME_PATTERN.test(user)) report(`tenant database user name is not a plain name: ${JSON.stringify(user)}.`);
      const max = props.maxConnections;
      if (max !== undefined && (typeof max !== "number" || !Number.isInteger(max) || max < 1 || max > 10_000)) {
        report("tenant database user must have a connection limit between 1 and 10000 (0 means unlimited).");
      }
    }
    if (type === MYSQL_DATABASE_TYPE) {
      const name = known(props.name);
      if (name !== undefined && !SQL_NAME_PATTERN.test(name)) report(`tenant database name is not a plain name: ${JSON.stringify(name)}.`);
    }
  },
);

// --- Redis --------------------------------------------------------------------------------------

/** Command rules only: `+get`, `-@admin`, `+client|id`. Key, channel, password and selector rules are the provider's alone. */
const COMMAND_RULE = /^[+-](@[a-z]+|[a-z_]+(\|[a-z-]+)?)$/;
/** Categories whose commands reach beyond the tenant's keys. */
const FORBIDDEN_CATEGORIES = new Set(["all", "dangerous", "admin", "scripting", "pubsub", "keyspace", "connection", "blocking"]);
/**
 * Commands a tenant rule list must not allow by name: every one the denials remove, and the
 * server-wide ones that sit in no denied category on every Redis version.
 */
const FORBIDDEN_COMMANDS = new Set([
  ...TENANT_CACHE_DENIALS.filter((r) => !r.startsWith("-@")).map((r) => r.slice(1)),
  "acl",
  "auth",
  "bgrewriteaof",
  "bgsave",
  "client",
  "cluster",
  "config",
  "debug",
  "failover",
  "flushall",
  "flushdb",
  "info",
  "migrate",
  "module",
  "monitor",
  "replicaof",
  "restore",
  "save",
  "shutdown",
  "slaveof",
  "swapdb",
  "sync",
  "psync",
]);
const KEY_PREFIX = /^[tsp]:[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?:$/;

export const tenantCacheUserConfined = rule(
  "tenant-cache-user-confined",
  "Tenant Redis users keep one `<scope>:<key>:` prefix, start from `-@all`, and are granted no server-wide or dangerous command.",
  ({ type, props }, report) => {
    if (type !== REDIS_ACL_USER_TYPE) return;
    const prefix = known(props.keyPrefix);
    if (prefix !== undefined && !KEY_PREFIX.test(prefix)) report(`tenant cache user must be confined to one key prefix, not ${JSON.stringify(prefix)}.`);
    if (!Array.isArray(props.rules)) return;
    const rules = props.rules as unknown[];
    if (rules[0] !== "-@all") report("tenant cache user rules must start with -@all.");
    const unsafe: string[] = [];
    for (const r of rules) {
      if (typeof r !== "string" || !COMMAND_RULE.test(r)) {
        unsafe.push(typeof r === "string" ? r : String(r));
        continue;
      }
      if (!r.startsWith("+")) continue;
      const what = r.slice(1);
      const category = what.startsWith("@") ? what.slice(1) : undefined;
      const command = what.split("|")[0] ?? what;
      if (category !== undefined ? FORBIDDEN_CATEGORIES.has(category) : FORBIDDEN_COMMANDS.has(command)) unsafe.push(r);
    }
    if (unsafe.length > 0) report(`tenant cache user must not be granted: ${unsafe.join(" ")} (no key, password or selector rules, no server-wide commands).`);
  },
);

// --- attachments ----------------------------------------------------------------------------------

const RELATIVE_DIR = /^(tenants|silo|previews)\/[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$/;

export const tenantDirectoryConfined = rule(
  "tenant-directory-confined",
  "Tenant attachment folders sit one level inside `<data dir>/attachments/<scope>/`, never elsewhere on the machine.",
  ({ type, props }, report) => {
    if (type !== DIRECTORY_TYPE) return;
    const root = known(props.root);
    const rel = known(props.relativePath);
    if (root !== undefined) {
      const expected = process.env[POLICY_ATTACHMENTS_ROOT_ENV];
      if (!path.isAbsolute(root) || path.normalize(root) !== root || path.basename(root) !== "attachments") {
        report(`tenant folders must live under an absolute, normalised attachments folder, not ${JSON.stringify(root)}.`);
      } else if (expected && root !== path.resolve(expected)) {
        report(`tenant folders must live under the data dir's attachments folder ${expected}, not ${root}.`);
      }
    }
    if (rel !== undefined && !RELATIVE_DIR.test(rel)) report(`tenant folder must be <tenants|silo|previews>/<key>, not ${JSON.stringify(rel)}.`);
  },
);

// --- names belong to the stack -----------------------------------------------------------------

/** The names a stack may hold, from its name in the URN: `tenant-<id>` (pool or silo) or `preview-<key>`. */
export function namesForStack(urn: string): LogicalNames[] | undefined {
  const stack = /^urn:pulumi:([^:]+)::/.exec(urn)?.[1];
  if (!stack) return undefined;
  try {
    const tenant = /^tenant-(.+)$/.exec(stack)?.[1];
    if (tenant !== undefined) return [logicalNames("tenant", tenant), logicalNames("silo", tenant)];
    const preview = /^preview-(.+)$/.exec(stack)?.[1];
    if (preview !== undefined) return [logicalNames("preview", preview)];
  } catch {
    return []; // a tenant or preview stack whose name derives nothing may hold no tenant object
  }
  return undefined;
}

const NAMED: Record<string, [prop: string, pick: (n: LogicalNames) => string][]> = {
  [MYSQL_DATABASE_TYPE]: [["name", (n) => n.database]],
  [MYSQL_USER_TYPE]: [["user", (n) => n.dbUser]],
  [MYSQL_GRANT_TYPE]: [
    ["database", (n) => n.database],
    ["user", (n) => n.dbUser],
  ],
  [REDIS_ACL_USER_TYPE]: [
    ["username", (n) => n.cacheUser],
    ["keyPrefix", (n) => n.keyPrefix],
  ],
  [DIRECTORY_TYPE]: [["relativePath", (n) => n.attachmentsDir]],
};

export const tenantNamesOwned = rule(
  "tenant-names-owned",
  "A tenant or preview stack holds only its own database, user, grant, cache user and folder: every name derives from the stack's id.",
  ({ type, props, urn }, report) => {
    const fields = NAMED[type];
    if (!fields) return;
    const allowed = namesForStack(urn);
    if (allowed === undefined) return; // not a tenant or preview stack (region stacks, tests' own stacks)
    for (const [prop, pick] of fields) {
      const value = known(props[prop]);
      if (value === undefined) continue;
      const mine = allowed.map(pick);
      if (!mine.includes(value))
        report(`${prop} ${JSON.stringify(value)} does not belong to this stack (expected ${mine.map((m) => JSON.stringify(m)).join(" or ")}).`);
    }
  },
);

export const tenantPolicies: ResourceValidationPolicy[] = [
  tenantGrantsConfined,
  tenantDatabaseUserLimited,
  tenantCacheUserConfined,
  tenantDirectoryConfined,
  tenantNamesOwned,
];
