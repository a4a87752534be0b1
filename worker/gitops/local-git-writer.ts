// GitOps writer on the system `git` (the embedded default). Commits are built with plumbing on a
// bare repository — blobs with hash-object, a private temporary index (GIT_INDEX_FILE) for the
// tree, commit-tree — and published with a compare-and-swap: `update-ref <branch> <new> <old>`
// for a local bare repository, a non-forced push for a remote. A lost race re-reads and
// re-applies the change, a bounded number of times, so concurrent jobs never lose a file and
// never corrupt the repository.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, statSync, type Dirent } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { TransientError, ValidationError } from "../../core/errors.ts";
import type { Logger } from "../../core/logger.ts";
import { publicUrl } from "../../core/urls.ts";
import { defaultCrdValidator, type CrdValidator } from "./crd-validator.ts";
import { EMPTY_TREE, GitCommandError, git, runGit } from "./git.ts";
import { COMMIT_AUTHOR, checkChange, raceBackoff, sleep, type GitOpsChange, type GitOpsCommitResult, type GitOpsSource, type GitOpsWriter } from "./writer.ts";
import { assertJobOwned } from "../job-scope.ts";

const ZERO = "0000000000000000000000000000000000000000";

export interface LocalGitWriterOptions {
  /** A path (bare repository, created if absent) or a git URL / path of a non-bare repository. */
  repo: string;
  branch?: string;
  /** Where clones of remote repositories are kept (`$STACKRAIL_DATA_DIR`). */
  dataDir: string;
  now?: () => Date;
  validator?: CrdValidator;
  logger?: Logger;
  maxTries?: number;
  /** The process's secret scrubber: a change holding a known secret value is refused. */
  scrub?: (text: string) => string;
}

const README = `# GitOps repository managed by Stackrail

    tenants/<id>/tenant.yaml                desired state of the tenant
    tenants/<id>/application.yaml           Argo CD Application for the tenant
    tenants/<id>/appproject.yaml            Argo CD AppProject confining the tenant
    previews/<repo>-pr-<number>/application.yaml
    regions/<region>/...                    regional Argo CD objects

Every file is generated; changes go through Stackrail jobs, one commit per job.
`;

function isRemote(repo: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || /^[^/\s]+@[^/\s]+:/.test(repo);
}

function isBareRepo(dir: string): boolean {
  return existsSync(path.join(dir, "HEAD")) && existsSync(path.join(dir, "objects")) && existsSync(path.join(dir, "refs"));
}

function assertPrefix(prefix: string): string {
  const p = prefix.replace(/\/+$/, "");
  if (p !== "" && !/^(tenants|previews|regions)(\/[a-z0-9][a-z0-9.-]*)*$/.test(p)) throw new ValidationError("prefix", "must be a folder of the GitOps layout");
  return p;
}

/** Git holds a ref lock for milliseconds; a lock this old was left by a killed git. */
const STALE_REF_LOCK_MS = 10_000;
/** How long a commit keeps trying while the remote refuses pushes, before its job's attempt fails (transient). */
const REFUSED_PATIENCE_MS = 3 * 60_000;
/** The longest wait between two pushes to a refusing remote. */
const REFUSED_MAX_DELAY_MS = 15_000;

function lockFilesUnder(dir: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return lockFilesUnder(full);
    return e.name.endsWith(".lock") ? [full] : [];
  });
}

