// tenant.move (pool ⇄ silo), keeping the tenant id: provision the target tier beside the source
// (the same stack name in the target tier's project), freeze writes on the source, copy the data,
// verify it (row counts and checksums per table, attachment hashes), cut over in one GitOps
// commit, then clean the source up after the rollback window. A failure at any step before the
// cut-over rolls back: the source is unfrozen, the target destroyed, nothing is lost.
//
// On aws the copy and its verification run inside the tenant's region, as a Kubernetes Job (the
// `data-job` program, worker/aws-data-job.ts); the source's dump is kept in the region's bucket.
// A copy that does not verify fails the move before the cut-over, like on the local target.
import { ConflictError, NotFoundError, ProgramError, StackrailError } from "../../core/errors.ts";
import type { Tier } from "../../core/ids.ts";
import { logicalNames } from "../../core/naming.ts";
import { runAwsDataJob, type DataJobSettings } from "../aws-data-job.ts";
import { copyCacheKeys, copyDatabase, copyDirectory, verifyDatabaseCopy, verifyDirectoryCopy } from "../data-copy.ts";
import { renderTenantFiles } from "../gitops/manifests.ts";
import type { JobHandler } from "../job-worker.ts";
import type { TenantHandlerDeps } from "./tenant-provision.ts";
import { gitopsSettings, infraFromOutputs, publicOutputs, runTenantStack, tenantCommitMessage } from "./tenant-support.ts";

export interface MoveDeps extends TenantHandlerDeps {
  /** Keep the source this long after the cut-over; 0 cleans it up within the job. */
  readonly rollbackWindowMs: number;
  /** Records a cleanup that is due later (the scheduler enqueues it). */
  readonly scheduleCleanup: (tenantId: string, tier: Tier, region: string, dueAt: number) => Promise<void>;
  readonly cancelCleanup: (tenantId: string, tier: Tier) => Promise<void>;
  readonly now?: () => number;
  /** aws: how the data job runs and where its result is read (defaults: worker/aws-data-job.ts). */
  readonly dataJob?: DataJobSettings;
}

