// The ReleaseReporter on GitHub (issue 13 §5): the plan as one check run "stackrail/release" on the
// release commit, one Deployment per wave, the check run updated as waves pass and completed with
// the release. What was created (check run id, deployment ids) and what was last sent lives in
// Redis under `<prefix>:release-report:<jobId>`, so the rollout handler may call every method again
// after a crash: nothing is created twice and an answer GitHub already has is not sent again.
//
// Call budget (issue 13 §5: O(W), at most 5 per wave, whatever the tenant count): a wave costs one
// check run update when it waits for approval, a deployment and its in_progress status when it
// starts, its final status and one check run update when it ends. The plan's check run is created
// once per release (plus one update per further 50 policy violations), and completed once. The
// last wave's check run update is carried by `finished`, which the rollout calls right after it.
//
// Without the Checks API (a personal access token may not write check runs: GitHub answers 403),
// the same milestones go to a commit status with the same context, one call each.
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { Config } from "../../core/config.ts";
import type { RepoRef } from "../../core/jobs.ts";
import type { Logger } from "../../core/logger.ts";
import { stripCredentials } from "../gitops/git.ts";
import { limit, type Scrub } from "./feedback.ts";
import { codeBlock, inlineCode, isSafeUrl, link } from "./markdown.ts";
import { createGitHubClient, type GitHubClient, type GitHubClientOptions } from "./octokit.ts";
import {
  noReleaseReporter,
  type PlanReport,
  type PlanViolation,
  type ReleaseOutcome,
  type ReleaseReporter,
  type ReleaseSource,
  type WaveReport,
} from "./release-report.ts";

export const RELEASE_CHECK_NAME = "stackrail/release";
/** GitHub's Checks API limits: annotations per request, characters of summary and text. */
export const MAX_ANNOTATIONS_PER_REQUEST = 50;
const MAX_OUTPUT = 65_535;
/** Commit status and deployment status descriptions. */
const MAX_DESCRIPTION = 140;
/** Longer than a rollout's own records (8 days), so a late re-entry still finds what it created. */
const STATE_TTL_SECONDS = 30 * 24 * 3600;
/** Violations listed in the check run's text; every one is an annotation anyway. */
const MAX_LISTED_VIOLATIONS = 200;
/** A field being created: a crash left it so, and the next call looks for what GitHub has. */
const CREATING = "creating";
/** The check run could not be written (token without the Checks API): commit statuses instead. */
const STATUS_MODE = "status";

export function releaseReportKey(prefix: string, jobId: string): string {
  return `${prefix}:release-report:${jobId}`;
}

export interface GitHubReleaseReporterOptions {
  /** A client for the repository, built with the worker's `onResponse` so every call is counted. */
  clientFor: (repo: RepoRef) => Promise<GitHubClient>;
  redis: Redis;
  /** Queue prefix; state is kept under `<prefix>:release-report:<jobId>`. */
  prefix: string;
  logger: Logger;
  /** Applied to every outgoing text (SecretScrubber.scrub). */
  scrub?: Scrub;
  /** Called once per report that failed (after the client's own retries): feeds a failure counter. */
  onFailure?: (operation: ReportOperation) => void;
}

export type ReportOperation = "planned" | "waveStarted" | "waveAwaitingApproval" | "waveFinished" | "finished";

type WaveState = "pending" | "awaiting-approval" | "running" | "success" | "failure";

/** What the check run's summary is rebuilt from, kept in Redis (counts only, never tenant data). */
interface StoredPlan {
  readonly version: string;
  readonly planUrl: string;
  readonly violations: number;
  readonly waves: readonly {
    readonly wave: number;
    readonly regions: readonly string[];
    readonly tenants: number;
    readonly fromTo: string;
    readonly infra: string;
    readonly needsApproval: boolean;
  }[];
}

type CheckOutcome = { conclusion: "success" | "failure" | "cancelled" | "neutral" } | { status: "in_progress" };

interface Annotation {
  path: string;
  start_line: number;
  end_line: number;
  annotation_level: "notice" | "warning" | "failure";
  message: string;
  title: string;
  raw_details?: string;
}

function statusOf(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "status" in error && typeof error.status === "number" ? error.status : undefined;
}

