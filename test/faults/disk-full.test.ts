// The data dir's disk fills up (a 20 MiB tmpfs mounted for this file, filled to the last byte)
// while a provision's `up` writes its checkpoints. The job says why it stopped (no space), no
// state is corrupted, and once space is back the tenant ends whole: provisioned, or failed and
// then removed by DELETE. Mounting needs root; without it the file fails loudly, never skips.
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanCase } from "../support/fault-expect.ts";
import { FINAL_STATES, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, progressStep, workerRunning } from "../support/fault-steps.ts";

let inst: FaultInstallation;
let dir = "";
let mount = "";
let filler = "";

/** Writes zeros into `file` until the file system says ENOSPC; the bytes written. */
function fillDisk(file: string): number {
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
  // The last partial block too.
  const fd2 = openSync(file, "a");
  try {
    for (;;) written += writeSync(fd2, Buffer.alloc(512));
  } catch {
    // full
  } finally {
    closeSync(fd2);
  }
  return written;
}

/** JSON files under `root` that no longer parse (a write cut short by the full disk). */
function brokenJsonFiles(root: string): string[] {
  const broken: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith(".json")) {
        try {
          JSON.parse(readFileSync(full, "utf8"));
        } catch {
          broken.push(`${path.relative(root, full)} (${statSync(full).size} bytes)`);
        }
      }
    }
  };
  walk(root);
  return broken;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "stackrail-faults-disk-"));
  mount = path.join(dir, "data");
  mkdirSync(mount);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=20m,mode=0700", "tmpfs", mount], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot mount a 20 MiB tmpfs for the disk-full case (needs root): ${stderr || (err as Error).message}`);
  }
  inst = await startFaultInstallation({ label: "disk", dataDir: mount });
  await ensureWorkers(inst, 1);
});

afterAll(async () => {
  await inst?.close();
  if (mount) {
    try {
      execFileSync("umount", [mount], { stdio: "ignore" });
    } catch {
      // not mounted
    }
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("data dir disk full", () => {
  it("fills up mid-up: the job names the cause, nothing is corrupted, the tenant ends whole once space is back", async () => {
    const id = inst.tenantId("full");
    const jobId = await inst.provision(id);
    // On a loaded machine (other runs beside this one) the up may take minutes to reach its first create.
    await progressStep("creating", (lines) => lines.some((l) => l.startsWith("create ")), 600_000).reach(inst, jobId);
    const worker = workerRunning(inst, jobId);
    filler = path.join(mount, "filler");
    const bytes = fillDisk(filler);
    // The job meets the full disk: it ends, or shows the error while it waits for a retry.
    const hit = await inst.watch(jobId, "the job to meet the full disk", (v) => FINAL_STATES.has(v.state) || v.error !== undefined || v.attempts > 0, 180_000);
    const said = `${hit.error ?? ""} ${hit.progress.join(" ")}`;
    rmSync(filler, { force: true });
    expect(said, "the job names the cause").toMatch(/no space|ENOSPC|disk.*full/i);
    expect(worker.alive(), "the worker survives a full disk").toBe(true);

    let view = await inst.waitForFinal(jobId);
    const outcome = view.state;
    // Nothing the service or the engine keeps on that disk was left half-written.
    expect(brokenJsonFiles(mount), "JSON files left truncated by the full disk").toEqual([]);
    const jobs = [jobId];
    if (view.state === "succeeded") {
      expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
      expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    } else {
      // A failed provision keeps its record (`failed`) until DELETE removes what it made.
      expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "failed" });
      const del = await inst.api("DELETE", `/v1/tenants/${id}`);
      expect(del.status, JSON.stringify(del.body)).toBe(202);
      jobs.push(del.body.jobId as string);
      view = await inst.waitForFinal(del.body.jobId as string);
      expect(view.state, String(view.error)).toBe("succeeded");
      expect((await inst.api("GET", `/v1/tenants/${id}`)).status).toBe(404);
    }
    // Space is usable again and the service works on it: a second tenant provisions normally.
    const next = inst.tenantId("after");
    const nextJob = await inst.provision(next);
    jobs.push(nextJob);
    expect((await inst.waitForFinal(nextJob)).state).toBe("succeeded");
    process.stdout.write(`faults-detail: disk-full filled_bytes=${bytes} outcome=${outcome}\n`);
    await expectCleanCase(inst, "data-dir-disk-full", jobs, null);
  });
});
