// Issue 16, item 3: the region program runs. On aws the first tenant of a region waits for one
// region job (enqueued once, however many tenants ask), which runs the region program through the
// runner with the mandatory policy pack and commits the region's Argo CD objects; a region job
// that fails or is cancelled fails the waiting provision with that job's id and leaves no tenant
// behind. Real Redis and the real queue; the aws provider cannot run here, so the runner records.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type Config } from "../../core/config.ts";
import { ProgramError, StackBusyError } from "../../core/errors.ts";
import type { JobData } from "../../core/jobs.ts";
import { RegionIndex } from "../../core/regions.ts";
import { deleteRedisPrefix } from "../../test/support/cleanup.ts";
import { TEST_REDIS_URL, localServiceEnv, uniqueName } from "../../test/support/services.ts";
import { TenantIndex } from "../../core/tenant-index.ts";
import { JobQueue } from "../../jobs/queue.ts";
import { policyPacksFor } from "../runner-factory.ts";
import { MemoryWriter, RecordingRunner, jobContext } from "./handler-doubles.test-support.ts";
import { regionGate, regionProvisionHandler } from "./region-provision.ts";
import { tenantProvisionHandler } from "./tenant-provision.ts";

const prefix = uniqueName("region");
let dataDir: string;
let redis: Redis;
let config: Config;
let queue: JobQueue;
let regions: RegionIndex;
let tenants: TenantIndex;

const REGION_OUTPUTS = {
  region: "eu-central-1",
  vpcId: "vpc-1",
  kubeconfig: "[secret]",
  mysqlAdminUrl: "[secret]",
  ingressHostname: "eu-central-1.saas.example",
};
const TENANT_OUTPUTS = { databaseHost: "aurora.example", databaseName: "t_x", cacheHost: "cache.example", cacheKeyPrefix: "t:x:" };
const trigger = { type: "api", tokenName: "ops" } as const;

beforeAll(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), "stackrail-region-"));
  redis = new Redis(TEST_REDIS_URL);
  config = loadConfig({ ...localServiceEnv({ dataDir, prefix, apiToken: "t".repeat(32), passphrase: "p" }), STACKRAIL_TARGET: "aws" });
  queue = new JobQueue({ connection: redis, prefix });
  regions = new RegionIndex(redis, prefix);
  tenants = new TenantIndex(redis, prefix);
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await deleteRedisPrefix(prefix);
  rmSync(dataDir, { recursive: true, force: true });
});

function setup(regionRunner: RecordingRunner) {
  const writer = new MemoryWriter();
  const tenantRunner = new RecordingRunner(() => TENANT_OUTPUTS);
  const gate = regionGate({ config, regions, queue });
  const policyPacks = policyPacksFor(config);
  const provision = tenantProvisionHandler({ config, runner: tenantRunner, writer, tenants, policyPacks, regionReady: gate });
  const regionJob = regionProvisionHandler({ config, runner: regionRunner, writer, regions, policyPacks, scrub: (t: string) => t });
  return { writer, tenantRunner, provision, regionJob, policyPacks };
}

async function claim(id: string, region: string): Promise<Extract<JobData, { kind: "tenant.provision" }>> {
  expect((await tenants.claimProvision({ id, region, tier: "pool", version: "1.0.0" })).ok).toBe(true);
  return { kind: "tenant.provision", trigger, requestedAt: new Date().toISOString(), tenantId: id, region, tier: "pool", version: "1.0.0" };
}

