// Doubles for handler tests on the aws target, whose provider cannot run here (not a test file
// itself): a runner that records each request and answers with what the test says (or runs the
// program under Pulumi's runtime mocks), an in-memory GitOps writer, and a job context.
import pino from "pino";
import type { JobData, JobKind } from "../../core/jobs.ts";
import type { GitOpsChange, GitOpsCommitResult, GitOpsWriter } from "../gitops/writer.ts";
import type { JobContext } from "../job-worker.ts";
import type { OperationSummary, StackOperationRequest } from "../pulumi-protocol.ts";
import type { RunOptions, StackRunner } from "../pulumi-runner.ts";

export class RecordingRunner implements StackRunner {
  readonly requests: StackOperationRequest[] = [];
  readonly #respond: (request: StackOperationRequest) => Promise<Record<string, unknown>> | Record<string, unknown>;

  /** `respond` gives the stack outputs of each operation (or throws the error the operation fails with). */
  constructor(respond: (request: StackOperationRequest) => Promise<Record<string, unknown>> | Record<string, unknown> = () => ({})) {
    this.#respond = respond;
  }

  async run(request: StackOperationRequest, _options?: RunOptions): Promise<OperationSummary> {
    this.requests.push(request);
    const outputs = await this.#respond(request);
    return { operation: request.operation, result: "succeeded", resourceChanges: { create: 1 }, outputs, durationMs: 1 };
  }
}

export class MemoryWriter implements GitOpsWriter {
  readonly source = { repoURL: "https://github.com/acme/gitops.git", revision: "main" };
  readonly files = new Map<string, string>();
  readonly commits: GitOpsChange[] = [];

  commit(change: GitOpsChange): Promise<GitOpsCommitResult> {
    const changed = Object.entries(change.files)
      .filter(([file, text]) => (text === null ? this.files.has(file) : this.files.get(file) !== text))
      .map(([file]) => file)
      .sort();
    if (changed.length === 0) return Promise.resolve({ sha: null, changed });
    for (const [file, text] of Object.entries(change.files)) {
      if (text === null) this.files.delete(file);
      else this.files.set(file, text);
    }
    this.commits.push(change);
    return Promise.resolve({ sha: `c${this.commits.length}`.padEnd(40, "0"), changed });
  }

  readFile(file: string): Promise<string | null> {
    return Promise.resolve(this.files.get(file) ?? null);
  }

  listFiles(prefix: string): Promise<string[]> {
    return Promise.resolve([...this.files.keys()].filter((f) => f.startsWith(prefix)).sort());
  }
}

/** A job context whose progress lines are kept in `lines`. */
export function jobContext<K extends JobKind>(jobId: string, data: Extract<JobData, { kind: K }>): JobContext<K> & { lines: string[] } {
  const lines: string[] = [];
  return {
    jobId,
    data,
    attempt: 1,
    signal: new AbortController().signal,
    logger: pino({ level: "silent" }),
    lines,
    progress(line: string) {
      lines.push(line);
      return Promise.resolve();
    },
  };
}
