// The rollout's small contracts: the wave limits from the environment (a bad value names its
// variable), and step job ids that the rollout reads back from its children.
import { describe, expect, it } from "vitest";
import { loadConfig } from "../core/config.ts";
import { ConfigError } from "../core/errors.ts";
import { parseStepJobId, stepJobId } from "./rollout-control.ts";

const base = { PULUMI_CONFIG_PASSPHRASE: "config-test-passphrase", STACKRAIL_DATA_DIR: "/tmp/stackrail-config-test" };

describe("STACKRAIL_WAVE_MAX_PARALLEL and STACKRAIL_WAVE_MAX_FAILURES", () => {
  it("default to 10 tenants at a time and a stop at the first failed tenant", () => {
    const config = loadConfig(base, "/tmp");
    expect(config.waveMaxParallel).toBe(10);
    expect(config.waveMaxFailures).toBe(1);
    expect(loadConfig({ ...base, STACKRAIL_WAVE_MAX_PARALLEL: "50", STACKRAIL_WAVE_MAX_FAILURES: "3" }, "/tmp")).toMatchObject({
      waveMaxParallel: 50,
      waveMaxFailures: 3,
    });
  });

  it.each([
    ["STACKRAIL_WAVE_MAX_PARALLEL", "0"],
    ["STACKRAIL_WAVE_MAX_PARALLEL", "ten"],
    ["STACKRAIL_WAVE_MAX_FAILURES", "0"],
    ["STACKRAIL_WAVE_MAX_FAILURES", "1.5"],
  ])("%s=%s stops the start-up naming the variable", (variable, value) => {
    let error: unknown;
    try {
      loadConfig({ ...base, [variable]: value }, "/tmp");
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as ConfigError).message).toContain(variable);
  });
});

describe("step job ids", () => {
  it("name the wave, the round and the tenant, and read back", () => {
    const id = stepJobId("0b5c2f1e-9d7a-4c55-8a43-2b1f6c7d8e9f", 2, 3, "acme-eu");
    expect(id).toBe("0b5c2f1e-9d7a-4c55-8a43-2b1f6c7d8e9f.w2.r3.acme-eu");
    expect(parseStepJobId(id)).toEqual({ wave: 2, round: 3, tenantId: "acme-eu" });
    expect(parseStepJobId("not-a-step")).toBeNull();
  });

  it("stay within the queue's 128 characters for long rollout ids", () => {
    const id = stepJobId(`delivery-${"x".repeat(110)}`, 12, 400, `t${"a".repeat(38)}z`);
    expect(id.length).toBeLessThanOrEqual(128);
    expect(id).toMatch(/^[A-Za-z0-9_.-]+$/);
    expect(parseStepJobId(id)).toEqual({ wave: 12, round: 400, tenantId: `t${"a".repeat(38)}z` });
  });
});
