// STACKRAIL_DEPLOY_PATHS (issue 15 §2): picomatch globs with GitHub's `paths` filter rules. The
// first table is the "Patterns to match file paths" cheat sheet of GitHub Actions' workflow syntax
// reference (github/docs, content/actions/.../workflow-syntax-for-github-actions.md), row by row:
// the pattern(s), the example matches GitHub lists, and the paths it says do not match. The one
// row where glob and GitHub's dialect disagree (`*.jsx?`) is kept, with the glob answer and why.
import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.ts";
import { DEFAULT_DEPLOY_PATHS, parseDeployPaths, splitDeployPaths } from "./deploy-paths.ts";
import { ConfigError } from "./errors.ts";

interface Row {
  patterns: string[];
  matches: string[];
  misses?: string[];
  /** Set where our answer differs from GitHub's documented one on purpose. */
  divergence?: string;
}

const GITHUB_CHEAT_SHEET: Row[] = [
  { patterns: ["*"], matches: ["README.md", "server.rb"], misses: ["docs/README.md"] },
  {
    patterns: ["*.jsx?"],
    // GitHub: `?` is "zero or one of the preceding character", so `page.js` and `page.jsx` match.
    // Here `?` is glob's one character (issue 15 asks for it); GitHub's row is `*.{js,jsx}` below.
    matches: ["page.jsxm"],
    misses: ["page.js", "page.jsx"],
    divergence: "glob `?` is exactly one character",
  },
  { patterns: ["*.{js,jsx}"], matches: ["page.js", "page.jsx"], misses: ["src/page.js", "page.jsxm"] },
  { patterns: ["**"], matches: ["all/the/files.md", "README.md", ".github/workflows/ci.yml"] },
  { patterns: ["*.js"], matches: ["app.js", "index.js"], misses: ["js/index.js", "app.json"] },
  { patterns: ["**.js"], matches: ["index.js", "js/index.js", "src/js/app.js"], misses: ["index.jsx"] },
  { patterns: ["docs/*"], matches: ["docs/README.md", "docs/file.txt"], misses: ["docs/mona/octocat.txt", "README.md"] },
  { patterns: ["docs/**"], matches: ["docs/README.md", "docs/mona/octocat.txt"], misses: ["src/docs/README.md", "docsy/a.md"] },
  { patterns: ["docs/**/*.md"], matches: ["docs/README.md", "docs/mona/hello-world.md", "docs/a/markdown/file.md"], misses: ["docs/a/file.txt"] },
  { patterns: ["**/docs/**"], matches: ["docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"], misses: ["dir/mydocs/a.md"] },
  { patterns: ["**/README.md"], matches: ["README.md", "js/README.md"], misses: ["js/README.mdx"] },
  { patterns: ["**/*src/**"], matches: ["a/src/app.js", "my-src/code/js/app.js"], misses: ["source/app.js"] },
  { patterns: ["**/*-post.md"], matches: ["my-post.md", "path/their-post.md"], misses: ["post.md"] },
  { patterns: ["**/migrate-*.sql"], matches: ["migrate-10909.sql", "db/migrate-v1.0.sql", "db/sept/migrate-v1.sql"], misses: ["db/migrate.sql"] },
  { patterns: ["*.md", "!README.md"], matches: ["hello.md"], misses: ["README.md", "docs/hello.md"] },
  { patterns: ["*.md", "!README.md", "README*"], matches: ["hello.md", "README.md", "README.doc"], misses: ["docs/hello.md"] },
];

/** The special characters GitHub's list describes, where they mean the same in glob. */
const GITHUB_SPECIAL_CHARACTERS: Row[] = [
  { patterns: ["Octo*"], matches: ["Octocat"], misses: ["Octo/cat"] },
  { patterns: ["[CB]at"], matches: ["Cat", "Bat"], misses: ["Rat"] },
  { patterns: ["[1-2]00"], matches: ["100", "200"], misses: ["300"] },
  { patterns: ["[0-9a-z]"], matches: ["7", "q"], misses: ["Q", "-"] },
];

/** This installation's own forms: prefixes, the default list, `?`, braces, exclusions. */
const STACKRAIL_FORMS: Row[] = [
  { patterns: ["charts/"], matches: ["charts", "charts/app/values.yaml"], misses: ["charts-old/values.yaml", "src/charts/x"] },
  { patterns: ["charts"], matches: ["charts/app/Chart.yaml"], misses: ["chartsy"] },
  { patterns: ["Dockerfile"], matches: ["Dockerfile"], misses: ["Dockerfile.dev", "app/Dockerfile"] },
  { patterns: ["Octoc?t"], matches: ["Octocat", "Octocut"], misses: ["Octoct", "Octoc/t"] },
  { patterns: ["src/{api,web}/**"], matches: ["src/api/a.ts", "src/web/b/c.ts"], misses: ["src/cli/a.ts"] },
  { patterns: ["src/**", "!src/**/*.test.ts", "!src/docs/"], matches: ["src/a.ts", "src/.env"], misses: ["src/a.test.ts", "src/x/b.test.ts", "src/docs/a.ts"] },
  { patterns: ["**", "!docs/**", "docs/api.yaml"], matches: ["src/a.ts", "docs/api.yaml"], misses: ["docs/guide.md"] },
];

