// Builds the S3-compatible test server (tools/s3-server: gofakes3 from Go modules, like the engine)
// into .engine/s3-server/bin/s3-server. Runs from `npm ci` (postinstall) and before `npm test`;
// when the binary is current (same go.mod/go.sum/sources hash) it returns at once.
//
// Why: the blob store and the Pulumi diy backend on `s3://` are tested against a real S3 API,
// never a mock of the SDK (issue 14, §1); gofakes3 is served by the Go module proxy and builds in
// seconds with the Go toolchain the engine needs anyway.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../core/engine.ts";
import { findGo, GO_NOT_FOUND, goBuildEnv, runLogged } from "./go-build.ts";

const log = (message: string): void => {
  process.stdout.write(`[stackrail s3-server] ${message}\n`);
};

function fail(message: string): never {
  process.stderr.write(`[stackrail s3-server] ERROR: ${message}\n`);
  process.exit(1);
}

/** Where the built server lives; test/support/s3-server.ts starts it from here. */
export function s3ServerLocation(root = PROJECT_ROOT): { readonly dir: string; readonly binary: string; readonly stamp: string } {
  const dir = path.join(root, ".engine", "s3-server");
  return { dir, binary: path.join(dir, "bin", "s3-server"), stamp: path.join(dir, "installed.json") };
}

/** Hash of the module's pins and sources: a change rebuilds the server. */
function sourceHash(toolsDir: string): string {
  const hash = createHash("sha256");
  const files = ["go.mod", "go.sum", ...readdirSync(toolsDir).filter((f) => f.endsWith(".go"))].sort();
  for (const file of files) hash.update(file).update(readFileSync(path.join(toolsDir, file)));
  return hash.digest("hex");
}

function run(cmd: string, args: string[], cwd: string, label: string): Promise<void> {
  return runLogged(cmd, args, { cwd, env: goBuildEnv(), label, log });
}

function readStamp(file: string): { source?: string } {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as { source?: string };
  } catch {
    return {};
  }
}

export async function installS3Server(root = PROJECT_ROOT): Promise<void> {
  const toolsDir = path.join(root, "tools/s3-server");
  const where = s3ServerLocation(root);
  if (!existsSync(path.join(toolsDir, "go.mod"))) fail(`${path.relative(root, toolsDir)}/go.mod is missing; the checkout is incomplete`);
  const source = sourceHash(toolsDir);
  if (existsSync(where.binary) && readStamp(where.stamp).source === source) {
    log(`S3 test server present in ${path.relative(root, where.dir)}; nothing to build`);
    return;
  }
  const go = findGo() ?? fail(`Go is needed to build the S3 test server and ${GO_NOT_FOUND}`);
  log(`building the S3 test server (gofakes3) with ${execFileSync(go, ["version"], { encoding: "utf8" }).trim()}`);
  await run(go, ["mod", "download"], toolsDir, "downloading Go modules");
  const staging = path.join(root, ".engine", `.s3-server-staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(path.join(staging, "bin"), { recursive: true });
  try {
    await run(go, ["build", "-trimpath", "-ldflags", "-s -w", "-o", path.join(staging, "bin", "s3-server"), "."], toolsDir, "compiling s3-server");
    writeFileSync(path.join(staging, "installed.json"), JSON.stringify({ source, builtAt: new Date().toISOString() }, null, 2) + "\n");
    rmSync(where.dir, { recursive: true, force: true });
    renameSync(staging, where.dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  log(`S3 test server installed in ${path.relative(root, where.dir)}`);
}

if (import.meta.main) {
  try {
    await installS3Server();
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
}
