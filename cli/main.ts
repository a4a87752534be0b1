#!/usr/bin/env node
// `stackrail`: the operator's command line over the HTTP API (cli/README.md). It runs on the
// project's Node 24: `node_modules/.bin/node cli/main.ts` (README: an alias). Not `npx stackrail` inside the
// repository: npx installs the project itself into its cache for that, which strict-allow-scripts refuses.
import { createInterface } from "node:readline/promises";
import { runCli, type CliIo } from "./program.ts";

const io: CliIo = {
  out: { write: (s) => void process.stdout.write(s) },
  err: { write: (s) => void process.stderr.write(s) },
  errIsTty: process.stderr.isTTY === true,
  columns: process.stderr.columns ?? 100,
  now: Date.now,
  env: process.env,
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  },
  ask: async (question) => {
    if (!process.stdin.isTTY || !process.stderr.isTTY) return null;
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return await rl.question(question);
    } finally {
      rl.close();
    }
  },
};

// Ctrl-C stops the CLI, not what the service already took: say so, so nobody thinks a job was cancelled.
process.once("SIGINT", () => {
  process.stderr.write("\nstackrail: interrupted; a job already queued goes on (stackrail jobs cancel JOB stops it)\n");
  process.exit(130);
});
// `stackrail jobs list | head` closes stdout early; that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await runCli(process.argv.slice(2), io);
