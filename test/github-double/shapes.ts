// Response bodies of the GitHub double, shaped as GitHub's OpenAPI description requires
// (every response is checked against it, so a missing field here fails the tests too).

export interface Ctx {
  api: string;
  web: string;
  owner: string;
  repo: string;
}

const node = (kind: string, id: number | string) => Buffer.from(`${kind}:${id}`).toString("base64");

export function user(ctx: Pick<Ctx, "api" | "web">, login: string, id = 1, type = "Bot"): Record<string, unknown> {
  const u = `${ctx.api}/users/${login}`;
  return {
    login,
    id,
    node_id: node("User", id),
    avatar_url: `${ctx.web}/avatars/${login}`,
    gravatar_id: "",
    url: u,
    html_url: `${ctx.web}/${login}`,
    followers_url: `${u}/followers`,
    following_url: `${u}/following{/other_user}`,
    gists_url: `${u}/gists{/gist_id}`,
    starred_url: `${u}/starred{/owner}{/repo}`,
    subscriptions_url: `${u}/subscriptions`,
    organizations_url: `${u}/orgs`,
    repos_url: `${u}/repos`,
    events_url: `${u}/events{/privacy}`,
    received_events_url: `${u}/received_events`,
    type,
    site_admin: false,
  };
}

export function repository(ctx: Ctx, defaultBranch: string): Record<string, unknown> {
  const u = `${ctx.api}/repos/${ctx.owner}/${ctx.repo}`;
  const t = (s: string) => `${u}/${s}`;
  return {
    id: 1,
    node_id: node("Repository", `${ctx.owner}/${ctx.repo}`),
    name: ctx.repo,
    full_name: `${ctx.owner}/${ctx.repo}`,
    owner: user(ctx, ctx.owner, 2, "Organization"),
    private: true,
    html_url: `${ctx.web}/${ctx.owner}/${ctx.repo}`,
    description: null,
    fork: false,
    url: u,
    archive_url: t("{archive_format}{/ref}"),
    assignees_url: t("assignees{/user}"),
    blobs_url: t("git/blobs{/sha}"),
    branches_url: t("branches{/branch}"),
    collaborators_url: t("collaborators{/collaborator}"),
    comments_url: t("comments{/number}"),
    commits_url: t("commits{/sha}"),
    compare_url: t("compare/{base}...{head}"),
    contents_url: t("contents/{+path}"),
    contributors_url: t("contributors"),
    deployments_url: t("deployments"),
    downloads_url: t("downloads"),
    events_url: t("events"),
    forks_url: t("forks"),
    git_commits_url: t("git/commits{/sha}"),
    git_refs_url: t("git/refs{/sha}"),
    git_tags_url: t("git/tags{/sha}"),
    git_url: `git://example.invalid/${ctx.owner}/${ctx.repo}.git`,
    hooks_url: t("hooks"),
    issue_comment_url: t("issues/comments{/number}"),
    issue_events_url: t("issues/events{/number}"),
    issues_url: t("issues{/number}"),
    keys_url: t("keys{/key_id}"),
    labels_url: t("labels{/name}"),
    languages_url: t("languages"),
    merges_url: t("merges"),
    milestones_url: t("milestones{/number}"),
    notifications_url: t("notifications{?since,all,participating}"),
    pulls_url: t("pulls{/number}"),
    releases_url: t("releases{/id}"),
    ssh_url: `git@example.invalid:${ctx.owner}/${ctx.repo}.git`,
    stargazers_url: t("stargazers"),
    statuses_url: t("statuses/{sha}"),
    subscribers_url: t("subscribers"),
    subscription_url: t("subscription"),
    tags_url: t("tags"),
    teams_url: t("teams"),
    trees_url: t("git/trees{/sha}"),
    clone_url: `${ctx.web}/${ctx.owner}/${ctx.repo}.git`,
    mirror_url: null,
    homepage: null,
    svn_url: `${ctx.web}/${ctx.owner}/${ctx.repo}`,
    language: null,
    forks: 0,
    forks_count: 0,
    stargazers_count: 0,
    watchers: 0,
    watchers_count: 0,
    size: 0,
    default_branch: defaultBranch,
    open_issues: 0,
    open_issues_count: 0,
    has_issues: true,
    has_projects: false,
    has_wiki: false,
    has_pages: false,
    has_downloads: false,
    archived: false,
    disabled: false,
    license: null,
    pushed_at: null,
    created_at: "2024-01-01T00:00:00Z",
    updated_at: "2024-01-01T00:00:00Z",
  };
}

