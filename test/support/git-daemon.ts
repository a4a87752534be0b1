// A GitOps repository on another "machine": a bare repository served over the network with git's
// smart HTTP protocol (`git http-backend` as CGI behind a small node:http server on a loopback port
// the OS picked), with pushes enabled, so the service clones, fetches and pushes as with any remote
// server and nothing but the URL is shared with the processes that use it.
//
// Why not `git daemon` (git://): it serves and takes pushes here, but the service writes the GitOps
// repository's URL into the Argo CD objects it commits (repoURL), and accepts only the schemes Argo
// CD is given in practice (https, ssh, file; worker/gitops/manifests.ts): a git:// GITOPS_REPO fails
// the first regional commit with `manifest_invalid: gitopsRepoUrl`. HTTP is what a real Git server
// offers anyway. The test reads the history straight from the bare repository.
import { execFile, execFileSync, spawn } from "node:child_process";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { readCommits, type GitOpsCommit } from "./gitops-remote.ts";

export interface GitServerRepo {
  /** What GITOPS_REPO is set to: `http://127.0.0.1:<port>/<name>.git`. */
  readonly url: string;
  readonly gitDir: string;
  /** Requests served (clone, fetch, push), for a test that wants to see the network used. */
  requests(): number;
  /** The main branch's commits, newest first. */
  commits(): GitOpsCommit[];
  /** A file on the main branch, or null. */
  show(file: string): string | null;
  stop(): Promise<void>;
}

function httpBackend(base: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://localhost");
  const cgi = spawn("git", ["http-backend"], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_PROJECT_ROOT: base,
      GIT_HTTP_EXPORT_ALL: "1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ""),
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      // Git clients gzip large request bodies; http-backend inflates them when told.
      ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"]) } : {}),
      ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
    },
    stdio: ["pipe", "pipe", "ignore"],
  });
  req.pipe(cgi.stdin);
  cgi.on("error", () => {
    if (!res.headersSent) res.writeHead(500).end();
  });
  // CGI output: headers (with an optional Status:), a blank line, then the body as it comes.
  let head = Buffer.alloc(0);
  let inBody = false;
  cgi.stdout.on("data", (chunk: Buffer) => {
    if (inBody) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    inBody = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === "status") status = Number.parseInt(value, 10) || 200;
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  cgi.stdout.on("end", () => {
    if (!inBody && !res.headersSent) res.writeHead(502);
    res.end();
  });
}

/** Serves a new empty bare repository `<dir>/git-server/<name>.git` over smart HTTP on 127.0.0.1. */
export async function startGitServer(dir: string, name = "gitops"): Promise<GitServerRepo> {
  const base = path.join(dir, "git-server");
  const gitDir = path.join(base, `${name}.git`);
  mkdirSync(base, { recursive: true });
  execFileSync("git", ["init", "--quiet", "--bare", "--initial-branch=main", gitDir]);
  // Anonymous pushes over HTTP (the server has no authentication: it listens on loopback only).
  execFileSync("git", ["--git-dir", gitDir, "config", "http.receivepack", "true"]);
  let served = 0;
  const server = createServer((req, res) => {
    served++;
    httpBackend(base, req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/${name}.git`;
  try {
    // Asynchronously: this process serves the request.
    await promisify(execFile)("git", ["ls-remote", url], { timeout: 10_000 });
  } catch (err) {
    server.close();
    throw new Error(`git http-backend did not serve ${url} (is git installed with its http-backend?): ${(err as Error).message}`);
  }
  return {
    url,
    gitDir,
    requests: () => served,
    commits: () => readCommits(gitDir),
    show(file) {
      try {
        return execFileSync("git", ["--git-dir", gitDir, "show", `main:${file}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      } catch {
        return null;
      }
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
