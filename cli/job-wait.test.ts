// The CLI reads every state the API can show: a release wave waiting for its approval is a job
// view like any other (not final). `--wait` stops there (exit 3) rather than polling until a person
// decides, unless told to wait through approvals; a wave approved a moment ago, which the worker has
// not resumed yet, is not a stop. The service here is a local HTTP server answering as the API's
// GET /v1/jobs/:id and GET /v1/releases/:jobId/plan do, poll by poll (cli.test.ts does the same
// against the real service; these are the moments a real rollout passes too quickly to pin down).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ApiClient } from "./api-client.ts";
import { EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_OK, worstExit } from "./exit-codes.ts";
import { exitCodeOf, isFinal, jobViewSchema, waitForJob, WaitTimeoutError, type AwaitedApproval } from "./job-wait.ts";

interface Poll {
  readonly state: string;
  /** The plan's decision fields while this poll's state holds (only asked for at awaiting-approval). */
  readonly plan?: Record<string, unknown>;
}

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A service whose rollout r1 goes through `polls`, one per GET of the job; the last one stays. */
async function rollout(polls: readonly Poll[]): Promise<{ client: ApiClient; requests: string[] }> {
  const requests: string[] = [];
  let at = -1;
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.setHeader("content-type", "application/json");
    if (req.url === "/v1/jobs/r1") {
      at = Math.min(at + 1, polls.length - 1);
      const poll = polls[at] as Poll;
      res.end(JSON.stringify({ id: "r1", kind: "release.rollout", stack: "releases", state: poll.state, progress: [`poll ${at}`] }));
    } else if (req.url === "/v1/releases/r1/plan") {
      const poll = polls[Math.max(at, 0)] as Poll;
      res.end(JSON.stringify({ jobId: "r1", version: "1.1.0", planned: true, state: poll.state, waves: [], ...poll.plan }));
    } else {
      res.writeHead(404).end(JSON.stringify({ error: "not_found", message: "no such route" }));
    }
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const baseUrl = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return { client: new ApiClient({ baseUrl, token: "t0ken-value" }), requests };
}

const wave2 = (approval: Record<string, unknown> | null) => ({ wave: 2, regions: ["eu-central-1", "us-east-1"], needsApproval: true, revision: 1, approval });
const waitingForWave2 = { awaitingApproval: { wave: 2, revision: 1 }, waves: [{ wave: 1, regions: ["eu-west-1"], approval: null }, wave2(null)] };
const approvedWave2 = { awaitingApproval: { wave: 2, revision: 1 }, waves: [wave2({ by: "ops", via: "api", wave: 2, revision: 1, at: "2026-11-29T21:24:33.159Z" })] };
/** Old code polled an awaiting rollout forever: a bound turns that into a failure, not a hang. */
const fast = { pollMs: 5, timeoutMs: 3_000 } as const;

describe("job views in the CLI", () => {
  it("accepts awaiting-approval and does not treat it as final", () => {
    const view = jobViewSchema.parse({ id: "r1", kind: "release.rollout", state: "awaiting-approval", progress: [] });
    expect(view.state).toBe("awaiting-approval");
    expect(isFinal(view.state)).toBe(false);
    expect(exitCodeOf(view)).toBe(EXIT_AWAITING_APPROVAL);
  });

  it("--wait stops at a wave waiting for an approval not given yet, and says which wave", async () => {
    const { client, requests } = await rollout([{ state: "running" }, { state: "awaiting-approval", plan: waitingForWave2 }]);
    const seen: AwaitedApproval[] = [];
    const view = await waitForJob(client, "r1", { onAwaitingApproval: (w) => seen.push(w) }, fast);
    expect(view.state).toBe("awaiting-approval");
    expect(exitCodeOf(view)).toBe(EXIT_AWAITING_APPROVAL);
    expect(seen).toEqual([{ wave: 2, revision: 1, regions: ["eu-central-1", "us-east-1"] }]);
    expect(requests).toEqual(["GET /v1/jobs/r1", "GET /v1/jobs/r1", "GET /v1/releases/r1/plan"]);
  });

  it("a wave approved a moment ago (the worker has not resumed it yet) is not a stop: the wait goes on to the end", async () => {
    const { client } = await rollout([
      { state: "awaiting-approval", plan: approvedWave2 },
      { state: "awaiting-approval", plan: approvedWave2 },
      { state: "running" },
      { state: "succeeded" },
    ]);
    const view = await waitForJob(client, "r1", {}, fast);
    expect(view.state).toBe("succeeded");
    expect(exitCodeOf(view)).toBe(EXIT_OK);
  });

  it("a rejected wave is not a stop either: the rollout ends cancelled", async () => {
    const rejected = { ...waitingForWave2, rejection: { by: "ops", via: "api", wave: 2, at: "2026-11-29T21:24:33.159Z" } };
    const { client } = await rollout([{ state: "awaiting-approval", plan: rejected }, { state: "cancelled" }]);
    const view = await waitForJob(client, "r1", {}, fast);
    expect(exitCodeOf(view)).toBe(EXIT_FAILED);
  });

  it("the next wave waiting after an approved one is a stop", async () => {
    const { client } = await rollout([
      { state: "awaiting-approval", plan: approvedWave2 },
      { state: "running" },
      { state: "awaiting-approval", plan: { awaitingApproval: { wave: 3, revision: 1 }, waves: [wave2({ by: "ops", revision: 1 }), { wave: 3, approval: null }] } },
    ]);
    const seen: AwaitedApproval[] = [];
    const view = await waitForJob(client, "r1", { onAwaitingApproval: (w) => seen.push(w) }, fast);
    expect(view.state).toBe("awaiting-approval");
    expect(seen).toEqual([{ wave: 3, revision: 1, regions: [] }]);
  });

  it("throughApproval waits through the approval to the job's end, without asking for the plan", async () => {
    const { client, requests } = await rollout([
      { state: "awaiting-approval", plan: waitingForWave2 },
      { state: "awaiting-approval", plan: waitingForWave2 },
      { state: "succeeded" },
    ]);
    const view = await waitForJob(client, "r1", {}, { ...fast, throughApproval: true });
    expect(view.state).toBe("succeeded");
    expect(requests.filter((r) => r.includes("/plan"))).toEqual([]);
  });

  it("without throughApproval, an approval nobody gives ends the wait, not the timeout", async () => {
    const { client } = await rollout([{ state: "awaiting-approval", plan: waitingForWave2 }]);
    const outcome = await waitForJob(client, "r1", {}, fast).catch((e: unknown) => e);
    expect(outcome).not.toBeInstanceOf(WaitTimeoutError);
    // And with it, only the timeout ends it.
    const through = await waitForJob(client, "r1", {}, { pollMs: 5, timeoutMs: 200, throughApproval: true }).catch((e: unknown) => e);
    expect(through).toBeInstanceOf(WaitTimeoutError);
  });

  it("of several waited jobs, a failure outranks a wait for approval, which outranks success", () => {
    expect(worstExit([])).toBe(EXIT_OK);
    expect(worstExit([EXIT_OK, EXIT_AWAITING_APPROVAL])).toBe(EXIT_AWAITING_APPROVAL);
    expect(worstExit([EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_OK])).toBe(EXIT_FAILED);
  });
});
