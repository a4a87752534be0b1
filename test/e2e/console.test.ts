// The operator console (issue 17 §3) in a real headless browser: Debian's Chromium driven by
// playwright-core, against the whole service (HTTP edge and worker, the real engine). The page
// loads and, without a token, shows only the token prompt; the JSON routes refuse without the
// token; signed in, it shows provisioned tenants with their state; a PR title full of markup is
// rendered as text; and the Approve button of a release waiting at wave 2 makes the rollout go on.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { previewKey } from "../../core/ids.ts";
import type { JobView } from "../../jobs/queue.ts";
import { dropLocalLeftovers, dropTenantLeftovers } from "../support/cleanup.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { pullRequestEvent } from "../support/pull-request-events.ts";

const CHROMIUM = "/usr/bin/chromium";
/** The machine's network is closed: nothing in the browser may try to reach Google's hosts. */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const tag = Math.random().toString(36).slice(2, 7);
// Wave 1 is eu-west-1 (no approval), wave 2 is us-east-1 (waits for approval: the default STACKRAIL_APPROVAL_WAVES).
const e1 = `ce-${tag}`;
const u1 = `cu-${tag}`;
const repoName = `console-${tag}`;
const pr = 7;
const headSha = "c0ffee".padEnd(40, "0");
/** Attacker-controlled text: a PR title is whatever the PR's author typed. */
const hostileTitle = `<img src=x onerror="window.__pwned=1"><b>bold</b><script>window.__pwned=2</script> & "quotes"`;

let h: Harness;
let browser: BrowserContext;
let profile = "";
let page: Page;
/** Every URL the browser requested. */
const requested: string[] = [];

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 360_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function view(id: string): Promise<JobView | null> {
  return (await h.service.queue?.getJobView(id).catch(() => null)) ?? null;
}

const CHROMIUM_MISSING = `the console test drives Debian's Chromium at ${CHROMIUM}, which is missing: apt-get install -y chromium`;

/** Every test fails (none is skipped) on a machine without Chromium, saying what to install. */
function needChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error(CHROMIUM_MISSING);
}

async function launchChromium(): Promise<BrowserContext> {
  needChromium();
  profile = mkdtempSync(path.join(tmpdir(), "stackrail-chromium-"));
  // A fresh profile (--user-data-dir) per run: no cookie, cache or storage from another run.
  return chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

async function signIn(token: string): Promise<void> {
  await page.locator("#token").fill(token);
  await page.locator("#login-form button[type=submit]").click();
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) return;
  browser = await launchChromium();
  h = await startHarness({
    env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1", STACKRAIL_WAVE_MAX_PARALLEL: "2", STACKRAIL_PREVIEW_DEBOUNCE_MS: "0" },
  });
  const jobs: string[] = [];
  for (const [id, region] of [
    [e1, "eu-west-1"],
    [u1, "us-east-1"],
  ] as const) {
    const res = await h.request("POST", "/v1/tenants", { id, region, tier: "pool", version: "1.0.0" });
    expect(res.status).toBe(202);
    jobs.push(res.body.jobId as string);
  }
  for (const jobId of jobs) {
    const job = await h.waitForJob(jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
  }
  page = await browser.newPage();
  page.on("request", (r) => requested.push(r.url()));
}, 900_000);

afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  const closed = await h?.deliver("pull_request", pullRequestEvent({ owner: "acme", repo: repoName, pr, action: "closed", headSha, title: hostileTitle }));
  if (closed?.status === 202) for (const id of closed.body.jobs as string[]) await h.waitForJob(id).catch(() => undefined);
  for (const id of [e1, u1]) {
    const res = await h?.request("DELETE", `/v1/tenants/${id}`);
    if (res?.status === 202) await h.waitForJob(res.body.jobId).catch(() => undefined);
  }
  await h?.close();
  await dropTenantLeftovers([e1, u1]);
  await dropLocalLeftovers("preview", [previewKey(repoName, pr)]);
}, 600_000);

