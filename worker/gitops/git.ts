// Runs the system `git` with an argument vector (never a shell), a clean environment and no
// prompts. Shared by the local GitOps writer and the GitHub test double.
import { spawn } from "node:child_process";
import { TransientError } from "../../core/errors.ts";
import { stripUrlCredentials } from "../../core/urls.ts";

export interface GitOptions {
  /** The repository (GIT_DIR) the command runs against; a bare repository or a `.git` folder. */
  gitDir?: string;
  cwd?: string;
  env?: Record<string, string>;
  input?: string | Buffer;
  /** Exit codes that are answers rather than failures (e.g. 1 for `merge-base --is-ancestor`). */
  okCodes?: number[];
}

export interface GitResult {
  stdout: string;
  stderr: string;
  code: number;
}

export class GitCommandError extends Error {
  readonly code: number;
  readonly stderr: string;
  constructor(args: readonly string[], code: number, stderr: string) {
    // Only the sub-command is named: arguments may carry URLs, and stderr is scrubbed of credentials.
    super(`git ${args[0] ?? ""} exited with ${code}: ${stripCredentials(stderr.trim()).slice(0, 500)}`);
    this.name = "GitCommandError";
    this.code = code;
    this.stderr = stripCredentials(stderr);
  }
}

/** Removes `user:password@` from any URL in a text (git echoes remote URLs in its errors). */
export function stripCredentials(text: string): string {
  return stripUrlCredentials(text);
}

const BASE_ENV: Record<string, string> = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_ASKPASS: "/bin/false",
  LC_ALL: "C",
};

export function runGit(args: readonly string[], options: GitOptions = {}): Promise<GitResult> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...BASE_ENV };
  if (options.gitDir) env.GIT_DIR = options.gitDir;
  Object.assign(env, options.env);
  return new Promise((resolve, reject) => {
    const child = spawn("git", [...args], { cwd: options.cwd, env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      // Killed (out of memory, an operator, a shutdown): nothing about the command was wrong, so
      // the job that ran it may try again; git leaves its repository consistent when killed.
      if (signal !== null) {
        reject(new TransientError(`git ${args[0] ?? ""} was killed by ${signal}`));
        return;
      }
      const result = { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), code: code ?? -1 };
      if (result.code === 0 || options.okCodes?.includes(result.code)) resolve(result);
      else reject(new GitCommandError(args, result.code, result.stderr));
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/** `git ...` and its trimmed stdout. */
export async function git(args: readonly string[], options: GitOptions = {}): Promise<string> {
  return (await runGit(args, options)).stdout.trim();
}

export const EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
