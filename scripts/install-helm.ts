// Builds the Helm CLI from Go modules into .engine/tools/helm-v<version>/bin/helm, for the chart
// tests (deploy/helm/chart.test.ts: `helm lint`, `helm template`), which are part of `npm test`.
// Runs from `npm ci` (postinstall) and before `npm test`, like the engine. Same reasons and shape as
// scripts/install-engine.ts: Helm is in neither the npm registry nor the Debian release this
// machine uses, and its download site is out of reach, but the Go module proxy serves helm.sh/helm.
// The version and every dependency are pinned by deploy/helm/tools/go.mod and go.sum (a tools
// module, `tool helm.sh/helm/v4/cmd/helm`), so a build is reproducible and checked against go.sum.
// When the pinned version is already built it returns at once.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../core/engine.ts";
import { findGo, GO_NOT_FOUND, goBuildEnv, runLogged } from "./go-build.ts";

const log = (message: string): void => {
  process.stdout.write(`[stackrail helm] ${message}\n`);
};

export interface HelmLocation {
  readonly version: string;
  readonly dir: string;
  readonly helm: string;
}

export const HELM_TOOLS_DIR = "deploy/helm/tools";

/** The Helm version pinned by deploy/helm/tools/go.mod (without the leading "v"). */
export function pinnedHelmVersion(root = PROJECT_ROOT): string {
  const gomod = readFileSync(path.join(root, HELM_TOOLS_DIR, "go.mod"), "utf8");
  const match = /^\s*helm\.sh\/helm\/v4 v(\d+\.\d+\.\d+)\b/m.exec(gomod);
  if (!match?.[1]) throw new Error(`${HELM_TOOLS_DIR}/go.mod does not require helm.sh/helm/v4`);
  return match[1];
}

export function helmLocation(root = PROJECT_ROOT): HelmLocation {
  const version = pinnedHelmVersion(root);
  const dir = path.join(root, ".engine", "tools", `helm-v${version}`);
  return { version, dir, helm: path.join(dir, "bin", "helm") };
}

/** `helm version --short` of a binary, or undefined when it does not run. */
export function helmVersionOf(helm: string): string | undefined {
  try {
    return execFileSync(helm, ["version", "--short"], { encoding: "utf8", env: { ...process.env, HELM_CONFIG_HOME: "/nonexistent" } }).trim();
  } catch {
    return undefined;
  }
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, label: string): Promise<void> {
  // A cold build takes minutes: the progress line (every 15 s) counts the packages compiled so far.
  return runLogged(cmd, args, { cwd, env, label, log, countPackages: true });
}

export async function installHelm(root = PROJECT_ROOT): Promise<HelmLocation> {
  const location = helmLocation(root);
  const expected = `v${location.version}`;
  if (helmVersionOf(location.helm)?.startsWith(expected)) {
    log(`helm ${expected} present in ${path.relative(root, location.dir)}; nothing to build`);
    return location;
  }
  const go = findGo();
  if (!go) throw new Error(`Go is needed to build the Helm CLI and ${GO_NOT_FOUND}`);
  const toolsDir = path.join(root, HELM_TOOLS_DIR);
  // readonly: go.sum decides what is built; a missing or changed sum fails instead of being rewritten.
  const env = goBuildEnv();
  const staging = path.join(root, ".engine", "tools", `.staging-helm-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(path.join(staging, "bin"), { recursive: true });
  try {
    const started = Date.now();
    await run(go, ["mod", "download"], toolsDir, env, "downloading Go modules");
    await run(
      go,
      [
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        `-s -w -X helm.sh/helm/v4/internal/version.version=${expected}`,
        "-o",
        path.join(staging, "bin", "helm"),
        "helm.sh/helm/v4/cmd/helm",
      ],
      toolsDir,
      env,
      `compiling helm ${expected}`,
    );
    const built = helmVersionOf(path.join(staging, "bin", "helm"));
    if (!built?.startsWith(expected)) throw new Error(`the built helm reports ${built ?? "(nothing)"}, expected ${expected}`);
    writeFileSync(
      path.join(staging, "installed.json"),
      JSON.stringify({ version: location.version, builtAt: new Date().toISOString(), seconds: Math.round((Date.now() - started) / 1000) }, null, 2) + "\n",
    );
    rmSync(location.dir, { recursive: true, force: true });
    renameSync(staging, location.dir);
  } finally {
    if (existsSync(staging)) rmSync(staging, { recursive: true, force: true });
  }
  log(`helm ${expected} installed in ${path.relative(root, location.dir)}`);
  return location;
}

if (import.meta.main) {
  try {
    await installHelm();
  } catch (err) {
    process.stderr.write(`[stackrail helm] ERROR: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
