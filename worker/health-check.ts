// The health check a rollout's gate runs for every tenant it updated. On the local target the
// tenant's database must answer through its own name; on aws the tenant's public endpoint must
// answer /healthz. Failures are typed: a rollout wave stops on them.
import mysql from "mysql2/promise";
import type { Config } from "../core/config.ts";
import { ProgramError } from "../core/errors.ts";
import type { TenantRecord } from "../webhooks/tenant-index.ts";

/**
 * The gate a rollout step runs for its tenant after the stack is up: resolves when the tenant is
 * healthy, throws (a typed StackrailError decides whether the step is retried) when it is not.
 */
export type HealthCheck = (tenant: TenantRecord, outputs: Record<string, unknown>) => Promise<void>;

export function healthCheckFor(config: Config): HealthCheck {
  return async (tenant, outputs) => {
    if (config.target === "local") {
      const database = outputs.databaseName;
      if (typeof database !== "string") throw new ProgramError(`tenant ${tenant.id}: stack has no databaseName output`);
      const conn = await mysql.createConnection({ uri: config.localMysqlUrl, database, connectTimeout: 3000 });
      try {
        await conn.query("SELECT 1");
      } catch (err) {
        throw new ProgramError(`tenant ${tenant.id}: database health check failed (${(err as Error).message})`);
      } finally {
        await conn.end();
      }
      return;
    }
    const host = outputs.hostname;
    if (typeof host !== "string") return;
    const res = await fetch(`https://${host}/healthz`, { signal: AbortSignal.timeout(5000) }).catch((err: unknown) => {
      throw new ProgramError(`tenant ${tenant.id}: health check failed (${(err as Error).message})`);
    });
    if (!res.ok) throw new ProgramError(`tenant ${tenant.id}: health check answered ${res.status}`);
  };
}