describe("deploy path patterns", () => {
  const cases = (rows: Row[]) =>
    rows.flatMap((r) => [
      ...r.matches.map((file) => ({ patterns: r.patterns, file, expected: true, note: r.divergence ?? "" })),
      ...(r.misses ?? []).map((file) => ({ patterns: r.patterns, file, expected: false, note: r.divergence ?? "" })),
    ]);

  it.each(cases(GITHUB_CHEAT_SHEET))("GitHub cheat sheet: $patterns on $file is $expected $note", ({ patterns, file, expected }) => {
    expect(parseDeployPaths(patterns.join(",")).matches(file)).toBe(expected);
  });

  it.each(cases(GITHUB_SPECIAL_CHARACTERS))("GitHub special characters: $patterns on $file is $expected", ({ patterns, file, expected }) => {
    expect(parseDeployPaths(patterns.join(",")).matches(file)).toBe(expected);
  });

  it.each(cases(STACKRAIL_FORMS))("Stackrail forms: $patterns on $file is $expected", ({ patterns, file, expected }) => {
    expect(parseDeployPaths(patterns.join(",")).matches(file)).toBe(expected);
  });

  it("keeps the default list's meaning", () => {
    const d = parseDeployPaths(DEFAULT_DEPLOY_PATHS);
    for (const f of ["src/index.ts", "app/main.py", "Dockerfile", "package.json", "charts/app/values.yaml"]) expect(d.matches(f), f).toBe(true);
    for (const f of ["README.md", "docs/a.md", "test/a.test.ts", "apps/x", "package-lock.json"]) expect(d.matches(f), f).toBe(false);
  });

  it("an empty list matches nothing", () => {
    expect(parseDeployPaths("").matches("src/a.ts")).toBe(false);
    expect(parseDeployPaths(" , ").patterns).toEqual([]);
  });
});

describe("splitting STACKRAIL_DEPLOY_PATHS", () => {
  it.each([
    ["src/**, charts/ ,Dockerfile", ["src/**", "charts/", "Dockerfile"]],
    ["src/{api,web}/**,Dockerfile", ["src/{api,web}/**", "Dockerfile"]],
    ["a/{b,{c,d}}/*,e", ["a/{b,{c,d}}/*", "e"]],
    ["[,]x,y", ["[,]x", "y"]],
    ["odd\\,name,y", ["odd,name", "y"]],
  ])("%j", (raw, expected) => {
    expect(splitDeployPaths(raw)).toEqual(expected);
  });
});

describe("configuration", () => {
  const base = { PULUMI_CONFIG_PASSPHRASE: "config-test-passphrase", STACKRAIL_DATA_DIR: "/tmp/stackrail-config-test" };
  const refusal = (value: string): ConfigError => {
    try {
      loadConfig({ ...base, STACKRAIL_DEPLOY_PATHS: value }, "/tmp");
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error(`no ConfigError for ${value}`);
  };

  it("compiles the patterns once at start-up", () => {
    const c = loadConfig({ ...base, STACKRAIL_DEPLOY_PATHS: "src/{api,web}/**,!**/*.md" }, "/tmp");
    expect(c.deployPaths.patterns).toEqual(["src/{api,web}/**", "!**/*.md"]);
    expect(c.deployPaths.matches("src/api/x.ts")).toBe(true);
    expect(c.deployPaths.matches("src/api/x.md")).toBe(false);
    expect(loadConfig(base, "/tmp").deployPaths.patterns).toEqual(DEFAULT_DEPLOY_PATHS.split(","));
  });

  it.each([
    ["src/[ab", /pattern #1 "src\/\[ab": Missing closing: "\]"/],
    ["src/**,app/{a,b", /pattern #2 "app\/\{a,b": Missing closing: "\}"/],
    ["src/@(a|b", /Missing closing: "\)"/],
    ["src/**,!", /"!" needs a pattern to exclude/],
    ["src/**,!!x", /only one leading "!"/],
    ["/charts/**", /relative to the repository root \(write "charts\/\*\*"\)/],
    ["./src/**", /relative to the repository root \(write "src\/\*\*"\)/],
    ["!docs/**", /only exclusions; list what to include first \(e\.g\. "\*\*,!docs\/\*\*"\)/],
  ])("refuses %j with a message naming the variable", (value, message) => {
    const err = refusal(value);
    expect(err.variable).toBe("STACKRAIL_DEPLOY_PATHS");
    expect(err.message).toMatch(/^STACKRAIL_DEPLOY_PATHS: /);
    expect(err.message).toMatch(message);
  });
});
