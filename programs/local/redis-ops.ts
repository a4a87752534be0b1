// Redis ACL user operations behind the dynamic provider: one ACL user per tenant, confined to
// the tenant's key prefix, with its own password. Loaded with require() in the provider host.
import { createHash, randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { TENANT_CACHE_DENIALS } from "../cache-acl.ts";
import { REDIS_USER_PATTERN } from "../../core/naming.ts";
import { CHANGED_OUTSIDE, diffProps, gone, notRecordedError, ownedByOtherError, ownerOf, str, strings, type Handler, type Props } from "./handler.ts";

/** ACL rules a tenant rule list may contain: categories, single commands, nothing about keys or passwords. */
const RULE_PATTERN = /^[+-](@[a-z]+|[a-z_]+(\|[a-z-]+)?)$/;
/** Command rules as the server writes them back (`-sort_ro`, `+memory|usage`, `-restore-asking`). */
const NORMAL_RULE_PATTERN = /^[+-]@?[a-z0-9_-]+(\|[a-z0-9_-]+)?$/;
const PREFIX_PATTERN = /^[a-z]:[a-z0-9-]{1,60}:$/;

/**
 * Which stack each tenant ACL user belongs to (field: user name, value: ownerRecord(owner), the
 * key and a digest, never the token). In database 0 of
 * the cache server, outside every tenant key pattern (`t:…`, `p:…`), so no tenant can read or
 * forge it; ACL users are server-wide, so one registry per server whatever database a URL names.
 */
export const ACL_OWNERS_KEY = "stackrail:owners:acl-users";
const REGISTRY_DB = 0;

async function withRedis<T>(serverUrl: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(serverUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 10_000, retryStrategy: () => null });
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

function identity(props: Props): { username: string; prefix: string } {
  const username = str(props, "username");
  if (!REDIS_USER_PATTERN.test(username) || username === "default") throw new Error(`unsafe ACL user name: ${username}`);
  const prefix = str(props, "keyPrefix");
  if (!PREFIX_PATTERN.test(prefix)) throw new Error(`unsafe key prefix: ${prefix}`);
  return { username, prefix };
}

function checked(props: Props): { username: string; prefix: string; rules: string[] } {
  const { username, prefix } = identity(props);
  const rules = strings(props, "rules");
  for (const r of rules) if (!RULE_PATTERN.test(r)) throw new Error(`ACL rule not allowed: ${r}`);
  return { username, prefix, rules };
}

async function bestEffortSave(r: Redis): Promise<void> {
  // Persists ACLs when the server uses an aclfile; a server without one answers an error, which is fine.
  try {
    await r.call("ACL", "SAVE");
  } catch {
    // no aclfile configured
  }
}

const WHAT = "Redis ACL user";

function requiredOwner(props: Props): string {
  const owner = ownerOf(props);
  if (owner === undefined) throw new Error("input owner must be <key>/<token>");
  return owner;
}

async function recordedOwner(r: Redis, username: string): Promise<string | null> {
  await r.select(REGISTRY_DB);
  return r.hget(ACL_OWNERS_KEY, username);
}

/** Records `owner` unless the user is already recorded; HSETNX decides between concurrent claims. */
async function claim(r: Redis, username: string, owner: string): Promise<void> {
  await r.select(REGISTRY_DB);
  if ((await r.hsetnx(ACL_OWNERS_KEY, username, owner)) === 1) return;
  const recorded = await r.hget(ACL_OWNERS_KEY, username);
  if (recorded !== owner) throw ownedByOtherError(WHAT, username);
}

async function setUser(r: Redis, props: Props): Promise<void> {
  const { username, prefix, rules } = checked(props);
  const password = str(props, "password");
  // `reset` first: the user ends up with exactly these rules, whatever it had before. The denials
  // come last so that no rule list, however loose, reaches past the tenant's keys.
  await r.call("ACL", "SETUSER", username, "reset", "on", `>${password}`, `~${prefix}*`, `&${prefix}*`, ...rules, ...TENANT_CACHE_DENIALS);
  await bestEffortSave(r);
}

/**
 * Ends every way into the tenant's keys, then removes them in every database: `off` stops new
 * logins, CLIENT KILL ends the sessions already open (none can write during the purge), DELUSER
 * removes the user. Databases cannot be confined by ACLs, so the purge visits each of them.
 */
async function removeUser(r: Redis, username: string, prefix: string, purge: boolean): Promise<void> {
  if (await r.call("ACL", "GETUSER", username)) {
    await r.call("ACL", "SETUSER", username, "off");
    await r.call("CLIENT", "KILL", "USER", username);
    await r.call("ACL", "DELUSER", username);
  }
  if (purge) await purgeEverywhere(r, prefix);
}

/** SCAN in small steps and UNLINK (freed in the background): the server keeps serving meanwhile. */
async function purgeEverywhere(r: Redis, prefix: string): Promise<void> {
  const reply = (await r.call("CONFIG", "GET", "databases")) as unknown[];
  const databases = Number(reply[1]);
  if (!Number.isInteger(databases) || databases < 1) throw new Error("could not read the number of Redis databases");
  for (let db = 0; db < databases; db++) {
    await r.select(db);
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      cursor = next;
      if (keys.length > 0) await r.unlink(...keys);
    } while (cursor !== "0");
  }
}

