// `npm run bench [-- ingest overhead fanout storm memory rollout github-calls lanes scale]`: runs the benchmarks of
// issues 8, 14 and 18 (all but the opt-in ones by default, in that order), prints one table (name, ours, baseline, ratio, goal, met?) and
// writes it with the machine's description to bench/results/latest.json. A goal that is not met
// is reported, never a failure: the exit code is non-zero only when a benchmark could not run.
// Sizes come from the environment (see bench/README.md). Needs Redis and MariaDB (checked first).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { checkMariaDb, checkRedis } from "../test/support/services.ts";
import { benchFanout } from "./fanout.ts";
import { benchGithubCalls } from "./github-calls.ts";
import { benchIngest } from "./ingest.ts";
import { benchLanes } from "./lanes.ts";
import { benchMemory } from "./memory.ts";
import { benchOverhead } from "./overhead.ts";
import { benchRollout } from "./rollout.ts";
import { benchScale } from "./scale.ts";
import { startCpu, type CpuUse } from "./lib/cpu.ts";
import { machineInfo, renderTable, say, type Row } from "./lib/report.ts";
import { benchStorm } from "./storm.ts";

const BENCHES: Record<string, () => Promise<Row[]>> = {
  ingest: benchIngest,
  overhead: benchOverhead,
  fanout: benchFanout,
  storm: benchStorm,
  memory: benchMemory,
  rollout: benchRollout,
  "github-calls": benchGithubCalls,
  lanes: benchLanes,
  scale: benchScale,
};

/** Run only when named: `scale` provisions 100 tenants with the real engine and releases to 200 more (tens of minutes on a loaded 2-core machine). */
const OPT_IN: ReadonlySet<string> = new Set(["scale"]);

interface Failure {
  readonly bench: string;
  readonly error: string;
}

async function main(): Promise<number> {
  const { positionals } = parseArgs({ allowPositionals: true, strict: true, options: {} });
  const unknown = positionals.filter((p) => !(p in BENCHES));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(BENCHES).join(", ")}\n`);
    return 2;
  }
  const selected = positionals.length > 0 ? Object.keys(BENCHES).filter((b) => positionals.includes(b)) : Object.keys(BENCHES).filter((b) => !OPT_IN.has(b));
  try {
    await checkRedis();
    await checkMariaDb();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }

  const machine = machineInfo();
  say(`machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.memoryMiB} MiB, load ${machine.loadAverage.join(" ")}`);
  const started = Date.now();
  const rows: Row[] = [];
  const failures: Failure[] = [];
  let current = "startup";
  // A rejection nobody handles inside the service under test is reported, not fatal: a crash here
  // would skip the cleanup of everything the benchmark created.
  process.on("unhandledRejection", (reason) => {
    const error = `unhandled rejection (in the service under test?): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`;
    failures.push({ bench: current, error });
    say(error);
  });
  const durations: Record<string, number> = {};
  const cpu: Record<string, CpuUse> = {};
  for (const name of selected) {
    const t0 = Date.now();
    current = name;
    say(`── ${name}`);
    const cpuOf = startCpu();
    try {
      rows.push(...(await (BENCHES[name] as () => Promise<Row[]>)()));
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      failures.push({ bench: name, error });
      say(`${name} could not run: ${error}`);
    }
    durations[name] = Math.round((Date.now() - t0) / 1000);
    cpu[name] = cpuOf();
    say(`${name} took ${durations[name]} s; cores busy: ${cpu[name].oursCores} with it, ${cpu[name].othersCores} with other processes`);
  }

  const table = renderTable(rows);
  process.stdout.write(`\n${table}\n\n`);
  for (const r of rows) process.stdout.write(`  ${r.bench} / ${r.metric}: baseline = ${r.baselineIs}\n`);
  for (const f of failures) process.stdout.write(`  ${f.bench}: COULD NOT RUN: ${f.error}\n`);
  const totalS = Math.round((Date.now() - started) / 1000);
  for (const [name, c] of Object.entries(cpu)) {
    process.stdout.write(`  ${name}: ${c.wallS} s, on average ${c.oursCores} cores busy with the benchmark and ${c.othersCores} with other processes\n`);
  }
  process.stdout.write(
    `\n${selected.length} benchmark(s) in ${totalS} s on ${machine.nproc} CPUs (${machine.cpuModel}), load average at start ${machine.loadAverage.join(" ")}\n`,
  );

  // The opt-in benchmarks write their own file (scale: results/scale-latest.json); a run of only those leaves latest.json alone.
  if (selected.every((b) => OPT_IN.has(b))) return failures.length > 0 ? 1 : 0;
  const outDir = path.join(import.meta.dirname, "results");
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, "latest.json");
  writeFileSync(
    file,
    `${JSON.stringify({ machine: { ...machine, loadAverageAtEnd: machineInfo().loadAverage }, selected, durationsS: durations, cpu, totalS, table: table.split("\n"), rows, failures }, null, 2)}\n`,
  );
  process.stdout.write(`written: ${path.relative(process.cwd(), file)}\n`);
  return failures.length > 0 ? 1 : 0;
}

process.exitCode = await main();
