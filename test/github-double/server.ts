// A local HTTP double of the GitHub REST endpoints Stackrail uses, for tests without github.com.
// Git data (blobs, trees, commits, refs) is written with git plumbing into a REAL bare
// repository per GitHub repository, so `git log` on it shows what a writer committed and ref
// updates keep git's fast-forward semantics. Every request and every response is checked
// against GitHub's OpenAPI description (@octokit/openapi); a mismatch is answered with 422 and
// recorded in `violations`, which tests assert to be empty. Faults on demand: a 422 on a ref
// update, a secondary rate limit (403 + retry-after), a primary rate limit, a 502.
import { createPublicKey, randomBytes, verify, type KeyObject } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { git, runGit } from "../../worker/gitops/git.ts";
import { openApiChecker, type MatchedOperation, type OpenApiChecker } from "./openapi.ts";
import { pullRequest, user, type Ctx, type PullState } from "./shapes.ts";

const ZERO = "0000000000000000000000000000000000000000";
const EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

export type FaultKind = "ref-conflict" | "secondary-rate-limit" | "primary-rate-limit" | "bad-gateway" | "server-error";

export interface Fault {
  kind: FaultKind;
  method?: string;
  /** Matched against the request path (without query). */
  path: RegExp;
  /** How many matching requests get the fault (default 1). */
  times?: number;
  /** Seconds in `retry-after` / until the rate limit resets (default 1). */
  retryAfter?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  operationId: string | undefined;
  status: number;
  fault?: FaultKind;
  at: number;
}

export interface CommentState {
  id: number;
  issue: number;
  body: string;
  author: string;
  createdAt: string;
  updatedAt: string;
}

export interface StatusState {
  id: number;
  sha: string;
  state: string;
  context: string;
  description: string | null;
  targetUrl: string | null;
  createdAt: string;
}

export interface DeploymentState {
  id: number;
  sha: string;
  ref: string;
  task: string;
  environment: string;
  description: string | null;
  payload: unknown;
  transient: boolean;
  production: boolean;
  createdAt: string;
  statuses: { id: number; state: string; description: string; environmentUrl: string; logUrl: string; createdAt: string }[];
}

export interface CheckAnnotationState {
  path: string;
  startLine: number;
  endLine: number;
  startColumn: number | null;
  endColumn: number | null;
  level: string;
  title: string | null;
  message: string;
  rawDetails: string | null;
}

export interface CheckRunState {
  id: number;
  name: string;
  headSha: string;
  status: string;
  conclusion: string | null;
  detailsUrl: string | null;
  externalId: string | null;
  startedAt: string | null;
  completedAt: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
  /** Appended by every create/update that carries annotations, as on GitHub. */
  annotations: CheckAnnotationState[];
  createdAt: string;
}

/** Repository roles (`role_name`); GitHub's legacy `permission` maps maintain→write and triage→read. */
export type CollaboratorRole = "admin" | "maintain" | "write" | "triage" | "read" | "none";

interface RepoState {
  owner: string;
  name: string;
  gitDir: string;
  defaultBranch: string;
  pulls: PullState[];
  comments: CommentState[];
  statuses: StatusState[];
  deployments: DeploymentState[];
  checkRuns: CheckRunState[];
  /** Known users by lower-case login; a login not here does not exist (404). */
  permissions: Map<string, { login: string; role: CollaboratorRole }>;
}

export interface GitHubDoubleOptions {
  /** Accepted tokens (`Authorization: token X` or `Bearer X`); any non-empty token when unset. */
  tokens?: string[];
  /** GitHub App: JWTs signed by this public key's private key may mint installation tokens. */
  app?: { appId: number; publicKey: string | KeyObject; installationId: number };
  /** Login shown as the author of comments, statuses and deployments. */
  login?: string;
  /**
   * As on GitHub, only a GitHub App (installation token) may write check runs: a personal access
   * token is answered 403. Off by default because most tests authenticate with a token.
   */
  checksNeedApp?: boolean;
}

type Credential = "jwt" | "installation" | "token";

const LEGACY_PERMISSION: Record<CollaboratorRole, string> = {
  admin: "admin",
  maintain: "write",
  write: "write",
  triage: "read",
  read: "read",
  none: "none",
};
const ROLE_RANK: Record<CollaboratorRole, number> = { none: 0, read: 1, triage: 2, write: 3, maintain: 4, admin: 5 };
/** GitHub's Checks API limits (docs: "Update a check run"). */
const MAX_ANNOTATIONS_PER_REQUEST = 50;
const MAX_CHECK_TEXT = 65_535;

class HttpError extends Error {
  readonly status: number;
  readonly errors: unknown[] | undefined;
  constructor(status: number, message: string, errors?: unknown[]) {
    super(message);
    this.status = status;
    this.errors = errors;
  }
}

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");

function b64url(s: string): Buffer {
  return Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}

