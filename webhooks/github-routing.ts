// Routing of verified GitHub deliveries to jobs (issue 4). Only the fields a route uses are
// validated, with zod; a malformed one is a ValidationError (400) naming the field. Values from
// the payload reach a stack name only through core/ids.ts (repoSlug, gitShaSchema, ...); free
// text (PR titles, branch names) is carried as inert data or only compared.
import type { Redis } from "ioredis";
import { z } from "zod";
import type { DeployPaths } from "../core/deploy-paths.ts";
import { ValidationError } from "../core/errors.ts";
import { gitShaSchema, prNumberSchema, previewStackName, versionSchema } from "../core/ids.ts";
import { repoRefSchema, type JobData, type RepoRef, type Trigger } from "../core/jobs.ts";

export interface PlannedJob {
  data: JobData;
}

export interface RouteOutcome {
  jobs: PlannedJob[];
  /** Why a delivery created no job (or fewer than one might expect), for the 202 body and the log. */
  ignored?: string;
}

/** What Stackrail last saw of a PR's head, so that a `/stackrail preview` comment knows which commit to build. */
export interface PrHead {
  sha: string;
  title: string;
  fork: boolean;
}

export interface PrHeadStore {
  get(repo: RepoRef, pr: number): Promise<PrHead | null>;
  set(repo: RepoRef, pr: number, head: PrHead): Promise<void>;
}

export interface RouteContext {
  deliveryId: string;
  requestedAt: string;
  /** STACKRAIL_DEPLOY_PATHS as configuration compiled it (core/deploy-paths.ts). */
  deployPaths: DeployPaths;
  prHeads: PrHeadStore;
}

const ALLOWED_ASSOCIATIONS = new Set(["OWNER", "MEMBER", "COLLABORATOR"]);
const COMMAND = /^[ \t]*\/stackrail[ \t]+(preview|up|destroy)[ \t]*$/m;
/** `/stackrail approve`, `/stackrail reject [reason]`: decide the release of the PR's commit. */
const RELEASE_COMMAND = /^[ \t]*\/stackrail[ \t]+(approve|reject)(?:[ \t]+([^\r\n]{1,300}?))?[ \t]*$/m;
const TITLE_MAX = 1024;
const ZERO_SHA = /^0{40}$/;

const repositorySchema = z.object({
  name: z.string().max(100),
  full_name: z.string().max(300).optional(),
  owner: z.object({ login: z.string().max(100) }),
});
const senderSchema = z
  .object({ login: z.string().max(100) })
  .partial()
  .optional();

const pullRequestEventSchema = z.object({
  action: z.string().max(64),
  repository: repositorySchema,
  sender: senderSchema,
  pull_request: z.object({
    number: prNumberSchema,
    title: z.string().max(100_000),
    head: z.object({
      sha: gitShaSchema,
      repo: z
        .object({ full_name: z.string().max(300) })
        .nullable()
        .optional(),
    }),
    base: z.object({ repo: z.object({ full_name: z.string().max(300) }) }),
  }),
});

const pushEventSchema = z.object({
  ref: z.string().max(4096),
  after: z.string().max(64),
  deleted: z.boolean().optional(),
  repository: z.object({
    default_branch: z.string().max(4096),
    name: z.string().max(100).optional(),
    owner: z.object({ login: z.string().max(100).optional(), name: z.string().max(100).nullish() }).optional(),
  }),
  sender: senderSchema,
  commits: z
    .array(
      z.object({
        added: z.array(z.string().max(4096)).max(10_000).optional(),
        modified: z.array(z.string().max(4096)).max(10_000).optional(),
        removed: z.array(z.string().max(4096)).max(10_000).optional(),
      }),
    )
    .max(5_000),
});

const releaseEventSchema = z.object({
  action: z.string().max(64),
  sender: senderSchema,
  repository: z.object({ name: z.string().max(100), owner: z.object({ login: z.string().max(100) }) }).optional(),
  release: z.object({
    tag_name: z.string().max(4096),
    draft: z.boolean().optional(),
    prerelease: z.boolean().optional(),
    target_commitish: z.string().max(4096).optional(),
  }),
});

/** Where a release reports on GitHub: the repository and commit, when the payload names both validly. */
function releaseSource(owner: string | undefined, name: string | undefined, sha: string | undefined): { source: { repo: RepoRef; sha: string } } | object {
  const repo = repoRefSchema.safeParse({ owner, name });
  const commit = gitShaSchema.safeParse(sha);
  return repo.success && commit.success ? { source: { repo: repo.data, sha: commit.data } } : {};
}

const issueCommentEventSchema = z.object({
  action: z.string().max(64),
  repository: repositorySchema,
  issue: z.object({ number: prNumberSchema, pull_request: z.object({}).passthrough().nullable().optional() }),
  comment: z.object({
    body: z.string().max(262_144).nullable(),
    author_association: z.string().max(64),
    user: z.object({ login: z.string().max(100), type: z.string().max(32).optional() }),
  }),
});

