// The `stackrail` commands (commander), each one request to the HTTP API or a job followed to its
// end. Human output by default, `--json` for scripts; exit codes in exit-codes.ts.
import { readFileSync } from "node:fs";
import path from "node:path";
import { Command, CommanderError, Option } from "commander";
import { z } from "zod";
import type { JobState } from "../core/jobs.ts";
import { regionSchema, tenantIdSchema, tierSchema, versionSchema } from "../core/ids.ts";
import { ApiClient, ApiError, displayUrl, parseAnswer } from "./api-client.ts";
import { EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_OK, EXIT_USAGE, worstExit } from "./exit-codes.ts";
import { exitCodeOf, getJob, jobRoute, jobViewSchema, waitForJob, WaitTimeoutError, type AwaitedApproval, type JobViewAnswer } from "./job-wait.ts";
import { age, duration, inline, keyValues, ProgressLine, records, scalar, table, type Terminal } from "./output.ts";
import { UsageError } from "./usage-error.ts";
import { buildDelivery, deliveryAnswerSchema, deliveryHeaders, webhookSecret } from "./webhook-send.ts";

export const DEFAULT_URL = "http://127.0.0.1:8080";

export interface CliIo extends Terminal {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly readStdin: () => Promise<Buffer>;
  /** Asks on the terminal; null when there is none to ask on (scripts must pass --yes). */
  readonly ask: (question: string) => Promise<string | null>;
  readonly fetch?: typeof fetch;
}

interface GlobalOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

interface WaitOptions {
  wait?: boolean;
  timeout?: string;
  throughApproval?: boolean;
}

const JOB_STATES = ["waiting", "running", "awaiting-approval", "succeeded", "failed", "superseded", "cancelled"] as const satisfies readonly JobState[];

const tenantSchema = z.looseObject({
  id: z.string(),
  region: z.string().optional(),
  tier: z.string().optional(),
  version: z.string().nullable().optional(),
  protected: z.boolean().optional(),
  state: z.string().optional(),
  failure: z.unknown().optional(),
  outputs: z.unknown().optional(),
  updatedAt: z.string().nullable().optional(),
});
const tenantListSchema = z.looseObject({ tenants: z.array(tenantSchema) });
const acceptedSchema = z.looseObject({ jobId: z.string() });
const jobListSchema = z.union([z.looseObject({ jobs: z.array(jobViewSchema) }), z.array(jobViewSchema).transform((jobs) => ({ jobs }))]);
const auditSchema = z.looseObject({ entries: z.array(z.record(z.string(), z.unknown())) });

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(import.meta.dirname, "..", "package.json"), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

/** Runs one command line; resolves to the exit code. Nothing here exits the process. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = EXIT_OK;
  const program = buildProgram(
    io,
    (code) => {
      exitCode = code;
    },
    argv,
  );
  try {
    await program.parseAsync([...argv], { from: "user" });
    return exitCode;
  } catch (err) {
    return reportError(err, io, program.opts<GlobalOptions>().json === true || argv.includes("--json"));
  }
}

function reportError(err: unknown, io: CliIo, json: boolean): number {
  if (err instanceof CommanderError) {
    // commander has printed its message (with the usage) already.
    return err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help" ? EXIT_OK : EXIT_USAGE;
  }
  let code = EXIT_FAILED;
  let detail: Record<string, unknown>;
  if (err instanceof UsageError) {
    code = EXIT_USAGE;
    detail = { error: "usage", field: err.field, message: err.message };
  } else if (err instanceof ApiError) {
    // A 400 (or a reused Idempotency-Key) refuses what was typed: a usage error like a local one.
    if (err.status === 400 || err.status === 422) code = EXIT_USAGE;
    detail = { error: err.code, status: err.status, route: `${err.method} ${err.route}`, ...(err.field ? { field: err.field } : {}), message: err.message };
  } else if (err instanceof WaitTimeoutError) {
    detail = { error: "timeout", jobId: err.view.id, state: err.view.state, message: err.message };
  } else {
    detail = { error: "internal", message: err instanceof Error ? err.message : String(err) };
  }
  io.err.write(json ? `${JSON.stringify(detail)}\n` : `stackrail: ${String(detail.message)}\n`);
  return code;
}

function parseWith<S extends z.ZodType>(schema: S, value: unknown, field: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new UsageError(field, r.error.issues[0]?.message ?? "invalid");
}

const SINCE = /^(\d+)([smhd])$/;

/** `--since 2h` or an ISO time, as the ISO time the API filters on. */
export function sinceToIso(value: string, now: number): string {
  const m = SINCE.exec(value);
  if (m) {
    const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "s" | "m" | "h" | "d"];
    return new Date(now - Number(m[1]) * unit * 1000).toISOString();
  }
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new UsageError("--since", "must be a duration (30m, 2h, 7d) or an ISO time");
  return new Date(t).toISOString();
}

