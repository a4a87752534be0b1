// Tenant functions (aws): one tenant-supplied snippet as its own Lambda function in the separate
// tenant-code account (the provider assumes a role there). The execution role may write its own
// logs and send to its own dead-letter queue, and explicitly denies everything else; the function
// has a DLQ, reserved concurrency, a correlation-id setting and cost tags (tenant, environment,
// cost centre).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { awsName, policyDocument, tagsFor } from "./common.ts";
import type { TenantFunctionsArgs } from "./schemas.ts";

/** What the execution role is granted; the explicit deny covers every other action and resource. */
export const GRANTED_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"] as const;

export function tenantFunctionsProgram(args: TenantFunctionsArgs): () => Promise<Record<string, unknown>> {
  return () => {
    const base = awsName(`t-${args.tenantId}-${args.functionName}`, 64);
    const tags = tagsFor({
      environment: args.environment,
      costCentre: args.costCentre,
      tenant: args.tenantId,
      extra: { function: args.functionName },
    });
    const provider = new aws.Provider("tenant-code", {
      region: args.region as aws.Region,
      assumeRoles: [{ roleArn: args.assumeRoleArn, sessionName: awsName(`stackrail-${args.tenantId}`, 64), duration: "1h" }],
      defaultTags: { tags },
    });
    const opts: pulumi.CustomResourceOptions = { provider };

    const dlq = new aws.sqs.Queue(
      `${base}-dlq`,
      { name: awsName(`${base}-dlq`, 80), sqsManagedSseEnabled: true, messageRetentionSeconds: 14 * 24 * 3600, tags },
      opts,
    );
    const logGroup = new aws.cloudwatch.LogGroup(`${base}-logs`, { name: `/aws/lambda/${base}`, retentionInDays: 30, tags }, opts);

    const role = new aws.iam.Role(
      `${base}-exec`,
      {
        name: awsName(`tenant-${args.tenantId}-fn-${args.functionName}`, 64),
        assumeRolePolicy: policyDocument({ Effect: "Allow", Principal: { Service: "lambda.amazonaws.com" }, Action: "sts:AssumeRole" }),
        tags,
      },
      opts,
    );
    new aws.iam.RolePolicy(
      `${base}-exec`,
      {
        role: role.name,
        policy: pulumi.all([logGroup.arn, dlq.arn]).apply(([logArn, dlqArn]) => {
          const granted = [`${logArn}:*`, dlqArn];
          return policyDocument(
            { Sid: "OwnLogs", Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: [`${logArn}:log-stream:*`] },
            { Sid: "OwnDeadLetterQueue", Effect: "Allow", Action: ["sqs:SendMessage"], Resource: [dlqArn] },
            // Explicit denies: nothing but the granted actions, and those only on the granted resources,
            // whatever a later attachment or a permissions mistake might allow.
            { Sid: "DenyEverythingElse", Effect: "Deny", NotAction: [...GRANTED_ACTIONS], Resource: "*" },
            { Sid: "DenyOtherResources", Effect: "Deny", Action: [...GRANTED_ACTIONS], NotResource: granted },
          );
        }),
      },
      opts,
    );

    const fn = new aws.lambda.Function(
      base,
      {
        name: base,
        role: role.arn,
        runtime: "nodejs22.x",
        handler: args.handler,
        // A file archive by path: the schema has made sure it ends in `.zip`, which the engine needs.
        code: new pulumi.asset.FileArchive(args.codePath),
        memorySize: args.memoryMb,
        timeout: args.timeoutSeconds,
        reservedConcurrentExecutions: args.reservedConcurrency,
        deadLetterConfig: { targetArn: dlq.arn },
        loggingConfig: { logFormat: "JSON", logGroup: logGroup.name },
        environment: {
          variables: {
            STACKRAIL_TENANT: args.tenantId,
            STACKRAIL_FUNCTION: args.functionName,
            CORRELATION_ID_HEADER: "x-correlation-id",
          },
        },
        tags,
      },
      { ...opts, dependsOn: [logGroup] },
    );
    new aws.lambda.FunctionEventInvokeConfig(
      `${base}-invoke`,
      { functionName: fn.name, maximumRetryAttempts: 2, maximumEventAgeInSeconds: 3600, destinationConfig: { onFailure: { destination: dlq.arn } } },
      opts,
    );

    return Promise.resolve({
      tenantId: args.tenantId,
      functionName: fn.name,
      functionArn: fn.arn,
      executionRoleArn: role.arn,
      dlqArn: dlq.arn,
      dlqUrl: dlq.url,
      logGroupName: logGroup.name,
      handler: args.handler,
    });
  };
}
