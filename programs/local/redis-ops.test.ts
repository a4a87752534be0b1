// Tenant Redis ACL users on the real server (issue 11, findings 5, 6 and the Redis part of 2): what
// a tenant login can run, where the deprovision purge looks, and who may claim an ACL user name.
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cacheRules } from "../logical.ts";
import { TEST_REDIS_URL, checkRedis } from "../../test/support/services.ts";
import { ownerRecord, type Props } from "./handler.ts";
import { aclUserHandler } from "./redis-ops.ts";

/** The ownership registry's place (db 0 of the cache server), spelled out: it is the contract. */
const OWNERS_KEY = "stackrail:owners:acl-users";

/** Commands without keys a tenant may run: they only concern its own connection. */
const HARMLESS = new Set([
  "ping",
  "echo",
  "hello",
  "select",
  "auth",
  "quit",
  "reset",
  "multi",
  "exec",
  "discard",
  "unwatch",
  "client|setname",
  "client|getname",
  "client|id",
]);
/** Commands with key arguments that still act beyond them (run code, reach other servers or patterns). */
const NOT_CONFINED_BY_KEYS = new Set([
  "eval",
  "evalsha",
  "eval_ro",
  "evalsha_ro",
  "fcall",
  "fcall_ro",
  "migrate",
  "sort",
  "sort_ro",
  "restore",
  "restore-asking",
]);

const admin = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
const created: string[] = [];
const functionLibrary = `t${randomBytes(6).toString("hex")}`;

function cacheUrl(db: number): string {
  const u = new URL(TEST_REDIS_URL);
  u.pathname = `/${db}`;
  return u.toString();
}

function unique(): string {
  return `r${randomBytes(5).toString("hex")}`;
}

/** An owner as a stack makes it: `<key>/<token>`, a new token per incarnation. */
function ownerNamed(key: string): string {
  return `${key}/${randomBytes(12).toString("hex")}`;
}

function props(username: string, prefix: string, extra: Props = {}): Props {
  return {
    serverUrl: cacheUrl(1),
    username,
    password: randomBytes(24).toString("hex"),
    keyPrefix: prefix,
    rules: cacheRules(false),
    purgeOnDelete: true,
    owner: ownerNamed(username),
    ...extra,
  };
}

/** The state of a stack from before the ownership registry. */
function withoutOwner(p: Props): Props {
  return Object.fromEntries(Object.entries(p).filter(([k]) => k !== "owner"));
}

async function createTenant(p: Props): Promise<Props> {
  created.push(String(p.username));
  const { outs } = await aclUserHandler.create(p);
  return outs;
}