function timeoutMs(options: WaitOptions): number | null {
  if (options.timeout === undefined) return null;
  const s = Number(options.timeout);
  if (!Number.isFinite(s) || s <= 0) throw new UsageError("--timeout", "must be a number of seconds");
  return s * 1000;
}

const enc = encodeURIComponent;

export function buildProgram(io: CliIo, setExit: (code: number) => void, argv: readonly string[] = []): Command {
  // Known before parsing, so that an error in parsing itself can already answer in JSON.
  const jsonWanted = argv.includes("--json");
  const program = new Command("stackrail");
  program
    .description("Operate a Stackrail installation over its HTTP API.")
    .addOption(new Option("--url <url>", "the service's address (default: $STACKRAIL_URL, else http://127.0.0.1:8080)"))
    .addOption(new Option("--token <token>", "API token (default: $STACKRAIL_TOKEN; prefer the variable: arguments show in ps)"))
    .option("--json", "print JSON (for scripts) instead of tables")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out.write(s),
      writeErr: (s) => io.err.write(s),
      // With --json a script reads stderr as JSON, usage errors included.
      outputError: (s, write) => write(jsonWanted ? `${JSON.stringify({ error: "usage", message: s.replace(/^error: /, "").trim() })}\n` : s),
    })
    .showHelpAfterError(jsonWanted ? false : "(run with --help for usage)")
    .addHelpText(
      "after",
      `\nExit codes: ${EXIT_OK} done (a waited-on job succeeded), ${EXIT_FAILED} refused, unreachable, or the job failed or was cancelled, ${EXIT_USAGE} usage error (also the API's 400), ${EXIT_AWAITING_APPROVAL} a waited-on rollout waits for an approval (stackrail releases approve JOB).`,
    );

  const globals = (cmd: Command) => cmd.optsWithGlobals<GlobalOptions & WaitOptions & Record<string, unknown>>();

  const client = (cmd: Command, needsToken = true): ApiClient => {
    const o = globals(cmd);
    const raw = o.url ?? io.env.STACKRAIL_URL ?? DEFAULT_URL;
    const source = o.url !== undefined ? "--url" : io.env.STACKRAIL_URL !== undefined ? "STACKRAIL_URL" : "--url";
    let baseUrl: URL;
    try {
      baseUrl = new URL(raw);
    } catch {
      throw new UsageError(source, "is not a URL (e.g. http://127.0.0.1:8080)");
    }
    if (baseUrl.protocol !== "http:" && baseUrl.protocol !== "https:") throw new UsageError(source, "must be an http or https URL");
    const token = o.token ?? io.env.STACKRAIL_TOKEN;
    if (needsToken && !token) throw new UsageError("STACKRAIL_TOKEN", "is not set (nor --token): the API refuses requests without a token");
    if (needsToken && token && baseUrl.protocol === "http:" && !isLoopback(baseUrl.hostname)) {
      io.err.write(`stackrail: warning: the API token goes unencrypted to ${displayUrl(baseUrl)}; use https\n`);
    }
    return new ApiClient({
      baseUrl,
      token: token || undefined,
      ...(io.fetch ? { fetch: io.fetch } : {}),
      ...(o.json
        ? {}
        : { onRetry: (err: ApiError, ms: number) => io.err.write(`stackrail: ${err.message}; trying again in ${duration(Math.max(ms, 1000))}\n`) }),
    });
  };

  /** Prints `data` as JSON, or the human text. */
  const emit = (cmd: Command, data: unknown, human: () => string) => {
    io.out.write(globals(cmd).json ? `${JSON.stringify(data, null, 2)}\n` : human());
  };

  /** After a 202: follow the job with --wait, or say how to. */
  const accepted = async (cmd: Command, what: string, body: unknown, method: string, route: string) => {
    const { jobId } = parseAnswer(method, route, acceptedSchema, body);
    const o = globals(cmd);
    if (o.wait) {
      // The id first: it is what `jobs cancel` needs should the wait be interrupted.
      if (!o.json) io.err.write(`${what}: job ${jobId}\n`);
      setExit((await follow(cmd, jobId)).code);
      return;
    }
    emit(cmd, body, () => `${what}: job ${jobId}\n  follow it: stackrail jobs show ${jobId} --wait\n`);
  };

  /** Follows a job to its end; prints its outcome unless `print` is false. */
  const follow = async (cmd: Command, jobId: string, print = true): Promise<{ code: number; view: JobViewAnswer }> => {
    const o = globals(cmd);
    const api = client(cmd);
    const progress = new ProgressLine(io);
    const quiet = o.json === true;
    let waiting: AwaitedApproval | undefined;
    const view = await waitForJob(
      api,
      jobId,
      {
        onView: (v) => {
          if (!quiet) progress.redraw(v.id, v.state);
        },
        onProgress: (line, v) => {
          if (!quiet) progress.line(v.id, line);
        },
        onSuperseded: (from, to) => {
          if (quiet) return;
          progress.done();
          io.err.write(`job ${from} was superseded by ${to}; following ${to}\n`);
        },
        onUnavailable: (err) => {
          if (!quiet) progress.line(jobId, `(no answer, still waiting: ${err.message})`);
        },
        onAwaitingApproval: (w) => {
          waiting = w;
        },
      },
      { timeoutMs: timeoutMs(o), throughApproval: o.throughApproval === true },
    );
    progress.done();
    // --json: the view itself (its state says awaiting-approval); the exit code says the rest.
    if (print) emit(cmd, view, () => outcomeText(view, { now: io.now(), waitedMs: progress.elapsedMs, waiting }));
    return { code: exitCodeOf(view), view };
  };

  /** `rollout`: the job may be (or follow) a release rollout, which can wait for an approval. */
  const waitOptions = (cmd: Command, rollout = false) => {
    cmd
      .option(
        "--wait",
        rollout
          ? `follow the job until it ends, or until a wave waits for approval (exit ${EXIT_AWAITING_APPROVAL}); the exit code is its outcome`
          : "follow the job until it ends; the exit code is its outcome",
      )
      .option("--timeout <seconds>", "with --wait: stop waiting after this long");
    if (rollout) cmd.option("--through-approval", "with --wait: keep waiting while a wave waits for approval, until the job ends");
    return cmd;
  };

  // A command, as kubectl, argocd and pulumi have: `--version` belongs to the commands that take a version.
  program
    .command("version")
    .description("print the CLI's version")
    .action(() => io.out.write(`${packageVersion()}\n`));

  // ---- tenants -------------------------------------------------------------------------------
  const tenants = program.command("tenants").description("provision, inspect, change and deprovision tenants");

  waitOptions(
    tenants
      .command("create <id>")
      .description("provision a tenant (POST /v1/tenants)")
      .requiredOption("--region <region>", "AWS region name, e.g. eu-west-1")
      .requiredOption("--tier <tier>", "pool or silo")
      .option("--version <version>", "application version (default: the last one rolled out)")
      .option("--idempotency-key <key>", "a retried request with the same key answers what the first did"),
  ).action(async (id: string, _o: unknown, cmd: Command) => {
    const o = globals(cmd);
    const body = {
      id: parseWith(tenantIdSchema, id, "id"),
      region: parseWith(regionSchema, o.region, "--region"),
      tier: parseWith(tierSchema, o.tier, "--tier"),
      ...(o.version !== undefined ? { version: parseWith(versionSchema, o.version, "--version") } : {}),
    };
    const key = typeof o.idempotencyKey === "string" ? { "idempotency-key": o.idempotencyKey } : undefined;
    const res = await client(cmd).request("POST", "/v1/tenants", { body, ...(key ? { headers: key } : {}) });
    await accepted(cmd, `provision of ${body.id} queued`, res.body, "POST", "/v1/tenants");
  });

  tenants
    .command("list")
    .description("every tenant: state, tier, region, version (GET /v1/tenants)")
    .action(async (_o: unknown, cmd: Command) => {
      const { tenants: rows } = await client(cmd).get("/v1/tenants", tenantListSchema);
      const now = io.now();
      emit(cmd, { tenants: rows }, () =>
        rows.length === 0
          ? "no tenants\n"
          : table(rows, [
              { header: "ID", value: (t) => t.id },
              { header: "STATE", value: (t) => scalar(t.state) },
              { header: "TIER", value: (t) => scalar(t.tier) },
              { header: "REGION", value: (t) => scalar(t.region) },
              { header: "VERSION", value: (t) => scalar(t.version) },
              { header: "PROTECTED", value: (t) => (t.protected ? "yes" : "no") },
              { header: "UPDATED", value: (t) => age(t.updatedAt, now) },
            ]),
      );
    });

  tenants
    .command("show <id>")
    .description("one tenant's desired state and last known outputs (GET /v1/tenants/:id)")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const tid = parseWith(tenantIdSchema, id, "id");
      const t = await client(cmd).get(`/v1/tenants/${enc(tid)}`, tenantSchema);
      emit(cmd, t, () =>
        keyValues([
          ["id", t.id],
          ["state", t.state],
          ["tier", t.tier],
          ["region", t.region],
          ["version", t.version],
          ["protected", t.protected ? "yes" : "no"],
          ["updated", t.updatedAt ? `${t.updatedAt} (${age(t.updatedAt, io.now())})` : undefined],
          ["failure", t.failure ?? undefined],
          ["outputs", t.outputs ?? undefined],
        ]),
      );
    });

  waitOptions(
    tenants
      .command("upgrade <id>")
      .description("move a tenant to another version (POST /v1/tenants/:id/upgrade)")
      .requiredOption("--version <version>", "version"),
  ).action(async (id: string, _o: unknown, cmd: Command) => {
    const o = globals(cmd);
    const tid = parseWith(tenantIdSchema, id, "id");
    const route = `/v1/tenants/${enc(tid)}/upgrade`;
    const res = await client(cmd).request("POST", route, { body: { version: parseWith(versionSchema, o.version, "--version") } });
    await accepted(cmd, `upgrade of ${tid} queued`, res.body, "POST", route);
  });

  waitOptions(
    tenants.command("move <id>").description("move a tenant between pool and silo (POST /v1/tenants/:id/move)").requiredOption("--tier <tier>", "pool or silo"),
  ).action(async (id: string, _o: unknown, cmd: Command) => {
    const o = globals(cmd);
    const tid = parseWith(tenantIdSchema, id, "id");
    const route = `/v1/tenants/${enc(tid)}/move`;
    const res = await client(cmd).request("POST", route, { body: { tier: parseWith(tierSchema, o.tier, "--tier") } });
    await accepted(cmd, `move of ${tid} queued`, res.body, "POST", route);
  });

  waitOptions(
    tenants
      .command("delete <id>")
      .description("deprovision a tenant, after a final backup (DELETE /v1/tenants/:id)")
      .option("--yes", "do not ask for confirmation (needed without a terminal)"),
  ).action(async (id: string, _o: unknown, cmd: Command) => {
    const o = globals(cmd);
    const tid = parseWith(tenantIdSchema, id, "id");
    if (!o.yes) {
      const answer = await io.ask(
        `Deprovision ${tid}? Its database, cache space and files are destroyed after a final backup.\nType the tenant id to confirm: `,
      );
      if (answer === null) throw new UsageError("--yes", "is required to deprovision without a terminal to confirm on");
      if (answer.trim() !== tid) {
        io.err.write("not confirmed; nothing was sent\n");
        setExit(EXIT_FAILED);
        return;
      }
    }
    const route = `/v1/tenants/${enc(tid)}`;
    const res = await client(cmd).request("DELETE", route);
    await accepted(cmd, `deprovision of ${tid} queued`, res.body, "DELETE", route);
  });

  // ---- releases ------------------------------------------------------------------------------
  const releases = program.command("releases").description("roll a version out in waves, and steer the rollout");

  waitOptions(releases.command("create <version>").description("roll a version out to every tenant, wave by wave (POST /v1/releases)"), true).action(
    async (version: string, _o: unknown, cmd: Command) => {
      const v = parseWith(versionSchema, version, "version");
      const res = await client(cmd).request("POST", "/v1/releases", { body: { version: v } });
      await accepted(cmd, `rollout of ${v} queued`, res.body, "POST", "/v1/releases");
    },
  );

  releases
    .command("plan <jobId>")
    .description("waves, tenants, versions and diffs of a rollout (GET /v1/releases/:jobId/plan)")
    .action(async (jobId: string, _o: unknown, cmd: Command) => {
      const route = `/v1/releases/${enc(jobId)}/plan`;
      const { body } = await client(cmd).request("GET", route);
      emit(cmd, body, () => planText(body));
    });

  for (const [action, what] of [
    ["approve", "let the waves waiting for approval go on"],
    ["reject", "stop the waves waiting for approval"],
    ["pause", "hold the rollout before its next wave"],
    ["resume", "let a paused rollout go on, or start a stopped one again where it stopped"],
  ] as const) {
    waitOptions(releases.command(`${action} <jobId>`).description(`${what} (POST /v1/releases/:jobId/${action})`), true).action(
      async (jobId: string, _o: unknown, cmd: Command) => {
        const route = `/v1/releases/${enc(jobId)}/${action}`;
        const { body } = await client(cmd).request("POST", route);
        const answer = asRecord(body);
        // A stopped rollout resumes as a new job: follow that one.
        const next = typeof answer.jobId === "string" ? answer.jobId : jobId;
        if (next !== jobId) {
          await accepted(cmd, `rollout ${jobId} resumed`, body, "POST", route);
          return;
        }
        if (globals(cmd).wait) {
          setExit((await follow(cmd, jobId)).code);
          return;
        }
        emit(
          cmd,
          body,
          () =>
            `${action}: rollout ${jobId}\n${keyValues(
              Object.entries(answer).filter(([k]) => k !== "jobId"),
              "  ",
            )}`,
        );
      },
    );
  }

  // ---- jobs ----------------------------------------------------------------------------------
  const jobs = program.command("jobs").description("what the worker does and did");

  jobs
    .command("list")
    .description("jobs, newest first (GET /v1/jobs)")
    .addOption(new Option("--state <state>", "only jobs in this state").choices(JOB_STATES))
    .option("--kind <kind>", "only this kind, e.g. tenant.provision")
    .option("--tenant <id>", "only this tenant's jobs")
    .option("--since <when>", "only jobs created since: a duration (30m, 2h, 7d) or an ISO time")
    .action(async (_o: unknown, cmd: Command) => {
      const o = globals(cmd);
      const query: Record<string, string | undefined> = {
        state: typeof o.state === "string" ? o.state : undefined,
        kind: typeof o.kind === "string" ? o.kind : undefined,
        tenant: typeof o.tenant === "string" ? parseWith(tenantIdSchema, o.tenant, "--tenant") : undefined,
        since: typeof o.since === "string" ? sinceToIso(o.since, io.now()) : undefined,
      };
      const rows = await client(cmd)
        .get("/v1/jobs", jobListSchema, query)
        .then((r) => r.jobs)
        .catch((err: unknown) => {
          // Any 404 here is the route's: say where recent jobs can be seen instead.
          if (err instanceof ApiError && err.status === 404) io.err.write("stackrail: hint: `stackrail audit list` shows recent jobs\n");
          throw err;
        });
      emit(cmd, { jobs: rows }, () => (rows.length === 0 ? "no jobs\n" : jobTable(rows, io.now())));
    });

  waitOptions(jobs.command("show <id>").description("a job's state, progress, result or error (GET /v1/jobs/:id)"), true).action(
    async (id: string, _o: unknown, cmd: Command) => {
      if (globals(cmd).wait) {
        setExit((await follow(cmd, id)).code);
        return;
      }
      const view = await getJob(client(cmd), id);
      emit(cmd, view, () => jobText(view, io.now()));
    },
  );

  jobs
    .command("logs <id>")
    .description("a job's engine output (GET /v1/jobs/:id/logs)")
    .option("--follow", "keep printing until the job ends; the exit code is its outcome")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      setExit(await logs(cmd, id));
    });

  jobs
    .command("cancel <id>")
    .description("a waiting job never runs; a running one is stopped (POST /v1/jobs/:id/cancel)")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { body } = await client(cmd).request("POST", `${jobRoute(id)}/cancel`);
      const state = scalar(asRecord(body).state);
      emit(cmd, body, () => `job ${id}: ${state}\n`);
    });

  const logs = async (cmd: Command, id: string): Promise<number> => {
    const o = globals(cmd);
    const api = client(cmd);
    const route = `${jobRoute(id)}/logs`;
    let res: Response;
    try {
      res = await api.raw("GET", route, {
        ...(o.follow ? { query: { follow: "1" }, timeoutMs: null } : {}),
        headers: { accept: "text/plain, application/json" },
      });
    } catch (err) {
      // A server without the logs route still has the job's progress lines: show those, and say so.
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
      const view = await getJob(api, id);
      io.err.write(`stackrail: ${err.message}; showing the job's progress lines instead\n`);
      if (!o.follow) {
        for (const line of view.progress) io.out.write(`${line}\n`);
        return EXIT_OK;
      }
      // As the log stream does: to the job's end, through any wait for an approval.
      const final = await waitForJob(api, id, { onProgress: (line) => io.out.write(`${line}\n`) }, { throughApproval: true });
      return exitCodeOf(final);
    }
    if ((res.headers.get("content-type") ?? "").includes("application/json")) {
      const body = asRecord(await res.json());
      const lines = Array.isArray(body.lines) ? body.lines : Array.isArray(body.logs) ? body.logs : null;
      io.out.write(lines ? lines.map((l) => `${scalar(l)}\n`).join("") : `${JSON.stringify(body, null, 2)}\n`);
    } else if (res.body) {
      const decoder = new TextDecoder();
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) io.out.write(decoder.decode(chunk, { stream: true }));
      io.out.write(decoder.decode());
    }
    if (!o.follow) return EXIT_OK;
    // The stream ends with the job: its outcome is the exit code.
    return exitCodeOf(await waitForJob(api, id, {}, { throughApproval: true }));
  };

  // ---- dead letters --------------------------------------------------------------------------
  const dead = program.command("dead-letters").description("jobs whose transient failures used up their retries");

  dead
    .command("list")
    .description("GET /v1/dead-letters")
    .action(async (_o: unknown, cmd: Command) => {
      const { jobs: rows } = await client(cmd).get("/v1/dead-letters", z.looseObject({ jobs: z.array(jobViewSchema) }));
      const now = io.now();
      emit(cmd, { jobs: rows }, () =>
        rows.length === 0
          ? "no dead letters\n"
          : table(rows, [
              { header: "ID", value: (j) => j.id },
              { header: "KIND", value: (j) => j.kind },
              { header: "STACK", value: (j) => scalar(j.stack) },
              { header: "ATTEMPTS", value: (j) => scalar(j.attempts) },
              { header: "FAILED", value: (j) => age(j.finishedAt, now) },
              { header: "ERROR", value: (j) => scalar(j.error).slice(0, 120) },
            ]),
      );
    });

  waitOptions(dead.command("retry <id>").description("run a dead-lettered job again (POST /v1/dead-letters/:id/retry)"), true).action(
    async (id: string, _o: unknown, cmd: Command) => {
      const route = `/v1/dead-letters/${enc(id)}/retry`;
      const res = await client(cmd).request("POST", route);
      await accepted(cmd, `retry of ${id} queued`, res.body, "POST", route);
    },
  );

  // ---- audit ---------------------------------------------------------------------------------
  const audit = program.command("audit").description("who asked for what, and what exists without an owner");

  audit
    .command("orphans")
    .description("what exists without an owner, and what is owned but missing (GET /v1/audit/orphans)")
    .addOption(
      new Option("--scope <scope>", "server: everything on the servers; installation: only what this installation knows of").choices([
        "server",
        "installation",
      ]),
    )
    .action(async (_o: unknown, cmd: Command) => {
      const o = globals(cmd);
      const { body } = await client(cmd).request("GET", "/v1/audit/orphans", typeof o.scope === "string" ? { query: { scope: o.scope } } : {});
      emit(cmd, body, () => sectionsText(body));
    });

  audit
    .command("list")
    .description("the audit trail: who asked for each job and what it changed (GET /v1/audit)")
    .option("--limit <n>", "at most this many entries", "50")
    .action(async (_o: unknown, cmd: Command) => {
      const o = globals(cmd);
      const { entries } = await client(cmd).get("/v1/audit", auditSchema, { limit: typeof o.limit === "string" ? o.limit : undefined });
      const now = io.now();
      emit(cmd, { entries }, () =>
        entries.length === 0
          ? "no entries\n"
          : table(entries, [
              { header: "JOB", value: (e) => scalar(e.jobId) },
              { header: "KIND", value: (e) => scalar(e.kind) },
              { header: "STACK", value: (e) => scalar(e.stack) },
              { header: "STATE", value: (e) => scalar(e.state) },
              { header: "BY", value: (e) => triggerText(e.requestedBy) },
              { header: "REQUESTED", value: (e) => age(typeof e.requestedAt === "string" ? e.requestedAt : null, now) },
              { header: "COMMIT", value: (e) => scalar(asRecord(e.changed).commit).slice(0, 12) },
            ]),
      );
    });

  // ---- webhook -------------------------------------------------------------------------------
  const webhook = program.command("webhook").description("test an installation's GitHub webhook route");

  waitOptions(
    webhook
      .command("send <event>")
      .description("send a delivery signed with $STACKRAIL_WEBHOOK_SECRET (or $GITHUB_WEBHOOK_SECRET) to POST /webhooks/github")
      .option("--file <payload.json>", "the payload, as GitHub sends it (- reads stdin); ping needs none")
      .option("--repo <owner/name>", "set the payload's repository")
      .option("--delivery <id>", "X-GitHub-Delivery (default: a new UUID; repeat one to test redelivery)"),
    true,
  ).action(async (event: string, _o: unknown, cmd: Command) => {
    const o = globals(cmd);
    const delivery = await buildDelivery({
      event,
      file: typeof o.file === "string" ? o.file : undefined,
      repo: typeof o.repo === "string" ? o.repo : undefined,
      deliveryId: typeof o.delivery === "string" ? o.delivery : undefined,
      readStdin: io.readStdin,
    });
    const secret = webhookSecret(io.env);
    const res = await client(cmd, false).request("POST", "/webhooks/github", {
      rawBody: delivery.body,
      headers: deliveryHeaders(delivery, secret),
      auth: false,
    });
    const answer = parseAnswer("POST", "/webhooks/github", deliveryAnswerSchema, res.body);
    const waitFor = o.wait ? answer.jobs : [];
    if (!o.json) {
      let text = `${res.status} accepted: delivery ${answer.deliveryId} (${event})\n`;
      if (answer.duplicateOf) text += `  the same body was delivered before as ${answer.duplicateOf}; nothing new was queued\n`;
      if (answer.ignored) text += `  ignored: ${answer.ignored}\n`;
      for (const jobId of answer.jobs) text += `  job ${jobId}${o.wait ? "" : `  (stackrail jobs show ${jobId} --wait)`}\n`;
      if (answer.jobs.length === 0 && !answer.ignored) text += "  no job for this event\n";
      io.out.write(text);
    }
    const codes: number[] = [];
    const views: JobViewAnswer[] = [];
    for (const jobId of waitFor) {
      const { code, view } = await follow(cmd, jobId, !o.json);
      codes.push(code);
      views.push(view);
    }
    if (o.json) io.out.write(`${JSON.stringify({ status: res.status, ...answer, ...(o.wait ? { jobViews: views } : {}) }, null, 2)}\n`);
    setExit(worstExit(codes));
  });

  return program;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function triggerText(trigger: unknown): string {
  const t = asRecord(trigger);
  switch (t.type) {
    case "api":
      return `api:${scalar(t.tokenName)}`;
    case "webhook":
      return `github:${scalar(t.event)}${t.sender ? `:${scalar(t.sender)}` : ""}`;
    case "schedule":
      return `schedule:${scalar(t.name)}`;
    case "job":
      return `job:${scalar(t.parentJobId)}`;
    default:
      return "-";
  }
}