export class LocalGitWriter implements GitOpsWriter {
  readonly #branch: string;
  /** The remote as configured, possibly with `user:token@`: only ever in a git child's environment. */
  readonly #remote: string | null;
  /** The remote without user information: what the clone's config, manifests and messages name. */
  readonly #remotePublic: string | null;
  readonly #gitDir: string;
  /** The repository lives in the data dir: git writes its files 0600 and directories 0700 there. */
  readonly #private: boolean;
  readonly #now: () => Date;
  readonly #validator: CrdValidator | undefined;
  readonly #logger: Logger | undefined;
  readonly #maxTries: number;
  readonly #scrub: ((text: string) => string) | undefined;
  #ready: Promise<void> | undefined;
  /** Serialises this process's fetch/push cycles on a clone (the remote still arbitrates between processes). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: LocalGitWriterOptions) {
    this.#branch = options.branch ?? "main";
    if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(this.#branch)) throw new ValidationError("GITOPS_REPO", "branch name is not valid");
    const local = !isRemote(options.repo) ? path.resolve(options.repo) : null;
    const usable = (dir: string) => !existsSync(dir) || (statSync(dir).isDirectory() && (isBareRepo(dir) || readdirSync(dir).length === 0));
    if (local !== null && usable(local)) {
      this.#remote = null;
      this.#gitDir = local;
    } else {
      // A URL, or a path to a repository with a working tree: work in a bare clone and push.
      this.#remote = local ?? options.repo;
      const key = createHash("sha256").update(publicUrl(this.#remote)).digest("hex").slice(0, 16);
      this.#gitDir = path.join(options.dataDir, "gitops-clones", `${key}.git`);
    }
    this.#remotePublic = this.#remote === null ? null : publicUrl(this.#remote);
    const inDataDir = path.relative(path.resolve(options.dataDir), this.#gitDir);
    // A repository elsewhere (an operator's own, served to Argo CD by something else) keeps its modes.
    this.#private = inDataDir !== "" && !inDataDir.startsWith("..") && !path.isAbsolute(inDataDir);
    this.#now = options.now ?? (() => new Date());
    this.#validator = options.validator;
    this.#logger = options.logger;
    this.#maxTries = options.maxTries ?? 12;
    this.#scrub = options.scrub;
  }

  get source(): GitOpsSource {
    const repo = this.#remotePublic ?? this.#gitDir;
    return { repoURL: isRemote(repo) ? repo : pathToFileURL(repo).href, revision: this.#branch };
  }

  /**
   * For commands that talk to the remote: git rewrites the public URL to the credentialed one
   * (`url.<with-credentials>.insteadOf <public>`) from the environment, so the token is never
   * written to the clone's config on disk.
   */
  #remoteEnv(): Record<string, string> {
    if (this.#remote === null || this.#remotePublic === null || this.#remote === this.#remotePublic) return {};
    return { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: `url.${this.#remote}.insteadOf`, GIT_CONFIG_VALUE_0: this.#remotePublic };
  }

  /** The bare repository commits are built in (the repository itself, or the clone of a remote). */
  get gitDir(): string {
    return this.#gitDir;
  }

  get #ref(): string {
    return this.#remote === null ? `refs/heads/${this.#branch}` : `refs/remotes/origin/${this.#branch}`;
  }

