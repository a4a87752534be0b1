// The README's "Your first tenant in five minutes", run as written, so that the README cannot drift
// from the product. Its command blocks (```sh walkthrough) are taken from README.md in order: the
// one marked `service` starts the service as the walkthrough says (`npm start`, in a process group
// of its own), every other block runs in one bash session, as in a second terminal (exports,
// variables and the alias carry over from block to block). Each block must exit as its fence says
// (`exit=N`, default 0) with no command of it failing on the way, and every line of the ```text
// block shown right after it must appear in what it printed (stdout and stderr), with `…` standing
// for anything, runs of spaces for any spacing, and numbers, hex ids and UUIDs for any of their kind.
//
// Isolation: the installation runs on a free port, a private Redis prefix and data dir (so its
// GitOps repo and Pulumi state are private too): the test gives PORT, STACKRAIL_DATA_DIR and
// STACKRAIL_QUEUE_PREFIX to the service's shell (the walkthrough must not set them), and replaces
// the walkthrough's literal `127.0.0.1:8080`, `.stackrail/`, `docs/examples/`, tenant `acme` and
// repository `webshop` with this run's port, data dir, substituted copies of the example payloads
// and names of its own, in the commands and in the expected output alike, so that it never touches
// another installation's databases, cache users or previews on the shared servers.
//
// STACKRAIL_WALKTHROUGH_OUT=DIR writes each block's output there, with the names mapped back, to
// refresh the README's output from a real run.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../core/engine.ts";
import { deleteRedisPrefix, dropLocalLeftovers, dropTenantLeftovers } from "../support/cleanup.ts";
import { freePort, waitUntil } from "../support/private-services.ts";
import { uniqueName } from "../support/services.ts";

export interface WalkthroughBlock {
  /** 1-based line of the opening fence in README.md. */
  readonly line: number;
  /** `service` runs in the background (the first terminal); `command` in the shared session. */
  readonly role: "service" | "command";
  readonly code: string;
  readonly exit: number;
  /** The lines of the output block shown right after the command block. */
  readonly expected: readonly string[];
}

const OPEN = /^```sh[ \t]+walkthrough\b(.*)$/;

/** The walkthrough's command blocks, in order, each with the output the README shows for it. */
export function walkthroughBlocks(markdown: string): WalkthroughBlock[] {
  const lines = markdown.split("\n");
  const blocks: WalkthroughBlock[] = [];
  let i = 0;
  while (i < lines.length) {
    const open = OPEN.exec(lines[i] ?? "");
    if (!open) {
      i++;
      continue;
    }
    const start = i;
    const words = (open[1] ?? "").trim().split(/\s+/).filter(Boolean);
    const exitWord = words.find((w) => w.startsWith("exit="));
    const exit = exitWord === undefined ? 0 : Number(exitWord.slice("exit=".length));
    if (!Number.isInteger(exit)) throw new Error(`README.md:${start + 1}: ${exitWord ?? ""} is not an exit code`);
    const code: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) code.push(lines[i] ?? "");
    if (i >= lines.length) throw new Error(`README.md:${start + 1}: the walkthrough block is not closed`);
    i++;
    let j = i;
    while (j < lines.length && (lines[j] ?? "").trim() === "") j++;
    const expected: string[] = [];
    if (lines[j] === "```text") {
      for (j++; j < lines.length && lines[j] !== "```"; j++) expected.push(lines[j] ?? "");
      i = j + 1;
    }
    blocks.push({ line: start + 1, role: words.includes("service") ? "service" : "command", code: code.join("\n"), exit, expected });
  }
  return blocks;
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const TOKENS = new RegExp(`(…|\\s+|${UUID}|\\b[0-9a-f]{12,64}\\b|\\d+)`);

/**
 * A shown output line as a pattern for a printed line: `…` is anything, spacing is any spacing,
 * and what changes from run to run (UUIDs, hex ids and commits, numbers: times, ages, sizes) is any
 * value of its kind. Everything else must be printed as shown. Null for a line that shows nothing.
 */
