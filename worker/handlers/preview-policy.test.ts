// Issue 16, item 5: a preview environment on aws is checked by the same mandatory policy pack as
// every other `up` (the runner previews with the pack first, so a violation applies nothing).
// The aws provider cannot run here: the runner double records what the engine would be asked.
// Issue 13 §1: the same pack on local, and the plan on the PR: the comment shows the diff the
// `up` applied, and a refused plan fails the preview with its violations listed, a failing
// status and nothing committed (the real engine's side is in worker/pulumi-plan.test.ts).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type Config } from "../../core/config.ts";
import { PolicyViolationError } from "../../core/errors.ts";
import { SecretScrubber } from "../../core/logger.ts";
import { deleteRedisPrefix } from "../../test/support/cleanup.ts";
import { TEST_REDIS_URL, localServiceEnv, uniqueName } from "../../test/support/services.ts";
import type { CommitStatusInput, FeedbackRecord, StickyCommentInput } from "../github/feedback.ts";
import { LogFeedback } from "../github/log-feedback.ts";
import { PreviewRegistry } from "../preview-registry.ts";
import type { OperationSummary, ResourceDiff, StackOperationRequest } from "../pulumi-protocol.ts";
import type { StackRunner } from "../pulumi-runner.ts";
import { policyPacksFor } from "../runner-factory.ts";
import { MemoryWriter, RecordingRunner, jobContext } from "./handler-doubles.test-support.ts";
import { previewDestroyHandler, previewUpHandler } from "./preview.ts";

const prefix = uniqueName("preview-policy");
let dataDir: string;
let redis: Redis;
let config: Config;

const AWS_PREVIEW_OUTPUTS = {
  target: "aws",
  databaseHost: "aurora.example",
  databaseName: "p_web_pr_7",
  cacheHost: "cache.example",
  cacheKeyPrefix: "p:web-pr-7:",
  url: "https://web-pr-7.eu-west-1.stackrail.example.com",
};

beforeAll(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-preview-policy-"));
  redis = new Redis(TEST_REDIS_URL);
  config = loadConfig({
    ...localServiceEnv({ dataDir, prefix, apiToken: "t".repeat(32), passphrase: "p" }),
    STACKRAIL_TARGET: "aws",
    STACKRAIL_REPOSITORIES: "*",
  });
});

afterAll(async () => {
  redis?.disconnect();
  await deleteRedisPrefix(prefix);
  rmSync(dataDir, { recursive: true, force: true });
});

describe("item 5: previews on aws run the policy pack", () => {
  it("preview.up and preview.destroy hand the runner the target's mandatory packs", async () => {
    const packs = policyPacksFor(config);
    expect(packs.length).toBeGreaterThan(0);
    const runner = new RecordingRunner(() => AWS_PREVIEW_OUTPUTS);
    const logger = pino({ level: "silent" });
    const deps = {
      config,
      logger,
      scrubber: new SecretScrubber(),
      runner,
      writer: new MemoryWriter(),
      registry: new PreviewRegistry(redis, prefix),
      feedbackFor: () => Promise.resolve(new LogFeedback({ logger })),
      policyPacks: packs,
    };
    const repo = { owner: "acme", name: "web" };
    const trigger = { type: "api", tokenName: "t" } as const;
    const requestedAt = new Date().toISOString();
    await previewUpHandler(deps)(jobContext("pv-up", { kind: "preview.up", trigger, requestedAt, repo, pr: 7, headSha: "a".repeat(40) }));
    await previewDestroyHandler(deps)(jobContext("pv-down", { kind: "preview.destroy", trigger, requestedAt, repo, pr: 7, headSha: "a".repeat(40) }));
    expect(runner.requests.map((r) => [r.operation, r.program, r.policyPacks])).toEqual([
      ["up", "preview", packs],
      ["destroy", "preview", packs],
    ]);
  });
});

/** The log feedback, remembering each comment body and commit status state. */
class SeenFeedback extends LogFeedback {
  readonly comments: string[] = [];
  readonly statuses: string[] = [];
  override async stickyComment(input: StickyCommentInput): Promise<FeedbackRecord> {
    this.comments.push(input.body);
    return super.stickyComment(input);
  }
  override async commitStatus(input: CommitStatusInput): Promise<FeedbackRecord> {
    this.statuses.push(`${input.context}: ${input.state}`);
    return super.commitStatus(input);
  }
}

