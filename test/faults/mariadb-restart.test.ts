// The tenants' MariaDB crashes (SIGKILL) and comes back while a provision's `up` is creating the
// tenant's database objects. A private mariadbd, initialised the normal way, so grants behave as
// on the shared server: the job survives the outage (a database restart is transient), and the
// tenant ends with its database, its user and exactly its grants.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logicalNames } from "../../core/naming.ts";
import { expectCleanCase } from "../support/fault-expect.ts";
import { startFaultInstallation, type FaultInstallation } from "../support/fault-installation.ts";
import { ensureWorkers, progressStep } from "../support/fault-steps.ts";
import { startPrivateMariaDb, type PrivateMariaDb } from "../support/private-services.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

let inst: FaultInstallation;
let maria: PrivateMariaDb;
let dir = "";

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "stackrail-faults-mariadb-"));
  // Loud, not skipped: without a private server this case cannot run safely (3306 serves other tests).
  maria = await startPrivateMariaDb(dir);
  inst = await startFaultInstallation({ label: "maria", env: { LOCAL_MYSQL_URL: maria.url } });
  await ensureWorkers(inst, 1);
});

afterAll(async () => {
  await inst?.close();
  await maria?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("MariaDB restart", () => {
  it("crash and restart of MariaDB mid-up: the provision completes with exactly its grants", async () => {
    const id = inst.tenantId("db");
    const names = logicalNames("tenant", id);
    const jobId = await inst.provision(id);
    await progressStep("creating", (lines) => lines.some((l) => l.startsWith("create "))).reach(inst, jobId);
    await maria.restart({ crash: true, downMs: 3000 });
    const view = await inst.waitForFinal(jobId);
    expect(view.state, `${view.error ?? ""} | ${view.progress.slice(-5).join(" | ")}`).toBe("succeeded");
    expect(await maria.query<unknown[]>("SHOW DATABASES LIKE ?", [names.database])).toHaveLength(1);
    const grants = await maria.query<Record<string, string>[]>(`SHOW GRANTS FOR '${names.dbUser}'@'%'`);
    const text = grants.map((g) => Object.values(g)[0]).join("\n");
    // Exactly its own database: `_` escaped, so the grant is no pattern matching other names (issue 11).
    expect(text).toContain(`ON \`${names.database.replaceAll("_", "\\_")}\`.*`);
    expect(text, "nothing global beyond USAGE").not.toMatch(/GRANT (?!USAGE)[A-Z ,]+ ON \*\.\*/);
    expect((await inst.api("GET", `/v1/tenants/${id}`)).body).toMatchObject({ id, state: "active" });
    expect(inst.commits().filter((c) => c.jobId === jobId)).toHaveLength(1);
    await expectCleanCase(inst, "mariadb-crash-restart", [jobId], null);
  });
});
