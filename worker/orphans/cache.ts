// The tenant cache server (local target) against the records: ACL users in the tenant and preview
// name spaces (`t-`, `s-`, `p-`), their ownership hash (programs/local/redis-ops.ts), and key
// prefixes `t:<id>:` / `p:<key>:` in every database of the server. Keys are found with SCAN in
// steps (never KEYS): the server keeps serving while the audit reads it.
import { Redis } from "ioredis";
import { ACL_OWNERS_KEY } from "../../programs/local/redis-ops.ts";
import { REDIS_USER_PATTERN } from "../../core/naming.ts";
import type { AuditContext, Side } from "./context.ts";
import { ownerOfKeyPrefix } from "./records.ts";
import { finding, findingId } from "../../jobs/orphan-report.ts";

const NAME_SPACE = /^[tsp]-/;
const KEY_PREFIX = /^([tp]):([a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?):/;
/** The ownership hash lives in database 0 of the cache server (redis-ops.ts REGISTRY_DB). */
const REGISTRY_DB = 0;

/** `redis-cli` options for the server, without its password (`--askpass` asks for it). */
export function redisCli(url: string, db?: number): string {
  const u = new URL(url);
  const parts = ["redis-cli", "-h", u.hostname || "127.0.0.1", "-p", u.port || "6379"];
  if (u.protocol === "rediss:") parts.push("--tls");
  if (u.username) parts.push("--user", decodeURIComponent(u.username));
  if (u.password) parts.push("--askpass");
  if (db !== undefined) parts.push("-n", String(db));
  return parts.join(" ");
}

async function databaseCount(r: Redis): Promise<number | null> {
  try {
    const reply = (await r.call("CONFIG", "GET", "databases")) as unknown[];
    const n = Number(reply[1]);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null; // CONFIG refused (a managed server): only the configured database is read
  }
}

export async function checkCache(ctx: AuditContext, cacheUrl: string): Promise<{ partial?: string }> {
  const r = new Redis(cacheUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 10_000, retryStrategy: () => null });
  r.on("error", () => undefined);
  let partial: string | undefined;
  try {
    await r.connect();
    const users = ((await r.call("ACL", "USERS")) as string[]).filter((u) => NAME_SPACE.test(u) && REDIS_USER_PATTERN.test(u));
    const configuredDb = Number(new URL(cacheUrl).pathname.slice(1) || "0");
    await r.select(REGISTRY_DB);
    const registry = new Map(Object.entries(await r.hgetall(ACL_OWNERS_KEY)).map(([user, owner]) => [user, owner.split("/")[0] ?? ""]));
    const userSet = new Set(users);

    for (const user of users) {
      const side = ctx.names.cacheUser(user, registry.get(user));
      if (!ctx.inScope(side)) continue;
      const owner = ctx.owner(side);
      if (!owner.owned) {
        const fallback = `${redisCli(cacheUrl)} ACL DELUSER ${user} && ${redisCli(cacheUrl, REGISTRY_DB)} HDEL ${ACL_OWNERS_KEY} ${user}`;
        ctx.add(
          finding("acl-user", user, "unowned", ctx.repairFor(side, fallback), {
            ...(owner.owner ? { owner: owner.owner } : registry.has(user) ? { owner: `registry: ${registry.get(user)}` } : {}),
            detail: owner.why,
          }),
          side,
        );
      } else if (!registry.has(user)) {
        ctx.add(
          finding("acl-user", user, "unregistered", ctx.reRecord(side, findingId("acl-user", user)), {
            owner: owner.owner,
            detail: `no field in ${ACL_OWNERS_KEY}`,
          }),
          side,
        );
      }
    }
    for (const [user, ownerKey] of registry) {
      if (userSet.has(user)) continue;
      const side = ctx.names.cacheUser(user, ownerKey);
      if (!ctx.inScope(side) || ctx.owner(side).owned) continue;
      ctx.add(
        finding("acl-owner-entry", user, "stale-registry", `npm run orphans -- --repair ${findingId("acl-owner-entry", user)}`, {
          owner: `registry: ${ownerKey}`,
          detail: `its ACL user is gone and no record owns ${ownerKey}; by hand: ${redisCli(cacheUrl, REGISTRY_DB)} HDEL ${ACL_OWNERS_KEY} ${user}`,
        }),
        side,
      );
    }
    for (const expected of ctx.expected()) {
      if (!userSet.has(expected.names.cacheUser)) {
        const id = findingId("acl-user", expected.names.cacheUser);
        ctx.add(
          finding("acl-user", expected.names.cacheUser, "missing", expected.repairMissing(id), {
            owner: expected.owner,
            detail: "the record says it exists; the server has no such ACL user",
          }),
          expected.subject,
        );
      }
    }

    // Key prefixes, in every database: the deprovision purge visits each of them, so must the audit.
    const count = await databaseCount(r);
    if (count === null) partial = `could not read the number of databases; only database ${configuredDb} was scanned`;
    const dbs = count === null ? [configuredDb] : Array.from({ length: count }, (_, i) => i);
    const prefixes = new Map<string, { letter: "t" | "p"; key: string; dbs: Map<number, number> }>();
    for (const db of dbs) {
      await r.select(db);
      let cursor = "0";
      do {
        const [next, keys] = await r.scan(cursor, "MATCH", "[tp]:*", "COUNT", 1000);
        cursor = next;
        for (const k of keys) {
          const m = KEY_PREFIX.exec(k);
          if (!m?.[1] || !m[2]) continue;
          const id = `${m[1]}:${m[2]}`;
          const entry = prefixes.get(id) ?? { letter: m[1] as "t" | "p", key: m[2], dbs: new Map<number, number>() };
          entry.dbs.set(db, (entry.dbs.get(db) ?? 0) + 1);
          prefixes.set(id, entry);
        }
      } while (cursor !== "0");
    }
    for (const { letter, key, dbs: where } of prefixes.values()) {
      const side: Side = { scope: letter === "p" ? "preview" : "tenant", key };
      if (!ctx.inScope(side)) continue;
      const owner = ownerOfKeyPrefix(ctx.records, letter, key);
      if (owner.owned) continue;
      const pattern = `${letter}:${key}:*`;
      const byHand = [...where.keys()]
        .map((db) => `${redisCli(cacheUrl, db)} --scan --pattern '${pattern}' | xargs -r ${redisCli(cacheUrl, db)} UNLINK`)
        .join(" ; ");
      // A stack that still has its cache user purges the keys when it is destroyed.
      const viaStack = letter === "p" ? ctx.repairFor(side, "") : ctx.repairFor(side, "") || ctx.repairFor({ scope: "silo", key }, "");
      const keys = [...where.values()].reduce((a, b) => a + b, 0);
      ctx.add(
        finding("cache-keys", pattern, "unowned", viaStack || byHand, {
          detail: `${keys} key(s) in database(s) ${[...where.keys()].join(", ")}; ${owner.why}`,
        }),
        { scope: side.scope, key, anyTier: true },
      );
    }
  } finally {
    r.disconnect();
  }
  return partial ? { partial } : {};
}