export function tenantMoveHandler(deps: MoveDeps): JobHandler<"tenant.move"> {
  return async (ctx) => {
    const { tenantId, tier: target, trigger } = ctx.data;
    const tenant = await deps.tenants.get(tenantId);
    if (!tenant) throw new NotFoundError(`tenant ${tenantId} does not exist`);
    if (tenant.state !== "active") throw new ConflictError(`tenant ${tenantId} is ${tenant.state}`);
    const source = tenant.tier;
    if (source === target) return { tenantId, tier: target, moved: false, reason: `already on ${target}` };
    const region = tenant.region;
    const version = tenant.version || undefined;
    const base = { tenantId, region, ...(version ? { version } : {}) };
    const url = deps.config.localMysqlUrl;
    const from = logicalNames(source === "silo" ? "silo" : "tenant", tenantId);
    const to = logicalNames(target === "silo" ? "silo" : "tenant", tenantId);
    // A move back inside a rollback window reuses the kept source: it must not be cleaned up now.
    await deps.cancelCleanup(tenantId, target);

    let step = "provision the target";
    let frozen = false;
    const report: Record<string, unknown> = {};
    try {
      await ctx.progress(`1/6 provisioning ${target} resources beside the ${source} ones`);
      const targetStack = await runTenantStack(deps.runner, ctx, "up", { ...base, tier: target }, deps.policyPacks);

      step = "freeze the source";
      await ctx.progress(`2/6 freezing writes on the ${source} side`);
      // Frozen, and marked so that removing it later leaves the shared cache key space alone.
      await runTenantStack(deps.runner, ctx, "up", { ...base, tier: source, readOnly: true, keepCacheKeys: true }, deps.policyPacks);
      frozen = true;

      if (deps.config.target === "local") {
        step = "copy the data";
        await ctx.progress(`3/6 copying ${from.database} -> ${to.database}, attachments and cache keys`);
        await copyDatabase({ url, database: from.database }, { url, database: to.database });
        const root = `${deps.config.dataDir}/attachments`;
        await copyDirectory(`${root}/${from.attachmentsDir}`, `${root}/${to.attachmentsDir}`);
        report.cacheKeysCopied = await copyCacheKeys(deps.config.localRedisUrl, deps.config.localRedisUrl, to.keyPrefix);

        step = "verify the copy";
        await ctx.progress("4/6 verifying row counts and checksums per table, and attachments");
        const tables = await verifyDatabaseCopy({ url, database: from.database }, { url, database: to.database });
        report.tables = tables;
        report.attachments = await verifyDirectoryCopy(`${root}/${from.attachmentsDir}`, `${root}/${to.attachmentsDir}`);
        await ctx.progress(`verified ${tables.length} table(s): ${tables.map((t) => `${t.table}=${t.rows} rows`).join(", ") || "none"}`);
      } else {
        step = "copy and verify the data";
        await ctx.progress(`3/6 copying ${from.database} -> ${to.database} in ${region} (a Kubernetes Job), verifying row counts and CHECKSUM TABLE`);
        const copied = await runAwsDataJob({ runner: deps.runner, policyPacks: deps.policyPacks, ...(deps.dataJob ? { settings: deps.dataJob } : {}) }, ctx, {
          mode: "move",
          tenantId,
          region,
          sourceTier: source,
          targetTier: target,
        });
        report.tables = copied.tables;
        report.backup = { bucket: copied.bucket, file: copied.backup.key, bytes: copied.backup.bytes, sha256: copied.backup.sha256 };
        if (copied.leftover) report.dataJobLeftover = copied.leftover;
        const tables = copied.tables;
        await ctx.progress(`4/6 verified ${tables.length} table(s): ${tables.map((t) => `${t.table}=${t.rows} rows`).join(", ") || "none"}`);
      }

      step = "cut over";
      await ctx.progress(`5/6 cutting over to ${target} in one GitOps commit`);
      const commit = await deps.writer.commit({
        jobId: ctx.jobId,
        onWait: (line) => void ctx.progress(line),
        message: tenantCommitMessage(ctx, "move", tenantId, trigger, `${source} -> ${target}`),
        files: renderTenantFiles(
          { id: tenantId, region, tier: target, version: tenant.version, ...(tenant.protected ? { protected: true } : {}) },
          infraFromOutputs(targetStack.outputs, `tenant-${tenantId}`),
          gitopsSettings(deps.config),
        ),
        subject: `tenant-${tenantId}`,
      });
      // The source's clean-up is recorded before the record says `target`: a worker killed from here
      // on leaves a clean-up that comes due (the scheduler enqueues it), not a source nobody removes
      // (a retry of this job then finds the tenant on `target` and has nothing to do).
      await deps.scheduleCleanup(tenantId, source, region, (deps.now ?? Date.now)() + deps.rollbackWindowMs);
      await deps.tenants.recordOutputs(tenantId, publicOutputs(targetStack.outputs), { tier: target });
      report.commit = commit.sha;
    } catch (err) {
      await ctx.progress(`move failed at "${step}"; rolling back to ${source}`);
      // The tenant stays on the source: a clean-up recorded for it at the cut-over must not come due.
      await deps.cancelCleanup(tenantId, source).catch(() => undefined);
      try {
        if (frozen) await runTenantStack(deps.runner, ctx, "up", { ...base, tier: source }, deps.policyPacks);
        await runTenantStack(deps.runner, ctx, "destroy", { ...base, tier: target }, []);
      } catch (rollbackErr) {
        throw new ProgramError(`move failed at "${step}" and the rollback failed too: ${(rollbackErr as Error).message}`, { cause: err });
      }
      await ctx.progress(`rolled back: ${source} unfrozen, ${target} resources removed`);
      if (err instanceof StackrailError && err.fate !== "fail") throw err;
      throw new ProgramError(`move failed at "${step}" and was rolled back to ${source}: ${(err as Error).message}`, { cause: err });
    }

    // After the cut-over the move stands; the source only waits for its rollback window.
    if (deps.rollbackWindowMs > 0) {
      const dueAt = (deps.now ?? Date.now)() + deps.rollbackWindowMs;
      await ctx.progress(`6/6 ${source} resources kept until ${new Date(dueAt).toISOString()} (rollback window)`);
      report.sourceKeptUntil = new Date(dueAt).toISOString();
    } else {
      await ctx.progress(`6/6 removing the ${source} resources`);
      await runTenantStack(deps.runner, ctx, "destroy", { ...base, tier: source, keepCacheKeys: true }, []);
      // Done here: the recorded clean-up is not needed (if it was enqueued meanwhile, it finds nothing left).
      await deps.cancelCleanup(tenantId, source);
      report.sourceRemoved = true;
    }
    return { tenantId, from: source, to: target, moved: true, ...report };
  };
}
