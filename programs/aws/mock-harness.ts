// Runs an aws program under Pulumi's runtime mocks (no engine, no account) and records every
// resource registered with its inputs, so tests can assert the properties that matter and run
// the policy pack over the whole stack. Test support only.
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import type { StackResource } from "../policy/policies.ts";

export interface Recorded {
  type: string;
  name: string;
  id: string;
  inputs: Record<string, unknown>;
}

export interface MockRun {
  resources: Recorded[];
  outputs: Record<string, unknown>;
  secretOutputs: string[];
  ofType(type: string): Recorded[];
  one(type: string, name?: string): Recorded;
  /** The recorded resources as the policy pack's stack rules see them (dependencies inferred from ids/arns). */
  forPolicies(): StackResource[];
}

function arnFor(type: string, name: string): string {
  const service = type.split(":")[1]?.split("/")[0] ?? "x";
  return `arn:aws:${service}:eu-west-1:123456789012:${name}`;
}

/** Ids shaped as AWS shapes them where a consumer checks the shape (manifests accept only `fsap-…` access points). */
function mockId(type: string, name: string, inputs: Record<string, unknown>): string {
  // S3 bucket ids are their names, as on AWS.
  if (type === "aws:s3/bucket:Bucket" && typeof inputs.bucket === "string") return inputs.bucket;
  if (type === "aws:efs/accessPoint:AccessPoint") return `fsap-${createHash("sha256").update(name).digest("hex").slice(0, 17)}`;
  return `${name}-id`;
}

let runCounter = 0;

/** Answers of data-source calls by token (e.g. `aws:secretsmanager/getSecretVersion:getSecretVersion`), for a test to give. */
export type CallAnswers = Record<string, (inputs: Record<string, unknown>) => Record<string, unknown>>;

export async function runWithMocks(
  program: () => Promise<Record<string, unknown>>,
  stackReferenceOutputs: Record<string, unknown> = {},
  calls: CallAnswers = {},
): Promise<MockRun> {
  const resources: Recorded[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const inputs = args.inputs as Record<string, unknown>;
        if (args.type === "pulumi:pulumi:StackReference") {
          return { id: String(inputs.name), state: { name: inputs.name, outputs: stackReferenceOutputs, secretOutputNames: [] } };
        }
        const id = mockId(args.type, args.name, inputs);
        const arn = arnFor(args.type, args.name);
        resources.push({ type: args.type, name: args.name, id, inputs });
        const extra: Record<string, unknown> = { arn, id };
        if (args.type === "aws:rds/cluster:Cluster") Object.assign(extra, { endpoint: `${args.name}.cluster.example`, port: 3306 });
        if (args.type === "aws:elasticache/replicationGroup:ReplicationGroup")
          Object.assign(extra, { primaryEndpointAddress: `${args.name}.cache.example`, port: 6379 });
        if (args.type === "aws:efs/accessPoint:AccessPoint") Object.assign(extra, { fileSystemArn: arnFor("aws:efs/fs", String(inputs.fileSystemId)) });
        if (args.type === "aws:sqs/queue:Queue") Object.assign(extra, { url: `https://sqs.example/${args.name}` });
        if (args.type === "aws:lb/loadBalancer:LoadBalancer") Object.assign(extra, { dnsName: `${args.name}.elb.example` });
        if (args.type.startsWith("pulumi-nodejs:dynamic")) Object.assign(extra, { result: inputs.result ?? "mock-generated-password-000000000" });
        return { id, state: { ...inputs, ...extra } };
      },
      call(args) {
        const answer = calls[args.token];
        if (answer) return answer(args.inputs as Record<string, unknown>);
        if (args.token === "aws:index/getCallerIdentity:getCallerIdentity") {
          return { accountId: "123456789012", arn: "arn:aws:iam::123456789012:user/ci", userId: "AIDA" };
        }
        if (args.token === "aws:eks/getCluster:getCluster") {
          return {
            name: (args.inputs as { name: string }).name,
            endpoint: "https://eks.example",
            certificateAuthorities: [{ data: "Q0E=" }],
            identities: [{ oidcs: [{ issuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC" }] }],
          };
        }
        return args.inputs as Record<string, unknown>;
      },
    },
    "stackrail",
    `mock-${++runCounter}`,
    false,
    "organization",
  );

  let raw: Record<string, unknown> = {};
  const resolved = (await pulumi.runtime.runInPulumiStack(async () => {
    raw = await program();
    return raw;
  })) as Record<string, unknown>;
  // Resources whose inputs wait on other resources register later; wait until nothing new arrives.
  let seen = -1;
  while (seen !== resources.length) {
    seen = resources.length;
    await new Promise((r) => setTimeout(r, 150));
  }
  const secretOutputs: string[] = [];
  for (const [k, v] of Object.entries(raw)) {
    if (pulumi.Output.isInstance(v) && (await (v as unknown as { isSecret: Promise<boolean> }).isSecret)) secretOutputs.push(k);
  }

  const run: MockRun = {
    resources,
    outputs: resolved,
    secretOutputs,
    ofType: (type) => resources.filter((r) => r.type === type),
    one(type, name) {
      const found = resources.filter((r) => r.type === type && (name === undefined || r.name === name));
      if (found.length !== 1) throw new Error(`expected one ${type}${name ? ` named ${name}` : ""}, found ${found.length}`);
      return found[0] as Recorded;
    },
    forPolicies() {
      const refs = new Map<string, string>();
      for (const r of resources) {
        refs.set(r.id, r.name);
        refs.set(arnFor(r.type, r.name), r.name);
      }
      return resources.map((r) => {
        const text = JSON.stringify(r.inputs);
        const dependsOn = [...refs.entries()].filter(([ref, name]) => name !== r.name && text.includes(JSON.stringify(ref))).map(([, name]) => name);
        return { type: r.type, name: r.name, props: r.inputs, dependsOn };
      });
    },
  };
  return run;
}
