// The real services the tests run against. A missing service fails the run with a message that
// says which one and how to start it; nothing is skipped silently.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";

export const TEST_REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const TEST_MYSQL_URL = process.env.LOCAL_MYSQL_URL ?? "mysql://root@127.0.0.1:3306";

const HOW_TO_START = {
  redis: 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
  mariadb: "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
};

export async function checkRedis(url = TEST_REDIS_URL): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`Redis is not reachable at ${url} (${(err as Error).message}). The tests need a real Redis; start it with: ${HOW_TO_START.redis}`);
  } finally {
    redis.disconnect();
  }
}

export async function checkMariaDb(url = TEST_MYSQL_URL): Promise<void> {
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection({ uri: url, connectTimeout: 2000 });
    await conn.query("SELECT 1");
  } catch (err) {
    throw new Error(`MariaDB is not reachable at ${url} (${(err as Error).message}). The tests need a real MariaDB; start it with: ${HOW_TO_START.mariadb}`);
  } finally {
    await conn?.end();
  }
}

/** A key prefix / queue name no other test uses. */
export function uniqueName(label: string): string {
  return `t-${label}-${randomUUID().slice(0, 8)}`;
}

/** The environment of a Stackrail installation on the test servers, in its own data dir and Redis prefix. */
export function localServiceEnv(options: {
  dataDir: string;
  prefix: string;
  apiToken: string;
  passphrase: string;
  tokenName?: string;
}): Record<string, string> {
  return {
    PORT: "0",
    HOST: "127.0.0.1",
    REDIS_URL: TEST_REDIS_URL,
    LOCAL_MYSQL_URL: TEST_MYSQL_URL,
    STACKRAIL_DATA_DIR: options.dataDir,
    STACKRAIL_QUEUE_PREFIX: options.prefix,
    PULUMI_CONFIG_PASSPHRASE: options.passphrase,
    STACKRAIL_API_TOKENS: `${options.tokenName ?? "e2e"}=${options.apiToken}`,
  };
}
