// Issue 16, item 5: a preview environment on aws is checked by the same mandatory policy pack as
// every other `up` (the runner previews with the pack first, so a violation applies nothing).
// The aws provider cannot run here: the runner double records what the engine would be asked.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type Config } from "../../core/config.ts";
import { SecretScrubber } from "../../core/logger.ts";
import { deleteRedisPrefix } from "../../test/support/cleanup.ts";
import { TEST_REDIS_URL, localServiceEnv, uniqueName } from "../../test/support/services.ts";
import { LogFeedback } from "../github/log-feedback.ts";
import { PreviewRegistry } from "../preview-registry.ts";
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
