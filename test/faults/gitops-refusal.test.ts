// Faults of the GitOps remote and of the service's clone of it. The remote refuses every push for a
// minute (its pre-receive hook declines): a provision whose stack is already up waits, says why,
// and commits once the remote takes pushes again, without an operator's help, and exactly once.
// A git process killed mid-fetch (with its worker) leaves its ref lock in the clone the service
// keeps in the data dir: the next job must still commit.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanCase } from "../support/fault-expect.ts";
import { FINAL_STATES, startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, workerRunning } from "../support/fault-steps.ts";
import { commandLine } from "../support/worker-process.ts";
import { waitUntil } from "../support/private-services.ts";

const REFUSE_MS = Number(process.env.STACKRAIL_FAULTS_REFUSE_MS ?? 60_000);
let inst: FaultInstallation;

beforeAll(async () => {
  inst = await startFaultInstallation({ label: "gitref" });
  await ensureWorkers(inst, 1);
});

afterAll(async () => {
  inst?.remote.refuse(false);
  await inst?.close();
});

describe("GitOps remote refusing pushes", () => {
  it(`refuses for ${REFUSE_MS / 1000} s: the provision waits, says why, and commits once afterwards`, async () => {
    const id = inst.tenantId("push");
    inst.remote.refuse(true);
    const jobId = await inst.provision(id);
    await waitUntil("the first refused push", () => inst.remote.refusals() > 0, 180_000, 100);
    const firstRefusal = Date.now();
    // While the remote refuses, the job is never lost and never ends: it runs or waits.
    const seen = new Set<string>();
    let reasonShown = false;
    try {
      while (Date.now() - firstRefusal < REFUSE_MS) {
        const view = await inst.job(jobId);
        expect(view, "the job's record").not.toBeNull();
        seen.add(view?.state ?? "missing");
        // What an operator looking at the job sees: its error or its last progress line.
        reasonShown ||= /push|refus|reject|gitops/i.test(`${view?.error ?? ""} ${view?.progress.at(-1) ?? ""}`);
        expect(FINAL_STATES.has(view?.state ?? ""), `the job must outlast a ${REFUSE_MS / 1000} s refusal: ${view?.state} ${view?.error ?? ""}`).toBe(false);
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      inst.remote.refuse(false);
    }
    const refused = inst.remote.refusals();
    const view = await inst.waitForFinal(jobId, 240_000);
    expect(view.state, String(view.error)).toBe("succeeded");
    expect(reasonShown, "while it waited, the job said it was the GitOps remote").toBe(true);
    expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
    process.stdout.write(`faults-detail: gitops-refusal refused_pushes=${refused} states_seen=${[...seen].join(",")}\n`);
    await expectCleanCase(inst, "gitops-remote-refusing", [jobId], null);
  });

  it("the git push process killed mid-push: the job retries and commits, once", async () => {
    const id = inst.tenantId("gitk");
    const jobId = await inst.provision(id);
    const hold = inst.remote.hold("pre", `Job: ${jobId}`);
    await hold.arrived();
    const worker = workerRunning(inst, jobId);
    const pushes = worker.tree().filter((p) => commandLine(p).startsWith("git push"));
    expect(pushes, "the worker's git push").toHaveLength(1);
    // Only the push dies (out of memory, a signal): the worker lives on.
    process.kill(pushes[0] as number, "SIGKILL");
    hold.release();
    const view = await inst.waitForFinal(jobId, 240_000);
    const record = (await inst.api("GET", `/v1/tenants/${id}`)).body as Record<string, unknown>;
    expect(view.state, `${view.error ?? ""} | record: ${JSON.stringify(record)}`).toBe("succeeded");
    expect(record).toMatchObject({ id, state: "active" });
    expect(worker.alive()).toBe(true);
    expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    await expectCleanCase(inst, "gitops-push-killed", [jobId], null);
  });

  it("a ref lock left in the service's clone by a git killed mid-fetch: the next job still commits", async () => {
    const clones = path.join(inst.harness.dataDir, "gitops-clones");
    const clone = readdirSync(clones).find((n) => n.endsWith(".git"));
    expect(clone, "the service keeps a clone of the remote in its data dir").toBeDefined();
    // What `git fetch` leaves when it is SIGKILLed between taking the lock and renaming it into place.
    const refs = path.join(clones, clone as string, "refs", "remotes", "origin");
    mkdirSync(refs, { recursive: true });
    writeFileSync(path.join(refs, "main.lock"), "");
    const id = inst.tenantId("lock");
    const jobId = await inst.provision(id);
    const view = await inst.waitForFinal(jobId, 240_000);
    expect(view.state, `${view.error ?? ""}`).toBe("succeeded");
    expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    await expectCleanCase(inst, "gitops-clone-stale-ref-lock", [jobId], null);
  });
});
