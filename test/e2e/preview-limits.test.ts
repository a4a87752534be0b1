// The cap on live previews holds new ones in the queue with a comment saying why, and the idle
// reaper destroys previews that saw no activity for the configured time.
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.ts";
import { TEST_MYSQL_URL } from "../support/services.ts";

let h: Harness;
let db: mysql.Connection;
const repo = `lim-${Math.random().toString(36).slice(2, 6)}`;
const sha = (n: number): string => n.toString(16).padStart(40, "b");

function prEvent(action: string, pr: number, headSha: string): Record<string, unknown> {
  const repository = {
    id: 1,
    name: repo,
    full_name: `acme/${repo}`,
    owner: { login: "acme", id: 1, type: "Organization" },
    default_branch: "main",
    private: false,
  };
  return {
    action,
    number: pr,
    repository,
    sender: { login: "octocat", id: 2, type: "User" },
    pull_request: {
      number: pr,
      title: `PR ${pr}`,
      state: action === "closed" ? "closed" : "open",
      merged: false,
      user: { login: "octocat", id: 2, type: "User" },
      head: { ref: `feature-${pr}`, sha: headSha, repo: repository },
      base: { ref: "main", sha: sha(999), repo: repository },
      author_association: "MEMBER",
    },
  };
}

async function dbExists(pr: number): Promise<boolean> {
  const [rows] = await db.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [`p_${repo.replace(/-/g, "_")}_pr_${pr}`]);
  return rows.length === 1;
}

beforeAll(async () => {
  // One live preview at most; idle after 4 s; the scheduler looks every 500 ms.
  h = await startHarness({ env: { STACKRAIL_MAX_PREVIEWS: "1", STACKRAIL_PREVIEW_TTL_HOURS: String(4 / 3600), STACKRAIL_SCHEDULER_INTERVAL_MS: "500" } });
  db = await mysql.createConnection({ uri: TEST_MYSQL_URL });
});

afterAll(async () => {
  for (const pr of [1, 2]) await db?.query(`DROP DATABASE IF EXISTS \`p_${repo.replace(/-/g, "_")}_pr_${pr}\``);
  await db?.end();
  await h?.close();
});

describe("preview limits", () => {
  it("holds a preview over the cap in the queue, saying why, until a slot frees; the reaper destroys idle previews", async () => {
    const one = await h.deliver("pull_request", prEvent("opened", 1, sha(1)));
    expect((await h.waitForJob(one.body.jobs[0])).state).toBe("succeeded");
    expect(await dbExists(1)).toBe(true);

    const two = await h.deliver("pull_request", prEvent("opened", 2, sha(2)));
    const twoId = two.body.jobs[0] as string;
    // PR 2 waits: the cap is reached, and its record says why.
    let view = await h.service.queue?.getJobView(twoId);
    for (let i = 0; i < 100 && !view?.progress.some((l) => l.startsWith("waiting: 1 live previews, cap 1")); i++) {
      await new Promise((r) => setTimeout(r, 100));
      view = await h.service.queue?.getJobView(twoId).catch(() => view);
    }
    expect(view?.progress.some((l) => l.startsWith("waiting: 1 live previews, cap 1"))).toBe(true);
    expect(view?.state).not.toBe("succeeded");
    expect(await dbExists(2)).toBe(false);

    // PR 1 goes idle; the reaper destroys it, which frees the slot for PR 2.
    const done = await h.waitForJob(twoId, 120_000);
    expect(done.state, String(done.error)).toBe("succeeded");
    expect(await dbExists(1)).toBe(false);
    expect(await dbExists(2)).toBe(true);
    expect(h.gitLog().some((l) => l.includes(`preview-destroy ${repo}-pr-1`))).toBe(true);
    // And PR 2, idle in turn, is reaped as well.
    for (let i = 0; i < 200 && (await dbExists(2)); i++) await new Promise((r) => setTimeout(r, 250));
    expect(await dbExists(2)).toBe(false);
  });
});