function jobTable(rows: readonly JobViewAnswer[], now: number): string {
  return table(rows, [
    { header: "ID", value: (j) => j.id },
    { header: "KIND", value: (j) => j.kind },
    { header: "STACK", value: (j) => scalar(j.stack) },
    { header: "STATE", value: (j) => j.state },
    { header: "BY", value: (j) => triggerText(j.trigger) },
    { header: "CREATED", value: (j) => age(j.createdAt, now) },
  ]);
}

/**
 * How long a job took: from when it was queued (createdAt) to its end. Not from `startedAt`: that
 * is the start of the job's last run, and a job can run more than once (a rollout runs again after
 * its wave's steps, and after each approval), so it would count only the last few seconds.
 */
export function tookMs(view: JobViewAnswer, now?: number): number | undefined {
  const from = view.createdAt ? Date.parse(view.createdAt) : Number.NaN;
  const to = view.finishedAt ? Date.parse(view.finishedAt) : (now ?? Number.NaN);
  return Number.isFinite(from) && Number.isFinite(to) ? Math.max(0, to - from) : undefined;
}

function elapsedOf(view: JobViewAnswer): string | undefined {
  const ms = tookMs(view);
  return ms === undefined ? undefined : `${duration(ms)} (from queued to finished)`;
}

function jobText(view: JobViewAnswer, now: number): string {
  const tail = view.progress.slice(-20);
  let text = keyValues([
    ["job", view.id],
    ["kind", view.kind],
    ["stack", view.stack],
    ["state", view.supersededBy ? `${view.state} (by ${view.supersededBy})` : view.state],
    ["by", triggerText(view.trigger)],
    ["created", view.createdAt ? `${view.createdAt} (${age(view.createdAt, now)})` : undefined],
    ["started", view.startedAt ?? undefined],
    ["finished", view.finishedAt ?? undefined],
    ["took", elapsedOf(view)],
    ["attempts", view.attempts],
    ["error", view.error],
    ["result", view.result ?? undefined],
  ]);
  if (tail.length > 0) {
    text += `progress${view.progress.length > tail.length ? ` (last ${tail.length} of ${view.progress.length}; stackrail jobs logs ${view.id})` : ""}\n`;
    text += tail.map((l) => `  ${l}\n`).join("");
  }
  return text;
}

