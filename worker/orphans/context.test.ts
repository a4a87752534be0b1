// How the audit ties an object's name back to its owner: names read backwards, shortened names
// only through a record or a registry entry, the other tier of a moved tenant, work in transit,
// and which objects the installation scope reports.
import { describe, expect, it } from "vitest";
import { logicalNames } from "../../core/naming.ts";
import type { TenantRecord } from "../../core/tenant-index.ts";
import { AuditContext, stillHolds } from "./context.ts";
import type { Records } from "./records.ts";
import { finding } from "../../jobs/orphan-report.ts";

function tenant(id: string, tier: "pool" | "silo", state: TenantRecord["state"] = "active"): [string, TenantRecord] {
  return [id, { id, region: "eu-west-1", tier, version: "1.0.0", state, outputs: {}, updatedAt: null }];
}

function records(over: Partial<Records> = {}): Records {
  return {
    tenants: new Map([tenant("acme", "pool"), tenant("moved", "silo")]),
    previews: new Set(["app-pr-3"]),
    cleanups: new Set(),
    inFlight: { tenants: new Set(), previews: new Set() },
    runningStacks: new Set(),
    known: { tenants: new Set(["acme", "moved"]), previews: new Set(["app-pr-3"]) },
    ...over,
  };
}

const LONG = "a-very-long-tenant-identifier-of-forty-c";

describe("orphan audit: owners of names", () => {
  it("reads untruncated names backwards and shortened ones only through a known key or a registry entry", () => {
    const ctx = new AuditContext("server", records(), []);
    expect(ctx.names.database("t_foo_bar")).toEqual({ scope: "tenant", key: "foo-bar" });
    expect(ctx.names.dbUser("s_foo")).toEqual({ scope: "silo", key: "foo" });
    expect(ctx.names.cacheUser("p-app-pr-3")).toEqual({ scope: "preview", key: "app-pr-3" });
    const short = logicalNames("tenant", LONG).dbUser;
    expect(short).not.toBe(`t_${LONG.replace(/-/g, "_")}`);
    expect(ctx.names.dbUser(short)).toEqual({ scope: "tenant" });
    expect(ctx.names.dbUser(short, LONG)).toEqual({ scope: "tenant", key: LONG });
    ctx.know("tenant", LONG);
    expect(ctx.names.dbUser(short)).toEqual({ scope: "tenant", key: LONG });
  });

  it("owns a tenant's tier, the other tier only while a move keeps it or a job works on it", () => {
    const plain = new AuditContext("server", records(), []);
    expect(plain.owner({ scope: "tenant", key: "acme" }).owned).toBe(true);
    expect(plain.owner({ scope: "silo", key: "acme" })).toMatchObject({ owned: false, why: expect.stringContaining("left by a move") });
    expect(plain.owner({ scope: "tenant", key: "nobody" })).toMatchObject({ owned: false });
    expect(plain.owner({ scope: "tenant" })).toMatchObject({ owned: false });
    expect(new AuditContext("server", records({ cleanups: new Set(["moved/pool"]) }), []).owner({ scope: "tenant", key: "moved" }).owned).toBe(true);
    const busy = records({ inFlight: { tenants: new Set(["nobody"]), previews: new Set() } });
    expect(new AuditContext("server", busy, []).owner({ scope: "tenant", key: "nobody" }).owned).toBe(true);
    expect(plain.owner({ scope: "preview", key: "app-pr-3" }).owned).toBe(true);
  });

  it("reports on shared servers only what the installation knows in its own scope, everything in the server scope", () => {
    const mine = new AuditContext("installation", records(), []);
    expect(mine.inScope({ scope: "tenant", key: "acme" })).toBe(true);
    expect(mine.inScope({ scope: "tenant", key: "stranger" })).toBe(false);
    expect(mine.inScope({ scope: "tenant" })).toBe(false);
    expect(new AuditContext("server", records(), []).inScope({ scope: "tenant" })).toBe(true);
  });

  it("repairs an object through the stack that made it, when that stack holds resources", () => {
    const ctx = new AuditContext("server", records(), [
      { project: "stackrail-pool", stack: "tenant-gone", resources: 9 },
      { project: "stackrail-pool", stack: "tenant-empty", resources: 0 },
    ]);
    expect(ctx.repairFor({ scope: "tenant", key: "gone" }, "by hand")).toBe("npm run orphans -- --repair stack:stackrail-pool/tenant-gone");
    expect(ctx.repairFor({ scope: "silo", key: "gone" }, "by hand")).toBe("by hand");
    expect(ctx.repairFor({ scope: "tenant", key: "empty" }, "by hand")).toBe("by hand");
  });

  it("keeps a finding only if records read after the objects agree: work that started meanwhile is not an orphan", () => {
    const before = records();
    const unowned = finding("database", "t_new_one", "unowned", "DROP DATABASE");
    // A provision claimed the id after the first read: its fresh database is owned.
    const after = records({ tenants: new Map([...before.tenants, tenant("new-one", "pool", "provisioning")]) });
    expect(stillHolds(unowned, { scope: "tenant", key: "new-one" }, before)).toBe(true);
    expect(stillHolds(unowned, { scope: "tenant", key: "new-one" }, after)).toBe(false);
    // A deprovision started: what it removes is not missing.
    const missing = finding("database", "t_acme", "missing", "drift");
    const leaving = records({ inFlight: { tenants: new Set(["acme"]), previews: new Set() } });
    expect(stillHolds(missing, { scope: "tenant", key: "acme" }, before)).toBe(true);
    expect(stillHolds(missing, { scope: "tenant", key: "acme" }, leaving)).toBe(false);
    // A job took the stack: the lock is its own.
    const lock = finding("stack-lock", "stackrail-pool/tenant-acme", "stale-lock", "rm");
    expect(stillHolds(lock, { runningStack: "tenant-acme" }, records({ runningStacks: new Set(["tenant-acme"]) }))).toBe(false);
    expect(stillHolds(lock, { runningStack: "tenant-acme" }, before)).toBe(true);
  });
});
