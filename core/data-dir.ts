// The data dir holds Pulumi state (with encrypted secrets and the resources' plain outputs),
// database backups, tenant code bundles, workspaces and the GitOps repository: none of it is for
// other local users (issue 11, finding 12). Everything Stackrail creates there is created private
// (0700 directories, 0600 files: explicit modes, a 077 umask in the Pulumi processes, git's
// core.sharedRepository), and at start-up whatever an older version or another tool left readable
// is tightened.
import { chmod, lstat, mkdir, readdir } from "node:fs/promises";
import path from "node:path";

/** Permission bits a private file or directory must not have: everything for group and others. */
export const GROUP_OTHER_BITS = 0o077;
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates `dir` (and missing parents) private; an existing `dir` is made private too. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Removes group and other permissions from everything under `root` (symlinks are not followed,
 * and entries owned by someone else are left alone). Returns how many modes it changed.
 */
export async function tightenTree(root: string): Promise<number> {
  let changed = 0;
  const visit = async (p: string): Promise<void> => {
    const s = await lstat(p).catch(() => undefined);
    if (!s || s.isSymbolicLink()) return;
    if ((s.mode & GROUP_OTHER_BITS) !== 0) {
      const ok = await chmod(p, s.mode & 0o7777 & ~GROUP_OTHER_BITS).then(
        () => true,
        () => false,
      );
      if (ok) changed++;
    }
    if (s.isDirectory()) {
      const entries = await readdir(p).catch(() => [] as string[]);
      for (const entry of entries) await visit(path.join(p, entry));
    }
  };
  await visit(root);
  return changed;
}

/** At start-up: the data dir exists, is 0700, and nothing in it is readable by group or others. */
export async function secureDataDir(dataDir: string): Promise<number> {
  await ensurePrivateDir(dataDir);
  return tightenTree(dataDir);
}
