// Redis ACL user operations behind the dynamic provider: one ACL user per tenant, confined to
// the tenant's key prefix, with its own password. Loaded with require() in the provider host.
import { createHash, randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { REDIS_USER_PATTERN } from "../naming.ts";
import { CHANGED_OUTSIDE, diffProps, gone, str, strings, type Handler, type Props } from "./handler.ts";

/** ACL rules a tenant rule list may contain: categories, single commands, nothing about keys or passwords. */
const RULE_PATTERN = /^[+-](@[a-z]+|[a-z]+(\|[a-z-]+)?)$/;
/** Command rules as the server writes them back (`-sort_ro`, `+memory|usage`, `-restore-asking`). */
const NORMAL_RULE_PATTERN = /^[+-]@?[a-z0-9_-]+(\|[a-z0-9_-]+)?$/;
const PREFIX_PATTERN = /^[a-z]:[a-z0-9-]{1,60}:$/;

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

async function applyUser(props: Props): Promise<void> {
  const { username, prefix, rules } = checked(props);
  const password = str(props, "password");
  await withRedis(str(props, "serverUrl"), async (r) => {
    // `reset` first: the user ends up with exactly these rules, whatever it had before.
    await r.call("ACL", "SETUSER", username, "reset", "on", `>${password}`, `~${prefix}*`, `&${prefix}*`, ...rules);
    await bestEffortSave(r);
  });
}

export const aclUserHandler: Handler = {
  async create(inputs) {
    await applyUser(inputs);
    return { id: str(inputs, "username"), outs: inputs };
  },
  diff(_id, olds, news) {
    return Promise.resolve(diffProps(olds, news, ["serverUrl", "username", "keyPrefix"]));
  },
  async update(_id, _olds, news) {
    await applyUser(news);
    return { outs: news };
  },
  async delete(_id, props) {
    // Not checked(): after a refresh the state may hold the server's own spelling of the rules.
    const { username, prefix } = identity(props);
    await withRedis(str(props, "serverUrl"), async (r) => {
      await r.call("ACL", "DELUSER", username); // 0 when already gone
      try {
        await r.call("CLIENT", "KILL", "USER", username); // sessions still open as the tenant end now
      } catch {
        // no such client
      }
      if (props.purgeOnDelete === true) {
        let cursor = "0";
        do {
          const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
          cursor = next;
          if (keys.length > 0) await r.unlink(...keys);
        } while (cursor !== "0");
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
      const expected = await normalCommands(r, rules);
      if (live.commands !== expected) out.rules = live.commands.split(" ").filter(Boolean);
      const password = props.password;
      if (typeof password === "string") {
        const hash = createHash("sha256").update(password, "utf8").digest("hex");
        if (live.passwords.length !== 1 || live.passwords[0] !== hash) out.password = CHANGED_OUTSIDE;
      }
      const observed = {
        enabled: live.flags.includes("on"),
        keys: live.keys,
        channels: live.channels,
        selectors: live.selectors,
      };
      if (!observed.enabled || observed.keys !== `~${prefix}*` || observed.channels !== `&${prefix}*` || observed.selectors > 0) {
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
