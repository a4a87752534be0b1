// Deploy path filters (STACKRAIL_DEPLOY_PATHS): which changed files of a push to the default
// branch start a rollout. Globs are picomatch's, with the rules of GitHub Actions' `paths` filter
// where the two agree: patterns are matched against the whole path from the repository's root, in
// order, and a pattern starting with `!` excludes what earlier patterns included (a later positive
// pattern includes it again). A pattern without glob syntax (`charts/`, `Dockerfile`) is a prefix:
// the path itself and everything below it, as it always was here.
//
// Where GitHub's dialect differs, picomatch's glob meaning applies: `?` is one character (GitHub:
// zero or one of the preceding character; write `*.{js,jsx}` for GitHub's `*.jsx?`), `{a,b}` and
// `[...]` are globs, and `+` is literal. core/deploy-paths.test.ts holds GitHub's own examples.
//
// Here, not in webhooks/, because configuration validates the patterns at start-up (a bad one stops
// the process naming the variable) and the edge matches with what configuration compiled.
import picomatch from "picomatch";
import { ConfigError } from "./errors.ts";

/** The compiled filter: what configuration holds and the webhook routing asks. */
export interface DeployPaths {
  /** The patterns as configured, in order (exclusions with their `!`). */
  readonly patterns: readonly string[];
  /** Whether a change to `file` (a repository path such as `src/app.ts`) starts a rollout. */
  matches(file: string): boolean;
}

export const DEPLOY_PATHS_VARIABLE = "STACKRAIL_DEPLOY_PATHS";
export const DEFAULT_DEPLOY_PATHS = "src/**,app/**,Dockerfile,package.json,charts/**";

// dot: a change to `src/.env` or `.github/...` is a change like any other (GitHub matches them too).
// windows: false: repository paths always use `/`, on every platform this runs on.
// strictBrackets: an unclosed `[`, `{` or `(` is a configuration error instead of a literal character.
const GLOB_OPTIONS: picomatch.PicomatchOptions = { dot: true, windows: false, strictBrackets: true };

interface Rule {
  readonly exclude: boolean;
  readonly test: (file: string) => boolean;
}

/**
 * Splits the variable on commas outside `{...}` and `[...]`, so `src/{api,web}/**` stays one
 * pattern; `\` escapes the next character (a literal comma is `\,`).
 */
export function splitDeployPaths(raw: string): string[] {
  const out: string[] = [];
  let current = "";
  let braces = 0;
  let bracket = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c === "\\" && i + 1 < raw.length) {
      const next = raw[i + 1] as string;
      // `\,` is a comma in the pattern; other escapes are picomatch's and stay as written.
      current += next === "," ? "," : c + next;
      i++;
      continue;
    }
    if (bracket) {
      if (c === "]") bracket = false;
    } else if (c === "[") bracket = true;
    else if (c === "{") braces++;
    else if (c === "}" && braces > 0) braces--;
    else if (c === "," && braces === 0) {
      out.push(current);
      current = "";
      continue;
    }
    current += c;
  }
  out.push(current);
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

function compile(pattern: string, index: number, variable: string): Rule {
  const where = `pattern #${index + 1} ${JSON.stringify(pattern)}`;
  const exclude = pattern.startsWith("!");
  const body = exclude ? pattern.slice(1) : pattern;
  if (body.length === 0) throw new ConfigError(variable, `${where}: "!" needs a pattern to exclude`);
  if (body.startsWith("!")) throw new ConfigError(variable, `${where}: only one leading "!" (exclude) is allowed`);
  if (body.startsWith("/") || body.startsWith("./")) {
    throw new ConfigError(variable, `${where}: paths are relative to the repository root (write "${body.replace(/^\.?\/+/, "")}")`);
  }
  // No glob syntax: a file or a directory, matched with everything below it.
  const globs = picomatch.scan(body).isGlob ? [body] : [body.replace(/\/+$/, ""), `${body.replace(/\/+$/, "")}/**`];
  try {
    const test = picomatch(globs, GLOB_OPTIONS);
    return { exclude, test: (file) => test(file) };
  } catch (err) {
    throw new ConfigError(variable, `${where}: ${(err as Error).message}`);
  }
}

/**
 * Parses and compiles the variable's patterns; throws ConfigError naming the variable for a pattern
 * that cannot be used. An empty list matches nothing (pushes never start a rollout; releases do).
 */
export function parseDeployPaths(raw: string, variable = DEPLOY_PATHS_VARIABLE): DeployPaths {
  const patterns = splitDeployPaths(raw);
  const rules = patterns.map((p, i) => compile(p, i, variable));
  if (rules.length > 0 && rules.every((r) => r.exclude)) {
    // GitHub's `paths` includes nothing without a positive pattern either; say so instead of never deploying.
    throw new ConfigError(variable, `has only exclusions; list what to include first (e.g. "**,${patterns.join(",")}")`);
  }
  return {
    patterns,
    matches(file: string): boolean {
      // In order: the last pattern that matches decides (an exclusion, or a later re-inclusion).
      let included = false;
      for (const rule of rules) if (rule.exclude === included && rule.test(file)) included = !rule.exclude;
      return included;
    },
  };
}
