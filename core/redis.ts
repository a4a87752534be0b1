// The queue's Redis: REDIS_URL parsed (a server, or a Redis Cluster), the one factory every
// connection to it is made by, and the start-up checks (no eviction; tenant caches on a
// standalone server).
//
// REDIS_URL is `redis://` / `rediss://` (one server) or `redis+cluster://host:port,host:port`
// / `rediss+cluster://…` (a Redis Cluster: any of its nodes as seeds). On a cluster the factory
// answers an ioredis `Cluster`, typed as `Redis`: the two share the command interface (commands,
// `eval`, `multi`, `pipeline`, `duplicate`, `status`, events, `quit`/`disconnect`), and BullMQ takes
// either. What a Cluster lacks (`stream`, `select`, `options` of one server, a keyspace-wide `SCAN`)
// is reached only through `isCluster()` checks (see scanAll, masters). No `keyPrefix` is ever set:
// BullMQ refuses it; every installation key starts with the hash-tagged queue prefix instead
// (core/config.ts), so that all of them live in one slot and every script and MULTI stays local.
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from "ioredis";
import { ConfigError } from "./errors.ts";

export interface RedisNodeAddress {
  readonly host: string;
  readonly port: number;
}

export type RedisTarget =
  | { readonly kind: "standalone"; readonly url: string }
  | {
      readonly kind: "cluster";
      readonly nodes: readonly RedisNodeAddress[];
      readonly tls: boolean;
      readonly username: string | undefined;
      readonly password: string | undefined;
    };

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(.*)$/is;
const HOSTNAME = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;

/** True for `redis+cluster://` and `rediss+cluster://` URLs (no validation; see parseRedisUrl). */
export function isClusterUrl(url: string): boolean {
  return CLUSTER_URL.test(url);
}

function decode(variable: string, part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ConfigError(variable, `the ${what} is not valid percent-encoding`);
  }
}

function parseNode(variable: string, entry: string, index: number): RedisNodeAddress {
  if (entry === "") throw new ConfigError(variable, `cluster node #${index + 1} is empty (nodes are host:port separated by commas)`);
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(entry);
  const host = m?.[1] ?? "";
  const portText = m?.[2];
  if (!HOSTNAME.test(host) && !IPV6.test(host)) throw new ConfigError(variable, `cluster node #${index + 1} has no valid host name (expected host:port)`);
  let port = 6379;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new ConfigError(variable, `cluster node #${index + 1} has an invalid port (expected 1-65535)`);
    }
    port = Number(portText);
  }
  return { host: host.startsWith("[") ? host.slice(1, -1) : host, port };
}

/**
 * REDIS_URL (or another variable naming the queue's Redis) as a target. A cluster URL lists its
 * seed nodes as `host:port` separated by commas (port 6379 when left out), may carry `user:password@`
 * for all of them, database 0 only (a cluster has no other), and no query options. Errors name the
 * variable and never repeat the URL (it may hold a password).
 */
export function parseRedisUrl(raw: string, variable = "REDIS_URL"): RedisTarget {
  const cluster = CLUSTER_URL.exec(raw.trim());
  if (!cluster) {
    let protocol: string;
    try {
      protocol = new URL(raw).protocol;
    } catch {
      throw new ConfigError(variable, "must be a URL with scheme redis:, rediss:, redis+cluster: or rediss+cluster:");
    }
    if (protocol !== "redis:" && protocol !== "rediss:") {
      throw new ConfigError(variable, "must be a URL with scheme redis:, rediss:, redis+cluster: or rediss+cluster:");
    }
    return { kind: "standalone", url: raw };
  }
  const tls = cluster[1]?.toLowerCase() === "rediss";
  const rest = cluster[2] ?? "";
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  const tail = end < 0 ? "" : rest.slice(end);
  // The last `@` ends the user information: a password may hold an unescaped `@`.
  const at = authority.lastIndexOf("@");
  const userinfo = at < 0 ? undefined : authority.slice(0, at);
  const hosts = at < 0 ? authority : authority.slice(at + 1);
  if (hosts.trim() === "") throw new ConfigError(variable, "a Redis Cluster URL needs at least one node: redis+cluster://host:port[,host:port…]");
  const nodes = hosts.split(",").map((entry, i) => parseNode(variable, entry.trim(), i));
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(":");
    const user = decode(variable, colon < 0 ? userinfo : userinfo.slice(0, colon), "user name");
    username = user === "" ? undefined : user;
    if (colon >= 0) {
      const pass = decode(variable, userinfo.slice(colon + 1), "password");
      password = pass === "" ? undefined : pass;
    }
  }
  const tailMatch = /^(\/[^?#]*)?(\?[^#]*)?(#.*)?$/s.exec(tail);
  const dbPath = tailMatch?.[1] ?? "";
  const query = tailMatch?.[2] ?? "";
  if (tailMatch?.[3]) throw new ConfigError(variable, "a Redis Cluster URL takes no #fragment");
  if (dbPath !== "" && dbPath !== "/" && dbPath !== "/0") {
    throw new ConfigError(variable, "a Redis Cluster has database 0 only: leave the path out (redis+cluster://host:port,host:port)");
  }
  const [option] = [...new URLSearchParams(query.slice(1)).keys()];
  if (option !== undefined) throw new ConfigError(variable, `unknown Redis Cluster URL option "${option.slice(0, 40)}" (none are supported)`);
  return { kind: "cluster", nodes, tls, username, password };
}

/** True when the connection is an ioredis Cluster (made by connectRedis from a cluster URL). */
export function isCluster(redis: Redis): boolean {
  return (redis as { isCluster?: boolean }).isCluster === true;
}

/** The cluster's master nodes, or the one server. */
export function masters(redis: Redis): Redis[] {
  return isCluster(redis) ? (redis as unknown as Cluster).nodes("master") : [redis];
}

/**
 * A connection to the queue's Redis: a server, or a Cluster for a cluster URL. Options are a
 * server's; on a cluster they apply to each node's connection, except the ones the cluster itself
 * handles (offline queue, lazy connect, reconnects: `retryStrategy` becomes the cluster's).
 */
export function connectRedis(target: string | RedisTarget, options: RedisOptions = {}): Redis {
  const t = typeof target === "string" ? parseRedisUrl(target) : target;
  if (t.kind === "standalone") return new Redis(t.url, options);
  const { retryStrategy, enableOfflineQueue, lazyConnect, enableReadyCheck, keyPrefix, ...perNode } = options;
  if (keyPrefix !== undefined) throw new TypeError("connectRedis: keyPrefix is not supported (BullMQ refuses it; use the queue prefix)");
  const clusterOptions: ClusterOptions = {
    ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) ?? null } : {}),
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    ...(enableReadyCheck !== undefined ? { enableReadyCheck } : {}),
    // TLS certificates name the nodes' host names, which MOVED redirections replace with addresses.
    ...(t.tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) } : {}),
    redisOptions: {
      ...perNode,
      ...(t.username !== undefined ? { username: t.username } : {}),
      ...(t.password !== undefined ? { password: t.password } : {}),
      ...(t.tls ? { tls: {} } : {}),
    },
  };
  const nodes: ClusterNode[] = t.nodes.map((n) => ({ host: n.host, port: n.port }));
  return new Cluster(nodes, clusterOptions) as unknown as Redis;
}