/** The end of a wait: the job's outcome (stdout), or what a rollout waits for and how to give it. */
export function outcomeText(view: JobViewAnswer, wait: { now: number; waitedMs: number; waiting?: AwaitedApproval | undefined }): string {
  const job = `job ${view.id} (${view.kind}${view.stack ? `, ${view.stack}` : ""})`;
  const took = tookMs(view, wait.now);
  if (view.state === "awaiting-approval") {
    const w = wait.waiting;
    const wave =
      w && w.wave !== null
        ? ` of wave ${w.wave}${w.regions.length > 0 ? ` (${w.regions.join(", ")})` : ""}${w.revision !== null ? `, plan revision ${w.revision}` : ""}`
        : "";
    const since = took === undefined ? `, after waiting ${duration(wait.waitedMs)}` : `, ${duration(took)} after it was queued`;
    return (
      `${job} awaiting-approval${wave}${since}\n` +
      `waiting for approval: stackrail releases approve ${view.id}\n` +
      `  the plan and its diffs: stackrail releases plan ${view.id}; to stop the rollout instead: stackrail releases reject ${view.id}\n`
    );
  }
  // The first line's form is what scripts and the README match; the line under it says what the time counts.
  let text =
    took !== undefined && view.finishedAt
      ? `${job} ${view.state} after ${duration(took)}\n  counted from when it was queued (${view.createdAt ?? "-"}) to its end (${view.finishedAt})\n`
      : `${job} ${view.state} after ${duration(wait.waitedMs)}\n  counted from when this command began waiting (the service did not say when the job was queued)\n`;
  if (view.error) text += `  error: ${view.error}\n`;
  const result = asRecord(view.result);
  if (view.state === "succeeded" && Object.keys(result).length > 0) text += keyValues(Object.entries(result), "  ");
  return text;
}

