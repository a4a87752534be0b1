// A GitOps remote (a bare repository reached through a file:// URL, so the service clones it and
// pushes, as with any remote) whose hooks inject faults: refuse every push until told otherwise,
// or hold a push before (pre-receive) or after (post-receive) the branch moves, so a test can kill
// or stop the pushing worker at exactly that point. The controls are files in a folder beside it.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { waitUntil } from "./private-services.ts";

export type HookStage = "pre" | "post";

export interface GitOpsCommit {
  readonly sha: string;
  readonly title: string;
  /** The `Job:` line of the message: every Stackrail commit names its job. */
  readonly jobId: string | null;
  /** Files the commit changed. */
  readonly files: string[];
}

export interface GitOpsRemote {
  /** What GITOPS_REPO is set to. */
  readonly url: string;
  readonly gitDir: string;
  /** Pushes are refused (pre-receive exits 1) until refuse(false). */
  refuse(on: boolean): void;
  /** How many pushes were refused so far. */
  refusals(): number;
  /**
   * Holds the next push whose commit message contains `match` at `stage` (at most 60 s). Resolve
   * `arrived` to know it is held; call release() to let it go on.
   */
  hold(stage: HookStage, match: string): { arrived(timeoutMs?: number): Promise<void>; release(): void };
  /** The main branch's commits, newest first. */
  commits(): GitOpsCommit[];
  /** A file on the main branch, or null. */
  show(file: string): string | null;
}

function hookScript(stage: HookStage, control: string): string {
  return `#!/bin/sh
# Fault injection for the Stackrail fault suite (${stage}-receive).
ctl='${control}'
input=$(cat)
if [ "${stage}" = pre ] && [ -e "$ctl/refuse" ]; then
  echo refused >> "$ctl/refused.log"
  echo "fault injection: this remote refuses pushes for now" >&2
  exit 1
fi
if [ -e "$ctl/hold-${stage}" ]; then
  match=$(cat "$ctl/hold-${stage}")
  new=$(echo "$input" | awk '{print $2}' | head -n 1)
  msg=$(git log -1 --format=%B "$new" 2>/dev/null)
  case "$msg" in
    *"$match"*)
      touch "$ctl/arrived-${stage}"
      i=0
      while [ -e "$ctl/hold-${stage}" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
      ;;
  esac
fi
exit 0
`;
}

/** The main branch's commits of a bare repository, newest first. */
export function readCommits(gitDir: string, branch = "main"): GitOpsCommit[] {
  let out: string;
  try {
    out = execFileSync("git", ["--git-dir", gitDir, "log", "--format=%x01%H%x02%B%x02", "--name-only", branch], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return [];
  }
  return out
    .split("\x01")
    .filter(Boolean)
    .map((entry) => {
      const [sha = "", message = "", names = ""] = entry.split("\x02");
      return {
        sha,
        title: message.split("\n")[0] ?? "",
        jobId: /^Job: (.+)$/m.exec(message)?.[1]?.trim() ?? null,
        files: names
          .split("\n")
          .map((l) => l.trim())
          .filter(Boolean),
      };
    });
}

export function createGitOpsRemote(dir: string): GitOpsRemote {
  const gitDir = path.join(dir, "remote.git");
  const control = path.join(dir, "remote-faults");
  mkdirSync(control, { recursive: true });
  execFileSync("git", ["init", "--quiet", "--bare", "--initial-branch=main", gitDir]);
  for (const stage of ["pre", "post"] as const) {
    const hook = path.join(gitDir, "hooks", `${stage}-receive`);
    writeFileSync(hook, hookScript(stage, control));
    chmodSync(hook, 0o755);
  }
  const git = (args: string[]): string => execFileSync("git", ["--git-dir", gitDir, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return {
    url: pathToFileURL(gitDir).href,
    gitDir,
    refuse(on) {
      if (on) writeFileSync(path.join(control, "refuse"), "");
      else rmSync(path.join(control, "refuse"), { force: true });
    },
    refusals() {
      const log = path.join(control, "refused.log");
      return existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean).length : 0;
    },
    hold(stage, match) {
      const flag = path.join(control, `hold-${stage}`);
      const arrived = path.join(control, `arrived-${stage}`);
      rmSync(arrived, { force: true });
      writeFileSync(flag, match);
      return {
        arrived: (timeoutMs = 120_000) => waitUntil(`a push to be held at ${stage}-receive`, () => existsSync(arrived), timeoutMs, 25),
        release: () => {
          rmSync(flag, { force: true });
          rmSync(arrived, { force: true });
        },
      };
    },
    commits: () => readCommits(gitDir),
    show(file) {
      try {
        return git(["show", `main:${file}`]);
      } catch {
        return null;
      }
    },
  };
}