/** Worker and blocking connections: BullMQ requires `maxRetriesPerRequest: null` here. */
export function workerConnection(url: string | RedisTarget, extra: RedisOptions = {}): Redis {
  return connectRedis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
}

/**
 * A connection for the HTTP edge: it fails fast instead of queueing commands while Redis is away,
 * so a request answers 503 within a second rather than hanging. Wait for 'ready' before serving.
 */
export function edgeConnection(url: string | RedisTarget): Redis {
  const redis = connectRedis(url, {
    enableOfflineQueue: false,
    commandTimeout: 500,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 100, 1_000),
  });
  // Reconnects are handled by retryStrategy; an unhandled 'error' event would crash the process.
  redis.on("error", () => undefined);
  return redis;
}

/**
 * Every key matching `pattern`, on every master of a cluster (a SCAN of a Cluster connection
 * would read one node only). Batches of keys, each batch from one node.
 */
export async function* scanAll(redis: Redis, pattern: string, count = 1000): AsyncGenerator<string[]> {
  for (const node of masters(redis)) {
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", count);
      cursor = next;
      if (keys.length > 0) yield keys;
    } while (cursor !== "0");
  }
}

/** BullMQ loses jobs if Redis evicts keys; refuse to start unless the policy is `noeviction` (on every master). */
export async function assertNoEviction(redis: Redis): Promise<void> {
  if (isCluster(redis) && redis.status !== "ready") {
    // The node list is known once the cluster is ready.
    await new Promise<void>((resolve, reject) => {
      redis.once("ready", resolve);
      redis.once("end", () => reject(new Error("the connection to the Redis Cluster ended")));
    });
  }
  for (const node of masters(redis)) {
    const reply = (await node.config("GET", "maxmemory-policy")) as string[];
    const policy = reply[1];
    if (policy !== "noeviction") {
      const where = isCluster(redis) ? ` on cluster node ${node.options.host ?? "?"}:${node.options.port ?? "?"}` : "";
      throw new ConfigError(
        "REDIS_URL",
        `Redis maxmemory-policy is "${policy ?? "unknown"}"${where}; queues need "noeviction" or jobs can be lost. ` +
          `Fix: redis-cli CONFIG SET maxmemory-policy noeviction (and set it in redis.conf).`,
      );
    }
  }
}

/**
 * Tenant caches (LOCAL_REDIS_URL) need a standalone server: tenant ACL users confined to a key
 * prefix, databases other than 0 and a purge that scans the whole server do not work on a
 * cluster node. Refuses a server that has cluster mode enabled; a server that cannot be reached
 * is no reason to stop here (the jobs that need it report it).
 */
export async function assertStandaloneServer(url: string, variable = "LOCAL_REDIS_URL"): Promise<void> {
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on("error", () => undefined);
  let info: string;
  try {
    await probe.connect();
    info = await probe.info("cluster");
  } catch {
    return;
  } finally {
    probe.disconnect();
  }
  if (/^cluster_enabled:1\s*$/m.test(info)) {
    throw new ConfigError(variable, "names a Redis Cluster node; tenant caches need a standalone Redis server (see README, Redis Cluster)");
  }
}