function isRateLimit(error: unknown): boolean {
  const e = error as { status?: number; response?: { headers?: Record<string, unknown> } };
  return (
    e.status === 429 || (e.status === 403 && (e.response?.headers?.["retry-after"] !== undefined || e.response?.headers?.["x-ratelimit-remaining"] === "0"))
  );
}

/** What a check run update would say; equal signatures need no call. */
const signature = (output: { title: string; summary: string }, outcome: CheckOutcome): string =>
  createHash("sha256")
    .update(JSON.stringify([output.title, output.summary, outcome]))
    .digest("hex")
    .slice(0, 16);

function summarizeFromTo(plan: PlanReport["waves"][number]): string {
  const groups = new Map<string, number>();
  for (const t of plan.tenants) {
    const k = `${t.from ?? "new"} → ${t.to}`;
    groups.set(k, (groups.get(k) ?? 0) + 1);
  }
  const sorted = [...groups.entries()].sort((a, b) => b[1] - a[1]);
  const shown = sorted.slice(0, 4).map(([k, n]) => `${k} ×${n}`);
  if (sorted.length > 4) shown.push(`… ${sorted.length - 4} more`);
  return shown.join("; ") || "—";
}

function summarizeInfra(plan: PlanReport["waves"][number]): string {
  const changed = plan.tenants.filter((t) => t.infraChanges > 0);
  if (changed.length === 0) return "none (manifests only)";
  const resources = changed.reduce((n, t) => n + t.infraChanges, 0);
  return `${changed.length} tenant(s), ${resources} resource(s)`;
}

const STATE_LABEL: Record<WaveState, string> = {
  pending: "⏸️ not started",
  "awaiting-approval": "✋ waits for approval",
  running: "⏳ rolling out",
  success: "✅ done",
  failure: "❌ failed",
};

function annotationLevel(level: string): "notice" | "warning" | "failure" {
  if (/^(mandatory|error|failure|critical|high)$/i.test(level)) return "failure";
  if (/^(advisory|warning|warn|medium)$/i.test(level)) return "warning";
  return "notice";
}

export class GitHubReleaseReporter implements ReleaseReporter {
  readonly #options: GitHubReleaseReporterOptions;
  readonly #scrub: Scrub;
  readonly #clients = new Map<string, Promise<GitHubClient>>();
  #failures = 0;

  constructor(options: GitHubReleaseReporterOptions) {
    this.#options = options;
    const scrub = options.scrub ?? ((t: string) => t);
    this.#scrub = (t) => stripCredentials(scrub(t));
  }

  /** Reports that failed since this reporter was made (each is logged and passed to `onFailure`). */
  get failures(): number {
    return this.#failures;
  }

