// Finding 2 of issue 11 (names injective): every name derived from an id belongs to that id alone.
// A truncated MySQL user name (ids over 30 characters) must not be reachable by a shorter id,
// crafted or not; short ids keep the names existing stacks already have.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { logicalNames, type Scope } from "./naming.ts";

const ID = /^[a-z][a-z0-9-]{1,38}[a-z0-9]$/;
const PREVIEW_KEY = /^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$/;
const sha = (s: string): string => createHash("sha256").update(s).digest("hex");

describe("issue 11 finding 2: derived names are injective", () => {
  it("a 30-character id crafted from a 40-character victim does not get the victim's MySQL user", () => {
    const victim = "victim-tenant-with-a-very-long-name-0001";
    expect(victim).toMatch(ID);
    expect(victim).toHaveLength(40);
    // What the old scheme produced for the victim: `t_<first 21 chars>_<8 hex of sha256(id)>`;
    // an id spelling exactly that (with `-` for `_`) was an untruncated name equal to it.
    const crafted = `${victim.slice(0, 21)}-${sha(victim).slice(0, 8)}`;
    expect(crafted).toMatch(ID);
    expect(crafted).toHaveLength(30);
    expect(logicalNames("tenant", crafted).dbUser).not.toBe(logicalNames("tenant", victim).dbUser);
  });

  it("no id spelling a truncated name's shape, whatever hash length, meets a truncated name", () => {
    const victims = ["victim-tenant-with-a-very-long-name-0001", "b".repeat(40), `c${"-d".repeat(19)}e`, "x".repeat(31)];
    for (const scope of ["tenant", "silo", "preview"] as Scope[]) {
      const taken = new Map<string, string>();
      const add = (id: string): void => {
        if (!(scope === "preview" ? PREVIEW_KEY : ID).test(id)) return;
        const n = logicalNames(scope, id);
        for (const [kind, name] of [
          ["user", n.dbUser],
          ["database", n.database],
          ["cache", n.cacheUser],
          ["prefix", n.keyPrefix],
          ["dir", n.attachmentsDir],
        ] as const) {
          const k = `${kind}:${name}`;
          const other = taken.get(k);
          if (other !== undefined && other !== id) throw new Error(`${scope} ${kind} ${name} is shared by ${other} and ${id}`);
          taken.set(k, id);
        }
      };
      for (const v of victims) {
        add(v);
        const truncated = logicalNames(scope, v).dbUser;
        // Every way of spelling the truncated name (or any prefix of it) back as an id.
        const body = truncated.slice(2).replace(/_/g, "-");
        for (let len = 2; len <= body.length; len++) {
          add(body.slice(0, len));
          add(`${body.slice(0, len)}0`);
        }
        for (let cut = 3; cut <= 40; cut++) add(v.slice(0, cut));
      }
      // Ids that fold together under `-`/`_` or truncation in any naive scheme.
      for (const id of ["a-b", "a-bc", "ab", "ab-c", "abc", "ab-cd", "a--b", "a-b-c", "a-bc-d", "ab-c-d"]) add(id);
    }
  });

  it("short ids keep the names existing stacks already have", () => {
    expect(logicalNames("tenant", "sp-ab")).toMatchObject({ database: "t_sp_ab", dbUser: "t_sp_ab", cacheUser: "t-sp-ab", keyPrefix: "t:sp-ab:" });
    const thirty = "abcdefghij-klmnopqrst-uvwxyz12";
    expect(thirty).toHaveLength(30);
    expect(logicalNames("silo", thirty).dbUser).toBe(`s_${thirty.replace(/-/g, "_")}`);
    expect(logicalNames("preview", "web-pr-7").database).toBe("p_web_pr_7");
  });

  it("truncated user names fit MySQL 8's 32 characters and keep a readable prefix", () => {
    const long = logicalNames("tenant", "victim-tenant-with-a-very-long-name-0001");
    expect(long.dbUser.length).toBeLessThanOrEqual(32);
    // Resources in existing stacks keep the names the old user name gave them.
    expect(long.label).toBe("t_victim_tenant_with_a__e03a0675");
    expect(logicalNames("tenant", "sp-ab").label).toBe("t_sp_ab");
    expect(long.dbUser.startsWith("t_victim")).toBe(true);
    expect(long.database).toBe("t_victim_tenant_with_a_very_long_name_0001");
  });

  it("keys that could end in `-` are refused (an untruncated name never ends in `_`)", () => {
    expect(() => logicalNames("tenant", "abc-")).toThrow(RangeError);
  });
});
