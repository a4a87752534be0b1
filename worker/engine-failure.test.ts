// The fate of a failed operation, from the engine's text (worker/engine-failure.ts). The error
// texts of the clients are the ones the real clients give (captured from ioredis 5 and mysql2 against a
// refused port, a silent server and a redis-server killed under a command; AWS and Go wordings
// from their documentation); they are wrapped in the engine's diagnostics as the CLI prints them.
import { ConcurrentUpdateError } from "@pulumi/pulumi/automation/index.js";
import { describe, expect, it } from "vitest";
import { classifyEngineFailure, transientCause } from "./engine-failure.ts";

const none = { aborted: false, violations: [], findings: [] } as const;

/** A resource's failure as the CLI reports it (the Automation API's CommandError carries the output). */
function engineOutput(resource: string, error: string): Error {
  return new Error(
    [
      "code: 255",
      " stdout: Updating (tenant-acme):",
      "",
      `    ${resource} creating (0s) error: ${error}`,
      "",
      "Diagnostics:",
      `  ${resource}:`,
      `    error: ${error}`,
      "",
      "  pulumi:pulumi:Stack (stackrail-pool-tenant-acme):",
      "    error: update failed",
      "",
      " stderr: ",
    ].join("\n"),
  );
}

const CACHE_USER = "pulumi-nodejs:dynamic:Resource (tenant-acme-cache-user)";
const DATABASE = "pulumi-nodejs:dynamic:Resource (tenant-acme-database)";

const transient: [string, Error][] = [
  // ioredis (maxRetriesPerRequest 1, no reconnect), as the tenant cache provider uses it.
  ["redis refused, reset or killed under a command", engineOutput(CACHE_USER, "Connection is closed.")],
  [
    "redis retries used up",
    engineOutput(CACHE_USER, 'Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.'),
  ],
  ["redis command timeout", engineOutput(CACHE_USER, "Command timed out")],
  ["redis loading its data after a restart", engineOutput(CACHE_USER, "LOADING Redis is loading the dataset in memory")],
  ["node refused", engineOutput(CACHE_USER, "connect ECONNREFUSED 127.0.0.1:6390")],
  ["node reset", engineOutput(CACHE_USER, "read ECONNRESET")],
  // mysql2
  ["mysql refused", engineOutput(DATABASE, "connect ECONNREFUSED 127.0.0.1:3307")],
  ["mysql silent", engineOutput(DATABASE, "connect ETIMEDOUT")],
  ["mysql too many connections", engineOutput(DATABASE, "Too many connections")],
  ["mysql too many connections (code)", engineOutput(DATABASE, "ER_CON_COUNT_ERROR: Too many connections")],
  ["mysql restart", engineOutput(DATABASE, "Connection lost: The server closed the connection.")],
  ["mysql shutting down", engineOutput(DATABASE, "Server shutdown in progress")],
  ["mysql deadlock", engineOutput(DATABASE, "Deadlock found when trying to get lock; try restarting transaction")],
  // The engine's own S3 state backend (Go SDK wordings).
  [
    "s3 slow down",
    new Error(
      'code: 255\n stdout: \n stderr: error: failed to save checkpoint: writing checkpoint: blob (key ".pulumi/stacks/stackrail-pool/tenant-acme.json") (code=Unknown): operation error S3: PutObject, https response error StatusCode: 503, RequestID: 17C0, HostID: dd9, api error SlowDown: Please reduce your request rate.\n',
    ),
  ],
  [
    "s3 request timeout",
    new Error(
      "code: 255\n stdout: \n stderr: error: could not get stack: blob (code=Unknown): operation error S3: GetObject, https response error StatusCode: 400, RequestID: 1, api error RequestTimeout: Your socket connection to the server was not read from or written to within the timeout period.\n",
    ),
  ],
  [
    "s3 internal error",
    new Error(
      "code: 255\n stdout: \n stderr: error: blob (code=Unknown): operation error S3: PutObject, https response error StatusCode: 500, api error InternalError: We encountered an internal error. Please try again.\n",
    ),
  ],
  [
    "s3 gateway down",
    new Error("code: 255\n stdout: \n stderr: error: blob (code=Unknown): operation error S3: ListObjectsV2, https response error StatusCode: 502"),
  ],
  [
    "backend refused (Go)",
    new Error(
      "code: 255\n stdout: \n stderr: error: failed to load checkpoint: blob (code=Unknown): operation error S3: GetObject, exceeded maximum number of attempts, 3, https response error: dial tcp 127.0.0.1:9000: connect: connection refused\n",
    ),
  ],
  ["backend i/o timeout (Go)", new Error("code: 255\n stdout: \n stderr: error: read tcp 10.0.0.2:4455->10.0.0.9:443: i/o timeout\n")],
  ["aws throttling", engineOutput("aws:iam:Role (tenant-acme)", "creating IAM Role: operation error IAM: CreateRole, api error Throttling: Rate exceeded")],
];

