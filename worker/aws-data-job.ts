// A tenant's data work on the aws target (issue 16, item 4): the copy and verification of a tier
// move, or the final backup of a deprovision, done inside the tenant's region by the `data-job`
// program (programs/aws/data-job.ts, a Kubernetes Job). This side brings the stack up, waits for
// the Job's result object with a bounded poll through an injected reader (S3 in production, a
// double in tests), checks it — the result's own row counts and CHECKSUM TABLE values, compared
// again here — and destroys the stack (the Job, and the Secret holding the credentials) in every
// case. Failures are typed: a verification that does not hold, a Job that reports a failure, and
// a Job that never reports all fail the step (fate `fail`); the caller rolls back or stops.
//
// Nothing secret passes through here: the program reads the credentials from Secrets Manager in
// the engine's child, the job's arguments name tiers and tenants only, and the result holds table
// names, counts, checksums and the backup's key.
import { createHash } from "node:crypto";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { z } from "zod";
import { CancelledError, StackrailError, TransientError, fateOf } from "../core/errors.ts";
import { tenantStackName, type Region, type TenantId, type Tier } from "../core/ids.ts";
import { DATA_JOB_PROJECT } from "../core/tenant-resources.ts";
import type { TableReport } from "./data-copy.ts";
import type { StepContext } from "./job-worker.ts";
import type { StackRunner } from "./pulumi-runner.ts";

/** Row counts and CHECKSUM TABLE per table: the same report as the local target's copy. */
export type { TableReport };

/** The copy did not verify: row counts or checksums differ. The move fails before any switch. */
export class DataVerificationError extends StackrailError {
  override readonly code = "data_verification";
}

/** The Job reported a failure (dump, load, count or upload), or a result that is not one. */
export class DataJobFailedError extends StackrailError {
  override readonly code = "data_job_failed";
}

/** The Job left no result within the time allowed (not started, evicted, stopped at its deadline). */
export class DataJobTimeoutError extends StackrailError {
  override readonly code = "data_job_timeout";
}

export interface ResultLocation {
  readonly region: string;
  readonly bucket: string;
  readonly key: string;
}

/** Reads the Job's result object: its text, or null while there is none yet. */
export interface DataJobResultReader {
  read(location: ResultLocation): Promise<string | null>;
}

/** The result reader of a real installation: the region's bucket, through the SDK's credential chain. */
export function s3ResultReader(clientFor: (region: string) => S3Client = (region) => new S3Client({ region })): DataJobResultReader {
  const clients = new Map<string, S3Client>();
  return {
    async read(location) {
      let client = clients.get(location.region);
      if (!client) clients.set(location.region, (client = clientFor(location.region)));
      try {
        const answer = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }));
        return (await answer.Body?.transformToString("utf8")) ?? "";
      } catch (err) {
        const name = err instanceof Error ? err.name : "error";
        if (name === "NoSuchKey" || name === "NotFound") return null;
        throw new TransientError(`reading the data job's result s3://${location.bucket}/${location.key} failed (${name})`, { cause: err });
      }
    },
  };
}

