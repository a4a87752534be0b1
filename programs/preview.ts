// The `preview-<repo>-pr-<n>` stack on the local target: the same shape as a tenant (database,
// user, grants, cache user, directory), sized small (few connections) and labelled with the PR,
// its head commit and its expiry so a sweeper can find and destroy what outlived its PR.
import { z } from "zod";
import { gitShaSchema, previewKey, prNumberSchema, regionSchema } from "../core/ids.ts";
import type { ProgramContext } from "./context.ts";
import { localLogicalSet } from "./local-logical-set.ts";
import { MAX_CONNECTIONS } from "./logical.ts";
import { logicalNames } from "../core/naming.ts";

export const previewArgsSchema = z
  .object({
    repo: z.string().min(1).max(100),
    pr: prNumberSchema,
    headSha: gitShaSchema,
    expiresAt: z.iso.datetime({ offset: true }),
    /** Development runs in the EU only. */
    region: regionSchema.default("eu-west-1"),
  })
  .strict()
  .refine(
    (a) => {
      try {
        previewKey(a.repo, a.pr);
        return true;
      } catch {
        return false;
      }
    },
    { message: "repository name has no usable characters", path: ["repo"] },
  );
export type PreviewArgs = z.infer<typeof previewArgsSchema>;

/** Labels carried by every preview object (and Kubernetes labels on aws). */
export function previewLabels(a: PreviewArgs): Record<string, string> {
  return {
    "stackrail.io/preview": previewKey(a.repo, a.pr),
    "stackrail.io/pr": String(a.pr),
    "stackrail.io/head-sha": a.headSha,
    // Label values cannot hold ':'; the expiry is kept as seconds since the epoch.
    "stackrail.io/expires-at": String(Math.floor(Date.parse(a.expiresAt) / 1000)),
  };
}

export function localPreviewProgram(args: PreviewArgs, ctx: ProgramContext): () => Promise<Record<string, unknown>> {
  return () => {
    const key = previewKey(args.repo, args.pr);
    const names = logicalNames("preview", key);
    return Promise.resolve({
      target: "local",
      preview: key,
      repo: args.repo,
      pr: args.pr,
      headSha: args.headSha,
      expiresAt: args.expiresAt,
      labels: previewLabels(args),
      ...localLogicalSet({
        names,
        mysqlUrl: ctx.localMysqlUrl,
        redisUrl: ctx.localRedisUrl,
        dataDir: ctx.dataDir,
        readOnly: false,
        maxConnections: MAX_CONNECTIONS.preview,
        purgeCacheOnDelete: true,
      }),
      url: `http://${key}.preview.localhost`,
    });
  };
}
