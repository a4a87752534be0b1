// Entry point of `npm start`: the HTTP edge and the worker in one process by default,
// `--role api` or `--role worker` to split them. Configuration is parsed once here.
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { Counter } from "prom-client";
import { loadConfig, secretValues, type Config } from "./core/config.ts";
import { engineLocation } from "./core/engine.ts";
import { ConfigError } from "./core/errors.ts";
import { createLogger, SecretScrubber } from "./core/logger.ts";
import { assertNoEviction, assertStandaloneServer, isClusterUrl, workerConnection } from "./core/redis.ts";
import { startService, type Role } from "./service.ts";

function parseRole(argv: string[]): Role {
  const { values } = parseArgs({ args: argv, options: { role: { type: "string", default: "all" } }, strict: true });
  const role = values.role;
  if (role !== "all" && role !== "api" && role !== "worker") {
    throw new ConfigError("--role", `must be api, worker or all (got "${role}")`);
  }
  return role;
}

function refuse(message: string): never {
  process.stderr.write(`stackrail: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let config: Config;
  let role: Role;
  try {
    role = parseRole(process.argv.slice(2));
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof TypeError) refuse(`configuration error: ${err.message}`);
    throw err;
  }
  const scrubber = new SecretScrubber();
  scrubber.add(...secretValues(config));
  const logger = createLogger({ level: config.logLevel, scrubber, base: { role } });

  // No error of one job may take the service down: a promise nobody awaited that rejects is a
  // bug to find (logged at error level and counted), not a reason to drop every other job. An
  // exception thrown out of the event loop leaves state nobody can vouch for: logged, then exit.
  const counted: { unhandled?: Counter } = {};
  process.on("unhandledRejection", (reason: unknown) => {
    counted.unhandled?.inc();
    logger.error({ err: reason }, "unhandled promise rejection (the process keeps running)");
  });
  process.on("uncaughtException", (err: Error) => {
    logger.fatal({ err }, "uncaught exception; exiting");
    logger.flush();
    process.exit(1);
  });

  const probe = workerConnection(config.redisUrl, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1 });
  try {
    await probe.connect();
    await assertNoEviction(probe);
    // Tenant caches cannot live on a cluster (per-tenant ACL users, databases, server-wide purge).
    if (isClusterUrl(config.redisUrl) && config.target === "local") await assertStandaloneServer(config.localRedisUrl);
  } catch (err) {
    refuse(err instanceof ConfigError ? err.message : `REDIS_URL: cannot reach Redis (${(err as Error).message})`);
  } finally {
    probe.disconnect();
  }
  const engine = engineLocation();
  if (role !== "api" && !existsSync(engine.pulumi)) {
    refuse(`the Pulumi engine is missing at ${engine.pulumi}; run npm ci (or node scripts/install-engine.ts)`);
  }

  const service = await startService(config, { role, logger, engine });
  counted.unhandled = new Counter({
    name: "stackrail_unhandled_rejections_total",
    help: "Promise rejections nobody handled (each is a bug; the process kept running)",
    registers: [service.metrics.registry],
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "shutting down");
    // A close that cannot reach Redis (BullMQ waits to move the running job) would never end: past the
    // grace period and a margin for the engine's own cancel, exit anyway. The job's lock then expires
    // and another worker takes it over, as after a crash.
    const deadline = config.shutdownGraceMs + 30_000;
    setTimeout(() => {
      logger.error({ graceMs: config.shutdownGraceMs, deadlineMs: deadline }, "shutdown did not finish in time; exiting");
      logger.flush();
      process.exit(1);
    }, deadline).unref();
    service.close().then(
      () => {
        logger.info("stopped");
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  logger.info(
    { url: service.url, metricsUrl: service.metricsUrl, probeUrl: service.probeUrl, engine: engine.version, target: config.target },
    "stackrail started",
  );
}

await main();
