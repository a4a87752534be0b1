// Seeds N tenants for the scale benchmark's release, directly where the product keeps them and
// without provisioning them: their files (tenants/<id>/tenant.yaml, application.yaml,
// appproject.yaml, rendered by the product's own renderTenantFiles from the recorded `up`'s
// outputs) in ONE commit on the GitOps repository, built with `git fast-import` (the writer's
// commit runs a `git hash-object` per file, minutes for 30,000 files), and their records in the
// tenant index (TenantIndex.rebuild + recordOutputs, as the API's start-up and the worker do).
import { spawn } from "node:child_process";
import type { Redis } from "ioredis";
import type { Config } from "../core/config.ts";
import type { Region } from "../core/ids.ts";
import { TenantIndex, type TenantDesired } from "../core/tenant-index.ts";
import { git } from "../worker/gitops/git.ts";
import { renderTenantFiles } from "../worker/gitops/manifests.ts";
import { gitopsSettings, infraFromOutputs, publicOutputs } from "../worker/handlers/tenant-support.ts";
import { substitute, TENANT_PLACEHOLDER, type Recording } from "./scale-record.ts";

/** Tenants by region: one in ten in eu-west-1 (the default first wave, development), the others split between eu-central-1 and us-east-1. */
export function seedRegion(i: number): Region {
  if (i % 10 === 0) return "eu-west-1";
  return i % 2 === 1 ? "eu-central-1" : "us-east-1";
}

function fastImport(gitDir: string, stream: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["--git-dir", gitDir, "fast-import", "--quiet"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`git fast-import exited ${code}: ${stderr}`))));
    child.stdin.end(stream);
  });
}

export interface Seeded {
  readonly tenants: readonly TenantDesired[];
  readonly commit: string;
  readonly files: number;
  readonly ms: number;
}

/**
 * Writes the tenants' files in one commit on `branch` of the bare repository `gitDir` (which the
 * writer has initialised), then their records. `ids[i]` gets region seedRegion(i), tier pool.
 */
export async function seedTenants(options: {
  readonly config: Config;
  readonly redis: Redis;
  readonly gitDir: string;
  readonly branch?: string;
  readonly ids: readonly string[];
  readonly version: string;
  readonly recording: Recording;
}): Promise<Seeded> {
  const t0 = performance.now();
  const branch = options.branch ?? "main";
  const parent = (await git(["rev-parse", `refs/heads/${branch}`], { gitDir: options.gitDir })).trim();
  const settings = gitopsSettings(options.config);
  const tenants: TenantDesired[] = options.ids.map((id, i) => ({ id, region: seedRegion(i), tier: "pool", version: options.version }));
  const outputsOf = (id: string): Record<string, unknown> => publicOutputs(substitute(options.recording.up.outputs, TENANT_PLACEHOLDER, id));
  const chunks: Buffer[] = [];
  const message = `Seed ${tenants.length} tenants at ${options.version} (bench/scale.ts)\n`;
  const when = Math.floor(Date.now() / 1000);
  chunks.push(
    Buffer.from(
      `commit refs/heads/${branch}\ncommitter Stackrail bench <bench@stackrail.invalid> ${when} +0000\ndata ${Buffer.byteLength(message)}\n${message}from ${parent}\n`,
    ),
  );
  let files = 0;
  for (const t of tenants) {
    for (const [file, text] of Object.entries(renderTenantFiles(t, infraFromOutputs(outputsOf(t.id), `tenant-${t.id}`), settings))) {
      chunks.push(Buffer.from(`M 100644 inline ${file}\ndata ${Buffer.byteLength(text)}\n${text}\n`));
      files += 1;
    }
  }
  chunks.push(Buffer.from("done\n"));
  await fastImport(options.gitDir, Buffer.concat(chunks));
  const commit = (await git(["rev-parse", `refs/heads/${branch}`], { gitDir: options.gitDir })).trim();

  const index = new TenantIndex(options.redis, options.config.queuePrefix);
  await index.rebuild(tenants);
  const width = 64;
  for (let i = 0; i < tenants.length; i += width) {
    await Promise.all(tenants.slice(i, i + width).map((t) => index.recordOutputs(t.id, outputsOf(t.id), { version: t.version })));
  }
  return { tenants, commit, files, ms: performance.now() - t0 };
}
