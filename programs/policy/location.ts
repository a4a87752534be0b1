// Where the policy pack lives, for the runner's `up({ policyPacks: [POLICY_PACK_DIR] })`. Kept
// apart from the pack itself so importing the location does not load @pulumi/policy.
import path from "node:path";
import { fileURLToPath } from "node:url";

export const POLICY_PACK_DIR = path.dirname(fileURLToPath(import.meta.url));

/**
 * Environment the engine (and so the policy analyzer) needs to load this TypeScript pack: the
 * analyzer registers its vendored ts-node, which cannot compile `.ts` import paths; ignoring every
 * file hands them to Node 24's own type stripping. Merge into the workspace's envVars.
 */
export const POLICY_PACK_ENV: Readonly<Record<string, string>> = { TS_NODE_IGNORE: "." };

/**
 * The attachments folder of this installation's data dir, for the `tenant-directory-confined`
 * rule: the runner sets it in the engine's environment, which the analyzer inherits.
 */
export const POLICY_ATTACHMENTS_ROOT_ENV = "STACKRAIL_POLICY_ATTACHMENTS_ROOT";
