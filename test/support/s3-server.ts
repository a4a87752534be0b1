// A private S3-compatible server per test file: the gofakes3 binary that `npm ci` builds from
// tools/s3-server (scripts/install-s3-server.ts), on a port the kernel picks. The blob store and
// the Pulumi diy backend on `s3://` are tested against it, never a mock of the SDK.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { s3ServerLocation } from "../../scripts/install-s3-server.ts";

/** gofakes3 accepts any credentials; the SDK and the engine still want some in the environment. */
export const S3_TEST_CREDENTIALS = { AWS_ACCESS_KEY_ID: "stackrail-test", AWS_SECRET_ACCESS_KEY: "stackrail-test-secret", AWS_REGION: "us-east-1" } as const;

export interface S3TestServer {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  /** STACKRAIL_BLOB_URL for a bucket and prefix on this server. */
  blobUrl(bucket: string, prefix?: string): string;
  /** PULUMI_BACKEND_URL (the engine's diy backend through gocloud) for a bucket and prefix on this server. */
  pulumiBackendUrl(bucket: string, prefix?: string): string;
  stop(): Promise<void>;
}

export async function startS3Server(options: { buckets?: readonly string[]; timeoutMs?: number } = {}): Promise<S3TestServer> {
  const { binary } = s3ServerLocation();
  if (!existsSync(binary)) {
    throw new Error(
      `the S3 test server is not built (${binary} is missing). \`npm ci\` builds it (postinstall); ` + `or run: node scripts/install-s3-server.ts`,
    );
  }
  const args = ["-addr", "127.0.0.1:0"];
  if (options.buckets && options.buckets.length > 0) args.push("-bucket", options.buckets.join(","));
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the S3 test server did not start within ${options.timeoutMs ?? 10_000} ms: ${err.trim()}`));
    }, options.timeoutMs ?? 10_000);
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr.on("data", (c: Buffer) => {
      err = (err + c.toString()).slice(-2000);
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the S3 test server exited (code ${code}) before listening: ${err.trim()}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const suffix = (prefix: string | undefined): string => (prefix ? `/${prefix.replace(/^\/+|\/+$/g, "")}` : "");
  return {
    endpoint,
    port,
    blobUrl: (bucket, prefix) => `s3://${bucket}${suffix(prefix)}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&forcePathStyle=true`,
    pulumiBackendUrl: (bucket, prefix) => `s3://${bucket}${suffix(prefix)}?endpoint=${encodeURIComponent(endpoint)}&s3ForcePathStyle=true&region=us-east-1`,
    stop: () => stopChild(child),
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}
