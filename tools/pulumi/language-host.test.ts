// The bare Pulumi CLI running a `runtime: nodejs` project through Stackrail's own Node.js language
// host (tools/pulumi/cmd/pulumi-language-nodejs, installed next to the CLI by
// scripts/install-engine.ts). No Automation API: `pulumi up` / `stack output` / `destroy` on a
// Pulumi.yaml with a TypeScript program holding a dynamic resource, then a Node.js policy pack
// loaded through the host's RunPlugin, then a failing program.
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

const env: NodeJS.ProcessEnv = {
  ...process.env,
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

async function pulumi(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(engine.pulumi, args, {
      cwd: projectDir,
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

/** Runs the CLI and fails the test with its output when it does not succeed. */
async function pulumiOk(...args: string[]): Promise<string> {
  const r = await pulumi(...args);
  if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
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
  // Its own package.json, so @pulumi/pulumi's runner treats this folder (not the repository) as the package.
  writeFileSync(path.join(projectDir, "package.json"), JSON.stringify({ name: "lh-test", private: true, type: "module" }));
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
  await pulumiOk("login", `file://${path.join(dir, "state")}`);
  await pulumiOk("stack", "init", "dev");
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("bare CLI on a runtime: nodejs project through Stackrail's language host", () => {
  it("reports itself as the nodejs language plugin on Node 24", async () => {
    const about = await pulumiOk("about", "--json");
    const parsed = JSON.parse(about) as {
      plugins: { name: string; kind: string; version: string }[];
      runtime: { language: string; version: string; executable: string } | null;
    };
    expect(parsed.plugins).toContainEqual(expect.objectContaining({ name: "nodejs", kind: "language", version: engine.version }));
    expect(parsed.runtime?.language).toBe("nodejs");
    expect(parsed.runtime?.version).toMatch(/^24\./);
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

  it("fails the update when the program throws, with the program's own message", async () => {
    // A thrown string, not an Error: @pulumi/pulumi's runner formats any thrown Error with
    // util.inspect(err, { colors: true }), and on Node 24.9 that spins for 20-60 s (then throws and falls back) because
    // the source-mapped stack has frames like node_modules/@pulumi/resource.ts: nodejs/node#64011, fixed by
    // nodejs/node#64022. The outcome is the same, only slower; the string keeps this test fast.
    writeFileSync(path.join(projectDir, "index.ts"), program("hello", `throw "boom from the program";`));
    const failed = await pulumi("preview", "--stack", "dev", "--non-interactive");
    expect(failed.code).not.toBe(0);
    expect(failed.stdout + failed.stderr).toContain("boom from the program");
    // The SDK already reported it (exit code 32 -> bail): no second, generic message from the host.
    expect(failed.stdout + failed.stderr).not.toContain("non-zero exit code");

    writeFileSync(path.join(projectDir, "index.ts"), program("hello", "process.exitCode = 3;"));
    const exited = await pulumi("preview", "--stack", "dev", "--non-interactive");
    expect(exited.code).not.toBe(0);
    expect(exited.stdout + exited.stderr).toContain("Program exited with non-zero exit code: 3");
  });
});
