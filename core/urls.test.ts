// Issue 11, finding 10: configured URLs lose their user information before they are written
// anywhere, and what was removed is what the log scrubber must know.
import { describe, expect, it } from "vitest";
import { loadConfig, secretValues } from "./config.ts";
import { githubWebUrl } from "../worker/gitops/writer-factory.ts";
import { publicUrl, stripUrlCredentials, urlCredentials } from "./urls.ts";

describe("publicUrl", () => {
  it.each([
    ["https://x-access-token:ghp_abc123@github.com/acme/gitops.git", "https://github.com/acme/gitops.git"],
    ["https://ghp_abc123@github.com/acme/gitops.git", "https://github.com/acme/gitops.git"],
    ["https://user:p@ss@word@git.example.com:8443/r.git?x=1#f", "https://git.example.com:8443/r.git?x=1#f"],
    ["file://stackrail:tok3n@localhost/srv/gitops.git", "file://localhost/srv/gitops.git"],
    ["file:///srv/gitops.git", "file:///srv/gitops.git"],
    ["ssh://git@github.com/acme/gitops.git", "ssh://git@github.com/acme/gitops.git"],
    ["ssh://git:hunter2@github.com/acme/gitops.git", "ssh://git@github.com/acme/gitops.git"],
    ["git@github.com:acme/gitops.git", "git@github.com:acme/gitops.git"],
    ["https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3"],
    ["/var/lib/stackrail/gitops.git", "/var/lib/stackrail/gitops.git"],
    ["github:acme/gitops@main", "github:acme/gitops@main"],
  ])("%s → %s", (input, expected) => {
    expect(publicUrl(input)).toBe(expected);
  });
});

describe("where configured URLs are rendered", () => {
  it("the GitHub web URL that becomes a manifest's repoURL has no credentials", () => {
    expect(githubWebUrl("https://bot:canary-tok@ghe.example.com/api/v3")).toBe("https://ghe.example.com");
    expect(githubWebUrl("https://canary-tok@api.github.com")).toBe("https://github.com");
  });
});

describe("urlCredentials", () => {
  it("gives the password (or a user slot holding a token), raw and decoded; nothing for a login name over SSH", () => {
    expect(urlCredentials("https://bot:t%40ken-123@host/r.git").sort()).toEqual(["t%40ken-123", "t@ken-123"]);
    expect(urlCredentials("file://stackrail:canary-value@localhost/x.git")).toEqual(["canary-value"]);
    expect(urlCredentials("https://ghp_tokenonly123@github.com/a/b.git")).toEqual(["ghp_tokenonly123"]);
    expect(urlCredentials("ssh://git@host/r.git")).toEqual([]);
    expect(urlCredentials("ssh://git:pw-secret@host/r.git")).toEqual(["pw-secret"]);
    expect(urlCredentials("https://host/r.git")).toEqual([]);
  });

  it("every configured URL's user information is a secret value the scrubber knows", () => {
    const config = loadConfig(
      {
        PULUMI_CONFIG_PASSPHRASE: "passphrase-for-the-test",
        GITOPS_REPO: "file://gitops-user:canary-gitops-token@localhost/tmp/none.git",
        STACKRAIL_APP_REPO_URL: "https://app-bot:canary-app-token@git.example.com/app.git",
        GITHUB_API_URL: "https://api-bot:canary-api-token@ghe.example.com/api/v3",
      },
      "/tmp",
    );
    const secrets = secretValues(config);
    for (const v of ["canary-gitops-token", "canary-app-token", "canary-api-token"]) expect(secrets).toContain(v);
  });
});

describe("stripUrlCredentials", () => {
  it("removes user information from every URL in a text", () => {
    const text = "fatal: unable to access 'https://bot:s3cr3t@host/r.git/': and file://u:p@localhost/x and ssh://git:pw@h/r ssh://git@h/r mail@example.com";
    expect(stripUrlCredentials(text)).toBe(
      "fatal: unable to access 'https://host/r.git/': and file://localhost/x and ssh://h/r ssh://git@h/r mail@example.com",
    );
  });
});