function parse<S extends z.ZodType>(schema: S, payload: unknown): z.infer<S> {
  const r = schema.safeParse(payload);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ValidationError(issue?.path.join(".") || "payload", issue?.message ?? "invalid payload");
  }
  return r.data;
}

function repoRef(repository: z.infer<typeof repositorySchema>): RepoRef {
  const r = repoRefSchema.safeParse({ owner: repository.owner.login, name: repository.name });
  if (!r.success)
    throw new ValidationError(r.error.issues[0]?.path[0] === "owner" ? "repository.owner.login" : "repository.name", "is not a GitHub repository name");
  try {
    // A repository whose name folds to nothing usable never becomes a stack name.
    previewStackName(r.data.name, 1);
  } catch {
    throw new ValidationError("repository.name", "has no characters usable in a stack name");
  }
  return r.data;
}

function trigger(ctx: RouteContext, event: string, sender: string | undefined): Trigger {
  return { type: "webhook", deliveryId: ctx.deliveryId, event, ...(sender ? { sender } : {}) };
}

const deliveryRepositorySchema = z.object({
  repository: z
    .object({
      full_name: z.string().max(300).optional(),
      name: z.string().max(100).optional(),
      owner: z.object({ login: z.string().max(100) }).optional(),
    })
    .nullable()
    .optional(),
});

/**
 * `owner/name` (lower case) of the repository a delivery comes from, or null when it names none
 * (ping and installation events of an App or organization hook). Which repositories may act is
 * decided on this, before routing: one secret (an App's) signs every repository it is installed on.
 */
export function deliveryRepository(payload: unknown): string | null {
  const repository = parse(deliveryRepositorySchema, payload).repository;
  if (!repository) return null;
  const fullName = repository.full_name ?? (repository.owner && repository.name ? `${repository.owner.login}/${repository.name}` : undefined);
  if (!fullName) throw new ValidationError("repository.full_name", "is missing");
  return fullName.toLowerCase();
}

/** Whether deliveries from `fullName` (lower case) act, under STACKRAIL_REPOSITORIES. */
export function repositoryAllowed(fullName: string, allowed: { readonly any: boolean; readonly names: readonly string[] }): boolean {
  return allowed.any || allowed.names.includes(fullName);
}