const tableSchema = z.object({ table: z.string().max(256), rows: z.number().int().nonnegative(), checksum: z.string().max(64) }).strict();
const sideSchema = z.object({ database: z.string(), tables: z.array(tableSchema).max(100_000) }).strict();
/** What the Job writes (programs/aws/data-job-script.ts); a failure may carry only its reason. */
export const dataJobResultSchema = z.discriminatedUnion("status", [
  z.object({ version: z.literal(1), runId: z.string(), status: z.literal("failed"), reason: z.string().max(500) }).passthrough(),
  z
    .object({
      version: z.literal(1),
      runId: z.string(),
      tenant: z.string(),
      mode: z.enum(["move", "backup"]),
      status: z.enum(["ok", "mismatch"]),
      reason: z.string().max(500).nullable(),
      source: sideSchema,
      target: sideSchema.nullable(),
      backup: z.object({ key: z.string(), bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).nullable(),
    })
    .strict(),
]);
export type DataJobResult = z.infer<typeof dataJobResultSchema>;

export interface DataJobRequest {
  readonly mode: "move" | "backup";
  readonly tenantId: TenantId;
  readonly region: Region;
  readonly sourceTier: Tier;
  /** A move's target tier. */
  readonly targetTier?: Tier;
}

export interface DataJobReport {
  readonly runId: string;
  readonly bucket: string;
  readonly resultKey: string;
  readonly backup: { readonly key: string; readonly bytes: number; readonly sha256: string };
  /** The source's tables (a move: the target's are the same, or the move failed). */
  readonly tables: readonly TableReport[];
  /** The data stack could not be destroyed: what is left, for an operator. */
  readonly leftover?: string;
}

/** How the worker runs data jobs; every field has a default (tests and installations override them). */
export interface DataJobSettings {
  readonly reader?: DataJobResultReader;
  readonly pollIntervalMs?: number;
  /** How long to wait for the result after the stack is up; by default the Job's deadline and two minutes. */
  readonly timeoutMs?: number;
  /** The Job's activeDeadlineSeconds. */
  readonly deadlineSeconds?: number;
  readonly images?: { readonly dump?: string; readonly upload?: string };
  readonly now?: () => number;
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface DataJobDeps {
  readonly runner: StackRunner;
  readonly policyPacks: readonly string[];
  readonly settings?: DataJobSettings;
}

const DEFAULT_DEADLINE_S = 1200;
const DEFAULT_POLL_MS = 10_000;

let defaultReader: DataJobResultReader | undefined;

function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The result object's name part: the worker's job id where it is a safe name, and the time. */
export function dataRunId(jobId: string, at: Date): string {
  const base = /^[A-Za-z0-9_-]{1,40}$/.test(jobId) ? jobId : createHash("sha256").update(jobId).digest("hex").slice(0, 24);
  return `${base}-${at.toISOString().replace(/\D/g, "")}`;
}

function describeDifference(source: readonly TableReport[], target: readonly TableReport[]): string {
  const t = new Map(target.map((r) => [r.table, r]));
  const s = new Map(source.map((r) => [r.table, r]));
  const out: string[] = [];
  for (const r of source) {
    const o = t.get(r.table);
    if (!o) out.push(`${r.table} missing on the target`);
    else if (o.rows !== r.rows) out.push(`${r.table} rows ${r.rows} != ${o.rows}`);
    else if (o.checksum !== r.checksum) out.push(`${r.table} checksum differs`);
  }
  for (const r of target) if (!s.has(r.table)) out.push(`${r.table} only on the target`);
  return out.slice(0, 10).join(", ") || "the Job reported a mismatch";
}

/**
 * Runs one data job to its end: `up` of the data stack, the bounded wait for its result, the
 * checks, and the stack's destroy. Resolves with the verified report; throws a typed error otherwise.
 */
export async function runAwsDataJob(deps: DataJobDeps, ctx: StepContext, request: DataJobRequest): Promise<DataJobReport> {
  const s = deps.settings ?? {};
  const now = s.now ?? Date.now;
  const sleep = s.sleep ?? sleepFor;
  const reader = s.reader ?? (defaultReader ??= s3ResultReader());
  const started = new Date(now());
  const runId = dataRunId(ctx.jobId, started);
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const deadlineSeconds = s.deadlineSeconds ?? DEFAULT_DEADLINE_S;
  const args: Record<string, string | number | boolean> = {
    tenantId: request.tenantId,
    region: request.region,
    runId,
    mode: request.mode,
    sourceTier: request.sourceTier,
    stamp,
    deadlineSeconds,
  };
  if (request.targetTier) args.targetTier = request.targetTier;
  if (s.images?.dump) args.dumpImage = s.images.dump;
  if (s.images?.upload) args.uploadImage = s.images.upload;
  const stack = tenantStackName(request.tenantId);
  const run = (operation: "up" | "destroy"): ReturnType<StackRunner["run"]> =>
    deps.runner.run(
      { stack, projectName: DATA_JOB_PROJECT, operation, program: "data-job", args, policyPacks: operation === "up" ? deps.policyPacks : [] },
      // The destroy runs even for a cancelled job: it removes the Secret holding the credentials.
      { ...(operation === "up" ? { signal: ctx.signal } : {}), onProgress: (line) => void ctx.progress(line) },
    );

  let report: Omit<DataJobReport, "leftover"> | undefined;
  let failure: Error | undefined;
  try {
    await ctx.progress(`data job ${runId}: stack up ${DATA_JOB_PROJECT}/${stack} (${request.mode}, ${request.region})`);
    const summary = await run("up");
    const outputs = z
      .object({ resultBucket: z.string().min(1), resultKey: z.string().min(1), backupKey: z.string().min(1), runId: z.literal(runId) })
      .safeParse(summary.outputs);
    if (!outputs.success) throw new DataJobFailedError("the data job's stack did not name its result object");
    const location: ResultLocation = { region: request.region, bucket: outputs.data.resultBucket, key: outputs.data.resultKey };
    const timeoutMs = s.timeoutMs ?? deadlineSeconds * 1000 + 2 * 60_000;
    const pollMs = s.pollIntervalMs ?? DEFAULT_POLL_MS;
    const until = now() + timeoutMs;
    await ctx.progress(`waiting for the data job's result s3://${location.bucket}/${location.key} (at most ${Math.round(timeoutMs / 1000)}s)`);
    let text: string | null = null;
    let lastReadError = "";
    for (;;) {
      if (ctx.signal.aborted) throw new CancelledError("the job was cancelled while its data job ran");
      try {
        text = await reader.read(location);
        lastReadError = "";
      } catch (err) {
        // A read that may succeed later is tried again within the bound; anything else ends the wait.
        if (fateOf(err) !== "retry") throw err;
        lastReadError = err instanceof Error ? err.name : "error";
      }
      if (text !== null || now() >= until) break;
      await sleep(pollMs, ctx.signal);
    }
    if (text === null) {
      throw new DataJobTimeoutError(
        `the data job left no result within ${Math.round(timeoutMs / 1000)}s${lastReadError ? ` (last read failed: ${lastReadError})` : ""}; see the Job's pod log in namespace tenant-${request.tenantId}`,
      );
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new DataJobFailedError("the data job's result is not JSON");
    }
    const parsed = dataJobResultSchema.safeParse(raw);
    if (!parsed.success) throw new DataJobFailedError("the data job's result does not have the expected shape");
    const result = parsed.data;
    if (result.runId !== runId) throw new DataJobFailedError("the data job's result belongs to another run");
    if (result.status === "failed") throw new DataJobFailedError(`the data job failed: ${result.reason}`);
    if (result.mode !== request.mode || result.tenant !== request.tenantId) throw new DataJobFailedError("the data job's result describes other work");
    if (request.mode === "move") {
      // The Job compared both sides; so does this side, from the numbers it reported.
      const target = result.target?.tables ?? [];
      const same = JSON.stringify(result.source.tables) === JSON.stringify(target);
      if (result.status !== "ok" || !same) {
        throw new DataVerificationError(`the copy does not verify (row counts and CHECKSUM TABLE): ${describeDifference(result.source.tables, target)}`);
      }
    } else if (result.status !== "ok") {
      throw new DataJobFailedError("the data job did not complete the backup");
    }
    if (!result.backup || result.backup.key !== outputs.data.backupKey) throw new DataJobFailedError("the data job wrote no backup");
    report = { runId, bucket: location.bucket, resultKey: location.key, backup: result.backup, tables: result.source.tables };
  } catch (err) {
    failure = err instanceof Error ? err : new DataJobFailedError("the data job failed", { cause: err });
  }

  // The Job, its credentials Secret and its role go in every case.
  let leftover: string | undefined;
  try {
    await ctx.progress(`data job ${runId}: stack destroy ${DATA_JOB_PROJECT}/${stack}`);
    await run("destroy");
  } catch (err) {
    leftover = `${DATA_JOB_PROJECT}/${stack}`;
    ctx.logger.error({ stack: leftover, errorType: err instanceof Error ? err.name : "error" }, "data job stack could not be destroyed");
    await ctx.progress(`the data job's stack ${leftover} could not be destroyed; destroy it by hand (it holds the Job's credentials Secret)`);
  }
  if (failure !== undefined) throw failure;
  if (!report) throw new DataJobFailedError("the data job produced no report");
  return leftover ? { ...report, leftover } : report;
}
