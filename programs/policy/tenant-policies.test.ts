// The rules for the per-tenant logical resources: what the tenant and preview programs declare
// passes, and each way out of a tenant's own space (another tenant's names, wildcards, broad
// cache rules, folders elsewhere) is refused by the rule that guards it.
import type { ResourceValidationArgs } from "@pulumi/policy";
import { describe, expect, it } from "vitest";
import { cacheRules, privilegesFor } from "../logical.ts";
import { logicalNames } from "../../core/naming.ts";
import {
  DIRECTORY_TYPE,
  MYSQL_DATABASE_TYPE,
  MYSQL_GRANT_TYPE,
  MYSQL_USER_TYPE,
  REDIS_ACL_USER_TYPE,
  namesForStack,
  tenantPolicies,
} from "./tenant-policies.ts";

async function check(stack: string, type: string, props: Record<string, unknown>): Promise<string[]> {
  const found: string[] = [];
  const urn = `urn:pulumi:${stack}::stackrail-pool::${type}::r`;
  for (const policy of tenantPolicies) {
    const validate = policy.validateResource;
    if (typeof validate === "function") {
      await validate({ type, props, urn, name: "r" } as unknown as ResourceValidationArgs, (message) => found.push(`${policy.name}: ${message}`));
    }
  }
  return found;
}

const acme = logicalNames("tenant", "acme");
/** What localLogicalSet declares for tenant acme, as the analyzer sees it. */
const declared: [string, Record<string, unknown>][] = [
  [MYSQL_DATABASE_TYPE, { name: acme.database, charset: "utf8mb4" }],
  [MYSQL_USER_TYPE, { user: acme.dbUser, host: "%", maxConnections: 20 }],
  [MYSQL_GRANT_TYPE, { user: acme.dbUser, host: "%", database: acme.database, privileges: privilegesFor(false), databaseMatch: "exact" }],
  [REDIS_ACL_USER_TYPE, { username: acme.cacheUser, keyPrefix: acme.keyPrefix, rules: cacheRules(false), purgeOnDelete: true }],
  [DIRECTORY_TYPE, { root: "/var/lib/stackrail/attachments", relativePath: acme.attachmentsDir }],
];

