// The Dockerfile against the code it packages: the runtime stage must copy every file main.ts can
// load (a new top-level folder imported by the service and not copied would only show in a pod), run
// as a non-root user, probe /healthz, start main.ts with a role main.ts accepts, and build the engine
// with the project's own install step. A real image build is deploy/image/build-local.sh (buildah).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../core/engine.ts";

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly name: string;
  readonly from: string;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const joined = text.replace(/\\\r?\n/g, " ");
  const stages: Stage[] = [];
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [op = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (op.toUpperCase() === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: m?.[1] ?? args, name: m?.[2] ?? String(stages.length), instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

const stages = parseDockerfile(readFileSync(path.join(PROJECT_ROOT, "Dockerfile"), "utf8"));
const runtime = stages.at(-1);
const all = (stage: Stage | undefined, op: string): string[] => stage?.instructions.filter((i) => i.op === op).map((i) => i.args) ?? [];

/** Every project file reachable by relative imports from the entry points (static and dynamic). */
function importClosure(entries: string[]): Set<string> {
  const seen = new Set<string>();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop();
    if (!file || seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(path.join(PROJECT_ROOT, file), "utf8");
    for (const m of source.matchAll(/(?:from\s+|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g)) {
      const target = path.normalize(path.join(path.dirname(file), m[1] ?? ""));
      if (existsSync(path.join(PROJECT_ROOT, target))) queue.push(target);
    }
  }
  return seen;
}

describe("Dockerfile", () => {
  it("is multi-stage with a Go stage that runs the project's own engine install", () => {
    expect(stages.map((s) => s.name)).toEqual(["deps", "engine", "validators", "prod", "runtime"]);
    const engine = stages.find((s) => s.name === "engine");
    expect(engine?.from).toBe("${GO_IMAGE}");
    expect(all(engine, "RUN").join("\n")).toContain("scripts/install-engine.ts");
    expect(all(runtime, "COPY")).toContain("--from=engine /src/.engine .engine");
  });

  it("runs as a non-root user with a health check on /healthz and main.ts --role as the command", () => {
    expect(all(runtime, "USER")).toEqual(["10001:10001"]);
    expect(all(runtime, "HEALTHCHECK")[0]).toContain("/healthz");
    expect(JSON.parse(all(runtime, "ENTRYPOINT")[0] ?? "[]")).toEqual(["/usr/bin/tini", "--", "node", "main.ts"]);
    const cmd = JSON.parse(all(runtime, "CMD")[0] ?? "[]") as string[];
    expect(cmd[0]).toBe("--role");
    // The roles main.ts accepts.
    expect(readFileSync(path.join(PROJECT_ROOT, "main.ts"), "utf8")).toContain(`role !== "${cmd[1]}"`);
  });

  it("copies every file the service can load into the runtime image, and nothing .dockerignore drops", () => {
    const copied = all(runtime, "COPY")
      .filter((a) => !a.startsWith("--from"))
      .flatMap((a) => a.split(/\s+/).slice(0, -1));
    const ignored = readFileSync(path.join(PROJECT_ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    for (const source of copied) {
      expect(existsSync(path.join(PROJECT_ROOT, source)), source).toBe(true);
      expect(ignored, source).not.toContain(source);
    }
    const entries = ["main.ts", "cli/main.ts", "worker/pulumi-child.ts", "programs/cli-entry.ts"].filter((f) => existsSync(path.join(PROJECT_ROOT, f)));
    const missing = [...importClosure(entries)].filter((file) => !copied.some((c) => file === c || file.startsWith(`${c}/`)));
    expect(missing).toEqual([]);
    // Read (not imported) at run time: core/engine.ts takes the engine version from it.
    expect(copied).toContain("tools/pulumi/go.mod");
  });

  it("names no registry host: registries come from build arguments", () => {
    const text = readFileSync(path.join(PROJECT_ROOT, "Dockerfile"), "utf8");
    expect(text).not.toMatch(/proxy\.golang\.org|registry\.npmjs\.org|goproxy\.|npmmirror/);
    expect(all(stages[0], "ARG")).toContain("NPM_CONFIG_REGISTRY");
    expect(all(stages[1], "ARG")).toContain("GOPROXY");
  });
});
