// The queue's own bookkeeping against BullMQ: lanes holding jobs that are gone or finished (a dead
// head blocks its stack until another job of the stack comes), lane leases no live job holds, jobs
// BullMQ shows active without any worker's lock, and tenant records left in a transitional state
// with no job working on them. Failed tenants are listed apart: owned, and DELETE cleans them up.
import type { Redis } from "ioredis";
import { JOBS_QUEUE } from "../../core/jobs.ts";
import type { AuditContext } from "./context.ts";
import { globEscape, scanKeys } from "./records.ts";
import { finding, findingId, type FailedTenant } from "../../jobs/orphan-report.ts";

/** As in stack-lanes.ts: an entry whose job does not exist yet may be an add in flight. */
export const GHOST_GRACE_MS = 30_000;
/** A record in a transitional state this long without a job is stuck (claims and enqueues take milliseconds). */
const STUCK_RECORD_MS = 60_000;

export interface LaneKeys {
  readonly lane: (stack: string) => string;
  readonly lease: (stack: string) => string;
  readonly meta: (jobId: string) => string;
  readonly job: (jobId: string) => string;
}

/** Key names of jobs/stack-lanes.ts and BullMQ under the queue prefix. */
export function laneKeys(prefix: string): LaneKeys {
  return {
    lane: (stack) => `${prefix}:lane:${stack}`,
    lease: (stack) => `${prefix}:lane-lease:${stack}`,
    meta: (jobId) => `${prefix}:jobmeta:${jobId}`,
    job: (jobId) => `${prefix}:${JOBS_QUEUE}:${jobId}`,
  };
}

/**
 * A lane entry is dead when its job is finished (completed, or failed for good), or does not exist
 * and was registered longer ago than the grace: the lane's own acquire drops exactly these.
 */
const DEAD_ENTRIES = `
-- KEYS[1] lane, then per entry i (ARGV[2 + i]): KEYS[2i] its record (jobmeta), KEYS[2i + 1] its BullMQ job
-- ARGV: graceMs, remove ('1' removes them), the lane's ids as the caller read them
-- Every key is declared (Redis Cluster): entries that joined since the caller read the lane are
-- new, not dead, and are left alone; entries that left it meanwhile are skipped.
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local mk = KEYS[2 * (i - 2)]
  local jk = KEYS[2 * (i - 2) + 1]
  if redis.call('LPOS', KEYS[1], id) then
    local gone = false
    if redis.call('EXISTS', jk) == 0 then
      local reg = tonumber(redis.call('HGET', mk, 'registeredAt') or '0')
      gone = (nowMs - reg) > tonumber(ARGV[1])
    elseif redis.call('HEXISTS', jk, 'finishedOn') == 1 then
      gone = true
    end
    if gone then table.insert(dead, id) end
  end
end
if ARGV[2] == '1' then for _, id in ipairs(dead) do redis.call('LREM', KEYS[1], 0, id) end end
return dead
`;

/** A lease whose holder job is gone or finished; removed only if that is still so (ARGV[3] = '1'). */
const STALE_LEASE = `
-- KEYS[1] lease, KEYS[2] the holder's BullMQ job   ARGV: holder (as the caller read it), unused, remove
local holder = redis.call('GET', KEYS[1])
if not holder or holder ~= ARGV[1] then return false end
local jk = KEYS[2]
if redis.call('EXISTS', jk) == 1 and redis.call('HEXISTS', jk, 'finishedOn') == 0 then return false end
local ttl = redis.call('PTTL', KEYS[1])
if ARGV[3] == '1' then redis.call('DEL', KEYS[1]) end
return {holder, ttl}
`;

/** Active jobs without a lock, read in one script so a job finishing meanwhile is not counted. */
const UNLOCKED_ACTIVE = `
-- KEYS[1] active list, KEYS[1 + i] the lock of job ARGV[i] (the active ids as the caller read them)
local out = {}
for i = 1, #ARGV do
  if redis.call('LPOS', KEYS[1], ARGV[i]) and redis.call('EXISTS', KEYS[1 + i]) == 0 then table.insert(out, ARGV[i]) end
end
return out
`;

export async function deadLaneEntries(redis: Redis, prefix: string, stack: string, remove: boolean): Promise<string[]> {
  const k = laneKeys(prefix);
  const ids = await redis.lrange(k.lane(stack), 0, -1);
  const keys = [k.lane(stack), ...ids.flatMap((id) => [k.meta(id), k.job(id)])];
  return (await redis.eval(DEAD_ENTRIES, keys.length, ...keys, String(GHOST_GRACE_MS), remove ? "1" : "0", ...ids)) as string[];
}

