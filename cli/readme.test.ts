// How the README says to run the CLI, run as written. `npx stackrail` fails inside the repository
// (npx installs the project into its cache, its postinstall runs, strict-allow-scripts refuses),
// and the Node the docs named (node_modules/node/bin/node) did not exist: the section's set-up is
// run in a plain bash, then `stackrail` from another directory, as an operator would.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../core/engine.ts";

const readme = readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8");
const cliReadme = readFileSync(path.join(PROJECT_ROOT, "cli", "README.md"), "utf8");
const version = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string }).version;
const elsewhere = mkdtempSync(path.join(tmpdir(), "stackrail-cli-readme-"));

afterAll(() => rmSync(elsewhere, { recursive: true, force: true }));

/** The README's `## CLI` section, up to the next `## ` heading. */
function cliSection(): string {
  const start = readme.indexOf("\n## CLI\n");
  expect(start, "README.md has a `## CLI` section").toBeGreaterThanOrEqual(0);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

function shBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? "");
}

describe("running the CLI as the README says", () => {
  it("names only Node paths that exist, and no npx in what it gives to run", () => {
    for (const [name, text] of [
      ["README.md ## CLI", cliSection()],
      ["cli/README.md", cliReadme],
    ] as const) {
      const paths = [...text.matchAll(/node_modules\/[\w.@/-]*[\w@]/g)].map((m) => m[0]);
      expect(paths.length, `${name} says which Node runs the CLI`).toBeGreaterThan(0);
      for (const p of paths) expect(existsSync(path.join(PROJECT_ROOT, p)), `${name}: ${p} exists`).toBe(true);
      for (const block of shBlocks(text)) expect(block, `${name}: a command to run`).not.toMatch(/\bnpx\b/);
    }
    // The one-line set-up is the same in both.
    const alias = /alias stackrail="[^"]+"/.exec(cliReadme)?.[0];
    expect(alias).toBeDefined();
    expect(shBlocks(cliSection())[0]).toContain(alias);
  });

  it("its set-up, pasted into a shell in the repository's root, gives a `stackrail` that works from anywhere", () => {
    const setup = shBlocks(cliSection())[0] ?? "";
    expect(setup).not.toMatch(/\bnpx\b/);
    // A newcomer's shell: none of this test's node_modules/.bin on the PATH.
    const PATH = (process.env.PATH ?? "")
      .split(path.delimiter)
      .filter((p) => !p.includes(`node_modules${path.sep}.bin`))
      .join(path.delimiter);
    const script = `shopt -s expand_aliases\n${setup}\ncd ${JSON.stringify(elsewhere)}\nstackrail version\nstackrail jobs show some-job --help\n`;
    const out = execFileSync("bash", ["--norc", "--noprofile", "-c", script], {
      cwd: PROJECT_ROOT,
      env: { PATH, HOME: process.env.HOME ?? elsewhere },
      encoding: "utf8",
    });
    expect(out.split("\n")[0]).toBe(version);
    expect(out).toContain("--through-approval");
  });
});
