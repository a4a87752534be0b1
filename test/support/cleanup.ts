// Removes what tests and benchmarks leave on the shared servers when a job of theirs was
// cancelled or failed half-way: databases, users, Redis ACL users and keys (named exactly as the
// programs name them), and Redis key prefixes.
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { OWNER_REGISTRY } from "../../programs/local/mysql-ops.ts";
import { ACL_OWNERS_KEY } from "../../programs/local/redis-ops.ts";
import { logicalNames, type Scope } from "../../core/naming.ts";
import { TEST_MYSQL_URL, TEST_REDIS_URL } from "./services.ts";

async function deleteMatching(redis: Redis, pattern: string): Promise<number> {
  let cursor = "0";
  let n = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) n += await redis.unlink(...keys);
  } while (cursor !== "0");
  return n;
}

/** Deletes every key under `<prefix>:` (a queue prefix a run created). */
export async function deleteRedisPrefix(prefix: string, url = TEST_REDIS_URL): Promise<number> {
  if (!/^[A-Za-z0-9:_-]{3,}$/.test(prefix)) throw new Error(`refusing to delete an odd prefix: ${prefix}`);
  const redis = new Redis(url, { maxRetriesPerRequest: 2 });
  try {
    return await deleteMatching(redis, `${prefix}:*`);
  } finally {
    redis.disconnect();
  }
}

/** The logical objects of tenants (scope tenant/silo: tenant ids) or previews (preview keys). */
export async function dropLocalLeftovers(scope: Scope, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  const db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
  try {
    for (const key of keys) {
      const n = logicalNames(scope, key);
      await db.query(`DROP DATABASE IF EXISTS \`${n.database}\``);
      await db.query(`DROP USER IF EXISTS '${n.dbUser}'@'%', '${n.dbUser}'@'localhost', '${n.dbUser}'@'127.0.0.1'`);
      // Their owner records too, so the names are free again (no registry yet: nothing to remove).
      const records = [n.database, `${n.dbUser}@%`, `${n.dbUser}@localhost`, `${n.dbUser}@127.0.0.1`];
      await db.query(`DELETE FROM ${OWNER_REGISTRY} WHERE name IN (?)`, [records]).catch(() => undefined);
      await redis.call("ACL", "DELUSER", n.cacheUser);
      await redis.hdel(ACL_OWNERS_KEY, n.cacheUser);
      await deleteMatching(redis, `${n.keyPrefix}*`);
    }
  } finally {
    await db.end();
    redis.disconnect();
  }
}

/** A tenant's objects in both tiers. */
export async function dropTenantLeftovers(ids: readonly string[]): Promise<void> {
  await dropLocalLeftovers("tenant", ids);
  await dropLocalLeftovers("silo", ids);
}
