// The bare Pulumi CLI running a `runtime: nodejs` project through Stackrail's own Node.js language
// host (tools/pulumi/cmd/pulumi-language-nodejs, installed next to the CLI by
// scripts/install-engine.ts). No Automation API: `pulumi up` / `stack output` / `destroy` on a
// Pulumi.yaml with a TypeScript program holding a dynamic resource, a program that needs full
// TypeScript (enum, namespace), a Node.js policy pack loaded through the host's RunPlugin, a failing
// program, and `pulumi install` / `pulumi about` on a project with its own npm dependency.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, engineLocation } from "../../core/engine.ts";

const run = promisify(execFile);
const engine = engineLocation();
// Inside the repository (git-ignored) so the program's `@pulumi/pulumi` resolves to /work/main/node_modules.
const dir = path.join(PROJECT_ROOT, ".stackrail", `tmp-lh-${randomBytes(4).toString("hex")}`);
const projectDir = path.join(dir, "project");
const policyDir = path.join(dir, "policy");
// A project with a dependency of its own (a local package declaring a resource plugin), for install and about.
const installDir = path.join(dir, "installable");
const providerDir = path.join(dir, "lh-provider");

// Without the npm_* variables `npm test` exports, so the npm that `pulumi install` starts sees the
// test project's own configuration, as it would from an operator's shell.
const env: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith("npm_"))),
  npm_config_audit: "false",
  npm_config_fund: "false",
  npm_config_update_notifier: "false",
  PULUMI_CONFIG_PASSPHRASE: "x",
  PULUMI_HOME: path.join(dir, "home"),
  PULUMI_SKIP_UPDATE_CHECK: "true",
  PULUMI_DIY_BACKEND_GZIP: "false",
  PATH: [engine.binDir, path.dirname(engine.node), process.env.PATH].join(path.delimiter),
};

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function pulumiIn(cwd: string, args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(engine.pulumi, args, {
      cwd,
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === "number" ? e.code : -1,
      stdout: e.stdout ?? "",
      stderr: e.stderr ?? "",
    };
  }
}

const pulumi = (...args: string[]): Promise<CliResult> => pulumiIn(projectDir, args);