  async planned(source: ReleaseSource, plan: PlanReport): Promise<void> {
    await this.#guard("planned", plan.jobId, undefined, async () => {
      const key = this.#key(plan.jobId);
      if (await this.#final(plan.jobId)) return;
      const stored: StoredPlan = {
        version: plan.version,
        planUrl: plan.planUrl,
        violations: plan.violations.length,
        waves: plan.waves.map((w) => ({
          wave: w.wave,
          regions: [...w.regions],
          tenants: w.tenants.length,
          fromTo: summarizeFromTo(w),
          infra: summarizeInfra(w),
          needsApproval: w.needsApproval,
        })),
      };
      await this.#redis().multi().hset(key, "plan", JSON.stringify(stored)).expire(key, STATE_TTL_SECONDS).exec();
      const text = this.#violationsText(plan.violations);
      const annotations = plan.violations.map((v) => this.#annotation(v));
      const client = await this.#client(source.repo);
      // The first 50 annotations go with the check run's creation; the rest in batches of 50, each
      // recorded as sent so a re-entry goes on from there.
      const check = await this.#ensureCheck(client, source, plan.jobId, stored, text, annotations.slice(0, MAX_ANNOTATIONS_PER_REQUEST));
      if (check.mode === "check") {
        let sent = Number((await this.#redis().hget(key, "annotations")) ?? 0);
        while (sent < annotations.length) {
          const batch = annotations.slice(sent, sent + MAX_ANNOTATIONS_PER_REQUEST);
          const outcome: CheckOutcome = { status: "in_progress" };
          const output = await this.#output(plan.jobId, stored, outcome);
          await client.rest.checks.update({
            owner: source.repo.owner,
            repo: source.repo.name,
            check_run_id: check.id,
            output: { ...output, annotations: batch },
          });
          sent += batch.length;
          await this.#redis().hset(key, "annotations", String(sent), "out", signature(output, outcome));
        }
      }
      // A re-entry with a revised plan: the summary follows (nothing is sent when it is the same).
      await this.#updateCheck(client, source, plan.jobId, { status: "in_progress" });
    });
  }

  async waveAwaitingApproval(source: ReleaseSource, wave: WaveReport): Promise<void> {
    await this.#guard("waveAwaitingApproval", wave.jobId, wave.wave, async () => {
      if (await this.#stale(wave)) return;
      await this.#setWave(wave.jobId, wave.wave, "awaiting-approval");
      const client = await this.#client(source.repo);
      // A wave that already started (resumed, its plan changed) waits again: its deployment says so.
      const deployment = await this.#redis().hget(this.#key(wave.jobId), `w${wave.wave}:deployment`);
      if (deployment !== null && deployment !== CREATING)
        await this.#deploymentStatus(client, source, wave, Number(deployment), "queued", `Wave ${wave.wave} waits for approval`);
      await this.#updateCheck(client, source, wave.jobId, { status: "in_progress" });
    });
  }

  async waveStarted(source: ReleaseSource, wave: WaveReport): Promise<void> {
    await this.#guard("waveStarted", wave.jobId, wave.wave, async () => {
      if (await this.#stale(wave)) return;
      const resumed = (await this.#redis().hget(this.#key(wave.jobId), "outcome")) !== null;
      await this.#setWave(wave.jobId, wave.wave, "running");
      const client = await this.#client(source.repo);
      const id = await this.#ensureDeployment(client, source, wave);
      await this.#deploymentStatus(client, source, wave, id, "in_progress", `Rolling out to ${wave.tenants} tenant(s)`);
      // No check run update here (the deployment shows the wave running, and the budget is 5 calls
      // a wave), except when a failed or cancelled release resumes: its check run must not go on
      // saying it ended.
      if (resumed) await this.#updateCheck(client, source, wave.jobId, { status: "in_progress" });
    });
  }

  async waveFinished(source: ReleaseSource, wave: WaveReport & { readonly outcome: "success" | "failure"; readonly summary: string }): Promise<void> {
    await this.#guard("waveFinished", wave.jobId, wave.wave, async () => {
      const key = this.#key(wave.jobId);
      if (await this.#final(wave.jobId)) return;
      await this.#setWave(wave.jobId, wave.wave, wave.outcome, wave.summary);
      const client = await this.#client(source.repo);
      const id = await this.#ensureDeployment(client, source, wave);
      await this.#deploymentStatus(client, source, wave, id, wave.outcome, limit(this.#scrub(wave.summary), MAX_DESCRIPTION));
      const plan = await this.#plan(wave.jobId);
      const last = plan !== undefined && wave.wave >= Math.max(...plan.waves.map((w) => w.wave));
      // The last wave's result is written by `finished`, which follows at once with the conclusion.
      if (last && wave.outcome === "success") return;
      await this.#updateCheck(client, source, wave.jobId, { status: "in_progress" });
      await this.#redis().expire(key, STATE_TTL_SECONDS);
    });
  }