export function linePattern(shown: string): RegExp | null {
  const text = shown.trim();
  if (text === "" || text === "…") return null;
  const source = text
    .split(TOKENS)
    .map((part, i) => {
      if (i % 2 === 0) return part.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      if (part === "…") return ".*";
      if (/^\s+$/.test(part)) return "\\s+";
      if (new RegExp(`^${UUID}$`).test(part)) return UUID;
      if (/^[0-9a-f]{12,64}$/.test(part) && !/^\d+$/.test(part)) return "[0-9a-f]{12,64}";
      return "\\d+";
    })
    .join("");
  return new RegExp(`^\\s*${source}\\s*$`);
}

/** The shown lines that no printed line matches. */
export function missingLines(expected: readonly string[], printed: string): string[] {
  const lines = printed.split(/\r?\n|\r/);
  return expected.filter((shown) => {
    const pattern = linePattern(shown);
    return pattern !== null && !lines.some((l) => pattern.test(l));
  });
}

describe("README walkthrough: parsing and matching", () => {
  it("finds the walkthrough in order: the service first, then commands, each with its output", () => {
    const blocks = walkthroughBlocks(readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8"));
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    expect(blocks[0]?.role).toBe("service");
    expect(blocks.filter((b) => b.role === "service")).toHaveLength(1);
    expect(
      blocks.slice(1).every((b) => b.expected.some((l) => linePattern(l) !== null)),
      "every command shows its output",
    ).toBe(true);
    // The test's isolation depends on these coming from the test, not from the README.
    for (const b of blocks) expect(b.code, `README.md:${b.line}`).not.toMatch(/\b(PORT|STACKRAIL_DATA_DIR|STACKRAIL_QUEUE_PREFIX|HOST)=/);
  });

  it("matches what changes from run to run, and nothing else", () => {
    const printed = [
      "job 84f0b600-9667-42c8-888d-1b56ce947eab (release.rollout, releases) succeeded after 12s",
      "state      active",
      "  commit           eee064deda1c772c2d6e2aea600c179725d07019",
      "[3s] provision-c7a0c4b7599e9abfd5094babf83dcb0c1adc69aa: stack up tenant-acme (pool, us-east-1)",
    ].join("\n");
    expect(missingLines(["job 0a1b2c3d-0000-4000-8000-00000000abcd (release.rollout, releases) succeeded after 0s"], printed)).toEqual([]);
    expect(missingLines(["state  active", "commit  4f1d2c3b5a6978e0d1c2b3a4f5e6d7c8b9a0e1f2", "…", ""], printed)).toEqual([]);
    expect(missingLines(["[0s] provision-…: stack up tenant-acme (pool, us-east-1)"], printed)).toEqual([]);
    expect(missingLines(["state  failed"], printed)).toEqual(["state  failed"]);
    expect(missingLines(["[0s] provision-…: stack up tenant-acme (silo, us-east-1)"], printed)).toHaveLength(1);
    expect(missingLines(["job … (release.rollout, releases) failed after 0s"], printed)).toHaveLength(1);
  });
});

/** A bash that reads the blocks one by one from its stdin: one terminal's session. */
class Session {
  readonly #child: ChildProcess;
  readonly #dir: string;
  #n = 0;
  #shellOutput = "";

  constructor(cwd: string, env: NodeJS.ProcessEnv, dir: string) {
    this.#dir = dir;
    // Its own process group, so that everything it started can be stopped together.
    this.#child = spawn("bash", ["--norc", "--noprofile"], { cwd, env, detached: true, stdio: ["pipe", "pipe", "pipe"] });
    const keep = (chunk: Buffer) => {
      this.#shellOutput = (this.#shellOutput + chunk.toString("utf8")).slice(-20_000);
    };
    this.#child.stdout?.on("data", keep);
    this.#child.stderr?.on("data", keep);
    // An interactive terminal expands aliases; a shell reading a pipe needs to be told.
    this.#send("set -o pipefail; shopt -s expand_aliases");
  }

  #send(line: string): void {
    this.#child.stdin?.write(`${line}\n`);
  }

  /** Runs one block; its output (stdout and stderr in order), exit code and failed commands. */
  async run(code: string, timeoutMs: number): Promise<{ output: string; exit: number; failed: string[] }> {
    const n = ++this.#n;
    const file = (name: string) => path.join(this.#dir, `block-${n}.${name}`);
    writeFileSync(file("sh"), `${code}\n`);
    writeFileSync(file("failed"), "");
    // Every command that fails on the way is noted, not only the block's last one.
    this.#send(`trap 'echo "exit $?: $BASH_COMMAND" >> ${JSON.stringify(file("failed"))}' ERR`);
    this.#send(`source ${JSON.stringify(file("sh"))} > ${JSON.stringify(file("out"))} 2>&1 < /dev/null; echo $? > ${JSON.stringify(file("rc.tmp"))}`);
    this.#send(`trap - ERR; mv ${JSON.stringify(file("rc.tmp"))} ${JSON.stringify(file("rc"))}`);
    try {
      await waitUntil(`the block to finish`, () => existsSync(file("rc")) || this.#child.exitCode !== null, timeoutMs, 200);
    } catch (err) {
      const partial = existsSync(file("out")) ? readFileSync(file("out"), "utf8") : "";
      throw new Error(`${(err as Error).message}; its output so far:\n${partial.slice(-4000)}`);
    }
    if (!existsSync(file("rc"))) throw new Error(`the shell exited (${String(this.#child.exitCode)}): ${this.#shellOutput}`);
    return {
      output: readFileSync(file("out"), "utf8"),
      exit: Number(readFileSync(file("rc"), "utf8").trim()),
      failed: readFileSync(file("failed"), "utf8").split("\n").filter(Boolean),
    };
  }

  async close(): Promise<void> {
    await stopGroup(this.#child, 5_000);
  }
}

async function stopGroup(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid as number), s);
    } catch {
      // the group is gone
    }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
  // What the group's leader left behind (a Pulumi child) goes too.
  signal("SIGKILL");
}

