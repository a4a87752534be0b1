// `npm run orphans`: the orphan audit from the command line, with the service's configuration (the
// same environment as `npm start`). Prints a table, or the report as JSON with --json; repairs a
// finding with --repair <id> (repeatable) when the audit can do it itself.
//   exit 0: nothing found; 1: something found (or a repair refused); 2: the audit could not read
//   every source (see "incomplete"), or the configuration is invalid.
import { parseArgs } from "node:util";
import { connectRedis } from "../core/redis.ts";
import { loadConfig, type Config } from "../core/config.ts";
import { engineLocation } from "../core/engine.ts";
import { ConfigError, StackrailError } from "../core/errors.ts";
import { createGitOpsWriter } from "../worker/gitops/writer-factory.ts";
import { auditAndRecord, type OrphanAuditDeps } from "../worker/orphans/audit.ts";
import { repairOrphan } from "../worker/orphans/repair.ts";
import type { OrphanReport, OrphanScope } from "../jobs/orphan-report.ts";
import { JobQueue } from "../jobs/queue.ts";

const USAGE = `usage: npm run orphans -- [--scope server|installation] [--json] [--repair <finding id> ...]`;

function fail(message: string): never {
  process.stderr.write(`orphans: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + " ".repeat(width - text.length);
}

function formatReport(report: OrphanReport): string {
  const lines: string[] = [];
  const took = `${(report.durationMs / 1000).toFixed(1)} s`;
  if (report.findings.length === 0) lines.push(`no orphans (scope ${report.scope}, ${took})`);
  else {
    lines.push(`${report.findings.length} finding(s) (scope ${report.scope}, ${took})`);
    const w = {
      kind: Math.max(4, ...report.findings.map((f) => f.kind.length)),
      name: Math.min(60, Math.max(4, ...report.findings.map((f) => f.name.length))),
      problem: Math.max(7, ...report.findings.map((f) => f.problem.length)),
    };
    lines.push(`${pad("KIND", w.kind)}  ${pad("NAME", w.name)}  ${pad("PROBLEM", w.problem)}  OWNER`);
    for (const f of report.findings) {
      lines.push(`${pad(f.kind, w.kind)}  ${pad(f.name, w.name)}  ${pad(f.problem, w.problem)}  ${f.owner ?? "-"}`);
      if (f.detail) lines.push(`    ${f.detail}`);
      lines.push(`    repair: ${f.repair}`);
    }
  }
  if (report.failed.length > 0) {
    lines.push("", "failed tenants (owned, not orphans; DELETE cleans each up):");
    for (const t of report.failed) lines.push(`  ${t.tenant}: ${t.failure}  →  ${t.repair}`);
  }
  if (report.retained.length > 0) {
    lines.push("", "retained on purpose:");
    for (const r of report.retained) lines.push(`  ${r.kind} ${r.name}: ${r.detail}`);
  }
  if (report.skipped.length > 0) {
    lines.push("", "not checked:");
    for (const s of report.skipped) lines.push(`  ${s}`);
  }
  if (report.incomplete.length > 0) {
    lines.push("", "INCOMPLETE: these sources could not be read, the audit does not cover them:");
    for (const i of report.incomplete) lines.push(`  ${i.source}: ${i.error}`);
  }
  return `${lines.join("\n")}\n`;
}

async function main(): Promise<number> {
  let values: { json?: boolean; scope?: string; repair?: string[]; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: { json: { type: "boolean" }, scope: { type: "string" }, repair: { type: "string", multiple: true }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(`configuration error: ${err.message}`);
    throw err;
  }
  const scope = (values.scope ?? config.orphanScope) as OrphanScope;
  if (scope !== "server" && scope !== "installation") fail("--scope must be server or installation");

  const redis = connectRedis(config.redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5_000, lazyConnect: true });
  redis.on("error", () => undefined);
  await redis.connect().catch((err: unknown) => fail(`REDIS_URL: cannot reach Redis (${(err as Error).message})`));
  const queue = new JobQueue({ connection: redis, prefix: config.queuePrefix });
  try {
    const deps: OrphanAuditDeps & { config: Config } = { config, redis, queue, reader: await createGitOpsWriter(config), engine: engineLocation() };

    if (values.repair && values.repair.length > 0) {
      let refused = 0;
      for (const id of values.repair) {
        try {
          const r = await repairOrphan(deps, id);
          process.stdout.write(`${id}: ${r.message}\n`);
        } catch (err) {
          if (!(err instanceof StackrailError)) throw err;
          refused += 1;
          process.stderr.write(`${id}: ${err.message}\n`);
        }
      }
      return refused > 0 ? 1 : 0;
    }

    const report = await auditAndRecord(deps, { scope });
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    if (report.incomplete.length > 0) return 2;
    return report.findings.length > 0 ? 1 : 0;
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`orphans: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
