// The Stackrail policy pack, loaded by the engine's policy analyzer (pulumi-analyzer-policy) from
// this folder when the runner passes POLICY_PACK_DIR. Every rule is mandatory: a violation fails
// the operation with the rule's message.
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies.ts";

export const pack = new PolicyPack("stackrail-guardrails", {
  description:
    "Encryption, no public buckets, TLS-only, no wildcard tenant permissions, Lambda DLQs, required tags, tenant databases, cache users and folders confined to their tenant.",
  enforcementLevel: "mandatory",
  policies,
});
