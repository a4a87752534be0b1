// A lock write cut short (the data dir's disk full, the CLI killed between writing the temp file
// and renaming it) leaves `<uuid>.json.<random>.tmp` in the stack's lock folder. The engine reads
// every file there as a lock and fails on the empty one ("unexpected end of JSON input"), so the
// stack could never run again. Found by the disk-full fault case (test/faults/disk-full.test.ts).
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StackLockedError } from "../core/errors.ts";
import { localStackGuard } from "./stack-guard.ts";
import { abandonedWrite, fileLockStore, INCOMPLETE_LOCK_STALE_MS } from "./stack-locks.ts";

let root = "";
let lockDir = "";
const target = { projectName: "stackrail-pool", stack: "tenant-acme" };

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "stackrail-locks-"));
  lockDir = path.join(root, ".pulumi", "locks", "organization", target.projectName, target.stack);
  mkdirSync(lockDir, { recursive: true });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function incompleteLock(ageMs: number): string {
  const file = path.join(lockDir, "7e138311-e481-4b06-89ce-34a308408e9c.json.18ec96422886d798.tmp");
  writeFileSync(file, "");
  const t = (Date.now() - ageMs) / 1000;
  utimesSync(file, t, t);
  return file;
}

describe("incomplete lock writes", () => {
  it("are listed as incomplete locks, with the file's age", async () => {
    const file = incompleteLock(60_000);
    const locks = await fileLockStore(pathToFileURL(root).href).list(target.projectName, target.stack);
    expect(locks).toHaveLength(1);
    expect(locks?.[0]).toMatchObject({ location: file, incomplete: true, pid: undefined });
    expect(abandonedWrite(locks?.[0] as never)).toBe(true);
  });

  it("an abandoned one is removed before the operation, and the job says so", async () => {
    const file = incompleteLock(INCOMPLETE_LOCK_STALE_MS + 5_000);
    const lines: string[] = [];
    const claim = await localStackGuard(fileLockStore(pathToFileURL(root).href)).claim(target, { jobId: "j1", progress: (l) => lines.push(l) });
    await claim.release();
    expect(existsSync(file)).toBe(false);
    expect(lines.join("\n")).toMatch(/incomplete lock file .*\.tmp: a lock write cut short/);
  });

  it("a fresh one may still be renamed into place by its writer: the operation waits", async () => {
    const file = incompleteLock(0);
    const claim = localStackGuard(fileLockStore(pathToFileURL(root).href)).claim(target, { jobId: "j1", progress: () => undefined });
    await expect(claim).rejects.toBeInstanceOf(StackLockedError);
    expect(existsSync(file)).toBe(true);
  });
});
