import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../core/config.ts";
import { LocalGitWriter } from "../gitops/local-git-writer.ts";
import { GitHubWriter } from "../gitops/github-writer.ts";
import { githubWebUrl } from "../gitops/writer-factory.ts";
import { regionFiles } from "./tenant-support.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "stackrail-region-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config = () => loadConfig({ PULUMI_CONFIG_PASSPHRASE: "x", STACKRAIL_DATA_DIR: dir });
const commit = (writer: LocalGitWriter, jobId: string, files: Record<string, string>) =>
  writer.commit({ jobId, message: `test ${jobId}\n`, files, subject: "region" });

describe("regionFiles", () => {
  it("gives the region's Argo CD objects once, pointing at the repository the writer commits to", async () => {
    const repo = path.join(dir, "git ops.git"); // a space: the file URL is percent-encoded
    const writer = new LocalGitWriter({ repo, dataDir: dir });
    const first = await regionFiles(config(), writer, "eu-west-1", false);
    expect(Object.keys(first).sort()).toEqual(["regions/eu-west-1/appproject.yaml", "regions/eu-west-1/tenants.yaml"]);
    const appSet = parse(first["regions/eu-west-1/tenants.yaml"]!) as {
      kind: string;
      spec: { generators: { git: { repoURL: string; revision: string; files: unknown[] }; selector: unknown }[] };
    };
    expect(appSet.kind).toBe("ApplicationSet");
    expect(appSet.spec.generators[0]?.git).toEqual({ repoURL: `file://${dir}/git%20ops.git`, revision: "main", files: [{ path: "tenants/*/tenant.yaml" }] });
    expect(appSet.spec.generators[0]?.selector).toEqual({ matchLabels: { region: "eu-west-1" } });

    expect((await commit(writer, "job-1", first)).changed).toEqual(Object.keys(first).sort());
    expect(await regionFiles(config(), writer, "eu-west-1", false)).toEqual({});
    // A preview region adds its two preview objects; another region starts again.
    expect(Object.keys(await regionFiles(config(), writer, "eu-west-1", true)).sort()).toEqual([
      "regions/eu-west-1/previews-appproject.yaml",
      "regions/eu-west-1/previews.yaml",
    ]);
    expect(Object.keys(await regionFiles(config(), writer, "us-east-1", false))).toHaveLength(2);
  });

  it("points a GitHub repository at GitHub's web address, or the Enterprise server's", () => {
    expect(githubWebUrl("https://api.github.com")).toBe("https://github.com");
    expect(githubWebUrl("https://ghe.example.com/api/v3")).toBe("https://ghe.example.com");
    const writer = new GitHubWriter({
      client: {} as never,
      owner: "acme",
      repo: "gitops",
      branch: "live",
      webUrl: githubWebUrl("https://ghe.example.com/api/v3/"),
    });
    expect(writer.source).toEqual({ repoURL: "https://ghe.example.com/acme/gitops.git", revision: "live" });
  });
});
