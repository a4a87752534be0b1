// Writes an owned object's lost ownership entry again (a registry row, an ACL owner field, a
// directory marker) from its owner stack's state: the stack's `owner` input is the value the
// providers recorded. It is read decrypted (with the passphrase) inside this process only; what is
// written is its record (key and digest, programs/local/handler.ts ownerRecord), never the token.
// An entry that exists by now is left as it is, whoever wrote it.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import mysql from "mysql2/promise";
import { Redis } from "ioredis";
import { ConflictError } from "../../core/errors.ts";
import type { EngineLocation } from "../../core/engine.ts";
import { ownerRecord } from "../../programs/local/handler.ts";
import { OWNER_REGISTRY } from "../../programs/local/mysql-ops.ts";
import { ACL_OWNERS_KEY } from "../../programs/local/redis-ops.ts";
import { PROJECT_NAME, tenantProject } from "../handlers/tenant-support.ts";
import type { AuditConfig } from "./audit.ts";
import { auditWorkspace } from "./stacks.ts";
import type { OrphanFinding } from "../../jobs/orphan-report.ts";

interface StateResource {
  readonly type?: string;
  readonly outputs?: Record<string, unknown>;
}

/** A value of an exported state: plain, or a secret shown as `{<sig>: …, plaintext: "<json>"}`. */
function plain(value: unknown): unknown {
  if (typeof value === "object" && value !== null && "plaintext" in value) {
    try {
      return JSON.parse(String(value.plaintext));
    } catch {
      return undefined;
    }
  }
  return value;
}

/** Which stack owns the object, and which of its resources it is. */
function locate(f: OrphanFinding): { project: string; stack: string; type: string; matches: (o: Record<string, unknown>) => boolean } {
  const key = /^(?:tenant|preview) ([a-z0-9][a-z0-9-]*[a-z0-9])\b/.exec(f.owner ?? "")?.[1];
  if (!key) throw new ConflictError(`${f.id}: its owner cannot be told from the audit`);
  const letter = f.kind === "directory" ? ({ tenants: "t", silo: "s", previews: "p" } as Record<string, string>)[f.name.split("/")[0] ?? ""] : f.name[0];
  const project = letter === "p" ? PROJECT_NAME : tenantProject(letter === "s" ? "silo" : "pool");
  const stack = `${letter === "p" ? "preview" : "tenant"}-${key}`;
  switch (f.kind) {
    case "database":
      return { project, stack, type: "MysqlDatabase", matches: (o) => plain(o.name) === f.name };
    case "database-user":
      return { project, stack, type: "MysqlUser", matches: (o) => `${String(plain(o.user))}@${String(plain(o.host))}` === f.name };
    case "acl-user":
      return { project, stack, type: "RedisAclUser", matches: (o) => plain(o.username) === f.name };
    case "directory":
      return { project, stack, type: "Directory", matches: (o) => plain(o.relativePath) === f.name };
    default:
      throw new ConflictError(`${f.id}: not an object with an ownership entry`);
  }
}

export async function reRecordOwner(
  f: OrphanFinding,
  config: Pick<AuditConfig, "dataDir" | "pulumiBackendUrl" | "pulumiPassphrase" | "localMysqlUrl" | "localRedisUrl">,
  engine: EngineLocation,
): Promise<string> {
  const where = locate(f);
  const { workspace, close } = await auditWorkspace(config, engine);
  let owner: string | undefined;
  try {
    const state = (await workspace.exportStack(`organization/${where.project}/${where.stack}`)) as { deployment?: { resources?: StateResource[] } };
    for (const r of state.deployment?.resources ?? []) {
      if (!r.type?.endsWith(`:${where.type}`) || !r.outputs || !where.matches(r.outputs)) continue;
      const value = plain(r.outputs.owner);
      if (typeof value === "string") owner = ownerRecord(value);
    }
  } finally {
    close();
  }
  if (owner === undefined) throw new ConflictError(`${f.id}: stack ${where.project}/${where.stack} does not record an owner for it`);

  if (f.kind === "database" || f.kind === "database-user") {
    const c = await mysql.createConnection({ uri: config.localMysqlUrl, connectTimeout: 10_000 });
    try {
      const [res] = await c.query<mysql.ResultSetHeader>(`INSERT IGNORE INTO ${OWNER_REGISTRY} (kind, name, owner) VALUES (?, ?, ?)`, [
        f.kind === "database" ? "database" : "user",
        f.name,
        owner,
      ]);
      return res.affectedRows > 0 ? `recorded ${where.stack} as the owner of ${f.name}` : `${f.name} has an owner row by now; left as it is`;
    } finally {
      await c.end();
    }
  }
  if (f.kind === "acl-user") {
    const r = new Redis(config.localRedisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 10_000, retryStrategy: () => null });
    r.on("error", () => undefined);
    try {
      await r.connect();
      await r.select(0);
      const set = await r.hsetnx(ACL_OWNERS_KEY, f.name, owner);
      return set === 1 ? `recorded ${where.stack} as the owner of ACL user ${f.name}` : `${f.name} has an owner entry by now; left as it is`;
    } finally {
      r.disconnect();
    }
  }
  const marker = path.join(config.dataDir, "attachments", ".owners", f.name);
  await mkdir(path.dirname(marker), { recursive: true, mode: 0o700 });
  try {
    await writeFile(marker, `${owner}\n`, { flag: "wx", mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return `${f.name} has an owner marker by now; left as it is`;
  }
  return `recorded ${where.stack} as the owner of directory ${f.name}`;
}
