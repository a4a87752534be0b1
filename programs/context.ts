// What a program needs to know about where it runs; built by the worker from core/config.ts.
export interface ProgramContext {
  target: "local" | "aws";
  /** STACKRAIL_DATA_DIR: tenant directories live under `<dataDir>/attachments`. */
  dataDir: string;
  localMysqlUrl: string;
  localRedisUrl: string;
  /** Dedicated servers for silo tenants on the local target; the shared ones when unset. */
  localSiloMysqlUrl?: string;
  localSiloRedisUrl?: string;
}
