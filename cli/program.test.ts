// What `--wait` prints at its end. A job's time counts from when it was queued, not from its last
// start: a rollout (a BullMQ parent job) runs again after its wave's steps and after each approval,
// so its `startedAt` is the start of its last, short run (an approved rollout that took 35 s was
// reported as "succeeded after 2s").
import { describe, expect, it } from "vitest";
import { jobViewSchema } from "./job-wait.ts";
import { outcomeText, tookMs } from "./program.ts";

const queued = Date.parse("2026-11-29T21:24:00.000Z");
const at = (s: number) => new Date(queued + s * 1000).toISOString();

describe("the outcome of a waited job", () => {
  it("counts a rollout's time from when it was queued to its end, and says so", () => {
    const view = jobViewSchema.parse({
      id: "r1",
      kind: "release.rollout",
      stack: "releases",
      state: "succeeded",
      progress: [],
      result: { version: "1.1.0" },
      createdAt: at(0),
      // Its last run: after the wave's steps, 2 s before its end.
      startedAt: at(33),
      finishedAt: at(35),
    });
    expect(tookMs(view)).toBe(35_000);
    const text = outcomeText(view, { now: queued + 60_000, waitedMs: 12_000 });
    expect(text.split("\n").slice(0, 3)).toEqual([
      "job r1 (release.rollout, releases) succeeded after 35s",
      `  counted from when it was queued (${at(0)}) to its end (${at(35)})`,
      "  version  1.1.0",
    ]);
  });

  it("without the job's times, counts the wait and says that instead", () => {
    const view = jobViewSchema.parse({ id: "j1", kind: "tenant.provision", state: "failed", error: "boom", progress: [] });
    expect(outcomeText(view, { now: queued, waitedMs: 7_000 })).toBe(
      "job j1 (tenant.provision) failed after 7s\n" +
        "  counted from when this command began waiting (the service did not say when the job was queued)\n" +
        "  error: boom\n",
    );
  });

  it("a rollout waiting for approval: which wave, since when, and the command that approves it", () => {
    const view = jobViewSchema.parse({ id: "r1", kind: "release.rollout", stack: "releases", state: "awaiting-approval", progress: [], createdAt: at(0) });
    const text = outcomeText(view, { now: queued + 6_400, waitedMs: 6_000, waiting: { wave: 2, revision: 1, regions: ["eu-central-1", "us-east-1"] } });
    expect(text.split("\n").slice(0, 2)).toEqual([
      "job r1 (release.rollout, releases) awaiting-approval of wave 2 (eu-central-1, us-east-1), plan revision 1, 6s after it was queued",
      "waiting for approval: stackrail releases approve r1",
    ]);
  });
});