export async function staleLease(redis: Redis, prefix: string, stack: string, remove: boolean): Promise<{ holder: string; ttlMs: number } | null> {
  const k = laneKeys(prefix);
  const holder = await redis.get(k.lease(stack));
  if (!holder) return null;
  const r = (await redis.eval(STALE_LEASE, 2, k.lease(stack), k.job(holder), holder, "", remove ? "1" : "0")) as [string, number] | null;
  return r ? { holder: r[0], ttlMs: Number(r[1]) } : null;
}

export async function checkQueue(ctx: AuditContext, redis: Redis, prefix: string, now: number): Promise<FailedTenant[]> {
  const lanePrefix = `${prefix}:lane:`;
  for (const key of await scanKeys(redis, `${globEscape(lanePrefix)}*`)) {
    const stack = key.slice(lanePrefix.length);
    const dead = await deadLaneEntries(redis, prefix, stack, false);
    if (dead.length === 0) continue;
    const all = await redis.lrange(key, 0, -1);
    const headDead = dead.includes(all[0] ?? "");
    ctx.add(
      finding(
        "lane",
        stack,
        "dead-entries",
        `npm run orphans -- --repair ${findingId("lane", stack)} (by hand: ${dead.map((id) => `LREM ${key} 0 ${id}`).join("; ")})`,
        {
          detail: `${dead.length} of ${all.length} entries are jobs that are gone or finished (${dead.slice(0, 5).join(", ")}${dead.length > 5 ? ", …" : ""})${headDead ? "; the head is one of them: the stack's next job waits on it" : ""}`,
        },
      ),
    );
  }

  const leasePrefix = `${prefix}:lane-lease:`;
  for (const key of await scanKeys(redis, `${globEscape(leasePrefix)}*`)) {
    const stack = key.slice(leasePrefix.length);
    const stale = await staleLease(redis, prefix, stack, false);
    if (!stale) continue;
    ctx.add(
      finding(
        "lane-lease",
        stack,
        "stale-lease",
        `npm run orphans -- --repair ${findingId("lane-lease", stack)} (by hand: DEL ${key}; it also expires by itself)`,
        {
          owner: `job ${stale.holder}`,
          detail: `held by job ${stale.holder}, which is gone or finished${stale.ttlMs > 0 ? `; expires in ${Math.ceil(stale.ttlMs / 1000)} s` : ""}`,
        },
      ),
    );
  }

  const jobPrefix = laneKeys(prefix).job("");
  const active = await redis.lrange(`${jobPrefix}active`, 0, -1);
  const lockKeys = active.map((id) => `${jobPrefix}${id}:lock`);
  for (const id of (await redis.eval(UNLOCKED_ACTIVE, 1 + active.length, `${jobPrefix}active`, ...lockKeys, ...active)) as string[]) {
    ctx.add(
      finding(
        "job",
        id,
        "stuck-active",
        "a running worker takes it back within STACKRAIL_STALLED_INTERVAL_MS (back to waiting, or failed after repeated stalls); start one if none runs: npm start -- --role worker",
        { detail: "BullMQ lists it as active but no worker holds its lock: the worker that had it is gone" },
      ),
    );
  }

  const failed: FailedTenant[] = [];
  for (const t of ctx.records.tenants.values()) {
    if (t.state === "failed") {
      failed.push({
        tenant: t.id,
        failure: t.failure ? `${t.failure.job} ${t.failure.jobId}: ${t.failure.error}` : "failed",
        repair: `DELETE /v1/tenants/${t.id}`,
      });
      continue;
    }
    if (t.state !== "provisioning" && t.state !== "deprovisioning") continue;
    if (ctx.records.inFlight.tenants.has(t.id)) continue;
    const since = t.updatedAt ? Date.parse(t.updatedAt) : 0;
    if (now - since < STUCK_RECORD_MS) continue;
    ctx.add(
      finding(
        "tenant-record",
        t.id,
        "stuck-record",
        t.state === "provisioning"
          ? `DELETE /v1/tenants/${t.id} (or retry its provision from GET /v1/dead-letters)`
          : `npm run orphans -- --repair ${findingId("tenant-record", t.id)} (queues its deprovision again)`,
        {
          owner: `tenant ${t.id} (${t.state}, ${t.tier})`,
          detail: `${t.state} since ${t.updatedAt ?? "?"} and no job is working on it (the job was lost, or failed for good)`,
        },
      ),
      { scope: "tenant", key: t.id, anyTier: true },
    );
  }
  return failed;
}
