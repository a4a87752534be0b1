// Screenshots of the operator console (/console) for the README, into docs/console-*.png. Run by
// hand after a change to the page (README, "Console"):
//
//   node_modules/.bin/node scripts/console-screenshots.ts
//
// It starts the whole service on the embedded default (as `npm run demo` does: Redis and MariaDB
// must be up), provisions three tenants, opens a PR preview, starts a release that waits for the
// approval of its second wave, takes one screenshot per view with Debian's Chromium
// (`apt-get install -y chromium`) driven by playwright-core, then removes everything it made.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { PROJECT_ROOT } from "../core/engine.ts";
import { previewKey } from "../core/ids.ts";
import { dropLocalLeftovers, dropTenantLeftovers } from "../test/support/cleanup.ts";
import { startHarness, type Harness } from "../test/support/harness.ts";
import { pullRequestEvent } from "../test/support/pull-request-events.ts";
import { checkMariaDb, checkRedis } from "../test/support/services.ts";

const CHROMIUM = "/usr/bin/chromium";
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
const DOCS = path.join(PROJECT_ROOT, "docs");
const TENANTS = [
  ["acme-eu", "eu-west-1"],
  ["globex-eu", "eu-west-1"],
  ["initech-us", "us-east-1"],
] as const;
const REPO = "storefront";
const PR = 42;
const HEAD = "3f9c2b7d41e8a6c05b9d2e7f18a4c6b3d5e7f901";

type Accepted = { jobId: string };
type Delivered = { jobs: string[] };
type Plan = { awaitingApproval?: { wave: number } };

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 400_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function shoot(page: Page, base: string, name: string, hash: string, ready: string): Promise<void> {
  await page.goto(`${base}${hash}`);
  await page.locator(ready).first().waitFor({ timeout: 30_000 });
  const file = path.join(DOCS, `console-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  out(`wrote ${path.relative(PROJECT_ROOT, file)}`);
}

async function main(): Promise<void> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  await checkRedis();
  await checkMariaDb();
  mkdirSync(DOCS, { recursive: true });
  const profile = mkdtempSync(path.join(tmpdir(), "stackrail-chromium-"));
  let h: Harness | undefined;
  let browser: BrowserContext | undefined;
  try {
    out("starting the service (embedded default, waves eu-west-1 then us-east-1)");
    h = await startHarness({ env: { STACKRAIL_ROLLOUT_WAVES: "eu-west-1;us-east-1", STACKRAIL_PREVIEW_DEBOUNCE_MS: "0" } });
    const harness = h;
    out("provisioning three tenants at 1.4.0");
    const jobs: string[] = [];
    for (const [id, region] of TENANTS)
      jobs.push(((await h.request("POST", "/v1/tenants", { id, region, tier: "pool", version: "1.4.0" })).body as Accepted).jobId);
    for (const id of jobs) await h.waitForJob(id);
    out("opening a PR preview");
    const preview = await h.deliver(
      "pull_request",
      pullRequestEvent({ owner: "acme", repo: REPO, pr: PR, action: "opened", headSha: HEAD, title: "Checkout: pay by invoice" }),
    );
    for (const id of (preview.body as Delivered).jobs) await h.waitForJob(id);
    out("releasing 1.5.0: wave 1 goes out, wave 2 waits for approval");
    const release = ((await h.request("POST", "/v1/releases", { version: "1.5.0" })).body as Accepted).jobId;
    await until(
      "the release to wait for approval",
      async () => ((await harness.request("GET", `/v1/releases/${release}/plan`)).body as Plan).awaitingApproval?.wave === 2,
    );

    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 760 },
    });
    const page = await browser.newPage();
    const base = `${h.service.url}/console`;
    await page.goto(`${base}#tenants`);
    await page.locator("#login").waitFor();
    await page.screenshot({ path: path.join(DOCS, "console-sign-in.png") });
    out("wrote docs/console-sign-in.png");
    await page.locator("#token").fill(h.token);
    await page.locator("#login-form button[type=submit]").click();
    await shoot(page, base, "tenants", "#tenants", "tr[data-tenant]");
    await shoot(page, base, "releases", "#releases", "tr[data-release]");
    await page.goto(`${base}#releases/${release}`);
    await page.locator('[data-wave="2"] summary').first().click();
    await page.locator("pre.log").filter({ hasText: "awaiting-approval" }).waitFor({ timeout: 30_000 });
    await shoot(page, base, "release", `#releases/${release}`, '[data-wave="2"] pre.diff');
    await shoot(page, base, "previews", "#previews", "tr[data-preview]");
    await shoot(page, base, "jobs", "#jobs", "tr[data-job]");
    await page.goto(`${base}#jobs/${jobs[0] ?? ""}`);
    await page.locator("pre.log").filter({ hasText: "end of log" }).waitFor({ timeout: 30_000 });
    await shoot(page, base, "job", `#jobs/${jobs[0] ?? ""}`, "pre.log");

    out("cleaning up");
    await h.request("POST", `/v1/releases/${release}/reject`, { reason: "screenshots taken" });
    await h.waitForJob(release).catch(() => undefined);
  } finally {
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
    if (h) {
      const closed = await h.deliver("pull_request", pullRequestEvent({ owner: "acme", repo: REPO, pr: PR, action: "closed", headSha: HEAD }));
      for (const id of (closed.body as Partial<Delivered>).jobs ?? []) await h.waitForJob(id).catch(() => undefined);
      for (const [id] of TENANTS) {
        const res = await h.request("DELETE", `/v1/tenants/${id}`);
        if (res.status === 202) await h.waitForJob((res.body as Accepted).jobId).catch(() => undefined);
      }
      await h.close();
    }
    await dropTenantLeftovers(TENANTS.map(([id]) => id));
    await dropLocalLeftovers("preview", [previewKey(REPO, PR)]);
  }
}

await main();
