// Summarizes a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, and the
// same time grouped by where the code lives (a package under node_modules, the project, Node).
// `node bench/lib/cpu-profile-summary.ts <file.cpuprofile | dir> [top] [deliveries]`; with a
// directory, the main thread's profile (the largest file) is read.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [target = ".", topArg = "8", perArg] = process.argv.slice(2);
/** With the number of deliveries the profile covers, each line also says its µs per delivery. */
const deliveries = perArg ? Number(perArg) : 0;
let file = target;
if (statSync(target).isDirectory()) {
  const files = readdirSync(target).filter((f) => f.endsWith(".cpuprofile"));
  file = path.join(target, files.sort((a, b) => statSync(path.join(target, b)).size - statSync(path.join(target, a)).size)[0] ?? "");
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i] as number;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const totalUs = profile.endTime - profile.startTime;

function where(url: string): string {
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "?");
  }
  if (url.startsWith("node:")) return "node";
  if (url === "") return "(native/VM)";
  return "stackrail";
}

const fns = new Map<string, number>();
const groups = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id);
  if (!n) continue;
  const { functionName, url, lineNumber } = n.callFrame;
  const short = url ? `${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/main\//, "")}:${lineNumber + 1}` : "";
  const key = `${functionName || "(anonymous)"} ${short}`.trim();
  fns.set(key, (fns.get(key) ?? 0) + us);
  const g = functionName === "(idle)" ? "(idle)" : functionName === "(garbage collector)" ? "(gc)" : where(url);
  groups.set(g, (groups.get(g) ?? 0) + us);
}
const per = (us: number) => (deliveries > 0 ? `  ${(us / deliveries).toFixed(1).padStart(6)} µs/delivery` : "");
const pct = (us: number) => `${((us / totalUs) * 100).toFixed(1).padStart(5)} %${per(us)}`;
const top = Number(topArg);
const idleUs = groups.get("(idle)") ?? 0;
process.stdout.write(
  `${path.basename(file)}: ${(totalUs / 1e6).toFixed(1)} s profiled, ${((totalUs - idleUs) / 1e6).toFixed(1)} s busy${per(totalUs - idleUs)}\n\ntop ${top} functions by self time:\n`,
);
for (const [k, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${k}\n`);
process.stdout.write("\nself time by origin:\n");
for (const [k, us] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stdout.write(`  ${pct(us)}  ${k}\n`);