/** A rollout plan: waves with their tenants and diffs when the answer has them, else the JSON. */
function planText(body: unknown): string {
  const plan = asRecord(body);
  if (!Array.isArray(plan.waves)) return `${JSON.stringify(body, null, 2)}\n`;
  let text = keyValues(Object.entries(plan).filter(([k]) => k !== "waves"));
  for (const [i, raw] of plan.waves.entries()) {
    const wave = asRecord(raw);
    const { tenants, ...rest } = wave;
    text += `wave ${scalar(wave.wave ?? i + 1)}\n${keyValues(
      Object.entries(rest).filter(([k]) => k !== "wave" && !k.toLowerCase().includes("diff")),
      "  ",
    )}`;
    if (Array.isArray(tenants)) for (const t of tenants) text += `  - ${typeof t === "string" ? t : JSON.stringify(t)}\n`;
    for (const [k, v] of Object.entries(rest)) {
      if (k.toLowerCase().includes("diff") && typeof v === "string") text += `  ${k}:\n${v.replace(/^/gm, "    ")}\n`;
    }
  }
  return text;
}

/** An answer of named lists (the orphan audit): its scalars first, then each list under its name. */
function sectionsText(body: unknown): string {
  const record = asRecord(body);
  const entries = Object.entries(record);
  let text = keyValues(entries.filter(([, v]) => !Array.isArray(v)));
  for (const [key, value] of entries) {
    if (!Array.isArray(value)) continue;
    text += `${key} (${value.length})\n`;
    const objects = value.filter((v): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v));
    if (objects.length === value.length) text += records(objects);
    else for (const item of value) text += `  ${inline(item)}\n`;
  }
  return text || `${JSON.stringify(body)}\n`;
}
