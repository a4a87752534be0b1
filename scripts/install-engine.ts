// Builds the Pulumi engine (CLI) from Go modules into .engine/pulumi-v<version>/bin, plus the
// shims the official distribution ships next to it. Runs from `npm ci` (postinstall) and before
// `npm test` / `npm start` / `npm run demo`; when the version is already built it returns at once.
//
// Why build: the CLI is in neither the npm registry nor Debian's packages, and the `pulumi` npm
// package downloads a binary at run time. The Go module proxy is reachable, so the engine is
// built from source at exactly the version of the installed @pulumi/pulumi.
//
// Next to the CLI goes `pulumi-language-nodejs`, the Node.js language host the bare CLI needs to run
// a `runtime: nodejs` project (and the engine uses for Node.js policy packs). The official host's
// module is not served by the Go module proxy here (403), so it is Stackrail's own minimal host,
// tools/pulumi/cmd/pulumi-language-nodejs, built from the same tools module.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT, engineLocation, nodePackage, sdkVersion } from "../core/engine.ts";
import { findGo, GO_NOT_FOUND, goBuildEnv, runLogged } from "./go-build.ts";

const log = (message: string): void => {
  process.stdout.write(`[stackrail engine] ${message}\n`);
};

function fail(message: string): never {
  process.stderr.write(`[stackrail engine] ERROR: ${message}\n`);
  process.exit(1);
}

function requireGo(): string {
  return findGo() ?? fail(`Go is needed to build the Pulumi engine and ${GO_NOT_FOUND}`);
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, label: string): Promise<void> {
  return runLogged(cmd, args, { cwd, env, label, log, countPackages: true });
}

const shim = (comment: string, node: string, target: string): string => `#!/bin/sh
# ${comment}
# Written by scripts/install-engine.ts; runs the project's own Node so every process agrees on one runtime.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
exec "$root/${node}" "$root/node_modules/@pulumi/pulumi/cmd/${target}" "$@"
`;

function writeShims(binDir: string, root: string): void {
  const node = path.relative(root, engineLocation(root).node);
  const files: Record<string, string> = {
    // The engine launches this for every dynamic provider (resources written in TypeScript).
    "pulumi-resource-pulumi-nodejs": shim("Dynamic-provider host, as shipped next to the official CLI.", node, "dynamic-provider"),
    // Node.js policy packs, under both names the engine looks for.
    "pulumi-analyzer-policy": shim("Policy-pack analyzer for Node.js policy packs.", node, "run-policy-pack"),
    "pulumi-analyzer-policy-nodejs": shim("Policy-pack analyzer for Node.js policy packs.", node, "run-policy-pack"),
  };
  for (const [name, body] of Object.entries(files)) {
    const file = path.join(binDir, name);
    writeFileSync(file, body);
    chmodSync(file, 0o755);
  }
}

function installedVersion(pulumi: string): string | undefined {
  try {
    return execFileSync(pulumi, ["version"], { encoding: "utf8", env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } }).trim();
  } catch {
    return undefined;
  }
}

const LANGUAGE_HOST = "pulumi-language-nodejs";
const LANGUAGE_HOST_PACKAGE = "./cmd/pulumi-language-nodejs";

/** Hash of the language host's sources and the tools module's dependency pins: changes trigger a rebuild of the host alone. */
function languageHostSourceHash(root: string): string {
  const toolsDir = path.join(root, "tools/pulumi");
  const srcDir = path.join(toolsDir, LANGUAGE_HOST_PACKAGE);
  const hash = createHash("sha256");
  for (const file of ["go.mod", "go.sum"]) hash.update(file).update(readFileSync(path.join(toolsDir, file)));
  for (const file of readdirSync(srcDir)
    .filter((f) => f.endsWith(".go"))
    .sort()) {
    hash.update(file).update(readFileSync(path.join(srcDir, file)));
  }
  return hash.digest("hex");
}

interface Stamp {
  readonly version?: string;
  readonly languageHost?: string;
}

function readStampFile(file: string): Stamp {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Stamp;
  } catch {
    return {};
  }
}

function buildEnv(): NodeJS.ProcessEnv {
  return goBuildEnv();
}

const ldflagsFor = (version: string): string => `-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${version}`;

