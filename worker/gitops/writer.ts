// The GitOps writer contract shared by the local-git and GitHub implementations: one commit per
// job holding all of its files, no empty commits, paths only from the repository layout, every
// manifest validated against the Argo CD CRDs before anything is written.
import { ManifestInvalidError, ValidationError } from "../../core/errors.ts";
import type { Trigger } from "../../core/jobs.ts";
import type { CrdValidator } from "./crd-validator.ts";
import { assertLayoutPath } from "../../core/gitops-paths.ts";

export interface GitOpsChange {
  jobId: string;
  message: string;
  /** Path → new content; `null` deletes the file. */
  files: Record<string, string | null>;
  /** Stable name of what the change is about (`tenant-acme`, `preview-app-pr-3`): the PR branch in pull-request mode. */
  subject?: string;
  /** Told (one line for the job's progress) when the commit waits: e.g. the remote refuses pushes for now. */
  onWait?: (line: string) => void;
}

export interface GitOpsCommitResult {
  /** The new commit, or null when the repository already held exactly these files. */
  sha: string | null;
  /** Paths whose content changed (added, modified or deleted), sorted. */
  changed: string[];
  /** In pull-request mode, the pull request that carries the change. */
  pullRequest?: { number: number; url: string };
}

/** Where Argo CD reads the repository from (the regional ApplicationSet points at it). */
export interface GitOpsSource {
  readonly repoURL: string;
  readonly revision: string;
}

export interface GitOpsWriter {
  readonly source: GitOpsSource;
  commit(change: GitOpsChange): Promise<GitOpsCommitResult>;
  readFile(path: string): Promise<string | null>;
  listFiles(prefix: string): Promise<string[]>;
}

export const COMMIT_AUTHOR = { name: "Stackrail", email: "stackrail@users.noreply.github.com" } as const;

function describeTrigger(trigger: Trigger): string {
  switch (trigger.type) {
    case "webhook":
      return `webhook ${trigger.event} (delivery ${trigger.deliveryId}${trigger.sender ? `, by ${trigger.sender}` : ""})`;
    case "api":
      return `tenant API (token ${trigger.tokenName})`;
    case "schedule":
      return `schedule ${trigger.name}`;
    case "job":
      return `job ${trigger.parentJobId}`;
  }
}

function isControl(c: string): boolean {
  const code = c.codePointAt(0) ?? 0;
  return code < 0x20 || code === 0x7f || code === 0x2028 || code === 0x2029;
}

/** One line, printable, bounded: user-controlled text must not forge trailers or extra lines. */
function oneLine(text: string, max = 120): string {
  const flat = [...text]
    .map((c) => (isControl(c) ? " " : c))
    .join("")
    .replace(/\s+/g, " ")
    .trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** A commit message naming the job, the trigger and the tenant or PR. */
export function commitMessage(input: { jobId: string; kind: string; subject: string; trigger: Trigger; summary?: string }): string {
  const title = oneLine(`${input.kind} ${input.subject}${input.summary ? `: ${input.summary}` : ""}`, 100);
  return [
    title,
    "",
    `Job: ${oneLine(input.jobId, 100)}`,
    `Trigger: ${oneLine(describeTrigger(input.trigger), 200)}`,
    `Subject: ${oneLine(input.subject, 100)}`,
    "",
  ].join("\n");
}

/** Replaces known secret values in a text (SecretScrubber.scrub); used here only to detect them. */
export type Scrub = (text: string) => string;

/**
 * Checks a change before any write: layout paths, job id, the CRDs, and — when the process's
 * secret scrubber is given — that no known secret value is in a file or the message.
 * Throws; nothing is written.
 */
export function checkChange(change: GitOpsChange, validator: CrdValidator, scrub?: Scrub): void {
  if (!/^[A-Za-z0-9:_.-]{1,100}$/.test(change.jobId)) throw new ValidationError("jobId", "must match [A-Za-z0-9:_.-]{1,100}");
  if (change.subject !== undefined && !/^[a-z0-9][a-z0-9-]{0,80}$/.test(change.subject)) throw new ValidationError("subject", "must be a lowercase slug");
  if (!change.message.includes(change.jobId)) throw new ValidationError("message", "must name the job id");
  for (const p of Object.keys(change.files)) assertLayoutPath(p);
  validator.validateFiles(change.files);
  if (scrub) {
    // The secret itself is never echoed: only where it was found.
    if (scrub(change.message) !== change.message)
      throw new ManifestInvalidError(`commit message of job ${change.jobId} contains a secret value; nothing was written`);
    for (const [p, text] of Object.entries(change.files)) {
      if (text !== null && scrub(text) !== text) throw new ManifestInvalidError(`${p}: contains a secret value; nothing was written`);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Small randomised backoff between compare-and-swap retries, so racing writers spread out. */
export function raceBackoff(attempt: number): number {
  return Math.min(1000, 20 * 2 ** attempt) * (0.5 + Math.random());
}
