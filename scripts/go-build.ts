// What the install scripts that build from Go modules share (the engine, the S3 test server,
// Helm): finding the Go toolchain, and running a go command with a progress line every 15 s and
// the tail of its output in the error when it fails.
import { execFileSync, spawn } from "node:child_process";

/** The Go toolchain to build with: $GO, `go` on PATH, or the usual install places; undefined when none runs. */
export function findGo(): string | undefined {
  for (const candidate of [process.env.GO, "go", "/usr/local/go/bin/go", "/usr/lib/go/bin/go"]) {
    if (!candidate) continue;
    try {
      execFileSync(candidate, ["version"], { stdio: "ignore" });
      return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

export const GO_NOT_FOUND = "was not found (looked for $GO, go on PATH, /usr/local/go/bin/go). Install Go 1.26 or later.";

/**
 * Go builds that decide nothing on their own: go.sum decides what is built (a missing or changed
 * sum fails instead of being rewritten), no cgo, no toolchain download.
 */
export function goBuildEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, GOFLAGS: "-mod=readonly -buildvcs=false", CGO_ENABLED: "0", GOTOOLCHAIN: "local", ...extra };
}

export interface RunOptions {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly label: string;
  readonly log: (message: string) => void;
  /** Count the packages `go build -v` names, for the progress line. */
  readonly countPackages?: boolean;
}

/** Runs a command to its end, saying every 15 s that it still runs; rejects with its output's tail. */
export function runLogged(cmd: string, args: readonly string[], options: RunOptions): Promise<void> {
  const { cwd, env, label, log } = options;
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(cmd, [...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let compiled = 0;
    let tail = "";
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      // `go build -v` names each package as it is compiled.
      if (options.countPackages) compiled += text.split("\n").filter((l) => /^[\w.-]+(\/[\w.~-]+)+$/.test(l.trim())).length;
      tail = (tail + text).slice(-8000);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setInterval(() => {
      const secs = Math.round((Date.now() - started) / 1000);
      log(`${label}: ${secs}s elapsed${compiled > 0 ? `, ${compiled} packages compiled` : ""}`);
    }, 15_000);
    child.on("error", (err) => {
      clearInterval(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearInterval(timer);
      const secs = Math.round((Date.now() - started) / 1000);
      if (code === 0) {
        log(`${label}: done in ${secs}s${compiled > 0 ? ` (${compiled} packages compiled)` : ""}`);
        resolve();
      } else {
        reject(new Error(`${label} failed with exit code ${code}:\n${tail}`));
      }
    });
  });
}