async function buildLanguageHost(go: string, root: string, version: string, binDir: string): Promise<void> {
  await run(
    go,
    ["build", "-v", "-trimpath", "-ldflags", ldflagsFor(version), "-o", path.join(binDir, LANGUAGE_HOST), LANGUAGE_HOST_PACKAGE],
    path.join(root, "tools/pulumi"),
    buildEnv(),
    `compiling ${LANGUAGE_HOST} (Stackrail's Node.js language host)`,
  );
}

export async function installEngine(root = PROJECT_ROOT): Promise<void> {
  const engine = engineLocation(root);
  const sdk = sdkVersion(root);
  if (sdk !== engine.version) {
    fail(
      `tools/pulumi/go.mod pins the engine at v${engine.version} but @pulumi/pulumi ${sdk} is installed. ` +
        `They must match: update tools/pulumi/go.mod (go get -tool github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v${sdk}) or package.json.`,
    );
  }
  if (!existsSync(engine.node)) {
    fail(
      `${path.relative(root, engine.node)} is missing: the project's Node 24 comes from the optional dependency ` +
        `${nodePackage()}, which npm installs only where package.json lists it (linux x64 and arm64). Run npm ci on one of those.`,
    );
  }
  if (process.versions.node.split(".")[0] !== "24") {
    fail(`running on Node ${process.versions.node}; the project runs on its own Node 24 (node_modules/.bin/node). Use npm scripts.`);
  }
  const stamp = path.join(engine.dir, "installed.json");
  const hostHash = languageHostSourceHash(root);
  if (existsSync(stamp) && installedVersion(engine.pulumi) === `v${engine.version}`) {
    writeShims(engine.binDir, root); // cheap, and repairs a shim that was edited by hand
    const stamped = readStampFile(stamp);
    if (existsSync(path.join(engine.binDir, LANGUAGE_HOST)) && stamped.languageHost === hostHash) {
      log(`Pulumi engine v${engine.version} present in ${path.relative(root, engine.dir)}; nothing to build`);
      return;
    }
    // The CLI is current; only the language host is missing or its sources changed (seconds, not minutes).
    log(`Pulumi engine v${engine.version} present; ${LANGUAGE_HOST} missing or out of date, building it`);
    const go = requireGo();
    const staging = path.join(engine.dir, `.staging-${process.pid}`);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    try {
      await buildLanguageHost(go, root, engine.version, staging);
      renameSync(path.join(staging, LANGUAGE_HOST), path.join(engine.binDir, LANGUAGE_HOST));
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    writeFileSync(stamp, JSON.stringify({ ...stamped, languageHost: hostHash }, null, 2) + "\n");
    log(`${LANGUAGE_HOST} installed in ${path.relative(root, engine.binDir)}`);
    return;
  }

  const go = requireGo();
  const goVersion = execFileSync(go, ["version"], { encoding: "utf8" }).trim();
  log(`building the Pulumi engine v${engine.version} with ${goVersion} (a cold build takes several minutes on two cores)`);
  const toolsDir = path.join(root, "tools/pulumi");
  const env = buildEnv();
  await run(go, ["mod", "download"], toolsDir, env, "downloading Go modules");

  const staging = path.join(root, ".engine", `.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(path.join(staging, "bin"), { recursive: true });
  await run(
    go,
    [
      "build",
      "-v",
      "-trimpath",
      "-ldflags",
      ldflagsFor(engine.version),
      "-o",
      path.join(staging, "bin", "pulumi"),
      "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
    ],
    toolsDir,
    env,
    `compiling pulumi v${engine.version}`,
  );
  await buildLanguageHost(go, root, engine.version, path.join(staging, "bin"));
  writeShims(path.join(staging, "bin"), root);
  const built = installedVersion(path.join(staging, "bin", "pulumi"));
  if (built !== `v${engine.version}`) fail(`the built CLI reports version ${built ?? "(none)"}, expected v${engine.version}`);
  writeFileSync(
    path.join(staging, "installed.json"),
    JSON.stringify({ version: engine.version, go: goVersion, builtAt: new Date().toISOString(), languageHost: hostHash }, null, 2) + "\n",
  );
  rmSync(engine.dir, { recursive: true, force: true });
  renameSync(staging, engine.dir);
  log(`Pulumi engine v${engine.version} installed in ${path.relative(root, engine.dir)}`);
}

if (import.meta.main) {
  try {
    await installEngine();
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
}

export function readStamp(root = PROJECT_ROOT): unknown {
  const file = path.join(engineLocation(root).dir, "installed.json");
  return existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : undefined;
}
