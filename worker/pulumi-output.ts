// The child's message carrying the Pulumi engine's own output (what the CLI prints on stdout and
// stderr), beside the structured messages of pulumi-protocol.ts. It belongs in that file's
// ChildMessage union; it is kept apart only until that file takes it.

export interface EngineOutputMessage {
  readonly type: "output";
  /** A chunk as the engine wrote it: not necessarily whole lines; never colored. */
  readonly text: string;
}

export function isEngineOutput(message: unknown): message is EngineOutputMessage {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === "output" &&
    typeof (message as { text?: unknown }).text === "string"
  );
}
