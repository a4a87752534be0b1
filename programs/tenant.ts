// The `tenant-<id>` stack on the local target, and the argument schema both targets share:
// a database, user and grants on the local MariaDB, a Redis ACL user confined to `t:<id>:*`,
// and a directory for attachments. Tier pool uses the shared servers and the `t_` name space;
// tier silo uses the `s_` name space, on dedicated servers when the context names them.
import { z } from "zod";
import { regionSchema, tenantIdSchema, tierSchema, versionSchema } from "../core/ids.ts";
import { localLogicalSet } from "./local-logical-set.ts";
import { MAX_CONNECTIONS } from "./logical.ts";
import { logicalNames } from "../core/naming.ts";
import type { ProgramContext } from "./context.ts";

export const tenantArgsSchema = z
  .object({
    tenantId: tenantIdSchema,
    tier: tierSchema,
    region: regionSchema,
    version: versionSchema.optional(),
    /** Freeze writes (database grants SELECT only, cache read-only): used while a tenant moves tiers. */
    readOnly: z.boolean().optional(),
    /**
     * Keep the tenant's cache keys when this side is destroyed: after a tier move the other tier's
     * user shares the `t:<id>:` key space, so removing the source must not purge it.
     */
    keepCacheKeys: z.boolean().optional(),
    /** Override the tier's database connection limit. */
    maxConnections: z.number().int().min(1).max(10_000).optional(),
  })
  .strict();
export type TenantArgs = z.infer<typeof tenantArgsSchema>;

export function localTenantProgram(args: TenantArgs, ctx: ProgramContext): () => Promise<Record<string, unknown>> {
  return () => {
    const silo = args.tier === "silo";
    const names = logicalNames(silo ? "silo" : "tenant", args.tenantId);
    const mysqlUrl = (silo ? ctx.localSiloMysqlUrl : undefined) ?? ctx.localMysqlUrl;
    const redisUrl = (silo ? ctx.localSiloRedisUrl : undefined) ?? ctx.localRedisUrl;
    const readOnly = args.readOnly ?? false;

    return Promise.resolve({
      target: "local",
      tenantId: args.tenantId,
      tier: args.tier,
      region: args.region,
      version: args.version ?? "",
      readOnly,
      ...localLogicalSet({
        names,
        mysqlUrl,
        redisUrl,
        dataDir: ctx.dataDir,
        readOnly,
        maxConnections: args.maxConnections ?? MAX_CONNECTIONS[args.tier],
        purgeCacheOnDelete: !(args.keepCacheKeys ?? false),
      }),
    });
  };
}