export interface PullState {
  number: number;
  title: string;
  body: string | null;
  head: string;
  base: string;
  headSha: string;
  baseSha: string;
  state: "open" | "closed";
  createdAt: string;
  updatedAt: string;
  author: string;
  /** Merge result, settable by tests (see GitHubDouble.mergePullRequest). */
  merged?: boolean;
  mergedAt?: string | null;
  mergeCommitSha?: string | null;
  mergedBy?: string | null;
}

export function pullRequest(ctx: Ctx, pr: PullState, defaultBranch: string, full: boolean): Record<string, unknown> {
  const u = `${ctx.api}/repos/${ctx.owner}/${ctx.repo}`;
  const html = `${ctx.web}/${ctx.owner}/${ctx.repo}/pull/${pr.number}`;
  const repo = repository(ctx, defaultBranch);
  const owner = user(ctx, ctx.owner, 2, "Organization");
  const author = user(ctx, pr.author, 3, "User");
  const link = (href: string) => ({ href });
  const base: Record<string, unknown> = {
    url: `${u}/pulls/${pr.number}`,
    id: pr.number,
    node_id: node("PullRequest", pr.number),
    html_url: html,
    diff_url: `${html}.diff`,
    patch_url: `${html}.patch`,
    issue_url: `${u}/issues/${pr.number}`,
    commits_url: `${u}/pulls/${pr.number}/commits`,
    review_comments_url: `${u}/pulls/${pr.number}/comments`,
    review_comment_url: `${u}/pulls/comments{/number}`,
    comments_url: `${u}/issues/${pr.number}/comments`,
    statuses_url: `${u}/statuses/${pr.headSha}`,
    number: pr.number,
    state: pr.state,
    locked: false,
    title: pr.title,
    user: author,
    body: pr.body,
    labels: [],
    milestone: null,
    created_at: pr.createdAt,
    updated_at: pr.updatedAt,
    closed_at: pr.state === "closed" ? pr.updatedAt : null,
    merged_at: pr.mergedAt ?? null,
    merge_commit_sha: pr.mergeCommitSha ?? null,
    assignee: null,
    head: { label: `${ctx.owner}:${pr.head}`, ref: pr.head, sha: pr.headSha, user: owner, repo },
    base: { label: `${ctx.owner}:${pr.base}`, ref: pr.base, sha: pr.baseSha, user: owner, repo },
    _links: {
      self: link(`${u}/pulls/${pr.number}`),
      html: link(html),
      issue: link(`${u}/issues/${pr.number}`),
      comments: link(`${u}/issues/${pr.number}/comments`),
      review_comments: link(`${u}/pulls/${pr.number}/comments`),
      review_comment: link(`${u}/pulls/comments{/number}`),
      commits: link(`${u}/pulls/${pr.number}/commits`),
      statuses: link(`${u}/statuses/${pr.headSha}`),
    },
    author_association: "NONE",
    auto_merge: null,
  };
  if (!full) return base;
  return {
    ...base,
    merged: pr.merged ?? false,
    mergeable: null,
    mergeable_state: "unknown",
    merged_by: pr.mergedBy ? user(ctx, pr.mergedBy, 3, "User") : null,
    comments: 0,
    review_comments: 0,
    maintainer_can_modify: false,
    commits: 1,
    additions: 0,
    deletions: 0,
    changed_files: 0,
  };
}