function parseIdent(line: string): { name: string; email: string; date: string } {
  const m = /^(.*) <(.*)> (\d+) ([+-]\d{4})$/.exec(line);
  if (!m) return { name: "", email: "", date: now() };
  return { name: m[1] ?? "", email: m[2] ?? "", date: new Date(Number(m[3]) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z") };
}

export class GitHubDouble {
  readonly violations: string[] = [];
  readonly requests: RecordedRequest[] = [];
  readonly #server: Server;
  readonly #dir: string;
  readonly #checker: OpenApiChecker;
  readonly #options: GitHubDoubleOptions;
  readonly #repos = new Map<string, RepoState>();
  readonly #faults: (Fault & { left: number })[] = [];
  readonly #installationTokens = new Set<string>();
  #nextId = 1000;
  #remaining = 5000;
  url = "";

  private constructor(dir: string, options: GitHubDoubleOptions) {
    this.#dir = dir;
    this.#options = options;
    this.#checker = openApiChecker();
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  static async start(options: GitHubDoubleOptions = {}): Promise<GitHubDouble> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "github-double-"));
    const double = new GitHubDouble(dir, options);
    await new Promise<void>((resolve) => double.#server.listen(0, "127.0.0.1", resolve));
    double.url = `http://127.0.0.1:${(double.#server.address() as AddressInfo).port}`;
    return double;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await rm(this.#dir, { recursive: true, force: true });
  }

  /** Creates a repository backed by a bare git repository with an initial commit on the default branch. */
  async createRepo(owner: string, name: string, defaultBranch = "main"): Promise<string> {
    const gitDir = path.join(this.#dir, owner, `${name}.git`);
    await git(["init", "--quiet", "--bare", `--initial-branch=${defaultBranch}`, gitDir]);
    const blob = await git(["hash-object", "-w", "--stdin"], { gitDir, input: `# ${name}\n` });
    const tree = await git(["mktree"], { gitDir, input: `100644 blob ${blob}\tREADME.md\n` });
    const commit = await git(["commit-tree", tree, "-m", "Initial commit"], { gitDir, env: this.#ident("Octocat", "octocat@example.invalid") });
    await git(["update-ref", `refs/heads/${defaultBranch}`, commit], { gitDir });
    this.#repos.set(`${owner}/${name}`.toLowerCase(), {
      owner,
      name,
      gitDir,
      defaultBranch,
      pulls: [],
      comments: [],
      statuses: [],
      deployments: [],
      checkRuns: [],
      permissions: new Map(),
    });
    return gitDir;
  }

  /** Commits one file on a branch (as a developer pushing would); returns the new head SHA. */
  async push(owner: string, name: string, branch: string, file: string, content: string): Promise<string> {
    const repo = this.#repo(owner, name);
    const parent =
      (await runGit(["rev-parse", "--verify", "-q", `refs/heads/${branch}`], { gitDir: repo.gitDir, okCodes: [1] })).stdout.trim() ||
      (await git(["rev-parse", `refs/heads/${repo.defaultBranch}`], { gitDir: repo.gitDir }));
    const tree = await this.#writeTree(repo, await git(["rev-parse", `${parent}^{tree}`], { gitDir: repo.gitDir }), [{ path: file, mode: "100644", content }]);
    const commit = await git(["commit-tree", tree, "-p", parent, "-m", `Change ${file}`], {
      gitDir: repo.gitDir,
      env: this.#ident("Octocat", "octocat@example.invalid"),
    });
    await git(["update-ref", `refs/heads/${branch}`, commit], { gitDir: repo.gitDir });
    for (const pr of repo.pulls) if (pr.head === branch) pr.headSha = commit;
    return commit;
  }

  /** Opens a pull request from `head` into the default branch, as a developer would. */
  async openPullRequest(owner: string, name: string, input: { head: string; title: string; body?: string; author?: string }): Promise<PullState> {
    const repo = this.#repo(owner, name);
    const pr: PullState = {
      number: this.#nextIssueNumber(repo),
      title: input.title,
      body: input.body ?? null,
      head: input.head,
      base: repo.defaultBranch,
      headSha: await git(["rev-parse", `refs/heads/${input.head}`], { gitDir: repo.gitDir }),
      baseSha: await git(["rev-parse", `refs/heads/${repo.defaultBranch}`], { gitDir: repo.gitDir }),
      state: "open",
      createdAt: now(),
      updatedAt: now(),
      author: input.author ?? "octocat",
    };
    repo.pulls.push(pr);
    return pr;
  }

  /**
   * Merges a pull request as GitHub's merge button would: a real merge commit on the base branch
   * (or, with `mergeCommitSha`, that commit as the merge result without touching git), then
   * `merged`, `merged_at`, `merge_commit_sha` and `merged_by` answer accordingly.
   */
  async mergePullRequest(
    owner: string,
    name: string,
    number: number,
    options: { mergeCommitSha?: string; mergedAt?: string; mergedBy?: string } = {},
  ): Promise<PullState> {
    const repo = this.#repo(owner, name);
    const pr = repo.pulls.find((x) => x.number === number);
    if (!pr) throw new Error(`no pull request #${number} in ${owner}/${name}`);
    let sha = options.mergeCommitSha;
    if (sha === undefined) {
      const gitDir = repo.gitDir;
      const base = await git(["rev-parse", `refs/heads/${pr.base}`], { gitDir });
      const head = (await this.#resolveRef(repo, `refs/heads/${pr.head}`)) ?? pr.headSha;
      const tree = await git(["rev-parse", `${head}^{tree}`], { gitDir });
      sha = await git(["commit-tree", tree, "-p", base, "-p", head, "-m", `Merge pull request #${pr.number} from ${pr.head}`], {
        gitDir,
        env: this.#ident("GitHub", "noreply@github.com"),
      });
      await git(["update-ref", `refs/heads/${pr.base}`, sha, base], { gitDir });
    }
    pr.state = "closed";
    pr.merged = true;
    pr.mergeCommitSha = sha;
    pr.mergedAt = options.mergedAt ?? now();
    pr.mergedBy = options.mergedBy ?? pr.author;
    pr.updatedAt = pr.mergedAt;
    return pr;
  }

  /** Makes `login` a known user with `role` on the repository ("none": exists, no access). */
  setPermission(owner: string, name: string, login: string, role: CollaboratorRole): void {
    this.#repo(owner, name).permissions.set(login.toLowerCase(), { login, role });
  }

  checkRuns(owner: string, name: string, sha?: string): CheckRunState[] {
    return this.#repo(owner, name).checkRuns.filter((c) => sha === undefined || c.headSha === sha);
  }

  gitDir(owner: string, name: string): string {
    return this.#repo(owner, name).gitDir;
  }

  inject(fault: Fault): void {
    this.#faults.push({ ...fault, left: fault.times ?? 1 });
  }

  /** Drops every fault not yet answered (GitHub is back). */
  clearFaults(): void {
    this.#faults.splice(0);
  }

  comments(owner: string, name: string, issue?: number): CommentState[] {
    return this.#repo(owner, name).comments.filter((c) => issue === undefined || c.issue === issue);
  }
  statuses(owner: string, name: string, sha?: string): StatusState[] {
    return this.#repo(owner, name).statuses.filter((s) => sha === undefined || s.sha === sha);
  }
  deployments(owner: string, name: string): DeploymentState[] {
    return this.#repo(owner, name).deployments;
  }
  pulls(owner: string, name: string): PullState[] {
    return this.#repo(owner, name).pulls;
  }

  // --------------------------------------------------------------------------------------------

  #repo(owner: string, name: string): RepoState {
    const repo = this.#repos.get(`${owner}/${name}`.toLowerCase());
    if (!repo) throw new HttpError(404, "Not Found");
    return repo;
  }

  #nextIssueNumber(repo: RepoState): number {
    return repo.pulls.reduce((n, p) => Math.max(n, p.number), 0) + 1;
  }

  #ident(name: string, email: string, date?: string): Record<string, string> {
    return {
      GIT_AUTHOR_NAME: name,
      GIT_AUTHOR_EMAIL: email,
      GIT_COMMITTER_NAME: name,
      GIT_COMMITTER_EMAIL: email,
      ...(date ? { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } : {}),
    };
  }

  #ctx(repo: RepoState): Ctx {
    return { api: this.url, web: `${this.url}/web`, owner: repo.owner, repo: repo.name };
  }

  #login(): string {
    return this.#options.login ?? "stackrail[bot]";
  }

  #authenticate(req: IncomingMessage, pathname: string): Credential {
    const header = req.headers.authorization ?? "";
    const m = /^(token|bearer) (\S+)$/i.exec(header);
    if (!m) throw new HttpError(401, "Requires authentication");
    const credential = m[2] ?? "";
    const app = this.#options.app;
    const isJwt = credential.split(".").length === 3;
    if (app && isJwt) {
      const [h = "", p = "", s = ""] = credential.split(".");
      const key = typeof app.publicKey === "string" ? createPublicKey(app.publicKey) : app.publicKey;
      const ok = verify("RSA-SHA256", Buffer.from(`${h}.${p}`), key, b64url(s));
      const payload = JSON.parse(b64url(p).toString("utf8")) as { iss?: unknown; exp?: number };
      if (!ok || String(payload.iss) !== String(app.appId) || (payload.exp ?? 0) * 1000 < Date.now())
        throw new HttpError(401, "A JSON web token could not be decoded");
      if (!/^\/app\/installations\/\d+\/access_tokens$|^\/repos\/[^/]+\/[^/]+\/installation$|^\/app$/.test(pathname)) {
        throw new HttpError(403, "A JSON web token cannot be used for this endpoint; use an installation token");
      }
      return "jwt";
    }
    if (this.#installationTokens.has(credential)) return "installation";
    if (this.#options.tokens && !this.#options.tokens.includes(credential)) throw new HttpError(401, "Bad credentials");
    if (app && !this.#options.tokens) throw new HttpError(401, "Bad credentials");
    return "token";
  }

  #fault(method: string, pathname: string): Fault | undefined {
    const f = this.#faults.find((x) => x.left > 0 && (!x.method || x.method === method) && x.path.test(pathname));
    if (!f) return undefined;
    f.left -= 1;
    return f;
  }

  #rateHeaders(): Record<string, string> {
    this.#remaining = Math.max(1, this.#remaining - 1);
    return {
      "x-ratelimit-limit": "5000",
      "x-ratelimit-remaining": String(this.#remaining),
      "x-ratelimit-used": String(5000 - this.#remaining),
      "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600),
      "x-ratelimit-resource": "core",
      "x-github-api-version-selected": "2022-11-28",
    };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://double.invalid");
    const pathname = url.pathname;
    let decoded = pathname;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      // keep the raw path
    }
    let reply: Reply;
    let match: MatchedOperation | undefined;
    let fault: Fault | undefined;
    let rejected = false;
    try {
      const raw = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks)));
        req.on("error", reject);
      });
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw.toString("utf8")) as unknown;
        } catch {
          throw new HttpError(400, "Problems parsing JSON");
        }
      }
      match = this.#checker.match(method, pathname);
      if (!match) {
        this.violations.push(`${method} ${pathname}: no such operation in GitHub's OpenAPI description`);
        throw new HttpError(404, "Not Found");
      }
      const credential = this.#authenticate(req, pathname);
      let problems: string[];
      try {
        problems = this.#checker.checkRequest(match, url.searchParams, body);
      } catch (error) {
        problems = [`request schema could not be checked: ${String(error)}`];
      }
      if (problems.length > 0) {
        rejected = true;
        this.violations.push(...problems.map((p) => `${method} ${pathname}: ${p}`));
        throw new HttpError(
          422,
          "Invalid request.",
          problems.map((message) => ({ resource: match?.operation.operationId, code: "invalid", message })),
        );
      }
      fault = this.#fault(method, decoded);
      if (fault) reply = this.#faultReply(fault);
      else reply = await this.#route(match, url.searchParams, body, credential);
    } catch (error) {
      if (error instanceof HttpError) {
        reply = {
          status: error.status,
          body: { message: error.message, documentation_url: "https://docs.github.com/rest", ...(error.errors ? { errors: error.errors } : {}) },
        };
      } else {
        this.violations.push(`${method} ${pathname}: double crashed: ${String(error)}`);
        reply = { status: 500, body: { message: "Server Error", documentation_url: "https://docs.github.com/rest" } };
      }
    }
    // The double's own refusals (auth, schema) are not the operation's answers: only those are checked.
    if (match && !fault && !rejected && reply.status !== 401) {
      try {
        for (const p of this.#checker.checkResponse(match, reply.status, reply.body)) this.violations.push(`${method} ${pathname}: ${p}`);
      } catch (error) {
        this.violations.push(`${method} ${pathname}: response schema could not be checked: ${String(error)}`);
      }
    }
    this.requests.push({
      method,
      path: decoded,
      operationId: match?.operation.operationId,
      status: reply.status,
      ...(fault ? { fault: fault.kind } : {}),
      at: Date.now(),
    });
    const headers: Record<string, string> = { ...this.#rateHeaders(), ...reply.headers };
    if (reply.body === undefined) {
      res.writeHead(reply.status, headers).end();
    } else {
      res.writeHead(reply.status, { ...headers, "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(reply.body));
    }
  }

  #faultReply(f: Fault): Reply {
    const retryAfter = f.retryAfter ?? 1;
    switch (f.kind) {
      case "ref-conflict":
        return {
          status: 422,
          body: { message: "Update is not a fast forward", documentation_url: "https://docs.github.com/rest/git/refs#update-a-reference" },
        };
      case "secondary-rate-limit":
        return {
          status: 403,
          headers: { "retry-after": String(retryAfter) },
          body: {
            message:
              "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
            documentation_url: "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
          },
        };
      case "primary-rate-limit":
        return {
          status: 403,
          headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000) + retryAfter) },
          body: {
            message: "API rate limit exceeded for installation ID 1.",
            documentation_url: "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
          },
        };
      case "bad-gateway":
        return { status: 502, body: { message: "Server Error", documentation_url: "https://docs.github.com/rest" } };
      case "server-error":
        return { status: 500, body: { message: "Server Error", documentation_url: "https://docs.github.com/rest" } };
    }
  }

  // --------------------------------------------------------------------------------------------

  async #route(m: MatchedOperation, query: URLSearchParams, body: unknown, credential: Credential): Promise<Reply> {
    const p = m.pathParams;
    const b = (body ?? {}) as Record<string, unknown>;
    const op = m.operation.operationId;
    if (op === "apps/create-installation-access-token") return this.#installationToken(Number(p.installation_id));
    const repo = this.#repo(p.owner ?? "", p.repo ?? "");
    const ctx = this.#ctx(repo);
    const api = `${ctx.api}/repos/${repo.owner}/${repo.name}`;
    const gitDir = repo.gitDir;
    switch (op) {
      case "apps/get-repo-installation":
        return { status: 200, body: this.#installation(ctx) };
      case "git/get-ref": {
        const sha = await this.#resolveRef(repo, `refs/${p.ref ?? ""}`);
        if (!sha) throw new HttpError(404, "Not Found");
        return { status: 200, body: this.#refBody(api, `refs/${p.ref ?? ""}`, sha) };
      }
      case "git/create-ref": {
        const ref = String(b.ref);
        const sha = String(b.sha);
        if (!/^refs\/[^/]+\/.+/.test(ref)) throw new HttpError(422, "Reference name must start with 'refs/' and have at least two slashes");
        if (!(await this.#isCommit(repo, sha))) throw new HttpError(422, "Object does not exist");
        const res = await runGit(["update-ref", ref, sha, ZERO], { gitDir, okCodes: [1, 128] });
        if (res.code !== 0) throw new HttpError(422, "Reference already exists");
        return { status: 201, body: this.#refBody(api, ref, sha) };
      }
      case "git/update-ref": {
        const ref = `refs/${p.ref ?? ""}`;
        const sha = String(b.sha);
        const old = await this.#resolveRef(repo, ref);
        if (!old) throw new HttpError(422, "Reference does not exist");
        if (!(await this.#isCommit(repo, sha))) throw new HttpError(422, "Object does not exist");
        if (b.force !== true) {
          const ff = await runGit(["merge-base", "--is-ancestor", old, sha], { gitDir, okCodes: [1] });
          if (ff.code !== 0) throw new HttpError(422, "Update is not a fast forward");
        }
        const res = await runGit(["update-ref", ref, sha, old], { gitDir, okCodes: [1, 128] });
        if (res.code !== 0) throw new HttpError(422, "Update is not a fast forward");
        return { status: 200, body: this.#refBody(api, ref, sha) };
      }
      case "git/create-blob": {
        const encoding = (b.encoding as string | undefined) ?? "utf-8";
        if (encoding !== "utf-8" && encoding !== "base64") throw new HttpError(422, "encoding must be utf-8 or base64");
        const content = encoding === "base64" ? Buffer.from(String(b.content), "base64") : Buffer.from(String(b.content), "utf8");
        const sha = await git(["hash-object", "-w", "--stdin"], { gitDir, input: content });
        return { status: 201, body: { url: `${api}/git/blobs/${sha}`, sha } };
      }
      case "git/get-blob": {
        const sha = p.file_sha ?? "";
        const type = await runGit(["cat-file", "-t", sha], { gitDir, okCodes: [128] });
        if (type.stdout.trim() !== "blob") throw new HttpError(404, "Not Found");
        const content = await this.#catBlob(repo, sha);
        return {
          status: 200,
          body: {
            sha,
            node_id: Buffer.from(`Blob:${sha}`).toString("base64"),
            size: content.length,
            url: `${api}/git/blobs/${sha}`,
            content: content.toString("base64"),
            encoding: "base64",
          },
        };
      }
      case "git/create-tree": {
        const baseTree = typeof b.base_tree === "string" ? b.base_tree : EMPTY_TREE;
        const t = await runGit(["cat-file", "-t", baseTree], { gitDir, okCodes: [128] });
        if (t.stdout.trim() !== "tree") throw new HttpError(422, "base_tree is not a valid tree");
        const entries = (b.tree as { path: string; mode: string; type: string; sha?: string | null; content?: string }[]) ?? [];
        const sha = await this.#writeTree(repo, baseTree, entries);
        return { status: 201, body: await this.#treeBody(repo, api, sha, false) };
      }
      case "git/get-tree": {
        const sha = p.tree_sha ?? "";
        const resolved = await runGit(["rev-parse", "--verify", "-q", `${sha}^{tree}`], { gitDir, okCodes: [1, 128] });
        if (resolved.code !== 0) throw new HttpError(404, "Not Found");
        const recursive = query.has("recursive");
        return { status: 200, body: await this.#treeBody(repo, api, resolved.stdout.trim(), recursive) };
      }
      case "git/create-commit": {
        const tree = String(b.tree);
        if ((await runGit(["cat-file", "-t", tree], { gitDir, okCodes: [128] })).stdout.trim() !== "tree") throw new HttpError(422, "Tree SHA does not exist");
        const parents = (b.parents as string[] | undefined) ?? [];
        for (const parent of parents)
          if (!(await this.#isCommit(repo, parent))) throw new HttpError(422, "Parent SHA does not exist or is not a commit object");
        const author = (b.author as { name?: string; email?: string; date?: string } | undefined) ?? { name: this.#login(), email: "bot@example.invalid" };
        const env = {
          ...this.#ident(author.name ?? this.#login(), author.email ?? "bot@example.invalid", author.date),
          // GitHub is the committer of API commits.
          GIT_COMMITTER_NAME: "GitHub",
          GIT_COMMITTER_EMAIL: "noreply@github.com",
        };
        const sha = await git(["commit-tree", tree, ...parents.flatMap((x) => ["-p", x]), "-F", "-"], { gitDir, env, input: String(b.message) });
        return { status: 201, body: await this.#commitBody(repo, api, sha) };
      }
      case "git/get-commit": {
        const sha = p.commit_sha ?? "";
        if (!(await this.#isCommit(repo, sha))) throw new HttpError(404, "Not Found");
        return { status: 200, body: await this.#commitBody(repo, api, sha) };
      }
      case "pulls/list": {
        const state = query.get("state") ?? "open";
        const head = query.get("head");
        const base = query.get("base");
        const list = repo.pulls.filter(
          (pr) => (state === "all" || pr.state === state) && (!head || `${repo.owner}:${pr.head}` === head || pr.head === head) && (!base || pr.base === base),
        );
        return this.#page(query, list, (pr) => pullRequest(ctx, pr, repo.defaultBranch, false), `${api}/pulls`);
      }
      case "pulls/create": {
        const head = String(b.head).replace(/^[^:]+:/, "");
        const base = String(b.base);
        const headSha = await this.#resolveRef(repo, `refs/heads/${head}`);
        const baseSha = await this.#resolveRef(repo, `refs/heads/${base}`);
        if (!headSha || !baseSha)
          throw new HttpError(422, "Validation Failed", [{ resource: "PullRequest", field: headSha ? "base" : "head", code: "invalid" }]);
        if (repo.pulls.some((pr) => pr.state === "open" && pr.head === head && pr.base === base)) {
          throw new HttpError(422, "Validation Failed", [
            { resource: "PullRequest", code: "custom", message: `A pull request already exists for ${repo.owner}:${head}.` },
          ]);
        }
        const pr: PullState = {
          number: this.#nextIssueNumber(repo),
          title: typeof b.title === "string" ? b.title : "",
          body: typeof b.body === "string" ? b.body : null,
          head,
          base,
          headSha,
          baseSha,
          state: "open",
          createdAt: now(),
          updatedAt: now(),
          author: this.#login(),
        };
        repo.pulls.push(pr);
        return { status: 201, body: pullRequest(ctx, pr, repo.defaultBranch, true) };
      }
      case "pulls/get":
      case "pulls/update": {
        const pr = repo.pulls.find((x) => x.number === Number(p.pull_number));
        if (!pr) throw new HttpError(404, "Not Found");
        if (op === "pulls/update") {
          if (typeof b.title === "string") pr.title = b.title;
          if (typeof b.body === "string") pr.body = b.body;
          if (b.state === "open" || b.state === "closed") pr.state = b.state;
          pr.updatedAt = now();
        }
        pr.headSha = (await this.#resolveRef(repo, `refs/heads/${pr.head}`)) ?? pr.headSha;
        return { status: 200, body: pullRequest(ctx, pr, repo.defaultBranch, true) };
      }
      case "issues/list-comments": {
        const issue = Number(p.issue_number);
        if (!repo.pulls.some((x) => x.number === issue)) throw new HttpError(404, "Not Found");
        return this.#page(
          query,
          repo.comments.filter((c) => c.issue === issue),
          (c) => this.#commentBody(ctx, c),
          `${api}/issues/${issue}/comments`,
        );
      }
      case "issues/create-comment": {
        const issue = Number(p.issue_number);
        if (!repo.pulls.some((x) => x.number === issue)) throw new HttpError(404, "Not Found");
        const c: CommentState = { id: this.#nextId++, issue, body: String(b.body), author: this.#login(), createdAt: now(), updatedAt: now() };
        if (c.body.length > 65536)
          throw new HttpError(422, "Validation Failed", [
            { resource: "IssueComment", field: "body", code: "custom", message: "body is too long (maximum is 65536 characters)" },
          ]);
        repo.comments.push(c);
        return { status: 201, body: this.#commentBody(ctx, c) };
      }
      case "issues/update-comment": {
        const c = repo.comments.find((x) => x.id === Number(p.comment_id));
        if (!c) throw new HttpError(404, "Not Found");
        c.body = String(b.body);
        c.updatedAt = now();
        return { status: 200, body: this.#commentBody(ctx, c) };
      }
      case "repos/create-commit-status": {
        const sha = p.sha ?? "";
        if (!(await this.#isCommit(repo, sha))) throw new HttpError(422, "No commit found for SHA: " + sha.slice(0, 40));
        const description = typeof b.description === "string" ? b.description : null;
        if (description && description.length > 140)
          throw new HttpError(422, "Validation Failed", [
            { resource: "Status", field: "description", code: "custom", message: "description is too long (maximum is 140 characters)" },
          ]);
        const s: StatusState = {
          id: this.#nextId++,
          sha,
          state: String(b.state),
          context: typeof b.context === "string" ? b.context : "default",
          description,
          targetUrl: typeof b.target_url === "string" ? b.target_url : null,
          createdAt: now(),
        };
        repo.statuses.push(s);
        return {
          status: 201,
          body: {
            url: `${api}/statuses/${sha}`,
            avatar_url: null,
            id: s.id,
            node_id: Buffer.from(`StatusContext:${s.id}`).toString("base64"),
            state: s.state,
            description: s.description,
            target_url: s.targetUrl,
            context: s.context,
            created_at: s.createdAt,
            updated_at: s.createdAt,
            creator: user(ctx, this.#login(), 9, "Bot"),
          },
        };
      }
      case "repos/list-deployments": {
        const list = repo.deployments.filter(
          (d) =>
            (!query.get("sha") || d.sha === query.get("sha")) &&
            (!query.get("ref") || d.ref === query.get("ref")) &&
            (!query.get("environment") || d.environment === query.get("environment")) &&
            (!query.get("task") || d.task === query.get("task")),
        );
        return this.#page(query, [...list].reverse(), (d) => this.#deploymentBody(ctx, d), `${api}/deployments`);
      }
      case "repos/create-deployment": {
        const ref = String(b.ref);
        const sha =
          (await this.#resolveRef(repo, `refs/heads/${ref}`)) ?? ((await this.#isCommit(repo, ref)) ? await git(["rev-parse", ref], { gitDir }) : null);
        if (!sha) throw new HttpError(422, `No ref found for: ${ref}`);
        const d: DeploymentState = {
          id: this.#nextId++,
          sha,
          ref,
          task: typeof b.task === "string" ? b.task : "deploy",
          environment: typeof b.environment === "string" ? b.environment : "production",
          description: typeof b.description === "string" ? b.description : null,
          payload: b.payload ?? {},
          transient: b.transient_environment === true,
          production: b.production_environment === true,
          createdAt: now(),
          statuses: [],
        };
        repo.deployments.push(d);
        return { status: 201, body: this.#deploymentBody(ctx, d) };
      }
      case "repos/list-deployment-statuses":
      case "repos/create-deployment-status": {
        const d = repo.deployments.find((x) => x.id === Number(p.deployment_id));
        if (!d) throw new HttpError(404, "Not Found");
        if (op === "repos/list-deployment-statuses")
          return this.#page(query, [...d.statuses].reverse(), (s) => this.#deploymentStatusBody(ctx, d, s), `${api}/deployments/${d.id}/statuses`);
        const description = typeof b.description === "string" ? b.description : "";
        if (description.length > 140)
          throw new HttpError(422, "Validation Failed", [
            { resource: "DeploymentStatus", field: "description", code: "custom", message: "description is too long" },
          ]);
        const s = {
          id: this.#nextId++,
          state: String(b.state),
          description,
          environmentUrl: typeof b.environment_url === "string" ? b.environment_url : "",
          logUrl: typeof b.log_url === "string" ? b.log_url : "",
          createdAt: now(),
        };
        d.statuses.push(s);
        // auto_inactive (default true): a new success marks earlier successful deployments of the environment inactive.
        if (s.state === "success" && b.auto_inactive !== false) {
          for (const other of repo.deployments) {
            if (other !== d && other.environment === d.environment && other.statuses.at(-1)?.state === "success") {
              other.statuses.push({ ...s, id: this.#nextId++, state: "inactive", description: "", createdAt: now() });
            }
          }
        }
        return { status: 201, body: this.#deploymentStatusBody(ctx, d, s) };
      }
      case "repos/get-collaborator-permission-level": {
        const known = repo.permissions.get(String(p.username).toLowerCase());
        if (!known) throw new HttpError(404, "Not Found");
        return { status: 200, body: this.#permissionBody(ctx, known.login, known.role) };
      }
      case "checks/create":
      case "checks/update": {
        if (this.#options.checksNeedApp && credential !== "installation") throw new HttpError(403, "You must authenticate via a GitHub App.");
        const output = b.output as { title?: string; summary?: string; text?: string; annotations?: Record<string, unknown>[] } | undefined;
        // The OpenAPI description states these limits too, so the checker refuses first; kept for
        // clarity of what GitHub itself answers.
        const annotations = output?.annotations ?? [];
        if (annotations.length > MAX_ANNOTATIONS_PER_REQUEST)
          throw new HttpError(422, "Validation Failed", [
            { resource: "CheckRun", field: "annotations", code: "custom", message: "Only 50 annotations are allowed per request" },
          ]);
        for (const field of ["summary", "text"] as const)
          if ((output?.[field]?.length ?? 0) > MAX_CHECK_TEXT)
            throw new HttpError(422, "Validation Failed", [
              { resource: "CheckRun", field: `output.${field}`, code: "custom", message: `${field} is too long (maximum is 65535 characters)` },
            ]);
        let run: CheckRunState;
        if (op === "checks/create") {
          const sha = String(b.head_sha);
          if (!(await this.#isCommit(repo, sha))) throw new HttpError(422, "No commit found for SHA: " + sha.slice(0, 40));
          run = {
            id: this.#nextId++,
            name: String(b.name),
            headSha: sha,
            status: "queued",
            conclusion: null,
            detailsUrl: null,
            externalId: null,
            startedAt: now(),
            completedAt: null,
            output: { title: null, summary: null, text: null },
            annotations: [],
            createdAt: now(),
          };
        } else {
          const found = repo.checkRuns.find((x) => x.id === Number(p.check_run_id));
          if (!found) throw new HttpError(404, "Not Found");
          run = found;
        }
        const conclusion = typeof b.conclusion === "string" ? b.conclusion : undefined;
        const status = typeof b.status === "string" ? b.status : undefined;
        if ((status === "completed" || typeof b.completed_at === "string") && conclusion === undefined && run.conclusion === null)
          throw new HttpError(422, "Validation Failed", [{ resource: "CheckRun", field: "conclusion", code: "missing_field" }]);
        if (conclusion === "stale") throw new HttpError(422, "Validation Failed", [{ resource: "CheckRun", field: "conclusion", code: "invalid" }]);
        if (typeof b.name === "string") run.name = b.name;
        if (typeof b.details_url === "string") run.detailsUrl = b.details_url;
        if (typeof b.external_id === "string") run.externalId = b.external_id;
        if (typeof b.started_at === "string") run.startedAt = b.started_at;
        if (status !== undefined) run.status = status;
        // A run set back to queued / in progress (re-run) has no conclusion until it completes again.
        if (status !== undefined && status !== "completed" && conclusion === undefined) {
          run.conclusion = null;
          run.completedAt = null;
        }
        if (conclusion !== undefined) {
          // Providing a conclusion completes the run (GitHub's documented behaviour).
          run.conclusion = conclusion;
          run.status = "completed";
          run.completedAt = typeof b.completed_at === "string" ? b.completed_at : now();
        }
        if (output) {
          if (typeof output.title === "string") run.output.title = output.title;
          if (typeof output.summary === "string") run.output.summary = output.summary;
          if (typeof output.text === "string") run.output.text = output.text;
          for (const a of annotations)
            run.annotations.push({
              path: String(a.path),
              startLine: Number(a.start_line),
              endLine: Number(a.end_line),
              startColumn: typeof a.start_column === "number" ? a.start_column : null,
              endColumn: typeof a.end_column === "number" ? a.end_column : null,
              level: String(a.annotation_level),
              title: typeof a.title === "string" ? a.title : null,
              message: String(a.message),
              rawDetails: typeof a.raw_details === "string" ? a.raw_details : null,
            });
        }
        if (op === "checks/create") {
          repo.checkRuns.push(run);
          return { status: 201, body: this.#checkRunBody(ctx, run) };
        }
        return { status: 200, body: this.#checkRunBody(ctx, run) };
      }
      case "checks/get": {
        const run = repo.checkRuns.find((x) => x.id === Number(p.check_run_id));
        if (!run) throw new HttpError(404, "Not Found");
        return { status: 200, body: this.#checkRunBody(ctx, run) };
      }
      case "checks/list-annotations": {
        const run = repo.checkRuns.find((x) => x.id === Number(p.check_run_id));
        if (!run) throw new HttpError(404, "Not Found");
        return this.#page(
          query,
          run.annotations,
          (a) => ({
            path: a.path,
            blob_href: `${ctx.web}/${repo.owner}/${repo.name}/blob/${run.headSha}/${a.path}`,
            start_line: a.startLine,
            end_line: a.endLine,
            start_column: a.startColumn,
            end_column: a.endColumn,
            annotation_level: a.level,
            title: a.title,
            message: a.message,
            raw_details: a.rawDetails,
          }),
          `${api}/check-runs/${run.id}/annotations`,
        );
      }
      case "checks/list-for-ref": {
        const ref = p.ref ?? "";
        const sha = (await this.#isCommit(repo, ref))
          ? ref
          : ((await this.#resolveRef(repo, `refs/heads/${ref}`)) ?? (await this.#resolveRef(repo, `refs/tags/${ref}`)));
        if (!sha) throw new HttpError(422, `No commit found for SHA: ${ref}`);
        const name = query.get("check_name");
        const status = query.get("status");
        let list = repo.checkRuns.filter((c) => c.headSha === sha && (!name || c.name === name) && (!status || c.status === status)).reverse();
        // filter=latest (the default): the most recent run of each name only.
        if ((query.get("filter") ?? "latest") === "latest") list = list.filter((c, i) => list.findIndex((x) => x.name === c.name) === i);
        const perPage = Math.min(100, Number(query.get("per_page") ?? 30));
        const page = Math.max(1, Number(query.get("page") ?? 1));
        return {
          status: 200,
          body: { total_count: list.length, check_runs: list.slice((page - 1) * perPage, page * perPage).map((c) => this.#checkRunBody(ctx, c)) },
        };
      }
      default:
        this.violations.push(`${m.operation.method} ${m.operation.template}: ${op} is not implemented by the double`);
        throw new HttpError(404, "Not Found");
    }
  }

  #installationToken(id: number): Reply {
    if (!this.#options.app || id !== this.#options.app.installationId) throw new HttpError(404, "Not Found");
    const token = `ghs_${randomBytes(18).toString("hex")}`;
    this.#installationTokens.add(token);
    return {
      status: 201,
      body: {
        token,
        expires_at: new Date(Date.now() + 3600_000).toISOString(),
        permissions: { contents: "write", pull_requests: "write", statuses: "write", deployments: "write", issues: "write", checks: "write" },
        repository_selection: "all",
      },
    };
  }

  #installation(ctx: Ctx): Record<string, unknown> {
    const app = this.#options.app;
    if (!app) throw new HttpError(404, "Not Found");
    return {
      id: app.installationId,
      app_id: app.appId,
      app_slug: "stackrail",
      target_id: 2,
      target_type: "Organization",
      single_file_name: null,
      repository_selection: "all",
      access_tokens_url: `${ctx.api}/app/installations/${app.installationId}/access_tokens`,
      html_url: `${ctx.web}/organizations/${ctx.owner}/settings/installations/${app.installationId}`,
      repositories_url: `${ctx.api}/installation/repositories`,
      events: ["pull_request", "push"],
      account: user(ctx, ctx.owner, 2, "Organization"),
      permissions: { contents: "write" },
      created_at: "2024-01-01T00:00:00Z",
      updated_at: "2024-01-01T00:00:00Z",
      suspended_by: null,
      suspended_at: null,
    };
  }

  #page<T>(query: URLSearchParams, list: T[], shape: (x: T) => unknown, base: string): Reply {
    const perPage = Math.min(100, Number(query.get("per_page") ?? 30));
    const page = Math.max(1, Number(query.get("page") ?? 1));
    const items = list.slice((page - 1) * perPage, page * perPage);
    const last = Math.max(1, Math.ceil(list.length / perPage));
    const headers: Record<string, string> = {};
    if (page < last) {
      const q = new URLSearchParams(query);
      q.set("per_page", String(perPage));
      const link = (n: number) => {
        q.set("page", String(n));
        return `${base}?${q.toString()}`;
      };
      headers.link = `<${link(page + 1)}>; rel="next", <${link(last)}>; rel="last"`;
    }
    return { status: 200, body: items.map(shape), headers };
  }

  async #resolveRef(repo: RepoState, ref: string): Promise<string | null> {
    if (!/^refs\/[A-Za-z0-9_./-]+$/.test(ref) || ref.includes("..")) return null;
    const res = await runGit(["rev-parse", "--verify", "-q", `${ref}^{commit}`], { gitDir: repo.gitDir, okCodes: [1, 128] });
    return res.code === 0 && (await runGit(["show-ref", "--verify", "-q", ref], { gitDir: repo.gitDir, okCodes: [1, 128] })).code === 0
      ? res.stdout.trim()
      : null;
  }

  async #isCommit(repo: RepoState, sha: string): Promise<boolean> {
    if (!/^[0-9a-f]{40}$/.test(sha)) return false;
    return (await runGit(["cat-file", "-t", sha], { gitDir: repo.gitDir, okCodes: [128] })).stdout.trim() === "commit";
  }

  async #catBlob(repo: RepoState, sha: string): Promise<Buffer> {
    // Binary-safe: read as base64 through a second git process would be overkill; blobs here are text.
    return Buffer.from((await runGit(["cat-file", "blob", sha], { gitDir: repo.gitDir })).stdout, "utf8");
  }

  async #writeTree(
    repo: RepoState,
    baseTree: string,
    entries: { path: string; mode: string; type?: string; sha?: string | null; content?: string }[],
  ): Promise<string> {
    const gitDir = repo.gitDir;
    const index = path.join(gitDir, `double-index-${randomBytes(8).toString("hex")}`);
    const env = { GIT_INDEX_FILE: index };
    try {
      await git(["read-tree", baseTree], { gitDir, env });
      const lines: string[] = [];
      for (const e of entries) {
        if (!e.path || e.path.startsWith("/") || e.path.split("/").some((s) => s === "" || s === "." || s === ".."))
          throw new HttpError(422, `tree.path "${e.path}" is invalid`);
        if (e.type !== undefined && e.type !== "blob") throw new HttpError(422, "the double supports blob entries only");
        if (e.sha === null) {
          // GitHub refuses to delete a path that is not in the base tree.
          const exists = await runGit(["ls-files", "--error-unmatch", "--", e.path], { gitDir, env, okCodes: [1] });
          if (exists.code !== 0) throw new HttpError(422, "GitRPC::BadObjectState");
          lines.push(`0 ${ZERO}\t${e.path}`);
        } else if (typeof e.content === "string") {
          lines.push(`${e.mode} ${await git(["hash-object", "-w", "--stdin"], { gitDir, input: e.content })}\t${e.path}`);
        } else if (typeof e.sha === "string") {
          if ((await runGit(["cat-file", "-t", e.sha], { gitDir, okCodes: [128] })).stdout.trim() !== "blob")
            throw new HttpError(422, `tree.sha ${e.sha} is not a valid blob`);
          lines.push(`${e.mode} ${e.sha}\t${e.path}`);
        } else {
          throw new HttpError(422, "tree entry needs sha or content");
        }
      }
      if (lines.length > 0) await git(["update-index", "--index-info"], { gitDir, env, input: lines.join("\n") + "\n" });
      return await git(["write-tree"], { gitDir, env });
    } finally {
      await rm(index, { force: true });
    }
  }

  async #treeBody(repo: RepoState, api: string, sha: string, recursive: boolean): Promise<Record<string, unknown>> {
    const out = await git(["ls-tree", "-l", ...(recursive ? ["-r", "-t"] : []), sha], { gitDir: repo.gitDir });
    const tree = out
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [meta = "", p = ""] = line.split("\t");
        const [mode = "", type = "", objectSha = "", size = "-"] = meta.split(/\s+/);
        return { path: p, mode, type, sha: objectSha, ...(type === "blob" ? { size: Number(size) } : {}), url: `${api}/git/${type}s/${objectSha}` };
      });
    return { sha, url: `${api}/git/trees/${sha}`, tree, truncated: false };
  }

  async #commitBody(repo: RepoState, api: string, sha: string): Promise<Record<string, unknown>> {
    const raw = await git(["cat-file", "commit", sha], { gitDir: repo.gitDir });
    const [head = "", ...rest] = raw.split("\n\n");
    const headers = head.split("\n");
    const field = (k: string) => headers.filter((l) => l.startsWith(`${k} `)).map((l) => l.slice(k.length + 1));
    const tree = field("tree")[0] ?? "";
    return {
      sha,
      node_id: Buffer.from(`Commit:${sha}`).toString("base64"),
      url: `${api}/git/commits/${sha}`,
      html_url: `${this.url}/web/${repo.owner}/${repo.name}/commit/${sha}`,
      author: parseIdent(field("author")[0] ?? ""),
      committer: parseIdent(field("committer")[0] ?? ""),
      tree: { sha: tree, url: `${api}/git/trees/${tree}` },
      message: rest.join("\n\n").replace(/\n$/, ""),
      parents: field("parent").map((p) => ({ sha: p, url: `${api}/git/commits/${p}`, html_url: `${this.url}/web/${repo.owner}/${repo.name}/commit/${p}` })),
      verification: { verified: false, reason: "unsigned", signature: null, payload: null, verified_at: null },
    };
  }

  #refBody(api: string, ref: string, sha: string): Record<string, unknown> {
    return {
      ref,
      node_id: Buffer.from(`Ref:${ref}`).toString("base64"),
      url: `${api}/git/${ref}`,
      object: { type: "commit", sha, url: `${api}/git/commits/${sha}` },
    };
  }

  #commentBody(ctx: Ctx, c: CommentState): Record<string, unknown> {
    const api = `${ctx.api}/repos/${ctx.owner}/${ctx.repo}`;
    return {
      id: c.id,
      node_id: Buffer.from(`IssueComment:${c.id}`).toString("base64"),
      url: `${api}/issues/comments/${c.id}`,
      html_url: `${ctx.web}/${ctx.owner}/${ctx.repo}/pull/${c.issue}#issuecomment-${c.id}`,
      issue_url: `${api}/issues/${c.issue}`,
      body: c.body,
      user: user(ctx, c.author, 9, "Bot"),
      created_at: c.createdAt,
      updated_at: c.updatedAt,
      author_association: "NONE",
    };
  }

  #permissionBody(ctx: Ctx, login: string, role: CollaboratorRole): Record<string, unknown> {
    const rank = ROLE_RANK[role];
    return {
      permission: LEGACY_PERMISSION[role],
      role_name: role,
      user: {
        ...user(ctx, login, 100 + login.length, "User"),
        permissions: { pull: rank >= 1, triage: rank >= 2, push: rank >= 3, maintain: rank >= 4, admin: rank >= 5 },
        role_name: role,
      },
    };
  }

  #checkRunBody(ctx: Ctx, run: CheckRunState): Record<string, unknown> {
    const api = `${ctx.api}/repos/${ctx.owner}/${ctx.repo}`;
    return {
      id: run.id,
      node_id: Buffer.from(`CheckRun:${run.id}`).toString("base64"),
      head_sha: run.headSha,
      external_id: run.externalId,
      url: `${api}/check-runs/${run.id}`,
      html_url: `${ctx.web}/${ctx.owner}/${ctx.repo}/runs/${run.id}`,
      details_url: run.detailsUrl,
      status: run.status,
      conclusion: run.conclusion,
      started_at: run.startedAt,
      completed_at: run.completedAt,
      output: {
        title: run.output.title,
        summary: run.output.summary,
        text: run.output.text,
        annotations_count: run.annotations.length,
        annotations_url: `${api}/check-runs/${run.id}/annotations`,
      },
      name: run.name,
      check_suite: { id: 1 },
      app: {
        id: this.#options.app?.appId ?? 1,
        slug: "stackrail",
        node_id: Buffer.from("App:stackrail").toString("base64"),
        owner: user(ctx, ctx.owner, 2, "Organization"),
        name: "Stackrail",
        description: null,
        external_url: `${ctx.web}/apps/stackrail`,
        html_url: `${ctx.web}/apps/stackrail`,
        created_at: "2024-01-01T00:00:00Z",
        updated_at: "2024-01-01T00:00:00Z",
        permissions: { checks: "write", contents: "write", deployments: "write", statuses: "write" },
        events: ["check_run", "pull_request", "push"],
      },
      pull_requests: [],
    };
  }

  #deploymentBody(ctx: Ctx, d: DeploymentState): Record<string, unknown> {
    const api = `${ctx.api}/repos/${ctx.owner}/${ctx.repo}`;
    return {
      url: `${api}/deployments/${d.id}`,
      id: d.id,
      node_id: Buffer.from(`Deployment:${d.id}`).toString("base64"),
      sha: d.sha,
      ref: d.ref,
      task: d.task,
      payload: d.payload,
      environment: d.environment,
      description: d.description,
      creator: user(ctx, this.#login(), 9, "Bot"),
      created_at: d.createdAt,
      updated_at: d.createdAt,
      statuses_url: `${api}/deployments/${d.id}/statuses`,
      repository_url: api,
      transient_environment: d.transient,
      production_environment: d.production,
    };
  }

  #deploymentStatusBody(ctx: Ctx, d: DeploymentState, s: DeploymentState["statuses"][number]): Record<string, unknown> {
    const api = `${ctx.api}/repos/${ctx.owner}/${ctx.repo}`;
    return {
      url: `${api}/deployments/${d.id}/statuses/${s.id}`,
      id: s.id,
      node_id: Buffer.from(`DeploymentStatus:${s.id}`).toString("base64"),
      state: s.state,
      creator: user(ctx, this.#login(), 9, "Bot"),
      description: s.description,
      environment: d.environment,
      target_url: s.logUrl,
      log_url: s.logUrl,
      environment_url: s.environmentUrl,
      created_at: s.createdAt,
      updated_at: s.createdAt,
      deployment_url: `${api}/deployments/${d.id}`,
      repository_url: api,
    };
  }
}