  #env(): Record<string, string> {
    const date = `${Math.floor(this.#now().getTime() / 1000)} +0000`;
    return {
      GIT_AUTHOR_NAME: COMMIT_AUTHOR.name,
      GIT_AUTHOR_EMAIL: COMMIT_AUTHOR.email,
      GIT_COMMITTER_NAME: COMMIT_AUTHOR.name,
      GIT_COMMITTER_EMAIL: COMMIT_AUTHOR.email,
      GIT_AUTHOR_DATE: date,
      GIT_COMMITTER_DATE: date,
    };
  }

  #ensureReady(): Promise<void> {
    this.#ready ??= this.#init().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async #init(): Promise<void> {
    const gitDir = this.#gitDir;
    // core.sharedRepository=0600 overrides the process's umask for every file git writes (issue 11, finding 12).
    const shared = this.#private ? ["--shared=0600"] : [];
    if (!isBareRepo(gitDir)) {
      await mkdir(path.dirname(gitDir), { recursive: true, ...(this.#private ? { mode: 0o700 } : {}) });
      await git(["init", "--quiet", "--bare", ...shared, `--initial-branch=${this.#branch}`, gitDir]);
    } else if (this.#private) {
      // Made before repositories were kept private: from now on its new files are private too.
      await git(["config", "core.sharedRepository", "0600"], { gitDir });
    }
    if (this.#remotePublic !== null) {
      const remotes = (await git(["remote"], { gitDir })).split("\n");
      // set-url also takes credentials out of a clone made before they were kept off disk.
      if (!remotes.includes("origin")) await git(["remote", "add", "origin", this.#remotePublic], { gitDir });
      else await git(["remote", "set-url", "origin", this.#remotePublic], { gitDir });
      await this.#fetch();
      return;
    }
    if ((await this.#head()) === null) {
      const blob = await git(["hash-object", "-w", "--stdin"], { gitDir, input: README });
      const tree = await git(["mktree"], { gitDir, input: `100644 blob ${blob}\tREADME.md\n` });
      const commit = await git(["commit-tree", tree, "-m", "Initialise the GitOps repository"], { gitDir, env: this.#env() });
      // Zero old value: only create; a concurrent initialiser that won is fine.
      await runGit(["update-ref", `refs/heads/${this.#branch}`, commit, ZERO], { gitDir, okCodes: [1, 128] });
    }
  }

  async #fetch(): Promise<void> {
    await this.#clearStaleRefLocks();
    const res = await runGit(["fetch", "--quiet", "--no-tags", "origin", `+refs/heads/${this.#branch}:refs/remotes/origin/${this.#branch}`], {
      gitDir: this.#gitDir,
      env: this.#remoteEnv(),
      // 1: a local failure such as a locked ref; 128: remote trouble. Both pass: the job retries.
      okCodes: [1, 128],
    });
    // An empty remote has no branch yet: the first commit creates it.
    if (res.code !== 0 && !/couldn't find remote ref/i.test(res.stderr))
      throw new TransientError(`fetching the GitOps repository failed: ${new GitCommandError(["fetch"], res.code, res.stderr).message}`);
  }

  /**
   * A git killed between taking a ref lock and renaming it into place leaves `<ref>.lock` behind,
   * and every later fetch of that ref fails ("cannot lock ref"). Git holds such a lock for
   * milliseconds, so one older than STALE_REF_LOCK_MS belongs to no live process: remove it.
   */
  async #clearStaleRefLocks(): Promise<void> {
    const gitDir = this.#gitDir;
    const candidates = [path.join(gitDir, "packed-refs.lock"), path.join(gitDir, "HEAD.lock"), ...lockFilesUnder(path.join(gitDir, "refs"))];
    const now = Date.now();
    for (const file of candidates) {
      let age: number;
      try {
        age = now - statSync(file).mtimeMs;
      } catch {
        continue;
      }
      if (age < STALE_REF_LOCK_MS) continue;
      await rm(file, { force: true });
      this.#logger?.warn({ file: path.relative(gitDir, file), ageMs: Math.round(age) }, "removed a stale git ref lock from the GitOps clone");
    }
  }

  async #head(): Promise<string | null> {
    const res = await runGit(["rev-parse", "--quiet", "--verify", `${this.#ref}^{commit}`], { gitDir: this.#gitDir, okCodes: [1, 128] });
    return res.code === 0 ? res.stdout.trim() : null;
  }

  /** Builds (but does not publish) the commit applying `change` on `parent`; null when nothing changes. */
  async #build(parent: string | null, change: GitOpsChange): Promise<{ commit: string; changed: string[] } | null> {
    const gitDir = this.#gitDir;
    const index = path.join(gitDir, `stackrail-index-${randomBytes(8).toString("hex")}`);
    const env = { ...this.#env(), GIT_INDEX_FILE: index };
    try {
      const baseTree = parent ? await git(["rev-parse", `${parent}^{tree}`], { gitDir }) : EMPTY_TREE;
      await git(["read-tree", baseTree], { gitDir, env });
      const lines: string[] = [];
      for (const [file, content] of Object.entries(change.files).sort(([a], [b]) => (a < b ? -1 : 1))) {
        if (content === null) lines.push(`0 ${ZERO}\t${file}`);
        else lines.push(`100644 ${await git(["hash-object", "-w", "--stdin"], { gitDir, input: content })}\t${file}`);
      }
      await git(["update-index", "--index-info"], { gitDir, env, input: lines.join("\n") + "\n" });
      const tree = await git(["write-tree"], { gitDir, env });
      if (tree === baseTree) return null;
      const changed = (await git(["diff-tree", "-r", "--name-only", "--no-renames", baseTree, tree], { gitDir })).split("\n").filter(Boolean).sort();
      const commit = await git(["commit-tree", tree, ...(parent ? ["-p", parent] : []), "-F", "-"], { gitDir, env: this.#env(), input: change.message });
      return { commit, changed };
    } finally {
      await rm(index, { force: true });
      await rm(`${index}.lock`, { force: true });
    }
  }

  async commit(change: GitOpsChange): Promise<GitOpsCommitResult> {
    checkChange(change, this.#validator ?? defaultCrdValidator(), this.#scrub);
    await this.#ensureReady();
    if (this.#remote === null) return this.#commitBare(change);
    const run = this.#queue.then(() => this.#commitRemote(change));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #commitBare(change: GitOpsChange): Promise<GitOpsCommitResult> {
    const ref = `refs/heads/${this.#branch}`;
    for (let attempt = 0; attempt < this.#maxTries; attempt++) {
      const old = await this.#head();
      const built = await this.#build(old, change);
      if (!built) return { sha: null, changed: [] };
      // Fencing: a worker that lost its job's lock publishes nothing (its job's new owner may).
      await assertJobOwned();
      // Compare-and-swap: fails if another writer moved the branch since we read it.
      const res = await runGit(["update-ref", ref, built.commit, old ?? ZERO], { gitDir: this.#gitDir, okCodes: [1, 128] });
      if (res.code === 0) {
        this.#logger?.info({ jobId: change.jobId, sha: built.commit, changed: built.changed }, "gitops commit");
        return { sha: built.commit, changed: built.changed };
      }
      this.#logger?.debug({ jobId: change.jobId, attempt }, "gitops branch moved; re-applying");
      await sleep(raceBackoff(attempt));
    }
    throw new TransientError(`the GitOps branch kept moving; gave up after ${this.#maxTries} tries`);
  }

  async #commitRemote(change: GitOpsChange): Promise<GitOpsCommitResult> {
    let refusedSince: number | null = null;
    let refusals = 0;
    for (let attempt = 0; attempt < this.#maxTries; attempt++) {
      await this.#fetch();
      const old = await this.#head();
      const built = await this.#build(old, change);
      if (!built) return { sha: null, changed: [] };
      // Fencing: a worker that lost its job's lock publishes nothing (its job's new owner may).
      await assertJobOwned();
      // Never forced: a push that is not a fast-forward is refused and we re-apply on the new tip.
      const res = await runGit(["push", "--quiet", "--porcelain", "origin", `${built.commit}:refs/heads/${this.#branch}`], {
        gitDir: this.#gitDir,
        env: this.#remoteEnv(),
        okCodes: [1],
      });
      if (res.code === 0) {
        // The commit is published. The remote-tracking ref is only this clone's cache of the
        // remote (the next fetch refreshes it), so failing to move it must not fail the job.
        await runGit(["update-ref", this.#ref, built.commit], { gitDir: this.#gitDir }).catch((err: unknown) =>
          this.#logger?.warn({ jobId: change.jobId, err }, "pushed, but could not update the clone's tracking ref"),
        );
        this.#logger?.info({ jobId: change.jobId, sha: built.commit, changed: built.changed }, "gitops commit pushed");
        return { sha: built.commit, changed: built.changed };
      }
      const said = res.stdout + res.stderr;
      // `[remote rejected]`: the remote itself declined (a hook, a protected branch, an outage), not
      // a race. Retrying at once cannot help, and twelve quick tries gave up within seconds of an
      // outage: wait with a growing delay (bounded), saying so on the job, up to REFUSED_PATIENCE_MS.
      if (/\[remote rejected\]/.test(said)) {
        refusedSince ??= Date.now();
        const why = /\[remote rejected\]\s*\(([^)\n]{1,200})\)/.exec(said)?.[1] ?? "remote rejected";
        if (Date.now() - refusedSince >= REFUSED_PATIENCE_MS) {
          throw new TransientError(`the GitOps remote refused every push for ${Math.round(REFUSED_PATIENCE_MS / 1000)} s (${why})`);
        }
        const delayMs = Math.min(REFUSED_MAX_DELAY_MS, 1000 * 2 ** refusals++);
        change.onWait?.(`waiting: the GitOps remote refused the push (${why}); trying again in ${Math.ceil(delayMs / 1000)}s`);
        this.#logger?.warn({ jobId: change.jobId, why, refusals }, "the GitOps remote refused a push; trying again");
        await sleep(delayMs);
        attempt--; // a refusal is not a lost race: it spends none of the race tries
        continue;
      }
      if (!/rejected|non-fast-forward|fetch first|failed to update ref|stale info/i.test(said)) {
        throw new TransientError(`pushing to the GitOps repository failed: ${new GitCommandError(["push"], res.code, said).message}`);
      }
      await sleep(raceBackoff(attempt));
    }
    throw new TransientError(`the GitOps branch kept moving; gave up after ${this.#maxTries} tries`);
  }

  async readFile(file: string): Promise<string | null> {
    await this.#ensureReady();
    if (this.#remote !== null) await this.#fetch();
    if (!/^[A-Za-z0-9_./-]+$/.test(file) || file.split("/").includes("..")) throw new ValidationError("path", "is not a repository path");
    const res = await runGit(["cat-file", "blob", `${this.#ref}:${file}`], { gitDir: this.#gitDir, okCodes: [128] });
    return res.code === 0 ? res.stdout : null;
  }

  async listFiles(prefix: string): Promise<string[]> {
    await this.#ensureReady();
    if (this.#remote !== null) await this.#fetch();
    const p = assertPrefix(prefix);
    if ((await this.#head()) === null) return [];
    const out = await git(["ls-tree", "-r", "--name-only", this.#ref, "--", ...(p ? [`${p}/`] : [])], { gitDir: this.#gitDir });
    return out.split("\n").filter(Boolean).sort();
  }
}