describe("item 3: a region is provisioned before its first tenant on aws, once", () => {
  it("the first tenants wait for one region job; it runs the region program with the policy pack; then they go up", async () => {
    const regionRunner = new RecordingRunner(() => REGION_OUTPUTS);
    const { writer, tenantRunner, provision, regionJob, policyPacks } = setup(regionRunner);
    const first = await claim("rg-first", "eu-central-1");
    const second = await claim("rg-second", "eu-central-1");

    const ctx1 = jobContext("prov-1", first);
    await expect(provision(ctx1)).rejects.toBeInstanceOf(StackBusyError);
    await expect(provision(jobContext("prov-2", second))).rejects.toBeInstanceOf(StackBusyError);
    await expect(provision(jobContext("prov-1", first))).rejects.toBeInstanceOf(StackBusyError);
    expect(tenantRunner.requests).toHaveLength(0); // nothing of a tenant exists before its region

    const pending = await regions.get("eu-central-1");
    expect(pending).toMatchObject({ state: "provisioning", settings: { environment: "production" } });
    const view = await queue.getJobView(pending?.jobId ?? "");
    expect(view).toMatchObject({ kind: "region.provision", stack: "region-eu-central-1", state: "waiting", trigger: { type: "job", parentJobId: "prov-1" } });
    // One region job however many tenants asked.
    expect((await queue.queue.getJobs(["waiting", "delayed", "prioritized"])).filter((j) => j.name === "region.provision")).toHaveLength(1);
    expect(ctx1.lines.join("\n")).toContain(`region job ${pending?.jobId} enqueued`);

    const result = await regionJob(jobContext(pending?.jobId ?? "", view?.data as Extract<JobData, { kind: "region.provision" }>));
    expect(regionRunner.requests).toEqual([
      expect.objectContaining({
        stack: "region-eu-central-1",
        projectName: "stackrail",
        operation: "up",
        program: "region",
        policyPacks,
        args: { region: "eu-central-1", environment: "production", domain: "stackrail.example.com", costCentre: "platform" },
      }),
    ]);
    expect(policyPacks.length).toBeGreaterThan(0);
    expect(result).toMatchObject({ stack: "region-eu-central-1", outputs: { vpcId: "vpc-1" } });
    expect(JSON.stringify(result)).not.toContain("[secret]");
    expect([...writer.files.keys()]).toEqual(expect.arrayContaining(["regions/eu-central-1/appproject.yaml", "regions/eu-central-1/tenants.yaml"]));
    expect(await regions.get("eu-central-1")).toMatchObject({ state: "ready", outputs: { vpcId: "vpc-1" } });

    await provision(jobContext("prov-1", first));
    await provision(jobContext("prov-2", second));
    expect(tenantRunner.requests.map((r) => r.stack)).toEqual(["tenant-rg-first", "tenant-rg-second"]);
    expect(regionRunner.requests).toHaveLength(1);
  });

  it("a failed region job fails the waiting provision, naming the job, and leaves no tenant behind", async () => {
    const regionRunner = new RecordingRunner(() => {
      throw new ProgramError("aws:rds/cluster: InvalidParameterCombination");
    });
    const { tenantRunner, provision, regionJob } = setup(regionRunner);
    const data = await claim("rg-doomed", "ap-south-1");
    await expect(provision(jobContext("prov-3", data))).rejects.toBeInstanceOf(StackBusyError);
    const jobId = (await regions.get("ap-south-1"))?.jobId ?? "";
    const view = await queue.getJobView(jobId);
    await expect(regionJob(jobContext(jobId, view?.data as Extract<JobData, { kind: "region.provision" }>))).rejects.toBeInstanceOf(ProgramError);
    expect(await regions.get("ap-south-1")).toMatchObject({ state: "failed", error: expect.stringContaining("program:") as unknown });

    const err = await provision(jobContext("prov-3", data)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProgramError);
    expect((err as Error).message).toContain(jobId);
    expect((err as Error).message).toContain("POST /v1/regions/ap-south-1");
    expect(tenantRunner.requests).toHaveLength(0);
    expect(await tenants.get("rg-doomed")).toBeNull();
  });

  it("a cancelled region job fails the waiting provision instead of waiting for ever", async () => {
    const { provision } = setup(new RecordingRunner());
    const data = await claim("rg-cancel", "sa-east-1");
    await expect(provision(jobContext("prov-4", data))).rejects.toBeInstanceOf(StackBusyError);
    const jobId = (await regions.get("sa-east-1"))?.jobId ?? "";
    expect(await queue.cancelWaiting(jobId)).toBe(true);
    const err = await provision(jobContext("prov-4", data)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProgramError);
    expect((err as Error).message).toContain(`${jobId} cancelled`);
  });
});
