// The one module the serialized dynamic providers load (by absolute path, with require) inside the
// pulumi-resource-pulumi-nodejs host. It maps a resource kind to its operations.
import type { Handler } from "./handler.ts";
import { directoryHandler } from "./fs-ops.ts";
import { databaseHandler, grantHandler, userHandler } from "./mysql-ops.ts";
import { passwordHandler } from "./password-ops.ts";
import { aclUserHandler } from "./redis-ops.ts";

export const handlers: Record<string, Handler> = {
  "mysql-database": databaseHandler,
  "mysql-user": userHandler,
  "mysql-grant": grantHandler,
  "redis-acl-user": aclUserHandler,
  directory: directoryHandler,
  password: passwordHandler,
};
