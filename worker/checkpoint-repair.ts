// Repairs what a killed engine can leave behind in the file backend before anything reads it.
//
// The backend writes a stack's checkpoint atomically (a temporary file renamed over it), but the
// blob library beside it keeps a `<file>.attrs` metadata sidecar that it rewrites in place: a
// process killed between the truncate and the write leaves that sidecar empty, and from then on
// every command on the stack fails with "failed to load checkpoint: EOF". The sidecar holds only
// a content type and checksums the engine does not need, and a missing one is read as empty, so an
// unreadable sidecar is removed. A checkpoint that is itself unreadable (written by an older
// engine in place, or by hand) is restored from the backend's own `.bak` beside it. Without a
// usable backup nothing is guessed: an empty state would let a `destroy` "succeed" over resources
// that still exist, or an `up` create them twice, so the stack is refused until an operator
// restores it.
import { copyFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { ProgramError } from "../core/errors.ts";

/** The stack's state cannot be read and there is no backup to restore: an operator must decide. */
export class UnreadableCheckpointError extends ProgramError {}

function parses(file: string): boolean {
  try {
    const text = readFileSync(file, "utf8");
    return text.trim().length > 0 && typeof JSON.parse(text) === "object";
  } catch {
    return false;
  }
}

/** Removes `<file>.attrs` when it exists and cannot be read; says whether it did. */
function dropBrokenSidecar(file: string): boolean {
  const sidecar = `${file}.attrs`;
  if (!existsSync(sidecar) || parses(sidecar)) return false;
  rmSync(sidecar, { force: true });
  return true;
}

/**
 * Makes the stack's checkpoint in a file backend readable again. Returns progress lines that say
 * what was repaired (none when nothing needed it).
 */
export function repairFileCheckpoint(backendDir: string, projectName: string, stack: string): string[] {
  const file = path.join(backendDir, ".pulumi", "stacks", projectName, `${stack}.json`);
  const backup = `${file}.bak`;
  const lines: string[] = [];
  // The backend's own metadata file is read by every command, so its sidecar is checked too.
  const meta = path.join(backendDir, ".pulumi", "meta.yaml");
  const sidecars = [meta, file, backup].filter(dropBrokenSidecar).length;
  if (sidecars > 0) lines.push(`removed ${sidecars} unreadable checkpoint metadata file(s) left by an interrupted write`);
  if (!existsSync(file) || parses(file)) return lines;
  if (existsSync(backup) && parses(backup)) {
    copyFileSync(backup, file);
    rmSync(`${file}.attrs`, { force: true });
    lines.push("restored the stack checkpoint from its backup (the last write was cut off)");
  } else {
    throw new UnreadableCheckpointError(
      `the state of stack ${projectName}/${stack} is unreadable and has no usable backup (${path.basename(file)}.bak); ` +
        "restore it (pulumi stack import, or a copy of the backend) before this stack runs again: nothing was changed",
    );
  }
  return lines;
}