  async finished(source: ReleaseSource, result: { readonly jobId: string; readonly outcome: ReleaseOutcome; readonly summary: string }): Promise<void> {
    await this.#guard("finished", result.jobId, undefined, async () => {
      const key = this.#key(result.jobId);
      await this.#redis().multi().hset(key, "outcome", result.outcome, "result", result.summary).expire(key, STATE_TTL_SECONDS).exec();
      const client = await this.#client(source.repo);
      // Waves left unfinished: their deployments end with the release. A superseded release's
      // finished waves stay as they are: their tenants run this version until the newer release
      // reaches them, and GitHub marks them inactive then (auto_inactive on its success).
      const fields = await this.#redis().hgetall(key);
      const plan = await this.#plan(result.jobId);
      for (const [field, value] of Object.entries(fields)) {
        const m = /^w(\d+):deployment$/.exec(field);
        if (!m || value === CREATING) continue;
        const n = Number(m[1]);
        const state = fields[`w${n}:state`];
        if (state === "success" || state === "failure") continue;
        const regions = plan?.waves.find((w) => w.wave === n)?.regions ?? [];
        const wave: WaveReport = { jobId: result.jobId, wave: n, regions, environment: fields[`w${n}:environment`] ?? `wave-${n}`, tenants: 0 };
        const end = ({ success: "success", failure: "failure", cancelled: "error", superseded: "inactive" } as const)[result.outcome];
        await this.#deploymentStatus(client, source, wave, Number(value), end, `Release ${result.outcome}`);
      }
      const conclusion = ({ success: "success", failure: "failure", cancelled: "cancelled", superseded: "neutral" } as const)[result.outcome];
      await this.#updateCheck(client, source, result.jobId, { conclusion });
    });
  }

  // --------------------------------------------------------------------------------------------

  #redis(): Redis {
    return this.#options.redis;
  }

  #key(jobId: string): string {
    return releaseReportKey(this.#options.prefix, jobId);
  }

  #client(repo: RepoRef): Promise<GitHubClient> {
    const k = `${repo.owner}/${repo.name}`.toLowerCase();
    let client = this.#clients.get(k);
    if (!client) {
      client = this.#options.clientFor(repo);
      // A failed construction (installation lookup) is tried again on the next report.
      client.catch(() => this.#clients.delete(k));
      this.#clients.set(k, client);
    }
    return client;
  }

  async #guard(operation: ReportOperation, jobId: string, wave: number | undefined, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      this.#failures += 1;
      const status = statusOf(error);
      this.#options.logger.warn(
        { operation, jobId, ...(wave !== undefined ? { wave } : {}), status: status ?? null, rateLimited: isRateLimit(error) },
        "release report to GitHub failed",
      );
      try {
        this.#options.onFailure?.(operation);
      } catch {
        // a failing counter must not reach the rollout either
      }
    }
  }

  /**
   * A release that succeeded or was superseded is reported for good: a replay of its milestones
   * (a re-entry after the end) sends nothing. A failed or cancelled one may be resumed, and its
   * check run goes back to in progress.
   */
  async #final(jobId: string): Promise<boolean> {
    const outcome = await this.#redis().hget(this.#key(jobId), "outcome");
    return outcome === "success" || outcome === "superseded";
  }

  /** A wave that already passed does not start or wait again (a replay after a crash). */
  async #stale(wave: WaveReport): Promise<boolean> {
    if (await this.#final(wave.jobId)) return true;
    return (await this.#redis().hget(this.#key(wave.jobId), `w${wave.wave}:state`)) === "success";
  }

  async #plan(jobId: string): Promise<StoredPlan | undefined> {
    const raw = await this.#redis().hget(this.#key(jobId), "plan");
    return raw === null ? undefined : (JSON.parse(raw) as StoredPlan);
  }

  async #setWave(jobId: string, wave: number, state: WaveState, summary?: string): Promise<void> {
    const key = this.#key(jobId);
    // A wave moving after a failed or cancelled end is a resume: that end no longer stands.
    const m = this.#redis().multi().hset(key, `w${wave}:state`, state).hdel(key, "outcome", "result");
    if (summary !== undefined) m.hset(key, `w${wave}:summary`, summary);
    await m.expire(key, STATE_TTL_SECONDS).exec();
  }

  #annotation(v: PlanViolation): Annotation {
    return {
      path: `tenants/${v.tenantId}`,
      start_line: 1,
      end_line: 1,
      annotation_level: annotationLevel(v.level),
      message: limit(this.#scrub(v.message), 4000),
      title: limit(this.#scrub(`${v.tenantId}: ${v.pack}/${v.policy}`), 255),
      ...(v.urn ? { raw_details: limit(this.#scrub(v.urn), 4000) } : {}),
    };
  }

  #violationsText(violations: readonly PlanViolation[]): string | undefined {
    if (violations.length === 0) return undefined;
    const lines = ["| Tenant | Policy | Level | Message |", "|---|---|---|---|"];
    for (const v of violations.slice(0, MAX_LISTED_VIOLATIONS)) {
      const cell = (s: string, max = 120) => inlineCode(this.#scrub(s), { inTable: true, max });
      lines.push(`| ${cell(v.tenantId, 40)} | ${cell(`${v.pack}/${v.policy}`, 80)} | ${cell(v.level, 20)} | ${cell(v.message, 300)} |`);
    }
    if (violations.length > MAX_LISTED_VIOLATIONS)
      lines.push("", `…and ${violations.length - MAX_LISTED_VIOLATIONS} more (annotations and the plan list them all).`);
    return limit(lines.join("\n"), MAX_OUTPUT);
  }

  /** Title and summary of the check run, rebuilt from Redis so any process may write them. */
  async #output(jobId: string, plan: StoredPlan | undefined, outcome: CheckOutcome): Promise<{ title: string; summary: string }> {
    const fields = await this.#redis().hgetall(this.#key(jobId));
    const version = plan ? inlineCode(plan.version, { max: 80 }) : "";
    const states = (plan?.waves ?? []).map((w) => (fields[`w${w.wave}:state`] as WaveState | undefined) ?? "pending");
    let title: string;
    if ("conclusion" in outcome) {
      const word = { success: "released", failure: "failed", cancelled: "cancelled", neutral: "superseded by a newer release" }[outcome.conclusion];
      title = `Release ${plan?.version ?? ""} ${word}`;
    } else {
      const waiting = plan?.waves.find((_, i) => states[i] === "awaiting-approval");
      const done = states.filter((s) => s === "success").length;
      title = waiting
        ? `Release ${plan?.version ?? ""}: wave ${waiting.wave} waits for approval`
        : `Release ${plan?.version ?? ""}: ${done}/${plan?.waves.length ?? 0} waves done`;
    }
    const lines: string[] = [`### Release ${version}`, ""];
    if (plan && isSafeUrl(plan.planUrl)) lines.push(`**Plan:** ${link(plan.planUrl)}`, "");
    if (plan) {
      const total = plan.waves.reduce((n, w) => n + w.tenants, 0);
      lines.push(`${plan.waves.length} wave(s), ${total} tenant(s), ${plan.violations} policy violation(s).`, "");
      lines.push("| Wave | Regions | Tenants | From → to | Infrastructure changes | Approval | State |", "|---:|---|---:|---|---|---|---|");
      plan.waves.forEach((w, i) => {
        const regions = w.regions.map((r) => inlineCode(r, { inTable: true, max: 40 })).join(", ") || "—";
        lines.push(
          `| ${w.wave} | ${regions} | ${w.tenants} | ${inlineCode(w.fromTo, { inTable: true, max: 300 })} | ${w.infra} | ${w.needsApproval ? "required" : "—"} | ${STATE_LABEL[states[i] ?? "pending"]} |`,
        );
      });
      const notes = plan.waves.map((w) => [w.wave, fields[`w${w.wave}:summary`]] as const).filter(([, s]) => s !== undefined);
      if (notes.length > 0) {
        lines.push("");
        for (const [n, s] of notes) lines.push(`- Wave ${n}: ${inlineCode(this.#scrub(s ?? ""), { max: 400 })}`);
      }
      const waiting = plan.waves.find((_, i) => states[i] === "awaiting-approval");
      if (waiting && !("conclusion" in outcome))
        lines.push("", `Wave ${waiting.wave} waits for approval: comment \`/stackrail approve\` (or \`/stackrail reject\`), or use the release API.`);
    }
    if (fields.result !== undefined) lines.push("", "**Result**", "", codeBlock(this.#scrub(fields.result), { max: 4000 }));
    return { title: limit(this.#scrub(title.replace(/\s+/g, " ").trim()), 200), summary: limit(lines.join("\n") + "\n", MAX_OUTPUT) };
  }

  /** The release's check run (created once), or the commit-status mode when checks cannot be written. */
  async #ensureCheck(
    client: GitHubClient,
    source: ReleaseSource,
    jobId: string,
    plan: StoredPlan | undefined,
    text?: string,
    annotations: Annotation[] = [],
  ): Promise<{ mode: "check"; id: number; fresh: boolean } | { mode: typeof STATUS_MODE }> {
    const key = this.#key(jobId);
    const { owner, name: repo } = source.repo;
    const current = await this.#redis().hget(key, "check");
    if (current === STATUS_MODE) return { mode: STATUS_MODE };
    if (current !== null && current !== CREATING) return { mode: "check", id: Number(current), fresh: false };
    if (current === CREATING) {
      // A crash between the creation and its record: the run carries the job id as external_id.
      const { data } = await client.rest.checks.listForRef({ owner, repo, ref: source.sha, check_name: RELEASE_CHECK_NAME, filter: "all", per_page: 100 });
      const found = data.check_runs.find((c) => c.external_id === jobId);
      if (found) {
        // Its first annotations went with the creation.
        await this.#redis().hset(key, "check", String(found.id), "annotations", String(annotations.length));
        return { mode: "check", id: found.id, fresh: false };
      }
    }
    await this.#redis().multi().hset(key, "check", CREATING).expire(key, STATE_TTL_SECONDS).exec();
    const outcome: CheckOutcome = { status: "in_progress" };
    const output = await this.#output(jobId, plan, outcome);
    try {
      const { data } = await client.rest.checks.create({
        owner,
        repo,
        name: RELEASE_CHECK_NAME,
        head_sha: source.sha,
        status: "in_progress",
        external_id: jobId,
        ...(plan && isSafeUrl(plan.planUrl) ? { details_url: plan.planUrl } : {}),
        output: { ...output, ...(text ? { text } : {}), ...(annotations.length > 0 ? { annotations } : {}) },
      });
      await this.#redis().hset(key, "check", String(data.id), "out", signature(output, outcome), "annotations", String(annotations.length));
      return { mode: "check", id: data.id, fresh: true };
    } catch (error) {
      // Only a GitHub App may write check runs; a token is refused. Commit statuses say the same.
      if (statusOf(error) === 403 && !isRateLimit(error)) {
        await this.#redis().hset(key, "check", STATUS_MODE);
        this.#options.logger.info({ jobId }, "release reported by commit status: the credentials cannot write check runs");
        await this.#commitStatus(client, source, jobId, output.title, outcome);
        await this.#redis().hset(key, "out", signature(output, outcome));
        return { mode: STATUS_MODE };
      }
      await this.#redis().hdel(key, "check");
      throw error;
    }
  }

  /** Updates the check run when what it would say changed (a repeated call sends nothing). */
  async #updateCheck(client: GitHubClient, source: ReleaseSource, jobId: string, outcome: CheckOutcome): Promise<void> {
    const plan = await this.#plan(jobId);
    const check = await this.#ensureCheck(client, source, jobId, plan);
    const output = await this.#output(jobId, plan, outcome);
    const key = this.#key(jobId);
    const sig = signature(output, outcome);
    if ((await this.#redis().hget(key, "out")) === sig) return;
    if (check.mode === STATUS_MODE) {
      await this.#commitStatus(client, source, jobId, output.title, outcome);
    } else {
      await client.rest.checks.update({
        owner: source.repo.owner,
        repo: source.repo.name,
        check_run_id: check.id,
        output,
        ...("conclusion" in outcome ? { conclusion: outcome.conclusion } : { status: outcome.status }),
      });
    }
    await this.#redis().hset(key, "out", sig);
  }

  async #commitStatus(client: GitHubClient, source: ReleaseSource, jobId: string, title: string, outcome: CheckOutcome): Promise<void> {
    const plan = await this.#plan(jobId);
    const state =
      "conclusion" in outcome ? ({ success: "success", failure: "failure", cancelled: "error", neutral: "success" } as const)[outcome.conclusion] : "pending";
    await client.rest.repos.createCommitStatus({
      owner: source.repo.owner,
      repo: source.repo.name,
      sha: source.sha,
      state,
      context: RELEASE_CHECK_NAME,
      description: limit(title, MAX_DESCRIPTION),
      ...(plan && isSafeUrl(plan.planUrl) ? { target_url: plan.planUrl } : {}),
    });
  }

  /** The wave's deployment, created once per (jobId, wave). */
  async #ensureDeployment(client: GitHubClient, source: ReleaseSource, wave: WaveReport): Promise<number> {
    const key = this.#key(wave.jobId);
    const field = `w${wave.wave}:deployment`;
    const { owner, name: repo } = source.repo;
    const current = await this.#redis().hget(key, field);
    if (current !== null && current !== CREATING) return Number(current);
    if (current === CREATING) {
      // A crash between the creation and its record: ours carries (jobId, wave) in its payload.
      const { data } = await client.rest.repos.listDeployments({ owner, repo, sha: source.sha, environment: wave.environment, per_page: 100 });
      const found = data.find((d) => {
        const p = d.payload as { jobId?: unknown; wave?: unknown } | string;
        return typeof p === "object" && p.jobId === wave.jobId && p.wave === wave.wave;
      });
      if (found) {
        await this.#redis().hset(key, field, String(found.id));
        return found.id;
      }
    }
    await this.#redis().multi().hset(key, field, CREATING, `w${wave.wave}:environment`, wave.environment).expire(key, STATE_TTL_SECONDS).exec();
    const plan = await this.#plan(wave.jobId);
    const regions = wave.regions.length > 0 ? ` (${wave.regions.join(", ")})` : "";
    const { data } = await client.rest.repos.createDeployment({
      owner,
      repo,
      ref: source.sha,
      environment: wave.environment,
      task: "deploy",
      auto_merge: false,
      // Our own in-progress check run must not block the deployment.
      required_contexts: [],
      transient_environment: false,
      description: limit(this.#scrub(`Release ${plan?.version ?? ""} wave ${wave.wave}${regions}: ${wave.tenants} tenant(s)`), MAX_DESCRIPTION),
      payload: { jobId: wave.jobId, wave: wave.wave, ...(plan ? { version: plan.version } : {}) },
    });
    if (!("id" in data)) {
      await this.#redis().hdel(key, field);
      throw new Error("GitHub did not create the deployment");
    }
    await this.#redis().hset(key, field, String(data.id));
    return data.id;
  }

  /** A deployment status, unless the deployment's last one we sent already says it. */
  async #deploymentStatus(
    client: GitHubClient,
    source: ReleaseSource,
    wave: WaveReport,
    id: number,
    state: "queued" | "in_progress" | "success" | "failure" | "error" | "inactive",
    description: string,
  ): Promise<void> {
    const key = this.#key(wave.jobId);
    const field = `w${wave.wave}:deploymentState`;
    if ((await this.#redis().hget(key, field)) === state) return;
    const plan = await this.#plan(wave.jobId);
    await client.rest.repos.createDeploymentStatus({
      owner: source.repo.owner,
      repo: source.repo.name,
      deployment_id: id,
      state,
      description: limit(this.#scrub(description), MAX_DESCRIPTION),
      ...(plan && isSafeUrl(plan.planUrl) ? { log_url: plan.planUrl } : {}),
    });
    await this.#redis().hset(key, field, state);
  }
}

export interface ReleaseReporterDeps {
  redis: Redis;
  prefix: string;
  logger: Logger;
  scrub?: Scrub;
  onFailure?: (operation: ReportOperation) => void;
  clientOptions?: Pick<GitHubClientOptions, "retryAfterBaseMs" | "spaceWrites" | "installationId" | "onResponse">;
}

/** GitHub when credentials are configured; nothing otherwise (the rollout's own records remain). */
export function createReleaseReporter(config: Pick<Config, "github" | "githubApiUrl">, deps: ReleaseReporterDeps): ReleaseReporter {
  const credentials = config.github;
  if (credentials.kind === "none") return noReleaseReporter;
  return new GitHubReleaseReporter({
    redis: deps.redis,
    prefix: deps.prefix,
    logger: deps.logger,
    ...(deps.scrub ? { scrub: deps.scrub } : {}),
    ...(deps.onFailure ? { onFailure: deps.onFailure } : {}),
    clientFor: (repo) =>
      createGitHubClient({
        credentials,
        baseUrl: config.githubApiUrl,
        logger: deps.logger,
        repo: { owner: repo.owner, name: repo.name },
        ...deps.clientOptions,
      }),
  });
}
