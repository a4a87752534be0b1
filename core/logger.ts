// Structured logs (pino). Two layers keep secrets out:
//  1. `redact` removes fields that are secrets by name (authorization headers, passwords, tokens);
//  2. a SecretScrubber replaces every known secret value wherever it appears in a line
//     (an error message from a driver, a URL, an engine event), before the line is written.
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger } from "pino";

const REDACT_PATHS = [
  "password",
  "*.password",
  "token",
  "*.token",
  "secret",
  "*.secret",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  'req.headers["x-hub-signature-256"]',
  "privateKey",
  "*.privateKey",
  "passphrase",
  "*.passphrase",
];

export const REDACTED = "[REDACTED]";

/** Field names that hold credentials: such outputs never reach the API, a manifest or a comment. */
export const SECRET_FIELD_NAME = /pass(word|wd|phrase)?|secret|token|credential|private|api[-_]?key|auth/i;

/** Holds the secret values known to this process and removes them from any text. */
export class SecretScrubber {
  readonly #values = new Set<string>();

  add(...values: (string | undefined)[]): void {
    for (const v of values) {
      // Very short values would redact ordinary words; secrets that short are refused by config anyway.
      if (v && v.length >= 4) {
        this.#values.add(v);
        // The same secret also appears JSON-escaped or URL-encoded in lines.
        this.#values.add(JSON.stringify(v).slice(1, -1));
        this.#values.add(encodeURIComponent(v));
      }
    }
  }

  scrub(text: string): string {
    let out = text;
    for (const v of this.#values) {
      if (out.includes(v)) out = out.split(v).join(REDACTED);
    }
    return out;
  }

  /** Deep copy of a JSON-compatible value with every known secret replaced. */
  scrubValue<T>(value: T): T {
    return JSON.parse(this.scrub(JSON.stringify(value) ?? "null")) as T;
  }
}

export interface LoggerOptions {
  level?: string;
  scrubber?: SecretScrubber;
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const scrubber = options.scrubber;
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "stackrail", ...options.base },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      hooks: scrubber ? { streamWrite: (line: string) => scrubber.scrub(line) } : {},
      serializers: { err: pino.stdSerializers.err },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
