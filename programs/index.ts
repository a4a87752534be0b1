// Entry point of the Pulumi programs: the worker's runner asks for a program by name with the
// job's arguments and gets an inline program (PulumiFn) for the Automation API. Arguments are
// validated here, before anything reaches a stack, a SQL statement or a path. The aws modules
// are loaded only when an aws program runs (they pull in @pulumi/aws, which is slow to load).
import type { PulumiFn } from "@pulumi/pulumi/automation/index.js";
import type { z } from "zod";
import { ValidationError } from "../core/errors.ts";
import type { ProgramContext } from "./context.ts";
import { localPreviewProgram, previewArgsSchema } from "./preview.ts";
import { localTenantProgram, tenantArgsSchema } from "./tenant.ts";
import { dataJobArgsSchema, regionArgsSchema, tenantFunctionsArgsSchema } from "./aws/schemas.ts";

export type { ProgramContext } from "./context.ts";
export { POLICY_PACK_DIR, POLICY_PACK_ENV } from "./policy/location.ts";

export const PROGRAM_NAMES = ["tenant", "preview", "region", "tenant-functions", "data-job"] as const;
export type ProgramName = (typeof PROGRAM_NAMES)[number];

type Args = Record<string, string | number | boolean>;

function parse<S extends z.ZodType>(schema: S, args: Args): z.infer<S> {
  const result = schema.safeParse(args);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.path.join(".") || "args";
    throw new ValidationError(field, issue?.message ?? "invalid program arguments");
  }
  return result.data;
}

function awsOnly(name: string, ctx: ProgramContext): void {
  if (ctx.target !== "aws") throw new ValidationError("target", `program ${name} exists on the aws target only`);
}

export function programFor(name: string, args: Args, ctx: ProgramContext): PulumiFn {
  switch (name) {
    case "tenant": {
      const a = parse(tenantArgsSchema, args);
      if (ctx.target === "local") return localTenantProgram(a, ctx);
      return async () => (await import("./aws/tenant.ts")).awsTenantProgram(a)();
    }
    case "preview": {
      const a = parse(previewArgsSchema, args);
      if (ctx.target === "local") return localPreviewProgram(a, ctx);
      return async () => (await import("./aws/tenant.ts")).awsPreviewProgram(a)();
    }
    case "region": {
      awsOnly(name, ctx);
      const a = parse(regionArgsSchema, args);
      return async () => (await import("./aws/region.ts")).regionProgram(a)();
    }
    case "tenant-functions": {
      awsOnly(name, ctx);
      const a = parse(tenantFunctionsArgsSchema, args);
      return async () => (await import("./aws/tenant-functions.ts")).tenantFunctionsProgram(a)();
    }
    case "data-job": {
      awsOnly(name, ctx);
      const a = parse(dataJobArgsSchema, args);
      return async () => (await import("./aws/data-job.ts")).dataJobProgram(a)();
    }
    default:
      throw new ValidationError("program", `unknown program ${JSON.stringify(name)}; known: ${PROGRAM_NAMES.join(", ")}`);
  }
}
