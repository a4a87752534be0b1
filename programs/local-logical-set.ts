// The per-tenant logical resources on the local target, shared by the tenant and preview
// programs: database, user and grants on MariaDB, a Redis ACL user on the key prefix, an
// attachments directory, and the outputs the worker reads (credentials as secrets).
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { cacheRules, hostPort, privilegesFor, serverUrlInput, stackOwner, tenantDatabase } from "./logical.ts";
import type { LogicalNames } from "../core/naming.ts";
import { Directory, GeneratedPassword, RedisAclUser } from "./local/resources.ts";

export interface LocalLogicalSpec {
  readonly names: LogicalNames;
  readonly mysqlUrl: string;
  readonly redisUrl: string;
  readonly dataDir: string;
  readonly readOnly: boolean;
  readonly maxConnections: number;
  /** Remove the cache keys when the cache user is destroyed (false while a tier move shares them). */
  readonly purgeCacheOnDelete: boolean;
}

export function localLogicalSet(spec: LocalLogicalSpec): Record<string, unknown> {
  const { names } = spec;
  const owner = stackOwner(names);
  const db = tenantDatabase({
    names,
    owner,
    serverUrl: serverUrlInput(spec.mysqlUrl),
    privileges: privilegesFor(spec.readOnly),
    maxConnections: spec.maxConnections,
  });
  const cachePassword = new GeneratedPassword(`${names.label}-cache-password`, { length: 32 });
  const cacheUser = new RedisAclUser(`${names.cacheUser}-cache-user`, {
    serverUrl: serverUrlInput(spec.redisUrl),
    username: names.cacheUser,
    password: cachePassword.result,
    keyPrefix: names.keyPrefix,
    rules: cacheRules(spec.readOnly),
    purgeOnDelete: spec.purgeCacheOnDelete,
    owner,
  });
  const dir = new Directory(`${names.key}-attachments`, {
    root: path.resolve(spec.dataDir, "attachments"),
    relativePath: names.attachmentsDir,
    owner,
  });
  const mysql = hostPort(spec.mysqlUrl, 3306);
  const redis = hostPort(spec.redisUrl, 6379);
  return {
    databaseHost: mysql.host,
    databasePort: mysql.port,
    databaseName: db.database.name,
    databaseUser: db.user.user,
    databasePassword: db.password,
    cacheHost: redis.host,
    cachePort: redis.port,
    cacheDb: Number(new URL(spec.redisUrl).pathname.slice(1) || "0"), // the database the app SELECTs (never the queue's by default)
    cacheUser: cacheUser.username,
    cacheKeyPrefix: cacheUser.keyPrefix,
    cachePassword: pulumi.secret(cachePassword.result),
    attachmentsPath: dir.path,
  };
}
