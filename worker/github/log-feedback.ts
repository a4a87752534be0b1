// Feedback without GitHub credentials: each action is written to the log and returned as a
// record, which the worker stores in the job's record (GET /v1/jobs/:id shows it).
import type { Logger } from "../../core/logger.ts";
import { stripCredentials } from "../gitops/git.ts";
import {
  limit,
  type CommitStatusInput,
  type DeploymentInput,
  type Feedback,
  type FeedbackRecord,
  type RepoRef,
  type Scrub,
  type StickyCommentInput,
} from "./feedback.ts";

export class LogFeedback implements Feedback {
  readonly #logger: Logger;
  readonly #scrub: Scrub;

  constructor(options: { logger: Logger; scrub?: Scrub }) {
    this.#logger = options.logger;
    const scrub = options.scrub ?? ((t: string) => t);
    this.#scrub = (t) => stripCredentials(scrub(t));
  }

  #emit(record: FeedbackRecord): FeedbackRecord {
    this.#logger.info({ feedback: record }, `feedback (no GitHub credentials): ${record.kind} ${record.target}`);
    return record;
  }

  stickyComment(input: StickyCommentInput): Promise<FeedbackRecord> {
    const body = limit(`${input.marker}\n${this.#scrub(input.body)}`, 65_000);
    return Promise.resolve(
      this.#emit({ channel: "log", kind: "comment", target: `${input.repo.owner}/${input.repo.name}#${input.pr}`, action: "logged", body }),
    );
  }

  commitStatus(input: CommitStatusInput): Promise<FeedbackRecord> {
    return Promise.resolve(
      this.#emit({
        channel: "log",
        kind: "status",
        target: `${input.repo.owner}/${input.repo.name}@${input.sha}`,
        action: "logged",
        state: `${input.context}: ${input.state}`,
        body: limit(this.#scrub(input.description), 140),
        ...(input.targetUrl ? { url: this.#scrub(input.targetUrl) } : {}),
      }),
    );
  }

  deployment(input: DeploymentInput): Promise<FeedbackRecord> {
    return Promise.resolve(
      this.#emit({
        channel: "log",
        kind: "deployment",
        target: `${input.repo.owner}/${input.repo.name}:${input.environment}`,
        action: "logged",
        state: input.state,
        body: limit(this.#scrub(input.description ?? ""), 140),
        ...(input.environmentUrl ? { url: this.#scrub(input.environmentUrl) } : {}),
      }),
    );
  }

  deactivateEnvironment(input: { repo: RepoRef; environment: string; description?: string }): Promise<FeedbackRecord[]> {
    return Promise.resolve([
      this.#emit({
        channel: "log",
        kind: "deployment",
        target: `${input.repo.owner}/${input.repo.name}:${input.environment}`,
        action: "logged",
        state: "inactive",
        body: limit(this.#scrub(input.description ?? ""), 140),
      }),
    ]);
  }
}
