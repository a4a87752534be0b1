// How the Pulumi child classifies an operation that failed (the child's side of a job's fate; the
// runner turns the kind into a typed error): cancelled, a mandatory policy violation, a stack
// locked by someone else, a backing service that was not there for a moment (transient: the job
// is retried with back-off), or the program's own failure (fails at once).
//
// The engine reports every failure as text (the CLI's output), so this is the one place where text
// is read to decide a fate: it is turned into a typed kind here, at the edge, and nothing after it
// looks at the message again. Only what is provably transient is: a server that refused, reset or
// did not answer a connection, one that said it is overloaded or restarting (too many
// connections, loading, slow down, 502/503/504), a lock or deadlock that the server itself says
// to retry. Everything else, including a plugin of the engine's own that died (a provider that
// crashes crashes again), stays a program error.
import { ConcurrentUpdateError } from "@pulumi/pulumi/automation/index.js";
import type { ChildFailure, PolicyViolation } from "./pulumi-protocol.ts";

export interface EngineFailureContext {
  /** The operation was asked to stop (a cancel, a time limit, a lost lock, the parent's death). */
  readonly aborted: boolean;
  /** Mandatory policy violations the engine reported, as lines. */
  readonly violations: readonly string[];
  /** The same findings, structured. */
  readonly findings: readonly PolicyViolation[];
}

/** Longest message kept in a failure (the CLI's output can be long). */
const MAX_MESSAGE = 4000;

/** Why a failure counts as transient: one name per family of causes (logs and tests). */
export type TransientCause = "connection" | "mysql" | "redis" | "http" | "s3" | "aws_throttling";

/**
 * Connections to a server that was not there, or went away (Node, Go, mysql2, ioredis wordings).
 * Node: `connect ECONNREFUSED 127.0.0.1:6379`, `read ECONNRESET`, `connect ETIMEDOUT`; Go (the
 * engine's own backend access): `dial tcp …: connect: connection refused`, `… i/o timeout`.
 */
const CONNECTION =
  /\b(ECONNREFUSED|ECONNRESET|ECONNABORTED|EHOSTUNREACH|EHOSTDOWN|ENETUNREACH|ENETDOWN|ETIMEDOUT|ESOCKETTIMEDOUT|EPIPE|EAI_AGAIN)\b|\bsocket hang up\b|connect: connection refused|connection reset by peer|\bi\/o timeout\b|TLS handshake timeout|Client\.Timeout exceeded|temporary failure in name resolution|write: broken pipe/i;

/**
 * MariaDB/MySQL (mysql2) saying it is overloaded, restarting, or that a lock may be retried:
 * ER_CON_COUNT_ERROR (1040, "Too many connections"), ER_SERVER_SHUTDOWN (1053), a lost connection,
 * ER_LOCK_DEADLOCK (1213) and ER_LOCK_WAIT_TIMEOUT (1205), which the server says to retry.
 */
const MYSQL =
  /\b(ER_CON_COUNT_ERROR|ER_SERVER_SHUTDOWN|ER_LOCK_DEADLOCK|ER_LOCK_WAIT_TIMEOUT|PROTOCOL_CONNECTION_LOST|PROTOCOL_SEQUENCE_TIMEOUT)\b|Too many connections|Server shutdown in progress|Connection lost: The server closed the connection|Deadlock found when trying to get lock|Lock wait timeout exceeded|Can't add new command when connection is in closed state/;

/**
 * Redis (ioredis, as the tenant cache provider uses it): a connection closed under a command, no
 * answer within the client's limits, a server loading its data or failing over.
 */
const REDIS =
  /Connection is closed\.|Reached the max retries per request limit|Command timed out|Stream isn't writeable|\bLOADING Redis is loading\b|\bTRYAGAIN\b|\bCLUSTERDOWN\b|\bMASTERDOWN\b|All sentinels are unreachable/;

/** An HTTP server or gateway in front of one that is down for now (never a plain 500: that may be the request). */
const HTTP = /\b(StatusCode|status code):? ?(502|503|504)\b|\b502 Bad Gateway\b|\b503 Service Unavailable\b|\b504 Gateway Time-?out\b/i;

/** S3 (the state backend, bundles): the error codes AWS documents as retryable. */
const S3 = /\b(SlowDown|RequestTimeout|ServiceUnavailable|InternalError)\b(?!\w)/;

/** AWS APIs asking the caller to slow down. */
const AWS_THROTTLING = /\b(Throttling|ThrottlingException|RequestLimitExceeded|TooManyRequestsException|ProvisionedThroughputExceededException)\b/;

/**
 * The engine could not reach one of its own plugins (gRPC `Unavailable`): the provider or language
 * host died. Not transient by itself (a provider that panics does so again), so these wordings do
 * not make a failure transient even though they name a refused connection.
 */
const PLUGIN_TRANSPORT = /rpc error: code = Unavailable/;

/** The family of transient causes the message shows, or undefined when it shows none. */
export function transientCause(message: string): TransientCause | undefined {
  // A dead plugin's refused connection is not a backing service's: strip those lines first.
  const text = PLUGIN_TRANSPORT.test(message)
    ? message
        .split("\n")
        .filter((l) => !PLUGIN_TRANSPORT.test(l))
        .join("\n")
    : message;
  if (MYSQL.test(text)) return "mysql";
  if (REDIS.test(text)) return "redis";
  if (CONNECTION.test(text)) return "connection";
  if (S3.test(text)) return "s3";
  if (HTTP.test(text)) return "http";
  if (AWS_THROTTLING.test(text)) return "aws_throttling";
  return undefined;
}

/** The failure of an operation, as the child reports it to the runner. */
export function classifyEngineFailure(err: unknown, context: EngineFailureContext): ChildFailure {
  const message = err instanceof Error ? err.message : String(err);
  const short = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
  if (context.aborted) return { kind: "cancelled", message: "operation cancelled" };
  // A refused policy fails at once, whatever else the output says (nothing was applied).
  if (context.violations.length > 0) {
    return {
      kind: "policy",
      message: "mandatory policy violation; nothing was applied",
      violations: [...context.violations],
      policyViolations: [...context.findings],
    };
  }
  if (err instanceof ConcurrentUpdateError) return { kind: "concurrent", message: short };
  // A backing service that was down, restarting or overloaded (the tenants' MariaDB and Redis, the
  // state backend) failed a resource: not the program's fault, so the job is retried (its
  // attempts, with back-off) instead of failed.
  if (transientCause(message) !== undefined) return { kind: "internal", message: short };
  return { kind: "program", message: short };
}
