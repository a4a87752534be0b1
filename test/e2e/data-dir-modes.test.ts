// Issue 11, finding 12 (files): state files were world-readable. After a real provision, a tenant
// function upload and a deprovision (final backup) through the whole service, nothing in the data
// dir may be readable by group or others: Pulumi's file-backend state and what the engine wrote,
// workspaces, the engine's home, the GitOps repository, bundles, function files and backups. A
// data dir an older version left open (0755, a 0644 file) is tightened at start-up.
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { functionZip } from "../support/zip-builder.ts";

const tenant = `fm-${Math.random().toString(36).slice(2, 7)}`;
const parent = mkdtempSync(path.join(tmpdir(), "stackrail-modes-"));
const dataDir = path.join(parent, "data");
let h: Harness;

/** Every file and directory under `root` that group or others may read, write or enter. */
function openEntries(root: string): string[] {
  const out: string[] = [];
  const visit = (p: string): void => {
    const s = lstatSync(p, { throwIfNoEntry: false });
    if (!s || s.isSymbolicLink()) return;
    if ((s.mode & 0o077) !== 0) out.push(`${(s.mode & 0o7777).toString(8)} ${path.relative(root, p) || "."}`);
    if (s.isDirectory()) for (const e of readdirSync(p)) visit(path.join(p, e));
  };
  visit(root);
  return out;
}

const subdirs = () => readdirSync(dataDir).sort();

beforeAll(async () => {
  // What an older version left behind: an open data dir with a readable file in it.
  mkdirSync(path.join(dataDir, "backups", "old-tenant"), { recursive: true, mode: 0o755 });
  writeFileSync(path.join(dataDir, "backups", "old-tenant", "t_old.sql.gz"), "old dump", { mode: 0o644 });
  chmodSync(dataDir, 0o755);
  chmodSync(path.join(dataDir, "backups"), 0o755);
  h = await startHarness({ dataDir });
  const p = await h.request("POST", "/v1/tenants", { id: tenant, region: "eu-west-1", tier: "pool", version: "1.0.0" });
  expect((await h.waitForJob(p.body.jobId)).state).toBe("succeeded");
  const fn = await h.request("PUT", `/v1/tenants/${tenant}/functions/mode-check`, { handler: "index.handler", code: functionZip().toString("base64") });
  expect(fn.status).toBe(202);
  expect((await h.waitForJob(fn.body.jobId)).state).toBe("succeeded");
});

afterAll(async () => {
  await h?.close();
  await dropTenantLeftovers([tenant]);
  rmSync(parent, { recursive: true, force: true });
});

describe("finding 12: the data dir is private (0700 directories, 0600 files)", () => {
  it("after a provision and a function upload, nothing is open to group or others", () => {
    expect(subdirs()).toEqual(expect.arrayContaining(["state", "workspaces", "pulumi-home", "gitops.git", "blobs", "functions", "backups"]));
    expect(openEntries(dataDir)).toEqual([]);
  });

  it("after a deprovision with its final backup, still nothing is", async () => {
    const d = await h.request("DELETE", `/v1/tenants/${tenant}`);
    expect(d.status).toBe(202);
    const done = await h.waitForJob(d.body.jobId);
    expect(done.state).toBe("succeeded");
    expect(readdirSync(path.join(dataDir, "blobs", "tenants", tenant, "backups")).length).toBeGreaterThan(0);
    expect(openEntries(dataDir)).toEqual([]);
  });
});
