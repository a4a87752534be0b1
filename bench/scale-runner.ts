// The scale benchmark's recorded no-op runner: a StackRunner that runs no engine and returns, for
// every operation, the OperationSummary the real engine returned for the same kind of operation
// of a tenant's release (bench/scale-recorded-release.json, written by bench/scale-record.ts),
// with the recorded tenant's id replaced by the requested one. `preview` (a release's plan step,
// or the preview before an approved wave's `up`) gets the recorded preview; every other operation
// the recorded `up`. What it measures is the orchestration around the Pulumi step (queue, lanes,
// planner, GitOps writer, GitHub feedback), never the engine: its figures are labelled so.
import { readFileSync } from "node:fs";
import type { OperationSummary, StackOperationRequest } from "../worker/pulumi-protocol.ts";
import type { RunOptions, StackRunner } from "../worker/pulumi-runner.ts";
import { RECORDING_FILE, TENANT_PLACEHOLDER, substitute, type Recording } from "./scale-record.ts";

export function loadRecording(file = RECORDING_FILE): Recording {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`no recorded release at ${file} (run \`node bench/scale-record.ts\` once with the engine built): ${(err as Error).message}`, {
      cause: err,
    });
  }
  const r = JSON.parse(text) as Partial<Recording>;
  if (!r.preview || !r.up || typeof r.up.resourceChanges !== "object") throw new Error(`${file} is not a recorded release`);
  return r as Recording;
}

export class RecordedRunner implements StackRunner {
  readonly #recording: Recording;
  /** Operations answered, by kind. */
  readonly calls: Record<string, number> = {};

  constructor(recording: Recording = loadRecording()) {
    this.#recording = recording;
  }

  async run(request: StackOperationRequest, options: RunOptions = {}): Promise<OperationSummary> {
    // An answer on a later turn of the event loop, as a real operation's would be.
    await Promise.resolve();
    options.signal?.throwIfAborted();
    this.calls[request.operation] = (this.calls[request.operation] ?? 0) + 1;
    const tenantId = typeof request.args.tenantId === "string" ? request.args.tenantId : request.stack.replace(/^tenant-/, "");
    const recorded = request.operation === "preview" ? this.#recording.preview : this.#recording.up;
    // Nothing ran: no engine time is reported.
    return { ...substitute(recorded, TENANT_PLACEHOLDER, tenantId), operation: request.operation, durationMs: 0 };
  }

  close(): void {
    // no child process to stop
  }
}