describe("tenant resource rules", () => {
  it("what the tenant program declares passes every rule, read-only too, and in the silo name space", async () => {
    for (const [type, props] of declared) expect(await check("tenant-acme", type, props)).toEqual([]);
    const ro = { username: acme.cacheUser, keyPrefix: acme.keyPrefix, rules: cacheRules(true) };
    expect(await check("tenant-acme", REDIS_ACL_USER_TYPE, ro)).toEqual([]);
    const silo = logicalNames("silo", "acme");
    expect(await check("tenant-acme", MYSQL_DATABASE_TYPE, { name: silo.database })).toEqual([]);
  });

  it("a preview stack's own names pass; a tenant's names in it do not", async () => {
    const p = logicalNames("preview", "web-pr-7");
    expect(await check("preview-web-pr-7", MYSQL_DATABASE_TYPE, { name: p.database })).toEqual([]);
    expect(await check("preview-web-pr-7", MYSQL_DATABASE_TYPE, { name: acme.database })).toEqual([expect.stringMatching(/^tenant-names-owned: /)]);
  });

  it("tenant-names-owned: a tenant stack holding another tenant's database, grant, cache user or folder fails", async () => {
    const other = logicalNames("tenant", "acme-2");
    const cases: [string, Record<string, unknown>][] = [
      [MYSQL_DATABASE_TYPE, { name: other.database }],
      [MYSQL_USER_TYPE, { user: other.dbUser, maxConnections: 20 }],
      [MYSQL_GRANT_TYPE, { user: acme.dbUser, database: other.database, privileges: ["SELECT"], databaseMatch: "exact" }],
      [REDIS_ACL_USER_TYPE, { username: acme.cacheUser, keyPrefix: other.keyPrefix, rules: ["-@all", "+@read"] }],
      [DIRECTORY_TYPE, { root: "/d/attachments", relativePath: other.attachmentsDir }],
    ];
    for (const [type, props] of cases) expect(await check("tenant-acme", type, props), type).toEqual([expect.stringMatching(/^tenant-names-owned: /)]);
    // Stacks that are not tenant or preview stacks are not held to it.
    expect(namesForStack("urn:pulumi:region-eu-west-1::stackrail::x::y")).toBeUndefined();
  });

  it("tenant-grants-confined: wildcards, a pattern match, global or empty privileges fail", async () => {
    const grant = { user: acme.dbUser, database: acme.database, privileges: ["SELECT"], databaseMatch: "exact" };
    for (const bad of [
      { database: "*" },
      { database: "t_%" },
      { database: "*.*" },
      { databaseMatch: "pattern" },
      { privileges: ["SUPER"] },
      { privileges: [] },
    ]) {
      const found = await check("x", MYSQL_GRANT_TYPE, { ...grant, ...bad });
      expect(
        found.some((f) => f.startsWith("tenant-grants-confined: ")),
        JSON.stringify(bad),
      ).toBe(true);
    }
  });

  it("tenant-db-user-limited: no connection limit (0) or an odd user name fails", async () => {
    expect(await check("x", MYSQL_USER_TYPE, { user: "t_acme", maxConnections: 0 })).toEqual([expect.stringMatching(/^tenant-db-user-limited: /)]);
    expect(await check("x", MYSQL_USER_TYPE, { user: "root'@'%", maxConnections: 5 })).toEqual([expect.stringMatching(/^tenant-db-user-limited: /)]);
  });

  it("tenant-cache-user-confined: all keys, +@all, dangerous or server-wide commands, and rule lists not starting from -@all fail", async () => {
    const user = { username: acme.cacheUser, keyPrefix: acme.keyPrefix };
    const bad: unknown[][] = [
      ["-@all", "+@all"],
      ["-@all", "allcommands"],
      ["-@all", "+@dangerous"],
      ["-@all", "+@admin"],
      ["-@all", "+flushall"],
      ["-@all", "+keys"],
      ["-@all", "+config|set"],
      ["-@all", "~*"],
      ["-@all", "allkeys"],
      ["-@all", "nopass"],
      ["-@all", ">secret"],
      ["+@read"],
    ];
    for (const rules of bad) {
      expect(await check("x", REDIS_ACL_USER_TYPE, { ...user, rules }), JSON.stringify(rules)).toEqual([
        expect.stringMatching(/^tenant-cache-user-confined: /),
      ]);
    }
    for (const keyPrefix of ["", "*", "t:", "t:acme", "t:acme:*", "acme:"]) {
      const found = await check("x", REDIS_ACL_USER_TYPE, { ...user, keyPrefix, rules: ["-@all"] });
      expect(found, keyPrefix).toEqual([expect.stringMatching(/^tenant-cache-user-confined: /)]);
    }
  });

  it("tenant-directory-confined: folders outside <root>/attachments/<scope>/<key> fail", async () => {
    for (const bad of [
      { root: "relative/attachments", relativePath: "tenants/acme" },
      { root: "/etc", relativePath: "tenants/acme" },
      { root: "/d/attachments/../../etc/attachments", relativePath: "tenants/acme" },
      { root: "/d/attachments", relativePath: "../acme" },
      { root: "/d/attachments", relativePath: "tenants/acme/../../x" },
      { root: "/d/attachments", relativePath: "/etc" },
      { root: "/d/attachments", relativePath: "tenants" },
    ]) {
      const found = await check("x", DIRECTORY_TYPE, bad);
      expect(found, JSON.stringify(bad)).toEqual([expect.stringMatching(/^tenant-directory-confined: /)]);
    }
  });
});