/** Answers every `up` with a summary carrying `diff`, or fails it with `error`. */
class PlanRunner implements StackRunner {
  readonly requests: StackOperationRequest[] = [];
  readonly answer: { diff?: ResourceDiff[]; error?: Error };
  constructor(answer: { diff?: ResourceDiff[]; error?: Error }) {
    this.answer = answer;
  }
  run(request: StackOperationRequest): Promise<OperationSummary> {
    this.requests.push(request);
    if (this.answer.error) return Promise.reject(this.answer.error);
    return Promise.resolve({
      operation: request.operation,
      result: "succeeded",
      resourceChanges: { update: 1, same: 7 },
      diff: this.answer.diff ?? [],
      violations: [],
      outputs: {
        target: "local",
        databaseHost: "127.0.0.1",
        databasePort: 3306,
        databaseName: "p_web_pr_8",
        databaseUser: "p_web_pr_8",
        databasePassword: "[secret]",
        cacheHost: "127.0.0.1",
        cachePort: 6379,
        cacheDb: 1,
        cacheUser: "p-web-pr-8",
        cacheKeyPrefix: "p:web-pr-8:",
        cachePassword: "[secret]",
        attachmentsPath: "/tmp/attachments/previews/web-pr-8",
        url: "http://web-pr-8.preview.localhost",
      },
      durationMs: 1,
    });
  }
}

describe("issue 13 §1: previews on local run the pack, and the PR sees the plan", () => {
  const repo = { owner: "acme", name: "web" };
  const trigger = { type: "api", tokenName: "t" } as const;
  const grantUrn = "urn:pulumi:preview-web-pr-8::stackrail::pulumi-nodejs:dynamic/stackrail:MysqlGrant::p_web_pr_8-db-grant";

  function setup(runner: StackRunner, local: Config) {
    const logger = pino({ level: "silent" });
    const feedback = new SeenFeedback({ logger });
    const writer = new MemoryWriter();
    const deps = {
      config: local,
      logger,
      scrubber: new SecretScrubber(),
      runner,
      writer,
      registry: new PreviewRegistry(redis, prefix),
      feedbackFor: () => Promise.resolve(feedback),
      policyPacks: policyPacksFor(local),
    };
    return { deps, feedback, writer };
  }

  const localConfig = (): Config =>
    loadConfig({ ...localServiceEnv({ dataDir, prefix, apiToken: "t".repeat(32), passphrase: "p" }), STACKRAIL_REPOSITORIES: "*" });

  it("the local target gets the same mandatory pack as aws", () => {
    const local = localConfig();
    expect(local.target).toBe("local");
    expect(policyPacksFor(local)).toEqual(policyPacksFor(config));
    expect(policyPacksFor(local).length).toBeGreaterThan(0);
  });

  it("the comment shows the applied plan: per resource the action and the changed property names", async () => {
    const diff: ResourceDiff[] = [
      {
        urn: grantUrn.replace("MysqlGrant::p_web_pr_8-db-grant", "MysqlUser::p_web_pr_8-db-user"),
        type: "pulumi-nodejs:dynamic/stackrail:MysqlUser",
        op: "update",
        properties: ["maxConnections"],
      },
    ];
    const runner = new PlanRunner({ diff });
    const { deps, feedback } = setup(runner, localConfig());
    const result = await previewUpHandler(deps)(
      jobContext("pv-plan", { kind: "preview.up", trigger, requestedAt: new Date().toISOString(), repo, pr: 8, headSha: "b".repeat(40) }),
    );
    expect(runner.requests.map((r) => [r.operation, r.policyPacks])).toEqual([["up", deps.policyPacks]]);
    const last = feedback.comments.at(-1) ?? "";
    expect(last).toContain("**Plan:** 1 to update");
    expect(last).toContain("| 🔄 update | `p_web_pr_8-db-user` | `MysqlUser` | `maxConnections` |");
    expect(last.indexOf("**Plan:**")).toBeLessThan(last.indexOf("Outputs"));
    expect(feedback.statuses).toEqual(["stackrail/preview: pending", "stackrail/preview: success"]);
    // The job keeps the whole plan (the comment links to it for what does not fit).
    expect((result as { diff: unknown }).diff).toEqual(diff);
  });

  it("a refused plan fails the preview: violations listed on the PR, failing status, nothing committed", async () => {
    const error = new PolicyViolationError(
      "mandatory policy violation; nothing was applied",
      ["policy mandatory stackrail-guardrails/tenant-names-owned: …"],
      [
        {
          pack: "stackrail-guardrails",
          policy: "tenant-names-owned",
          level: "mandatory",
          message: 'database "t_other" does not belong to this stack',
          urn: grantUrn,
        },
      ],
    );
    const runner = new PlanRunner({ error });
    const { deps, feedback, writer } = setup(runner, localConfig());
    const run = previewUpHandler(deps)(
      jobContext("pv-refused", { kind: "preview.up", trigger, requestedAt: new Date().toISOString(), repo, pr: 9, headSha: "c".repeat(40) }),
    );
    await expect(run).rejects.toBeInstanceOf(PolicyViolationError);
    const last = feedback.comments.at(-1) ?? "";
    expect(last).toContain("Preview environment update failed");
    expect(last).toContain("**Policy violations:** 1 (1 mandatory: nothing was applied)");
    expect(last).toContain("| `mandatory` | `stackrail-guardrails/tenant-names-owned` | `p_web_pr_8-db-grant` |");
    expect(feedback.statuses).toEqual(["stackrail/preview: pending", "stackrail/preview: failure"]);
    expect(writer.commits).toEqual([]);
  });
});