describe("operator console", () => {
  it("serves a page without data under a strict CSP; the JSON routes refuse without the token", async () => {
    needChromium();
    const res = await fetch(`${h.service.url}/console`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("require-trusted-types-for 'script'");
    expect(csp).not.toContain("unsafe");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await res.text();
    // No inline script: every <script> element loads a file.
    expect(html.match(/<script\b[^>]*>/g)).toEqual(['<script type="module" src="/console/console.js">']);
    expect(html).not.toContain(h.token);
    expect(html).not.toContain(e1);
    expect((await fetch(`${h.service.url}/console/console.js`)).headers.get("content-type")).toContain("text/javascript");

    for (const route of ["/v1/releases", "/v1/releases/some-release", "/v1/previews", "/v1/last-jobs", "/v1/tenants", "/v1/jobs"]) {
      for (const headers of [{}, { authorization: "Bearer not-the-token" }, { authorization: `Basic ${Buffer.from(":wrong").toString("base64")}` }]) {
        const refused = await fetch(`${h.service.url}${route}`, { headers });
        expect(refused.status, `${route} ${JSON.stringify(headers)}`).toBe(401);
        expect(JSON.stringify(await refused.json())).not.toContain(e1);
      }
    }
    // With the token: zod-validated queries name the parameter they refuse.
    expect(await h.request("GET", "/v1/releases?limit=0")).toMatchObject({ status: 400, body: { field: "limit" } });
    expect(await h.request("GET", "/v1/previews?state=live")).toMatchObject({ status: 400, body: { field: "state" } });
    expect(await h.request("GET", "/v1/last-jobs?x=1")).toMatchObject({ status: 400, body: { field: "x" } });
    expect((await h.request("GET", "/v1/releases/no-such-release")).status).toBe(404);
    const last = await h.request("GET", "/v1/last-jobs");
    expect(last.status).toBe(200);
    expect(last.body.lastJobs[e1]).toMatchObject({ kind: "tenant.provision", state: "succeeded" });
  });

  it("without a token shows the token prompt and no data", async () => {
    needChromium();
    await page.goto(`${h.service.url}/console#tenants`);
    await expect.poll(() => page.locator("#login").isVisible()).toBe(true);
    expect(await page.locator("#view").isVisible()).toBe(false);
    expect(await page.locator("#view").evaluate((el) => el.childElementCount)).toBe(0);
    expect(await page.locator("body").innerText()).not.toContain(e1);
    // Nothing was asked of the API without a token.
    expect(requested.filter((u) => new URL(u).pathname.startsWith("/v1"))).toEqual([]);

    await signIn("not-the-token");
    await expect.poll(() => page.locator("#login-error").textContent()).toBe("That token was refused.");
    expect(await page.locator("#view").evaluate((el) => el.childElementCount)).toBe(0);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  });

  it("signed in, shows the provisioned tenants with their state and last job; the token stays out of URLs and the page", async () => {
    needChromium();
    await signIn(h.token);
    const row = page.locator(`tr[data-tenant="${e1}"]`);
    await row.waitFor({ timeout: 30_000 });
    const cells = await row.locator("td").allInnerTexts();
    expect(cells[0]).toBe(e1);
    expect(cells[1]).toBe("active");
    expect(cells.slice(2, 5)).toEqual(["pool", "eu-west-1", "1.0.0"]);
    expect(cells[5]).toMatch(/^tenant\.provision succeeded \d+ (s|min) ago$/);
    expect(await page.locator(`tr[data-tenant="${u1}"] td`).nth(3).innerText()).toBe("us-east-1");

    expect(page.url()).toBe(`${h.service.url}/console#tenants`);
    expect(requested.some((u) => u.includes(h.token))).toBe(false);
    expect(await page.content()).not.toContain(h.token);
    expect(await page.evaluate(() => sessionStorage.getItem("stackrail.token"))).toBe(h.token);
  });

  it("renders a PR title full of markup as text, in the previews and the job; the CSP refuses HTML from strings", async () => {
    needChromium();
    const res = await h.deliver("pull_request", pullRequestEvent({ owner: "acme", repo: repoName, pr, action: "opened", headSha, title: hostileTitle }));
    expect(res.status).toBe(202);
    const jobId = res.body.jobs[0] as string;
    await page.goto(`${h.service.url}/console#previews`);
    const row = page.locator(`tr[data-preview="preview-${previewKey(repoName, pr)}"]`);
    await row.waitFor({ timeout: 30_000 });
    expect(await row.locator("td.title").textContent()).toBe(hostileTitle);
    expect(await row.locator("td").first().innerText()).toBe(`acme/${repoName}#${pr}`);
    expect(await row.locator("td").nth(2).innerText()).toBe(headSha.slice(0, 12));
    expect(await page.locator("#view img, #view b, #view script").count()).toBe(0);

    const job = await h.waitForJob(jobId);
    expect(job.state, String(job.error)).toBe("succeeded");
    // The page refreshes by itself: the preview goes live with its URL.
    await expect.poll(() => row.locator("td").nth(4).innerText(), { timeout: 30_000 }).toBe("live");
    const url = String((job.result as { url?: unknown }).url);
    expect(await row.locator("td").nth(3).locator("a").getAttribute("href")).toBe(url);

    await row.locator("td").last().locator("a").click();
    await page.locator("#view details summary", { hasText: "job data" }).click();
    await expect.poll(() => page.locator("#view details pre").first().textContent()).toContain(JSON.stringify(hostileTitle).slice(1, -1));
    expect(await page.locator("#view img, #view b, #view script").count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    // Trusted Types: even the page's own code could not turn a string into markup.
    const refused = await page.evaluate(() => {
      try {
        (globalThis as unknown as { document: { body: { innerHTML: string } } }).document.body.innerHTML = "<b>x</b>";
        return "assigned";
      } catch (err) {
        return (err as Error).name;
      }
    });
    expect(refused).toBe("TypeError");
  });

  it("shows a release waiting for approval with its plan diff; the Approve button makes it go on past the wave", async () => {
    needChromium();
    const created = await h.request("POST", "/v1/releases", { version: "2.0.0" });
    expect(created.status).toBe(202);
    const id = created.body.jobId as string;
    await waitFor(`rollout ${id} to await approval of wave 2`, async () => {
      const v = await view(id);
      if (v && ["failed", "succeeded", "cancelled", "superseded"].includes(v.state)) throw new Error(`rollout ended ${v.state}: ${String(v.error)}`);
      return v?.state === "awaiting-approval" && (await h.request("GET", `/v1/releases/${id}/plan`)).body.awaitingApproval?.wave === 2;
    });

    await page.goto(`${h.service.url}/console#releases`);
    const row = page.locator(`tr[data-release="${id}"]`);
    await row.waitFor({ timeout: 30_000 });
    expect(await row.locator("td").nth(1).innerText()).toContain("awaiting-approval");
    expect(await row.locator("td").nth(2).innerText()).toContain("wave 1 (eu-west-1): 1/1 done");
    expect(await row.locator("td").nth(2).innerText()).toContain("wave 2 (us-east-1): 0/1 done, needs approval");
    await row.getByRole("link", { name: "review and approve wave 2" }).click();

    // Which tenants are done, and the plan diff of the waiting wave.
    const wave1 = page.locator('#view [data-wave="1"]');
    const wave2 = page.locator('#view [data-wave="2"]');
    await wave2.waitFor({ timeout: 30_000 });
    expect(await wave1.locator(`tr[data-tenant="${e1}"]`).getAttribute("data-status")).toBe("done");
    expect(await wave2.locator(`tr[data-tenant="${u1}"]`).getAttribute("data-status")).toBe("pending");
    expect(await wave2.locator(`tr[data-tenant="${u1}"] td`).nth(1).innerText()).toBe("1.0.0 → 2.0.0");
    await wave2.locator(`tr[data-tenant="${u1}"] summary`).click();
    const diff = wave2.locator(`tr[data-tenant="${u1}"] pre.diff`);
    expect(await diff.textContent()).toContain(`--- a/tenants/${u1}/tenant.yaml`);
    expect(await diff.locator("span.add").allTextContents()).toEqual(expect.arrayContaining([expect.stringMatching(/^\+.*2\.0\.0/)]));
    // The rollout's log, live.
    await expect.poll(() => page.locator("pre.log").textContent(), { timeout: 30_000 }).toContain("awaiting-approval: wave 2");

    // While the rollout awaits the approval its log was read once: no follow holds a connection open.
    const follows = () => requested.filter((u) => u.includes(`/v1/jobs/${id}/logs?follow=1`)).length;
    expect(follows()).toBe(0);
    expect(requested.filter((u) => u.endsWith(`/v1/jobs/${id}/logs`)).length).toBeGreaterThan(0);

    // The button approves the wave and plan revision the page shows, and says so to the API.
    const shown = (await h.request("GET", `/v1/releases/${id}/plan`)).body.awaitingApproval as { wave: number; revision: number };
    expect(await page.locator("#view [data-awaiting]").getAttribute("data-revision")).toBe(String(shown.revision));
    const approveSent = page.waitForRequest((r) => r.method() === "POST" && r.url().endsWith(`/v1/releases/${id}/approve`));
    await page.getByRole("button", { name: "Approve wave 2" }).click();
    await page.getByRole("button", { name: "Confirm approval" }).click();
    expect((await approveSent).postDataJSON()).toEqual({ wave: 2, revision: shown.revision });
    await expect.poll(() => page.locator("#view [data-approved]").textContent()).toMatch(/^Wave 2 approved by .+\. The rollout continues\.$/);

    // The API agrees: the approval is recorded and the rollout went on past wave 2.
    const plan = await h.request("GET", `/v1/releases/${id}/plan`);
    expect(plan.body.waves[1].approval).toMatchObject({ wave: 2, via: "api" });
    const job = await h.waitForJob(id, 380_000);
    expect(job.state, String(job.error)).toBe("succeeded");
    expect(job.progress.some((l) => l.startsWith("wave 2 approved by"))).toBe(true);
    expect(job.progress.some((l) => l.startsWith("wave 2 committed"))).toBe(true);
    expect((await h.request("GET", `/v1/tenants/${u1}`)).body.version).toBe("2.0.0");
    const release = await h.request("GET", `/v1/releases/${id}`);
    expect(release.body.waves[1].tenants).toEqual([expect.objectContaining({ id: u1, status: "done" })]);

    // And the page follows without a reload: the live log and the waves.
    await expect.poll(() => page.locator("pre.log").textContent(), { timeout: 30_000 }).toContain("wave 2 approved by");
    await expect.poll(() => wave2.locator(`tr[data-tenant="${u1}"]`).getAttribute("data-status"), { timeout: 30_000 }).toBe("done");
    await expect.poll(() => page.locator("#view h2 .badge").first().textContent(), { timeout: 30_000 }).toBe("succeeded");
  }, 900_000);

  it("lists recent jobs, filtered, and opens one with its log", async () => {
    needChromium();
    await page.goto(`${h.service.url}/console#jobs?kind=tenant.provision`);
    const rows = page.locator("#view tbody tr");
    await rows.first().waitFor({ timeout: 30_000 });
    const subjects = await page.locator("#view tbody tr td:nth-child(3)").allInnerTexts();
    expect(subjects).toEqual(expect.arrayContaining([`${e1} @ 1.0.0`, `${u1} @ 1.0.0`]));
    expect(await page.locator("#view tbody tr td:nth-child(2)").allInnerTexts()).toEqual(subjects.map(() => "tenant.provision"));
    await page
      .locator(`#view tbody tr`, { hasText: `${e1} @ 1.0.0` })
      .locator("a")
      .click();
    await expect.poll(() => page.locator("pre.log").textContent(), { timeout: 30_000 }).toContain("[console] end of log");
    expect(await page.locator("pre.log").textContent()).toMatch(/\S/);
  });
});