export async function routeGitHubEvent(event: string, payload: unknown, ctx: RouteContext): Promise<RouteOutcome> {
  const base = { requestedAt: ctx.requestedAt };
  switch (event) {
    case "pull_request": {
      const p = parse(pullRequestEventSchema, payload);
      const repo = repoRef(p.repository);
      const pr = p.pull_request;
      const fork = !pr.head.repo || pr.head.repo.full_name !== pr.base.repo.full_name;
      const title = pr.title.slice(0, TITLE_MAX);
      const t = trigger(ctx, event, p.sender?.login);
      await ctx.prHeads.set(repo, pr.number, { sha: pr.head.sha, title, fork });
      if (p.action === "closed") {
        // Destroying runs none of the PR's code, so it also cleans up a maintainer-approved fork preview.
        return { jobs: [{ data: { kind: "preview.destroy", ...base, trigger: t, repo, pr: pr.number, headSha: pr.head.sha } }] };
      }
      if (!["opened", "reopened", "synchronize"].includes(p.action)) return { jobs: [], ignored: `pull_request action "${p.action}" is not routed` };
      if (fork) return { jobs: [], ignored: "fork pull request waits for /stackrail preview" };
      return { jobs: [{ data: { kind: "preview.up", ...base, trigger: t, repo, pr: pr.number, headSha: pr.head.sha, title } }] };
    }
    case "push": {
      const p = parse(pushEventSchema, payload);
      if (p.ref !== `refs/heads/${p.repository.default_branch}`) return { jobs: [], ignored: "push to a ref other than the default branch" };
      if (p.deleted || ZERO_SHA.test(p.after)) return { jobs: [], ignored: "push deleted the ref" };
      const sha = gitShaSchema.safeParse(p.after);
      if (!sha.success) throw new ValidationError("after", "must be a 40-character git SHA");
      const files = p.commits.flatMap((c) => [...(c.added ?? []), ...(c.modified ?? []), ...(c.removed ?? [])]);
      if (!files.some((f) => ctx.deployPaths.matches(f))) return { jobs: [], ignored: "no deployable path changed" };
      const ref = p.ref.length <= 255 ? p.ref : undefined;
      const owner = p.repository.owner?.login ?? p.repository.owner?.name ?? undefined;
      return {
        jobs: [
          {
            data: {
              kind: "release.rollout",
              ...base,
              trigger: trigger(ctx, event, p.sender?.login),
              version: sha.data,
              ...(ref ? { ref } : {}),
              ...releaseSource(owner, p.repository.name, sha.data),
            },
          },
        ],
      };
    }
    case "release": {
      const p = parse(releaseEventSchema, payload);
      if (p.action !== "published") return { jobs: [], ignored: `release action "${p.action}" is not routed` };
      if (p.release.draft || p.release.prerelease) return { jobs: [], ignored: "pre-releases and drafts are not rolled out" };
      const version = versionSchema.safeParse(p.release.tag_name);
      if (!version.success) return { jobs: [], ignored: "release tag is not a deployable version (1.2.3 or v1.2.3)" };
      const tag = p.release.tag_name;
      return {
        jobs: [
          {
            data: {
              kind: "release.rollout",
              ...base,
              trigger: trigger(ctx, event, p.sender?.login),
              version: version.data,
              ref: `refs/tags/${tag}`,
              // Only a target given as a commit names the release commit; a branch name would move.
              ...releaseSource(p.repository?.owner.login, p.repository?.name, p.release.target_commitish),
            },
          },
        ],
      };
    }
    case "issue_comment": {
      const p = parse(issueCommentEventSchema, payload);
      if (p.action !== "created") return { jobs: [], ignored: `issue_comment action "${p.action}" is not routed` };
      if (!p.issue.pull_request) return { jobs: [], ignored: "comment is not on a pull request" };
      // Stackrail's own comments (and other bots') never run commands: no loops, no bot-driven deploys.
      if (p.comment.user.type === "Bot") return { jobs: [], ignored: "comment by a bot" };
      const release = RELEASE_COMMAND.exec(p.comment.body ?? "");
      if (release) {
        const repo = repoRef(p.repository);
        const t = trigger(ctx, event, p.comment.user.login);
        const command = release[1] as "approve" | "reject";
        if (!ALLOWED_ASSOCIATIONS.has(p.comment.author_association)) {
          const reason = `only repository owners, members and collaborators may ${command} a release`;
          return { jobs: [{ data: { kind: "comment.refusal", ...base, trigger: t, repo, pr: p.issue.number, reason } }] };
        }
        // The permission is checked through the GitHub API by the job, not only from the payload.
        const reason = release[2]?.trim();
        return {
          jobs: [
            {
              data: {
                kind: "release.command",
                ...base,
                trigger: t,
                repo,
                pr: p.issue.number,
                command,
                login: p.comment.user.login,
                ...(command === "reject" && reason ? { reason } : {}),
              },
            },
          ],
        };
      }
      const match = COMMAND.exec(p.comment.body ?? "");
      if (!match) return { jobs: [], ignored: "comment carries no /stackrail command" };
      const command = match[1] as "preview" | "up" | "destroy";
      const repo = repoRef(p.repository);
      const prNumber = p.issue.number;
      const t = trigger(ctx, event, p.comment.user.login);
      // A refused command is still a job: the refusal is reported on the PR, nothing else runs.
      const refusal = (reason: string): RouteOutcome => ({
        jobs: [{ data: { kind: "comment.refusal", ...base, trigger: t, repo, pr: prNumber, reason } }],
      });
      if (!ALLOWED_ASSOCIATIONS.has(p.comment.author_association)) {
        return refusal(`only repository owners, members and collaborators may run stackrail ${command}`);
      }
      if (command === "destroy") return { jobs: [{ data: { kind: "preview.destroy", ...base, trigger: t, repo, pr: prNumber } }] };
      const head = await ctx.prHeads.get(repo, prNumber);
      if (!head) {
        return refusal("Stackrail has not seen this pull request's head commit yet; push a commit or reopen it, then ask again");
      }
      return { jobs: [{ data: { kind: "preview.up", ...base, trigger: t, repo, pr: prNumber, headSha: head.sha, title: head.title } }] };
    }
    case "ping":
      return { jobs: [] };
    default:
      return { jobs: [], ignored: `event "${event}" is not routed` };
  }
}

/** PR heads in Redis (30 days), keyed by repository and number. */
export class RedisPrHeadStore implements PrHeadStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  #key(repo: RepoRef, pr: number): string {
    return `${this.#prefix}:pr-head:${repo.owner.toLowerCase()}/${repo.name.toLowerCase()}#${pr}`;
  }

  async get(repo: RepoRef, pr: number): Promise<PrHead | null> {
    const raw = await this.#redis.get(this.#key(repo, pr));
    if (!raw) return null;
    const r = z.object({ sha: gitShaSchema, title: z.string().max(TITLE_MAX), fork: z.boolean() }).safeParse(JSON.parse(raw));
    return r.success ? r.data : null;
  }

  async set(repo: RepoRef, pr: number, head: PrHead): Promise<void> {
    await this.#redis.set(this.#key(repo, pr), JSON.stringify(head), "EX", 30 * 24 * 3600);
  }
}