const program: [string, Error][] = [
  ["a resource the program got wrong", engineOutput(DATABASE, "ER_DUP_ENTRY: Duplicate entry 'acme' for key 'PRIMARY'")],
  ["access denied", engineOutput(DATABASE, "Access denied for user 'stackrail'@'localhost' (using password: YES)")],
  ["a bad config value", new Error("code: 255\n stdout: \n stderr: error: Missing required configuration variable 'stackrail:tier'")],
  [
    "a redis server error that is the request's",
    engineOutput(CACHE_USER, "ERR Error in ACL SETUSER modifier '+nope': Unknown command or category name in ACL"),
  ],
  ["a corrupted checkpoint", new Error("code: 255\n stdout: \n stderr: error: failed to load checkpoint: EOF\n")],
  ["a full disk", new Error("code: 255\n stdout: \n stderr: error: write /data/state/.pulumi/stacks/x.json: no space left on device\n")],
  [
    "a plain 500 from an API",
    engineOutput("aws:lambda:Function (f)", "operation error Lambda: CreateFunction, https response error StatusCode: 500 (unexpected)"),
  ],
  [
    "a plugin of the engine that died",
    new Error(
      'code: 255\n stdout: \n stderr: error: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:39123: connect: connection refused"\n',
    ),
  ],
];

describe("classifyEngineFailure", () => {
  it.each(transient)("retries what is provably transient: %s", (_name, err) => {
    expect(transientCause(err.message)).toBeDefined();
    expect(classifyEngineFailure(err, none).kind).toBe("internal");
  });

  it.each(program)("fails at once on the program's own failure: %s", (_name, err) => {
    expect(transientCause(err.message)).toBeUndefined();
    expect(classifyEngineFailure(err, none).kind).toBe("program");
  });

  it("keeps a mandatory policy violation failing at once, even beside a connection error", () => {
    const f = classifyEngineFailure(engineOutput(DATABASE, "connect ECONNREFUSED 127.0.0.1:3307"), {
      aborted: false,
      violations: ["stackrail-tenant/no-public-buckets: bucket is public"],
      findings: [],
    });
    expect(f).toMatchObject({ kind: "policy", message: "mandatory policy violation; nothing was applied" });
    expect(f.violations).toEqual(["stackrail-tenant/no-public-buckets: bucket is public"]);
  });

  it("says cancelled for an operation that was asked to stop, whatever the engine said", () => {
    expect(classifyEngineFailure(engineOutput(DATABASE, "Too many connections"), { ...none, aborted: true })).toEqual({
      kind: "cancelled",
      message: "operation cancelled",
    });
  });

  it("tells a stack locked by someone else", () => {
    const err = Object.create(ConcurrentUpdateError.prototype) as Error;
    Object.defineProperty(err, "message", { value: "the stack is currently locked by 1 lock(s)" });
    expect(classifyEngineFailure(err, none).kind).toBe("concurrent");
  });

  it("keeps a long message bounded", () => {
    const f = classifyEngineFailure(new Error(`x${"y".repeat(10_000)}`), none);
    expect(f.message.length).toBeLessThanOrEqual(4001);
  });

  it("classifies a failure whose plugin died but whose cause was a refused server as transient", () => {
    const err = new Error(
      'code: 255\n stdout: \n    error: connect ECONNREFUSED 127.0.0.1:3307\n stderr: error: rpc error: code = Unavailable desc = "transport: connect: connection refused"\n',
    );
    expect(classifyEngineFailure(err, none).kind).toBe("internal");
  });
});
