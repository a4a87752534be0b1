// The per-tenant logical resources both targets share: a generated password, a database, a user
// and its grants limited to that database, made by the same code whether the server is the local
// MariaDB or the regional Aurora cluster. Also the grant and cache rule sets per tier.
import * as pulumi from "@pulumi/pulumi";
import type { AllowedPrivilege, LogicalNames } from "./naming.ts";
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
 * the ACL user itself (`~t:<id>:*`, `&t:<id>:*`); these rules also take away every command that
 * ignores key patterns and would reveal or touch other tenants' keys (SCAN, KEYS, RANDOMKEY,
 * FLUSHALL and the rest of @dangerous).
 */
export function cacheRules(readOnly: boolean): string[] {
  return ["-@all", "+@read", ...(readOnly ? [] : ["+@write"]), "+@transaction", "+ping", "+echo", "+hello", "-@dangerous", "-scan", "-keys", "-randomkey"];
}

/** Connection limits per kind of environment. */
export const MAX_CONNECTIONS = { pool: 20, silo: 100, preview: 5 } as const;

export interface DatabaseSpec {
  names: LogicalNames;
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
  const password = new GeneratedPassword(`${names.dbUser}-db-password`, { length: 32, rotation: spec.rotation ?? "0" }, opts);
  const database = new MysqlDatabase(`${names.database}-database`, { serverUrl: spec.serverUrl, name: names.database }, opts);
  const user = new MysqlUser(
    `${names.dbUser}-db-user`,
    {
      serverUrl: spec.serverUrl,
      user: names.dbUser,
      host: spec.userHost ?? "%",
      password: password.result,
      maxConnections: spec.maxConnections,
    },
    opts,
  );
  const grant = new MysqlGrant(
    `${names.dbUser}-db-grant`,
    { serverUrl: spec.serverUrl, user: user.user, host: user.host, database: database.name, privileges: spec.privileges },
    { ...opts, dependsOn: [user, database] },
  );
  return { database, user, grant, password: pulumi.secret(password.result) };
}

/** Server URLs carrying a password become secrets before they reach any resource. */
export function serverUrlInput(url: string): pulumi.Input<string> {
  return new URL(url).password ? pulumi.secret(url) : url;
}

export function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: u.port ? Number(u.port) : defaultPort };
}