async function loginAs(p: Props, db = 0): Promise<Redis> {
  const u = new URL(TEST_REDIS_URL);
  const r = new Redis({
    host: u.hostname,
    port: Number(u.port || "6379"),
    username: String(p.username),
    password: String(p.password),
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  await r.connect();
  // SELECT as a command of its own: a refusal must fail the login, not leave it in db 0.
  if (db !== 0) await r.select(db);
  return r;
}

/** Every command and subcommand the server knows: name, arity, and whether it has key arguments. */
async function serverCommands(): Promise<{ name: string; arity: number; keyed: boolean; container: boolean }[]> {
  const reply = (await admin.call("COMMAND")) as unknown[][];
  const out: { name: string; arity: number; keyed: boolean; container: boolean }[] = [];
  const add = (c: unknown[]): void => {
    const subs = Array.isArray(c[9]) ? (c[9] as unknown[][]) : [];
    const keySpecs = Array.isArray(c[8]) ? c[8].length : 0;
    out.push({ name: String(c[0]).toLowerCase(), arity: Number(c[1]), keyed: keySpecs > 0 || Number(c[3]) > 0, container: subs.length > 0 });
    for (const s of subs) add(s);
  };
  for (const c of reply) add(c);
  return out;
}

/**
 * The commands `username` may run, whatever its keys: a twin with the same command rules and every
 * key, so that a key argument outside the prefix never hides a command permission.
 */
async function allowedCommands(username: string): Promise<string[]> {
  const user = (await admin.call("ACL", "GETUSER", username)) as unknown[];
  const commands = String(user[user.indexOf("commands") + 1]);
  const twin = `${username}-twin`;
  await admin.call("ACL", "SETUSER", twin, "reset", "off", "allkeys", "allchannels", ...commands.split(" "));
  try {
    const allowed: string[] = [];
    for (const c of await serverCommands()) {
      if (c.container) continue; // each subcommand is checked on its own
      const args = c.name.split("|");
      while (args.length < Math.abs(c.arity)) args.push("x");
      // Anything but OK or a permission denial (arity, unknown command) fails the test: nothing is skipped.
      const verdict = String(await admin.call("ACL", "DRYRUN", twin, ...args));
      if (verdict === "OK") allowed.push(c.name);
      else expect(verdict).toMatch(/^This user has no permissions to run/);
    }
    return allowed;
  } finally {
    await admin.call("ACL", "DELUSER", twin);
  }
}

async function everyDatabase(): Promise<number> {
  const reply = (await admin.call("CONFIG", "GET", "databases")) as string[];
  return Number(reply[1]);
}

/** Keys matching `pattern` in every database of the server, as `db:key`. */
async function keysEverywhere(pattern: string): Promise<string[]> {
  const found: string[] = [];
  const r = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
  try {
    for (let db = 0; db < (await everyDatabase()); db++) {
      await r.select(db);
      let cursor = "0";
      do {
        const [next, keys] = await r.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        found.push(...keys.map((k) => `${db}:${k}`));
      } while (cursor !== "0");
    }
  } finally {
    r.disconnect();
  }
  return found.sort();
}

async function unlinkEverywhere(pattern: string): Promise<void> {
  const r = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
  try {
    for (const entry of await keysEverywhere(pattern)) {
      const at = entry.indexOf(":");
      await r.select(Number(entry.slice(0, at)));
      await r.unlink(entry.slice(at + 1));
    }
  } finally {
    r.disconnect();
  }
}

beforeAll(async () => {
  await checkRedis();
});

afterAll(async () => {
  for (const name of created) {
    await admin.call("ACL", "DELUSER", name, `${name}-twin`);
    await admin.hdel(OWNERS_KEY, name);
  }
  try {
    await admin.call("FUNCTION", "DELETE", functionLibrary);
  } catch {
    // not loaded: the tenant was refused, as it should be
  }
  admin.disconnect();
});

describe("finding 5: tenant Redis users run only commands confined to their own keys", () => {
  for (const readOnly of [false, true]) {
    it(`every command a ${readOnly ? "read-only" : "read-write"} tenant user may run is keyed or a connection command`, async () => {
      const p = props(`t-${unique()}`, `t:${unique()}:`, { rules: cacheRules(readOnly) });
      await createTenant(p);
      const allowed = await allowedCommands(String(p.username));
      const commands = new Map((await serverCommands()).map((c) => [c.name, c]));
      const notConfined = allowed.filter((name) => !HARMLESS.has(name) && (NOT_CONFINED_BY_KEYS.has(name) || commands.get(name)?.keyed !== true));
      expect(notConfined).toEqual([]);
      // A sanity check of the sweep itself: the user is not simply locked out.
      expect(allowed).toEqual(expect.arrayContaining(["get", "ping", "select", "exec", ...(readOnly ? [] : ["set", "del"])]));
      if (readOnly) expect(allowed).not.toContain("set");
    });
  }

  describe("a real tenant login", () => {
    const mine = unique();
    const other = unique();
    const p = props(`t-${mine}`, `t:${mine}:`);
    const otherKey = `t:${other}:secret`;
    let tenant: Redis;

    beforeAll(async () => {
      await createTenant(p);
      await admin.set(otherKey, "other tenant's");
      tenant = await loginAs(p);
      await tenant.set(`t:${mine}:own`, "mine");
    });

    afterAll(async () => {
      tenant.disconnect();
      await unlinkEverywhere(`t:${mine}:*`);
      await unlinkEverywhere(`t:${other}:*`);
    });

    it("reads and writes its own keys, in transactions, in any database it selects", async () => {
      expect(await tenant.get(`t:${mine}:own`)).toBe("mine");
      expect(await tenant.multi().set(`t:${mine}:a`, "1").incr(`t:${mine}:a`).exec()).toEqual([
        [null, "OK"],
        [null, 2],
      ]);
      expect(await tenant.ping()).toBe("PONG");
      const elsewhere = await loginAs(p, 3);
      try {
        expect(await elsewhere.set(`t:${mine}:db3`, "x")).toBe("OK");
      } finally {
        elsewhere.disconnect();
      }
      expect(await keysEverywhere(`t:${mine}:db3`)).toEqual([`3:t:${mine}:db3`]);
    });

    const refused: [string, (string | number)[]][] = [
      ["FUNCTION LOAD", ["FUNCTION", "LOAD", `#!lua name=${functionLibrary}\nredis.register_function('f', function() return 1 end)`]],
      ["FUNCTION DELETE", ["FUNCTION", "DELETE", functionLibrary]],
      ["FUNCTION FLUSH", ["FUNCTION", "FLUSH"]],
      ["FUNCTION RESTORE", ["FUNCTION", "RESTORE", "x"]],
      ["FUNCTION LIST", ["FUNCTION", "LIST"]],
      ["FUNCTION DUMP", ["FUNCTION", "DUMP"]],
      ["FCALL", ["FCALL", "f", 1, `t:${mine}:own`]],
      ["FCALL_RO", ["FCALL_RO", "f", 1, `t:${mine}:own`]],
      ["EVAL", ["EVAL", "return redis.call('DBSIZE')", 0]],
      ["EVAL with own key", ["EVAL", "return redis.call('GET', KEYS[1])", 1, `t:${mine}:own`]],
      ["EVAL_RO", ["EVAL_RO", "return 1", 0]],
      ["EVALSHA", ["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0]],
      ["SCRIPT FLUSH", ["SCRIPT", "FLUSH"]],
      ["SCRIPT LOAD", ["SCRIPT", "LOAD", "return 1"]],
      ["SCRIPT EXISTS", ["SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"]],
      ["DBSIZE", ["DBSIZE"]],
      ["LOLWUT", ["LOLWUT"]],
      ["RANDOMKEY", ["RANDOMKEY"]],
      ["KEYS", ["KEYS", "*"]],
      ["SCAN", ["SCAN", 0]],
      ["FLUSHALL", ["FLUSHALL"]],
      ["FLUSHDB", ["FLUSHDB"]],
      ["SWAPDB", ["SWAPDB", 14, 15]],
      ["INFO", ["INFO"]],
      ["CONFIG GET", ["CONFIG", "GET", "maxmemory"]],
      ["PUBSUB CHANNELS", ["PUBSUB", "CHANNELS"]],
      ["PUBLISH", ["PUBLISH", `t:${other}:events`, "x"]],
      ["CLIENT LIST", ["CLIENT", "LIST"]],
      ["CLIENT KILL", ["CLIENT", "KILL", "USER", "default"]],
      ["WAIT", ["WAIT", 0, 1]],
      ["MEMORY STATS", ["MEMORY", "STATS"]],
      ["SLOWLOG GET", ["SLOWLOG", "GET"]],
      ["ACL LIST", ["ACL", "LIST"]],
      ["COMMAND", ["COMMAND", "COUNT"]],
      ["SORT with GET patterns", ["SORT", `t:${mine}:list`, "BY", "nosort", "GET", "*"]],
      ["OBJECT FREQ of another tenant's key", ["OBJECT", "FREQ", otherKey]],
      ["MOVE of another tenant's key", ["MOVE", otherKey, 5]],
      ["COPY of another tenant's key", ["COPY", otherKey, `t:${mine}:stolen`]],
      ["COPY into another tenant's prefix", ["COPY", `t:${mine}:own`, `t:${other}:planted`, "DB", 5]],
      ["GET of another tenant's key", ["GET", otherKey]],
      ["GET of the registry of owners", ["HGETALL", OWNERS_KEY]],
    ];
    for (const [label, command] of refused) {
      it(`is refused ${label}`, async () => {
        const [name, ...args] = command;
        await expect(tenant.call(String(name), ...args)).rejects.toThrow(/NOPERM/);
      });
    }

    it("is refused DEBUG (the server refuses it to everyone but local admins before the ACL check)", async () => {
      await expect(tenant.call("DEBUG", "HELP")).rejects.toThrow(/NOPERM|DEBUG command not allowed/);
      expect(await admin.call("ACL", "DRYRUN", String(p.username), "DEBUG", "HELP")).toMatch(/^This user has no permissions/);
    });

    it("left the other tenant's key and the server's functions alone", async () => {
      expect(await admin.get(otherKey)).toBe("other tenant's");
      expect(await keysEverywhere(`t:${other}:*`)).toEqual([`0:${otherKey}`]);
      expect(await admin.call("FUNCTION", "LIST", "LIBRARYNAME", functionLibrary)).toEqual([]);
    });
  });
});

describe("finding 6: the deprovision purge removes the tenant's keys in every database", () => {
  const base = unique();
  const p = props(`t-${base}`, `t:${base}:`);
  // Prefixes that share a beginning with the tenant's: none of their keys may go.
  const neighbours = [`t:${base}-c:`, `t:${base}c:`, `t:${base}x:`, `p:${base}:`];
  const queueKey = `t-queue-${base}:jobs:1`;

  afterAll(async () => {
    for (const n of neighbours) await unlinkEverywhere(`${n}*`);
    await unlinkEverywhere(`${queueKey}*`);
    await unlinkEverywhere(`t:${base}:*`);
  });

  it("keys the tenant wrote in db 0, 3 and 5 are gone, neighbours' and the queue's stay", async () => {
    await createTenant(p);
    const dbZero = await loginAs(p, 0);
    const dbThree = await loginAs(p, 3);
    try {
      await dbZero.set(`t:${base}:a`, "1");
      await dbZero.copy(`t:${base}:a`, `t:${base}:copied`, "DB", 5);
      await dbThree.set(`t:${base}:b`, "2");
      await dbThree.hset(`t:${base}:h`, "f", "v");
    } finally {
      dbZero.disconnect();
      dbThree.disconnect();
    }
    const kept: string[] = [];
    const r = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
    try {
      for (const db of [0, 1, 3, 5]) {
        await r.select(db);
        for (const n of neighbours) {
          await r.set(`${n}k`, "neighbour");
          kept.push(`${db}:${n}k`);
        }
      }
      await r.select(0);
      await r.set(queueKey, "job");
    } finally {
      r.disconnect();
    }
    expect(await keysEverywhere(`t:${base}:*`)).toEqual([`0:t:${base}:a`, `3:t:${base}:b`, `3:t:${base}:h`, `5:t:${base}:copied`]);

    await aclUserHandler.delete(String(p.username), p);

    expect(await keysEverywhere(`t:${base}:*`)).toEqual([]);
    const survivors = (await Promise.all(neighbours.map((n) => keysEverywhere(`${n}*`)))).flat();
    expect(survivors.sort()).toEqual(kept.sort());
    expect(await admin.get(queueKey)).toBe("job");
    expect(await admin.call("ACL", "GETUSER", String(p.username))).toBeNull();
  });

  it("a session open during the delete is ended before the purge and cannot write again", async () => {
    const q = props(`t-${unique()}`, `t:${unique()}:`);
    await createTenant(q);
    const session = await loginAs(q, 2);
    await session.set(`${String(q.keyPrefix)}before`, "x");
    const ended = new Promise<void>((resolve) => session.once("end", () => resolve()));
    await aclUserHandler.delete(String(q.username), q);
    await ended;
    await expect(session.set(`${String(q.keyPrefix)}after`, "x")).rejects.toThrow();
    expect(await keysEverywhere(`${String(q.keyPrefix)}*`)).toEqual([]);
  });

  it("keeps the keys when purgeOnDelete is false (a tier move shares them)", async () => {
    const q = props(`t-${unique()}`, `t:${unique()}:`, { purgeOnDelete: false });
    await createTenant(q);
    const session = await loginAs(q, 4);
    try {
      await session.set(`${String(q.keyPrefix)}kept`, "x");
    } finally {
      session.disconnect();
    }
    await aclUserHandler.delete(String(q.username), q);
    expect(await keysEverywhere(`${String(q.keyPrefix)}*`)).toEqual([`4:${String(q.keyPrefix)}kept`]);
    await unlinkEverywhere(`${String(q.keyPrefix)}*`);
  });
});

describe("finding 2: an ACL user that is not recorded as this tenant's is refused", () => {
  async function passwordStillWorks(username: string, password: string): Promise<void> {
    const r = await loginAs({ username, password });
    try {
      expect(await r.ping()).toBe("PONG");
    } finally {
      r.disconnect();
    }
  }

  it("create refuses an existing ACL user nobody recorded, and leaves it as it was", async () => {
    const p = props(`t-${unique()}`, `t:${unique()}:`);
    created.push(String(p.username));
    await admin.call("ACL", "SETUSER", String(p.username), "on", ">somebody-elses-password", "~*", "+@all");
    await expect(aclUserHandler.create(p)).rejects.toThrow(/exists but is not recorded as this tenant's/);
    await passwordStillWorks(String(p.username), "somebody-elses-password");
    expect(await admin.hget(OWNERS_KEY, String(p.username))).toBeNull();
  });

  it("create refuses an ACL user recorded as another stack's, and changes nothing", async () => {
    const first = props(`t-${unique()}`, `t:${unique()}:`);
    await createTenant(first);
    const second = { ...first, password: "another-password-1234567890", owner: ownerNamed(String(first.username)) };
    await expect(aclUserHandler.create(second)).rejects.toThrow(/recorded as owned by another tenant or an earlier incarnation/);
    await passwordStillWorks(String(first.username), String(first.password));
    expect(await admin.hget(OWNERS_KEY, String(first.username))).toBe(ownerRecord(String(first.owner)));
  });

  it("create records the owner, and adopts the user again for the same owner (a crashed earlier attempt)", async () => {
    const p = props(`t-${unique()}`, `t:${unique()}:`);
    await createTenant(p);
    expect(await admin.hget(OWNERS_KEY, String(p.username))).toBe(ownerRecord(String(p.owner)));
    const retry = { ...p, password: "the-retry-password-1234567890" };
    await aclUserHandler.create(retry);
    await passwordStillWorks(String(p.username), String(retry.password));
  });

  it("two stacks creating the same user at once: exactly one wins", async () => {
    const name = `t-${unique()}`;
    const a = props(name, `t:${unique()}:`);
    const b = props(name, String(a.keyPrefix));
    created.push(name);
    const results = await Promise.allSettled([aclUserHandler.create(a), aclUserHandler.create(b)]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const winner = results[0]?.status === "fulfilled" ? a : b;
    expect(await admin.hget(OWNERS_KEY, name)).toBe(ownerRecord(String(winner.owner)));
    await passwordStillWorks(name, String(winner.password));
  });

  it("update records an owner for a user created before the registry, and refuses another owner", async () => {
    const p = props(`t-${unique()}`, `t:${unique()}:`);
    const old = withoutOwner(p);
    created.push(String(p.username));
    // A stack from before the registry: the user exists, its state has no owner, nothing is recorded.
    await admin.call("ACL", "SETUSER", String(p.username), "reset", "on", `>${String(p.password)}`, `~${String(p.keyPrefix)}*`, ...cacheRules(false));
    await aclUserHandler.update(String(p.username), old, p);
    expect(await admin.hget(OWNERS_KEY, String(p.username))).toBe(ownerRecord(String(p.owner)));
    const intruder = { ...p, password: "intruder-password-1234567890", owner: ownerNamed(String(p.username)) };
    await expect(aclUserHandler.update(String(p.username), old, intruder)).rejects.toThrow(/recorded as owned by another tenant or an earlier incarnation/);
    await passwordStillWorks(String(p.username), String(p.password));
  });

  it("delete removes the user and its record, and refuses a user recorded as another stack's", async () => {
    const p = props(`t-${unique()}`, `t:${unique()}:`);
    await createTenant(p);
    const stale = { ...p, owner: ownerNamed(String(p.username)) };
    await expect(aclUserHandler.delete(String(p.username), stale)).rejects.toThrow(/recorded as owned by another tenant or an earlier incarnation/);
    await passwordStillWorks(String(p.username), String(p.password));
    await aclUserHandler.delete(String(p.username), p);
    expect(await admin.call("ACL", "GETUSER", String(p.username))).toBeNull();
    expect(await admin.hget(OWNERS_KEY, String(p.username))).toBeNull();
  });

  it("delete and read accept the state of a stack from before the registry (no owner)", async () => {
    const p = props(`t-${unique()}`, `t:${unique()}:`);
    const old = withoutOwner(p);
    created.push(String(p.username));
    await admin.call("ACL", "SETUSER", String(p.username), "reset", "on", `>${String(p.password)}`, `~${String(p.keyPrefix)}*`, ...cacheRules(false));
    const read = await aclUserHandler.read(String(p.username), old);
    expect(read.id).toBe(p.username);
    await aclUserHandler.delete(String(p.username), old);
    expect(await admin.call("ACL", "GETUSER", String(p.username))).toBeNull();
  });
});
