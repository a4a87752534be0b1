// Entry point of Pulumi.yaml for the bare CLI: the stack's config names the program and its
// arguments, the environment gives the target. The same programFor() the worker uses, so an
// operator's `pulumi preview` shows exactly what a job would do.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { loadConfig } from "../core/config.ts";
import { programFor } from "./index.ts";

const config = new pulumi.Config("stackrail");
const args = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).parse(JSON.parse(config.require("args")));
// The passphrase is the CLI's business here, not this program's.
const service = loadConfig({ PULUMI_CONFIG_PASSPHRASE: "unused-by-programs", ...process.env });
const program = programFor(config.require("program"), args, {
  target: service.target,
  dataDir: service.dataDir,
  localMysqlUrl: service.localMysqlUrl,
  localRedisUrl: service.localRedisUrl,
});

export const outputs = program();
