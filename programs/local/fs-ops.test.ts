// Issue 11 finding 2 for directories: a tenant's attachments folder that already exists is used
// only when the owner marker (outside every tenant's folder) names this tenant's stack.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { directoryHandler } from "./fs-ops.ts";
import type { Props } from "./handler.ts";

let root: string;
const ownerA = `acme/${randomBytes(24).toString("hex")}`;
const ownerB = `other/${randomBytes(24).toString("hex")}`;
const props = (rel: string, owner: string): Props => ({ root, relativePath: rel, owner });
const marker = (rel: string): string => path.join(root, ".owners", rel);

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), "stackrail-fs-ops-"));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("issue 11 finding 2: directories are adopted only when recorded as this tenant's", () => {
  it("an existing folder with somebody else's files is refused and left as it was", async () => {
    mkdirSync(path.join(root, "tenants", "pre"), { recursive: true });
    writeFileSync(path.join(root, "tenants", "pre", "theirs.txt"), "x");
    await expect(directoryHandler.create(props("tenants/pre", ownerA))).rejects.toThrow(/exists but is not recorded as this tenant's/);
    expect(readFileSync(path.join(root, "tenants", "pre", "theirs.txt"), "utf8")).toBe("x");
    expect(existsSync(marker("tenants/pre"))).toBe(false);
  });

  it("a folder recorded to another owner is refused; the same owner's retry is adopted", async () => {
    const created = await directoryHandler.create(props("tenants/own", ownerA));
    expect(created.outs.path).toBe(path.join(root, "tenants", "own"));
    expect(statSync(marker("tenants/own")).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(root, ".owners")).mode & 0o777).toBe(0o700);
    expect(readFileSync(marker("tenants/own"), "utf8")).not.toContain(ownerA.split("/")[1]);
    await expect(directoryHandler.create(props("tenants/own", ownerB))).rejects.toThrow(/recorded as owned by another tenant/);
    await expect(directoryHandler.update("x", props("tenants/own", ownerB), props("tenants/own", ownerB))).rejects.toThrow(
      /recorded as owned by another tenant/,
    );
    await expect(directoryHandler.delete("x", props("tenants/own", ownerB))).rejects.toThrow(/recorded as owned by another tenant/);
    await directoryHandler.create(props("tenants/own", ownerA));
  });

  it("update claims a folder the state already holds (existing stacks), in place", async () => {
    mkdirSync(path.join(root, "tenants", "mig"), { recursive: true, mode: 0o700 });
    const old: Props = { root, relativePath: "tenants/mig", path: path.join(root, "tenants", "mig") };
    expect(await directoryHandler.diff("x", old, props("tenants/mig", ownerA))).toMatchObject({ changes: true, replaces: [] });
    await directoryHandler.update("x", old, props("tenants/mig", ownerA));
    expect(existsSync(marker("tenants/mig"))).toBe(true);
  });

  it("delete removes the folder, then its marker; the name is then free", async () => {
    await directoryHandler.create(props("tenants/del", ownerA));
    await directoryHandler.delete("x", props("tenants/del", ownerA));
    expect(existsSync(path.join(root, "tenants", "del"))).toBe(false);
    expect(existsSync(marker("tenants/del"))).toBe(false);
    await directoryHandler.create(props("tenants/del", ownerB));
  });
});
