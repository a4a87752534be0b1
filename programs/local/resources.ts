// Pulumi dynamic resources for the per-tenant logical objects (database, user, grants, Redis ACL
// user, directory, generated password). The serialized provider captures only two strings, the
// absolute path of ops.ts and the kind, and loads the real code with require() at run time in the
// dynamic-provider host (which runs the project's Node 24, so .ts loads natively). Capturing
// imported modules instead is fragile under ESM and test transforms.
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import type { Handler } from "./handler.ts";

export const OPS_MODULE = path.join(path.dirname(fileURLToPath(import.meta.url)), "ops.ts");

type Kind = "mysql-database" | "mysql-user" | "mysql-grant" | "redis-acl-user" | "directory" | "password";

function providerFor(kind: Kind): pulumi.dynamic.ResourceProvider {
  const modulePath = OPS_MODULE;
  const load = (): Handler => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- see the header: require is not serialized
    const mod = require(modulePath) as { handlers: Record<string, Handler> };
    const h = mod.handlers[kind];
    if (!h) throw new Error(`no local operations for ${kind}`);
    return h;
  };
  return {
    create: (inputs: Record<string, unknown>) => load().create(inputs),
    diff: (id: string, olds: Record<string, unknown>, news: Record<string, unknown>) => load().diff(id, olds, news),
    update: (id: string, olds: Record<string, unknown>, news: Record<string, unknown>) => load().update(id, olds, news),
    delete: (id: string, props: Record<string, unknown>) => load().delete(id, props),
    read: (id: string, props: Record<string, unknown>) => load().read(id, props),
  };
}

// One provider object per kind: the SDK caches the serialization per object.
const providers: Record<Kind, pulumi.dynamic.ResourceProvider> = {
  "mysql-database": providerFor("mysql-database"),
  "mysql-user": providerFor("mysql-user"),
  "mysql-grant": providerFor("mysql-grant"),
  "redis-acl-user": providerFor("redis-acl-user"),
  directory: providerFor("directory"),
  password: providerFor("password"),
};

/** Server URLs may carry an admin password: they are always stored as secrets. */
const SECRET_SERVER = ["serverUrl"];

/**
 * Every per-tenant object (database, user, cache user, directory) names its owner: `<key>/<token>`,
 * the token made once per stack (see stackOwner in ../logical.ts). The provider creates or adopts an
 * object only when its server's owner registry names this owner, or names nobody and the object
 * does not exist. Not a credential, but kept secret like the token it comes from.
 */
type OwnerInput = pulumi.Input<string>;

export interface MysqlDatabaseArgs {
  serverUrl: pulumi.Input<string>;
  name: pulumi.Input<string>;
  charset?: pulumi.Input<string>;
  owner: OwnerInput;
}

export class MysqlDatabase extends pulumi.dynamic.Resource {
  declare readonly name: pulumi.Output<string>;
  constructor(name: string, args: MysqlDatabaseArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providers["mysql-database"],
      name,
      { serverUrl: args.serverUrl, name: args.name, charset: args.charset ?? "utf8mb4", owner: args.owner },
      { ...opts, additionalSecretOutputs: [...SECRET_SERVER, "owner"] },
      "stackrail",
      "MysqlDatabase",
    );
  }
}

export interface MysqlUserArgs {
  serverUrl: pulumi.Input<string>;
  user: pulumi.Input<string>;
  host?: pulumi.Input<string>;
  password: pulumi.Input<string>;
  maxConnections: pulumi.Input<number>;
  owner: OwnerInput;
}

export class MysqlUser extends pulumi.dynamic.Resource {
  declare readonly user: pulumi.Output<string>;
  declare readonly host: pulumi.Output<string>;
  constructor(name: string, args: MysqlUserArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providers["mysql-user"],
      name,
      {
        serverUrl: args.serverUrl,
        user: args.user,
        host: args.host ?? "%",
        password: pulumi.secret(args.password),
        maxConnections: args.maxConnections,
        owner: args.owner,
      },
      { ...opts, additionalSecretOutputs: [...SECRET_SERVER, "password", "owner"] },
      "stackrail",
      "MysqlUser",
    );
  }
}

export interface MysqlGrantArgs {
  serverUrl: pulumi.Input<string>;
  user: pulumi.Input<string>;
  host: pulumi.Input<string>;
  database: pulumi.Input<string>;
  privileges: pulumi.Input<pulumi.Input<string>[]>;
}

export class MysqlGrant extends pulumi.dynamic.Resource {
  declare readonly privileges: pulumi.Output<string[]>;
  constructor(name: string, args: MysqlGrantArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providers["mysql-grant"],
      name,
      // Grants name exactly one database (`_` escaped); stacks from before this input update in place.
      { serverUrl: args.serverUrl, user: args.user, host: args.host, database: args.database, privileges: args.privileges, databaseMatch: "exact" },
      { ...opts, additionalSecretOutputs: SECRET_SERVER },
      "stackrail",
      "MysqlGrant",
    );
  }
}

export interface RedisAclUserArgs {
  serverUrl: pulumi.Input<string>;
  username: pulumi.Input<string>;
  password: pulumi.Input<string>;
  keyPrefix: pulumi.Input<string>;
  /** ACL command rules (`-@all`, `+@read`, `-scan`, ...); key and channel patterns come from keyPrefix. */
  rules: pulumi.Input<pulumi.Input<string>[]>;
  /** Delete the tenant's keys when the user is deleted. */
  purgeOnDelete?: pulumi.Input<boolean>;
  owner: OwnerInput;
}

export class RedisAclUser extends pulumi.dynamic.Resource {
  declare readonly username: pulumi.Output<string>;
  declare readonly keyPrefix: pulumi.Output<string>;
  constructor(name: string, args: RedisAclUserArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providers["redis-acl-user"],
      name,
      {
        serverUrl: args.serverUrl,
        username: args.username,
        password: pulumi.secret(args.password),
        keyPrefix: args.keyPrefix,
        rules: args.rules,
        purgeOnDelete: args.purgeOnDelete ?? true,
        owner: args.owner,
      },
      { ...opts, additionalSecretOutputs: [...SECRET_SERVER, "password", "owner"] },
      "stackrail",
      "RedisAclUser",
    );
  }
}

export interface DirectoryArgs {
  root: pulumi.Input<string>;
  relativePath: pulumi.Input<string>;
  owner: OwnerInput;
}

export class Directory extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  constructor(name: string, args: DirectoryArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providers.directory,
      name,
      { root: args.root, relativePath: args.relativePath, owner: args.owner, path: undefined },
      { ...opts, additionalSecretOutputs: ["owner"] },
      "stackrail",
      "Directory",
    );
  }
}

export interface GeneratedPasswordArgs {
  length?: number;
  /** Change this value to rotate the password. */
  rotation?: pulumi.Input<string>;
}

export class GeneratedPassword extends pulumi.dynamic.Resource {
  declare readonly result: pulumi.Output<string>;
  constructor(name: string, args: GeneratedPasswordArgs = {}, opts?: pulumi.CustomResourceOptions) {
    super(
      providers.password,
      name,
      { length: args.length ?? 32, rotation: args.rotation ?? "0", result: undefined },
      { ...opts, additionalSecretOutputs: ["result"] },
      "stackrail",
      "GeneratedPassword",
    );
  }
}