/** Runs the CLI and fails the test with its output when it does not succeed. */
async function pulumiOkIn(cwd: string, args: string[]): Promise<string> {
  const r = await pulumiIn(cwd, args);
  if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const pulumiOk = (...args: string[]): Promise<string> => pulumiOkIn(projectDir, args);

interface About {
  plugins: { name: string; kind: string; version: string | null }[] | null;
  runtime: { language: string; version: string; executable: string } | null;
  dependencies: { name: string; version: string }[] | null;
}

const program = (greeting: string, extra = ""): string => `import * as pulumi from "@pulumi/pulumi";

const provider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: { greeting: string }) {
    return { id: "lh-1", outs: { greeting: inputs.greeting, message: inputs.greeting + " from the language host" } };
  },
};

class Greeting extends pulumi.dynamic.Resource {
  declare readonly message: pulumi.Output<string>;
  constructor(name: string, greeting: string) {
    super(provider, name, { greeting, message: undefined }, {});
  }
}

const greeting = new Greeting("greeting", ${JSON.stringify(greeting)});
export const message = greeting.message;
export const who = new pulumi.Config().require("who");
export const secretLength = new pulumi.Config().requireSecret("token").apply((t) => t.length);
${extra}
`;

beforeAll(async () => {
  expect(existsSync(path.join(engine.binDir, "pulumi-language-nodejs")), "run node scripts/install-engine.ts first").toBe(true);
  mkdirSync(path.join(dir, "state"), { recursive: true });
  mkdirSync(path.join(dir, "home"), { recursive: true });
  mkdirSync(projectDir, { recursive: true });
  mkdirSync(policyDir, { recursive: true });
  writeFileSync(path.join(projectDir, "Pulumi.yaml"), "name: lh-test\nruntime: nodejs\nmain: index.ts\n");
  // Its own package.json, so @pulumi/pulumi's runner treats this folder (not the repository) as the package;
  // the dependency resolves to the repository's node_modules, as Node resolves it.
  writeFileSync(
    path.join(projectDir, "package.json"),
    JSON.stringify({ name: "lh-test", private: true, type: "module", dependencies: { "@pulumi/pulumi": `^${engine.version}` } }),
  );
  writeFileSync(path.join(projectDir, "index.ts"), program("hello"));

  writeFileSync(path.join(policyDir, "PulumiPolicy.yaml"), "runtime: nodejs\n");
  writeFileSync(
    path.join(policyDir, "package.json"),
    JSON.stringify({
      name: "lh-policy",
      version: "0.0.1",
      private: true,
      type: "commonjs",
      main: "index.js",
    }),
  );
  writeFileSync(
    path.join(policyDir, "index.js"),
    `const { PolicyPack } = require("@pulumi/policy");
new PolicyPack("lh-policy", {
  policies: [{
    name: "no-shouting",
    description: "greetings are not shouted",
    enforcementLevel: "mandatory",
    validateResource: (args, reportViolation) => {
      const g = args.props.greeting;
      if (args.type === "pulumi-nodejs:dynamic:Resource" && typeof g === "string" && g === g.toUpperCase()) {
        reportViolation("greeting is shouted: " + g);
      }
    },
  }],
});
`,
  );
  mkdirSync(installDir, { recursive: true });
  mkdirSync(providerDir, { recursive: true });
  writeFileSync(path.join(installDir, "Pulumi.yaml"), "name: lh-install\nruntime: nodejs\nmain: index.ts\n");
  writeFileSync(path.join(installDir, "index.ts"), "export const ok = true;\n");
  writeFileSync(
    path.join(installDir, "package.json"),
    JSON.stringify({ name: "lh-install", private: true, type: "module", dependencies: { "lh-provider": "file:../lh-provider" } }),
  );
  writeFileSync(path.join(providerDir, "package.json"), JSON.stringify({ name: "lh-provider", version: "0.3.0" }));
  // How a Pulumi package tells the engine which resource plugin its resources need.
  writeFileSync(path.join(providerDir, "pulumi-plugin.json"), JSON.stringify({ resource: true, name: "lhtest", version: "1.2.3" }));
  // The plugin itself, installed beforehand so `pulumi install` finds it present rather than downloading it.
  const pluginFile = path.join(dir, "pulumi-resource-lhtest");
  writeFileSync(pluginFile, "#!/bin/sh\nexit 1\n", { mode: 0o755 });

  await pulumiOk("login", `file://${path.join(dir, "state")}`);
  await pulumiOk("stack", "init", "dev");
  await pulumiOk("plugin", "install", "resource", "lhtest", "1.2.3", "--file", pluginFile);
  await pulumiOkIn(installDir, ["stack", "init", "dev"]);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("bare CLI on a runtime: nodejs project through Stackrail's language host", () => {
  it("reports itself as the nodejs language plugin on Node 24", async () => {
    const about = await pulumiOk("about", "--json");
    const parsed = JSON.parse(about) as About;
    expect(parsed.plugins).toContainEqual(expect.objectContaining({ name: "nodejs", kind: "language", version: engine.version }));
    expect(parsed.runtime?.language).toBe("nodejs");
    expect(parsed.runtime?.version).toMatch(/^24\./);
    // The program's package.json dependency, at the version installed for it.
    expect(parsed.dependencies).toEqual([{ name: "@pulumi/pulumi", version: engine.version }]);
  });

  it("runs a program that needs full TypeScript (an enum, a namespace), not only type stripping", async () => {
    const extra = `enum Shade { Loud = "LOUD", Quiet = "quiet" }
namespace Words { export const suffix = "!"; }
class Tone { constructor(readonly shade: Shade) {} }
export const shade = new Tone(Shade.Quiet).shade + Words.suffix;`;
    await pulumiOk("config", "set", "--stack", "dev", "who", "tester");
    await pulumiOk("config", "set", "--stack", "dev", "--secret", "token", "s3cret");
    writeFileSync(path.join(projectDir, "index.ts"), program("hello", extra));
    const up = await pulumi("up", "--yes", "--stack", "dev", "--non-interactive");
    writeFileSync(path.join(projectDir, "index.ts"), program("hello"));
    expect(up.code, up.stdout + up.stderr).toBe(0);
    expect(up.stdout + up.stderr).not.toContain("ExperimentalWarning");
    expect(await pulumiOk("stack", "output", "shade", "--stack", "dev")).toBe("quiet!\n");
  });

  it("runs up, reads the outputs, runs a policy pack and destroys", async () => {
    await pulumiOk("config", "set", "--stack", "dev", "who", "tester");
    await pulumiOk("config", "set", "--stack", "dev", "--secret", "token", "s3cret");

    await pulumiOk("up", "--yes", "--stack", "dev", "--non-interactive");
    const outputs = JSON.parse(await pulumiOk("stack", "output", "--json", "--show-secrets", "--stack", "dev")) as Record<string, unknown>;
    expect(outputs).toEqual({
      message: "hello from the language host",
      who: "tester",
      secretLength: 6,
    });

    // A policy pack runs through the language host's RunPlugin: passes on the current program...
    const pass = await pulumi("preview", "--stack", "dev", "--non-interactive", "--policy-pack", policyDir);
    expect(pass.code, pass.stdout + pass.stderr).toBe(0);
    expect(pass.stdout).toContain("lh-policy@v0.0.1");
    // ...and blocks a program that violates it.
    writeFileSync(path.join(projectDir, "index.ts"), program("HELLO"));
    const blocked = await pulumi("preview", "--stack", "dev", "--non-interactive", "--policy-pack", policyDir);
    expect(blocked.code).not.toBe(0);
    expect(blocked.stdout).toContain("greeting is shouted: HELLO");
    writeFileSync(path.join(projectDir, "index.ts"), program("hello"));

    await pulumiOk("destroy", "--yes", "--stack", "dev", "--non-interactive");
    const after = JSON.parse(await pulumiOk("stack", "--stack", "dev", "export")) as {
      deployment: { resources?: unknown[] };
    };
    expect(after.deployment.resources ?? []).toEqual([]);
  });

  it("pulumi install runs npm in the program directory; about reports its plugins and locked dependencies", async () => {
    // No lockfile yet: `npm install`, which writes one.
    const first = await pulumiIn(installDir, ["install"]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toContain(`Installing dependencies with \`npm install\` in ${installDir}`);
    expect(existsSync(path.join(installDir, "node_modules/lh-provider/pulumi-plugin.json"))).toBe(true);
    expect(existsSync(path.join(installDir, "package-lock.json"))).toBe(true);

    const about = JSON.parse(await pulumiOkIn(installDir, ["about", "--json"])) as About;
    expect(about.dependencies).toEqual([{ name: "lh-provider", version: "0.3.0" }]);
    expect(about.plugins).toContainEqual({ name: "lhtest", kind: "resource", version: "1.2.3" });

    // With the lockfile: `npm ci`, exactly what it pins.
    const second = await pulumiIn(installDir, ["install"]);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toContain(`Installing dependencies with \`npm ci\` in ${installDir}`);
    expect(existsSync(path.join(installDir, "node_modules/lh-provider/package.json"))).toBe(true);

    // Another package manager is refused in so many words, not skipped.
    writeFileSync(path.join(installDir, "Pulumi.yaml"), "name: lh-install\nruntime:\n  name: nodejs\n  options:\n    packagemanager: yarn\nmain: index.ts\n");
    const yarn = await pulumiIn(installDir, ["install"]);
    expect(yarn.code).not.toBe(0);
    expect(yarn.stdout + yarn.stderr).toContain("installs dependencies with npm only");
  });

  it("fails the update when the program throws, with the program's own message", async () => {
    // @pulumi/pulumi's runner formats a thrown Error with util.inspect(err, { colors: true }). On Node 24.9
    // that spun for 20-60 s because the source-mapped stack has frames like node_modules/@pulumi/resource.ts
    // (nodejs/node#64011, fixed by nodejs/node#64022); on 24.21.0 the whole preview takes seconds.
    writeFileSync(path.join(projectDir, "index.ts"), program("hello", `throw new Error("boom from the program");`));
    const failed = await pulumi("preview", "--stack", "dev", "--non-interactive");
    expect(failed.code).not.toBe(0);
    expect(failed.stdout + failed.stderr).toContain("Error: boom from the program");
    // The source-mapped frame points at the program's own line, under full TypeScript too.
    expect(failed.stdout + failed.stderr).toMatch(/index\.ts:\d+:\d+/);
    // The SDK already reported it (exit code 32 -> bail): no second, generic message from the host.
    expect(failed.stdout + failed.stderr).not.toContain("non-zero exit code");

    writeFileSync(path.join(projectDir, "index.ts"), program("hello", "process.exitCode = 3;"));
    const exited = await pulumi("preview", "--stack", "dev", "--non-interactive");
    expect(exited.code).not.toBe(0);
    expect(exited.stdout + exited.stderr).toContain("Program exited with non-zero exit code: 3");
  });
});