/** A newcomer's shell: none of the service's variables, and not this test's PATH additions. */
function newcomerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (/^(STACKRAIL_|GITHUB_|GITOPS_|PULUMI_|ARGOCD_|npm_|VITEST|NODE_OPTIONS$|NODE_ENV$|TEST$)/.test(key)) continue;
    env[key] = value;
  }
  env.PATH = (env.PATH ?? "")
    .split(path.delimiter)
    .filter((p) => !p.includes(`node_modules${path.sep}.bin`))
    .join(path.delimiter);
  return env;
}

const tag = randomBytes(3).toString("hex").replace(/^\d/, "x");
const tenantId = `acme-${tag}`;
const repoName = `webshop-${tag}`;
const prefix = uniqueName("walkthrough");
const work = mkdtempSync(path.join(tmpdir(), "stackrail-walkthrough-"));
const dataDir = path.join(work, "data");
const examplesDir = path.join(work, "examples");
const sessionDir = path.join(work, "session");
let port = 0;
let service: ChildProcess | undefined;
let session: Session | undefined;
const serviceLog = path.join(work, "service.log");

/** The walkthrough's names for this run's, in commands and expected output alike. */
function substitute(text: string): string {
  return (
    text
      .replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`)
      .replace(/(?<![\w/.])\.stackrail\//g, `${dataDir}/`)
      .replace(/(?<![\w/.])docs\/examples\//g, `${examplesDir}/`)
      // `t_acme`, `p_webshop_pr_1`: database and user names spell the `-` of a name as `_`.
      .replace(/(?<=_)acme(?![A-Za-z0-9])/g, tenantId.replaceAll("-", "_"))
      .replace(/(?<=_)webshop(?![A-Za-z0-9])/g, repoName.replaceAll("-", "_"))
      .replace(/(?<![A-Za-z0-9_])acme(?![A-Za-z0-9])/g, tenantId)
      .replace(/(?<![A-Za-z0-9_])webshop(?![A-Za-z0-9])/g, repoName)
  );
}

/** This run's names back to the walkthrough's (STACKRAIL_WALKTHROUGH_OUT). */
function unsubstitute(text: string): string {
  return text
    .replaceAll(tenantId, "acme")
    .replaceAll(tenantId.replaceAll("-", "_"), "acme")
    .replaceAll(repoName, "webshop")
    .replaceAll(repoName.replaceAll("-", "_"), "webshop")
    .replaceAll(`127.0.0.1:${port}`, "127.0.0.1:8080")
    .replaceAll(dataDir, ".stackrail")
    .replaceAll(examplesDir, "docs/examples");
}

function serviceLogTail(): string {
  return existsSync(serviceLog) ? readFileSync(serviceLog, "utf8").slice(-3000) : "(no service log)";
}

describe("README walkthrough: every command as written, against a real service", () => {
  beforeAll(async () => {
    port = await freePort();
    mkdirSync(examplesDir, { recursive: true });
    mkdirSync(sessionDir, { recursive: true });
    const source = path.join(PROJECT_ROOT, "docs", "examples");
    for (const name of readdirSync(source)) writeFileSync(path.join(examplesDir, name), substitute(readFileSync(path.join(source, name), "utf8")));
  });

  afterAll(async () => {
    await session?.close();
    if (service) await stopGroup(service, 30_000);
    // Whatever a failed step left on the shared servers.
    await dropTenantLeftovers([tenantId]).catch(() => undefined);
    await dropLocalLeftovers("preview", [`${repoName}-pr-1`]).catch(() => undefined);
    await deleteRedisPrefix(prefix).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it("runs every step and shows what the README shows", async () => {
    const blocks = walkthroughBlocks(readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8"));
    const [first, ...commands] = blocks;
    if (!first || first.role !== "service") throw new Error("the walkthrough must start the service first");
    const outDir = process.env.STACKRAIL_WALKTHROUGH_OUT;
    if (outDir) mkdirSync(outDir, { recursive: true });

    // The first terminal: the service, as the walkthrough starts it, on this run's port and data.
    const log = openSync(serviceLog, "a");
    service = spawn("bash", ["--norc", "--noprofile", "-c", substitute(first.code)], {
      cwd: PROJECT_ROOT,
      env: {
        ...newcomerEnv(),
        PORT: String(port),
        HOST: "127.0.0.1",
        STACKRAIL_DATA_DIR: dataDir,
        STACKRAIL_QUEUE_PREFIX: prefix,
        // A scheduled drift check could land in the tenant's lane at a moment no step chose.
        STACKRAIL_DRIFT_INTERVAL_S: "0",
        LOG_LEVEL: "warn",
      },
      detached: true,
      stdio: ["ignore", log, log],
    });
    closeSync(log);

    // The second terminal.
    session = new Session(PROJECT_ROOT, newcomerEnv(), sessionDir);
    const took: string[] = [];
    for (const [i, block] of commands.entries()) {
      const where = `README.md:${block.line}`;
      if (service.exitCode !== null) throw new Error(`the service exited (${service.exitCode}) before ${where}:\n${serviceLogTail()}`);
      const started = Date.now();
      const result = await session.run(substitute(block.code), 150_000);
      took.push(`:${block.line} ${Math.round((Date.now() - started) / 1000)}s`);
      if (outDir) writeFileSync(path.join(outDir, `${String(i + 1).padStart(2, "0")}-line-${block.line}.txt`), unsubstitute(result.output));
      const context = `${where}\n$ ${block.code}\n--- printed (exit ${result.exit}) ---\n${result.output.slice(-6000)}\n--- service log ---\n${serviceLogTail()}`;
      expect(result.exit, `exit code of ${context}`).toBe(block.exit);
      if (block.exit === 0) expect(result.failed, `commands that failed in ${context}`).toEqual([]);
      expect(missingLines(block.expected.map(substitute), result.output), `lines the README shows that were not printed by ${context}`).toEqual([]);
    }
    // Where the time went, when the walkthrough gets slow.
    console.info(`README walkthrough steps (README.md line, time): ${took.join(", ")}`);
  }, 300_000);
});
