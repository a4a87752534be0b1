// The per-tenant logical resources both targets share: a generated password, a database, a user
// and its grants limited to that database, made by the same code whether the server is the local
// MariaDB or the regional Aurora cluster. Also the grant and cache rule sets per tier.
import * as pulumi from "@pulumi/pulumi";
import { TENANT_CACHE_DENIALS, TENANT_CONNECTION_COMMANDS } from "./cache-acl.ts";
import type { AllowedPrivilege, LogicalNames } from "../core/naming.ts";
import { GeneratedPassword, MysqlDatabase, MysqlGrant, MysqlUser } from "./local/resources.ts";

/**
 * What the application is granted on its own database: a subset of ALLOWED_PRIVILEGES (the
 * ceiling the provider and the policy enforce), which the type checks. No GRANT OPTION.
 */
export const APP_PRIVILEGES: AllowedPrivilege[] = [
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
  "REFERENCES",
  "CREATE VIEW",
  "SHOW VIEW",
  "TRIGGER",
];
/** Maintenance / cut-over mode (tier moves freeze writes on the source). */
export const READ_ONLY_PRIVILEGES: AllowedPrivilege[] = ["SELECT", "SHOW VIEW"];

export function privilegesFor(readOnly: boolean): string[] {
  return readOnly ? READ_ONLY_PRIVILEGES : APP_PRIVILEGES;
}

/**
 * Redis ACL command rules for a tenant. Keys and channels are confined to the tenant's prefix by
 * the ACL user itself (`~t:<id>:*`, `&t:<id>:*`), but a key pattern only binds commands that name
 * keys: @read and @write also hold server-wide ones (FUNCTION FLUSH, DBSIZE), so every command
 * that is not confined to keys is denied after them, and only a few connection commands added.
 */
export function cacheRules(readOnly: boolean): string[] {
  return ["-@all", "+@read", ...(readOnly ? [] : ["+@write"]), "+@transaction", ...TENANT_CACHE_DENIALS, ...TENANT_CONNECTION_COMMANDS];
}

/** Connection limits per kind of environment. */
export const MAX_CONNECTIONS = { pool: 20, silo: 100, preview: 5 } as const;

export interface DatabaseSpec {
  names: LogicalNames;
  /** From stackOwner(): the database and the user are created or adopted only as this owner's. */
  owner: pulumi.Input<string>;
  serverUrl: pulumi.Input<string>;
  /** Host pattern of the MySQL account; `%` by default. */
  userHost?: string;
  privileges: string[];
  maxConnections: number;
  rotation?: string;
}

export interface DatabaseResult {
  database: MysqlDatabase;
  user: MysqlUser;
  grant: MysqlGrant;
  password: pulumi.Output<string>;
}

export function tenantDatabase(spec: DatabaseSpec, opts: pulumi.CustomResourceOptions = {}): DatabaseResult {
  const { names } = spec;
  const password = new GeneratedPassword(`${names.label}-db-password`, { length: 32, rotation: spec.rotation ?? "0" }, opts);
  const database = new MysqlDatabase(`${names.database}-database`, { serverUrl: spec.serverUrl, name: names.database, owner: spec.owner }, opts);
  const user = new MysqlUser(
    `${names.label}-db-user`,
    {
      serverUrl: spec.serverUrl,
      user: names.dbUser,
      host: spec.userHost ?? "%",
      password: password.result,
      maxConnections: spec.maxConnections,
      owner: spec.owner,
    },
    opts,
  );
  const grant = new MysqlGrant(
    `${names.label}-db-grant`,
    { serverUrl: spec.serverUrl, user: user.user, host: user.host, database: database.name, privileges: spec.privileges },
    { ...opts, dependsOn: [user, database] },
  );
  return { database, user, grant, password: pulumi.secret(password.result) };
}

/**
 * The owner of a stack's per-tenant objects: `<key>/<token>`, the token made once when the stack
 * first comes up and kept in its state. A stack that lost its state, or another stack whose names
 * collide, has another token, so the providers refuse what it did not make (and adopt an object
 * only when their owner registry records this owner). Pass it to every per-tenant resource.
 */
export function stackOwner(names: LogicalNames, opts: pulumi.CustomResourceOptions = {}): pulumi.Output<string> {
  const token = new GeneratedPassword(`${names.key}-owner`, { length: 32 }, opts);
  return pulumi.secret(pulumi.interpolate`${names.key}/${token.result}`);
}

/** Server URLs carrying a password become secrets before they reach any resource. */
export function serverUrlInput(url: string): pulumi.Input<string> {
  return new URL(url).password ? pulumi.secret(url) : url;
}

export function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: u.port ? Number(u.port) : defaultPort };
}