export const aclUserHandler: Handler = {
  async create(inputs) {
    const { username } = checked(inputs);
    const owner = requiredOwner(inputs);
    await withRedis(str(inputs, "serverUrl"), async (r) => {
      const recorded = await recordedOwner(r, username);
      if (recorded !== null && recorded !== owner) throw ownedByOtherError(WHAT, username);
      // Recorded as ours: an earlier attempt of this stack got this far, the user is ours to adopt.
      if (recorded === null) {
        if (await r.call("ACL", "GETUSER", username)) throw notRecordedError(WHAT, username);
        await claim(r, username, owner);
      }
      await setUser(r, inputs);
    });
    return { id: username, outs: inputs };
  },
  diff(_id, olds, news) {
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "username", "keyPrefix"]));
  },
  async update(_id, _olds, news) {
    const { username } = checked(news);
    const owner = requiredOwner(news);
    await withRedis(str(news, "serverUrl"), async (r) => {
      const recorded = await recordedOwner(r, username);
      // No entry: a stack from before the registry, whose state says the user is its own.
      if (recorded === null) await claim(r, username, owner);
      else if (recorded !== owner) throw ownedByOtherError(WHAT, username);
      await setUser(r, news);
    });
    return { outs: news };
  },
  async delete(_id, props) {
    // Not checked(): after a refresh the state may hold the server's own spelling of the rules.
    const { username, prefix } = identity(props);
    const owner = ownerOf(props);
    await withRedis(str(props, "serverUrl"), async (r) => {
      const recorded = await recordedOwner(r, username);
      // A state without an owner predates the registry: it may remove only an unrecorded user.
      if (recorded !== null && recorded !== owner) throw ownedByOtherError(WHAT, username);
      await removeUser(r, username, prefix, props.purgeOnDelete === true);
      if (recorded !== null) {
        await r.select(REGISTRY_DB);
        await r.hdel(ACL_OWNERS_KEY, username);
      }
      await bestEffortSave(r);
    });
  },
  async read(id, props) {
    // The rules in state may be the server's spelling (from an earlier refresh): a looser check.
    const { username, prefix } = identity(props);
    const rules = strings(props, "rules");
    for (const rule of rules) if (!NORMAL_RULE_PATTERN.test(rule)) throw new Error(`ACL rule not allowed: ${rule}`);
    return withRedis(str(props, "serverUrl"), async (r) => {
      const live = await getUser(r, username);
      if (!live) return gone();
      const out: Props = { ...props };
      // The server rewrites rules into its own normal form: compare with the same rules applied to a probe.
      const expected = await normalCommands(r, [...rules, ...TENANT_CACHE_DENIALS]);
      if (live.commands !== expected) out.rules = live.commands.split(" ").filter(Boolean);
      const password = props.password;
      if (typeof password === "string") {
        const hash = createHash("sha256").update(password, "utf8").digest("hex");
        if (live.passwords.length !== 1 || live.passwords[0] !== hash) out.password = CHANGED_OUTSIDE;
      }
      const recorded = await recordedOwner(r, username);
      const owner = ownerOf(props);
      const observed = {
        enabled: live.flags.includes("on"),
        keys: live.keys,
        channels: live.channels,
        selectors: live.selectors,
        // Recorded as another stack's: shows as drift, and the next `up` (an update) refuses it.
        ownedElsewhere: recorded !== null && recorded !== owner,
      };
      const drifted = !observed.enabled || observed.keys !== `~${prefix}*` || observed.channels !== `&${prefix}*` || observed.selectors > 0;
      if (drifted || observed.ownedElsewhere) {
        // Not a declared property: its presence alone makes the next `up` update (reset) the user.
        out.observed = observed;
      }
      return { id, props: out };
    });
  },
};

interface LiveUser {
  flags: string[];
  passwords: string[];
  commands: string;
  keys: string;
  channels: string;
  selectors: number;
}

const joined = (v: unknown): string => (Array.isArray(v) ? v.map(String).join(" ") : typeof v === "string" ? v : "");

async function getUser(r: Redis, username: string): Promise<LiveUser | null> {
  const reply = (await r.call("ACL", "GETUSER", username)) as unknown[] | null;
  if (!reply) return null;
  const fields = new Map<string, unknown>();
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), reply[i + 1]);
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  return {
    flags: list(fields.get("flags")),
    passwords: list(fields.get("passwords")),
    commands: joined(fields.get("commands")),
    keys: joined(fields.get("keys")),
    channels: joined(fields.get("channels")),
    selectors: list(fields.get("selectors")).length,
  };
}

/** The server's normal form of a rule list, read from a throw-away user nobody can log in as. */
async function normalCommands(r: Redis, rules: string[]): Promise<string> {
  const probe = `stackrail-probe-${randomBytes(6).toString("hex")}`;
  try {
    // `reset` leaves the probe off and without passwords.
    await r.call("ACL", "SETUSER", probe, "reset", ...rules);
    return (await getUser(r, probe))?.commands ?? "";
  } finally {
    await r.call("ACL", "DELUSER", probe);
  }
}
