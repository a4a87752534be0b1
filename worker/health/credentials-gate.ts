// Source 3, the embedded default: no Argo CD and no health URL, so the application itself cannot
// be seen. On the local target the gate at least logs in as each tenant with the tenant's own
// credentials (not the admin URL): a trivial query on its database, PING and a read of its own key
// space on its cache. That proves the logins the application uses work after the wave; the report's
// note says plainly that nothing more was checked.
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import type { TenantRecord } from "../../core/tenant-index.ts";
import type { GateRuntime, TenantCredentialSource, TenantCredentials, TenantHealth, WaveGateInput, WaveGateOptions, WaveGateReport } from "./gate-types.ts";
import { cancelled, detailLine, mapLimited, seconds, throwIfCancelled } from "./gate-support.ts";

export const NO_HEALTH_SOURCE_NOTE =
  "No application health source is configured (set ARGOCD_SERVER and ARGOCD_AUTH_TOKEN, or STACKRAIL_HEALTH_URL): " +
  "the gate only logged in as each tenant with its own credentials to its database and cache; the application itself was not checked.";

export const NOTHING_CHECKED_NOTE =
  "No application health source is configured (set ARGOCD_SERVER and ARGOCD_AUTH_TOKEN, or STACKRAIL_HEALTH_URL): " +
  "on the aws target nothing could be checked, and the wave passed unchecked.";

const PARALLEL = 4;

// Refusals that another try will not change: a wrong password, a missing grant or database.
const PERMANENT_MYSQL = new Set([
  "ER_ACCESS_DENIED_ERROR",
  "ER_DBACCESS_DENIED_ERROR",
  "ER_BAD_DB_ERROR",
  "ER_TABLEACCESS_DENIED_ERROR",
  "ER_USER_LIMIT_REACHED",
]);
const PERMANENT_REDIS = /^(WRONGPASS|NOPERM|NOAUTH|ERR AUTH)/;

class Refused extends Error {}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") return code;
  const msg = err instanceof Error ? err.message : "";
  // Redis answers carry their code as the first word (WRONGPASS, NOPERM, ...); the rest may quote input.
  const word = /^[A-Z][A-Z_]+/.exec(msg)?.[0];
  return word ?? (err instanceof Error ? err.name : "error");
}

async function checkDatabase(c: TenantCredentials["database"], timeoutMs: number): Promise<string> {
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection({ host: c.host, port: c.port, user: c.user, password: c.password, database: c.name, connectTimeout: timeoutMs });
    await conn.query("SELECT 1");
    return `database ${c.name} as ${c.user}: SELECT 1 ok`;
  } catch (err) {
    const code = codeOf(err);
    const line = `database ${c.name}: login as ${c.user} failed (${code})`;
    throw PERMANENT_MYSQL.has(code) ? new Refused(line) : new Error(line);
  } finally {
    await conn?.end().catch(() => undefined);
  }
}

async function checkCache(c: TenantCredentials["cache"], timeoutMs: number): Promise<string> {
  const redis = new Redis({
    host: c.host,
    port: c.port,
    db: c.db,
    username: c.user,
    password: c.password,
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
  });
  // ioredis reports a refused AUTH only as an event (the connection then closes and commands fail
  // with "Connection is closed"): keep it, it is the real reason.
  let refusal: unknown;
  redis.on("error", (err: unknown) => {
    refusal ??= err;
  });
  try {
    await redis.connect();
    await redis.ping();
    // A key of its own prefix: the ACL user's key pattern lets it read there.
    await redis.exists(`${c.keyPrefix}stackrail:health-probe`);
    return `cache as ${c.user}: PING ok`;
  } catch (err) {
    const code = codeOf(refusal ?? err);
    const line = `cache: login as ${c.user} failed (${code})`;
    throw PERMANENT_REDIS.test(code) ? new Refused(line) : new Error(line);
  } finally {
    redis.disconnect();
  }
}

export async function credentialsGate(
  target: "local" | "aws",
  source: TenantCredentialSource,
  rt: GateRuntime,
  input: WaveGateInput,
  opts: WaveGateOptions,
): Promise<WaveGateReport> {
  if (target === "aws") {
    // On aws a tenant's database and cache sit in private subnets and its credentials in Secrets
    // Manager, out of this worker's reach by design; without Argo CD or a health URL there is
    // nothing the gate can honestly check. It passes rather than block every release, and says so.
    opts.onProgress(`wave ${input.wave} health gate: ${NOTHING_CHECKED_NOTE}`);
    rt.logger.warn({ gate: "credentials", wave: input.wave }, "wave health gate has no health source on aws");
    return {
      source: "credentials",
      passed: true,
      tenants: input.tenants.map(({ tenant }) => ({
        tenantId: tenant.id,
        healthy: true,
        detail: "not checked: no application health source on the aws target",
      })),
      note: NOTHING_CHECKED_NOTE,
    };
  }
  const deadline = rt.now() + rt.timeoutMs;
  const log = rt.logger.child({ gate: "credentials", wave: input.wave });
  opts.onProgress(`wave ${input.wave} health gate: ${NO_HEALTH_SOURCE_NOTE}`);

  const check = async (tenant: TenantRecord): Promise<TenantHealth> => {
    let creds: TenantCredentials;
    try {
      creds = await source(tenant, opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) throw cancelled(opts.signal);
      return { tenantId: tenant.id, healthy: false, detail: `could not read the tenant's own credentials from stack tenant-${tenant.id} (${codeOf(err)})` };
    }
    const secrets = [creds.database.password, creds.cache.password];
    let errors = 0;
    for (;;) {
      throwIfCancelled(opts.signal);
      const remaining = Math.max(1000, Math.min(5000, deadline - rt.now()));
      try {
        const db = await checkDatabase(creds.database, remaining);
        const cache = await checkCache(creds.cache, remaining);
        return { tenantId: tenant.id, healthy: true, detail: detailLine(`${db}; ${cache}`, secrets) };
      } catch (err) {
        const line = err instanceof Error ? err.message : "check failed";
        if (err instanceof Refused) return { tenantId: tenant.id, healthy: false, detail: detailLine(line, secrets) };
        if (rt.now() >= deadline)
          return { tenantId: tenant.id, healthy: false, detail: detailLine(`not healthy within ${seconds(rt.timeoutMs)}: ${line}`, secrets) };
        errors++;
      }
      const interval = rt.pollMs * Math.min(8, 2 ** errors);
      await rt.sleep(Math.max(0, Math.min(interval, deadline - rt.now())), opts.signal);
    }
  };

  const tenants = await mapLimited(input.tenants, PARALLEL, async ({ tenant }) => {
    const result = await check(tenant);
    log.info({ tenantId: tenant.id, healthy: result.healthy }, "wave health gate tenant checked");
    opts.onProgress(`wave ${input.wave} tenant ${tenant.id}: ${result.healthy ? "healthy" : "NOT healthy"}: ${result.detail}`);
    return result;
  });
  return { source: "credentials", passed: tenants.every((t) => t.healthy), tenants, note: NO_HEALTH_SOURCE_NOTE };
}
