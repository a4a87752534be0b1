// The operator console's only script (served by webhooks/console-api.ts; no build step, no
// framework). It reads the JSON API with the token the operator typed, kept in sessionStorage and
// sent as `Authorization: Bearer`, never in a URL. Everything it renders from the API (tenant ids,
// PR titles, log lines, diffs) is attacker-reachable text: the DOM is built with createElement and
// text nodes only; the page's CSP (Trusted Types) makes any string-to-HTML assignment throw.
/* global document, window, sessionStorage, fetch, URLSearchParams, TextDecoderStream, AbortController, setTimeout, clearTimeout, location */

const TOKEN_KEY = "stackrail.token";
/** Only the view shown is refreshed, and only while the tab is visible: every refresh reads many keys. */
const REFRESH_MS = 15_000;
/** A live log is followed at most this long, then again from the next refresh (a proxy may cut an idle one anyway). */
const FOLLOW_MAX_MS = 10 * 60_000;
/** Pages of /v1/last-jobs read per refresh of the tenants view (500 tenants each). */
const LAST_JOBS_PAGES = 20;
/** Job states in which a job's log may still grow. */
const LOG_GROWS = new Set(["waiting", "running"]);
const JOB_KINDS = [
  "tenant.provision",
  "tenant.deprovision",
  "tenant.upgrade",
  "tenant.move",
  "tenant.move-cleanup",
  "tenant.drift",
  "tenant.function",
  "release.rollout",
  "release.tenant-step",
  "release.command",
  "preview.up",
  "preview.destroy",
  "region.provision",
  "comment.refusal",
];
const JOB_STATES = ["waiting", "running", "awaiting-approval", "succeeded", "failed", "superseded", "cancelled"];

const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes, never markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return el;
}

/** A link inside the console: a hash route built from encoded parts. */
function route(...parts) {
  return `#${parts.map((p) => encodeURIComponent(p)).join("/")}`;
}

function badge(state) {
  const text = String(state ?? "unknown");
  return h("span", { class: `badge s-${text.replace(/[^a-z-]/g, "")}`, dataset: { state: text } }, text);
}

function ago(iso) {
  if (!iso) return h("span", { class: "muted" }, "–");
  const ms = Date.now() - Date.parse(iso);
  const s = Math.max(0, Math.round(ms / 1000));
  const text =
    s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86400 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} d ago`;
  return h("time", { datetime: iso, title: iso }, text);
}

function duration(from, to) {
  if (!from) return "";
  const s = Math.round(((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000);
  const text = s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
  return to ? text : `${text} so far`;
}

/** How long a job took, or has been running; nothing while it waits (for its turn or an approval). */
function took(job) {
  if (job.finishedAt || job.state === "running") return duration(job.startedAt, job.finishedAt);
  return "";
}

function table(headers, rows, empty) {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        headers.map((t) => h("th", {}, t)),
      ),
    ),
    h("tbody", {}, rows),
  );
}

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

// ---- the API ------------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Unauthorized("no token");
  const res = await fetch(path, {
    method: options.method ?? "GET",
    headers: {
      authorization: `Bearer ${token}`,
      accept: options.raw ? "text/plain" : "application/json",
      ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (res.status === 401) {
    await res.body?.cancel();
    throw new Unauthorized("the API refused the token");
  }
  if (options.raw) return res;
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${path.split("?")[0]}: ${res.status} ${body?.message ?? ""}`.trim());
  return body;
}

// ---- sign in --------------------------------------------------------------------------------------

function showLogin(message = "") {
  stopView();
  $("view").hidden = true;
  $("view").replaceChildren();
  $("nav").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  setStatus("");
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("token");
  const token = input.value.trim();
  input.value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api("/v1/tenants");
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(err instanceof Unauthorized ? "That token was refused." : `Could not reach the API: ${err.message}`);
    return;
  }
  if (!location.hash) location.hash = "#tenants";
  else void render();
}

function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("The token was removed from this tab.");
}

// ---- views ----------------------------------------------------------------------------------------

let timer;
let stream;
let current = { key: "", refresh: undefined, busy: () => false };

function stopView() {
  clearTimeout(timer);
  timer = undefined;
  stream?.stop();
  stream = undefined;
  current = { key: "", refresh: undefined, busy: () => false };
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const [path, query = ""] = raw.split("?");
  const parts = (path || "tenants").split("/").map((p) => decodeURIComponent(p));
  return { parts, params: new URLSearchParams(query), key: raw || "tenants" };
}

async function render() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  $("login").hidden = true;
  $("nav").hidden = false;
  $("forget").hidden = false;
  const { parts, params, key } = parseHash();
  if (current.key === key) return;
  stopView();
  const views = { tenants: tenantsView, releases: releasesView, previews: previewsView, jobs: jobsView };
  const view = views[parts[0]] ?? tenantsView;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.view === (views[parts[0]] ? parts[0] : "tenants"));
  const root = $("view");
  root.replaceChildren();
  root.hidden = false;
  current = { key, refresh: undefined, busy: () => false };
  const mine = current;
  const setup = view(root, parts.slice(1), params);
  mine.refresh = setup.refresh;
  mine.busy = setup.busy ?? (() => false);
  await tick(mine);
}

/** Refreshes the current view, then again every REFRESH_MS while it is shown and the tab visible. */
async function tick(view) {
  if (view !== current || view.ticking) return;
  clearTimeout(timer);
  timer = undefined;
  // A hidden tab reads nothing; it refreshes at once when shown again (the visibilitychange listener).
  if (document.visibilityState === "hidden") return;
  view.ticking = true;
  try {
    await refreshView(view);
  } finally {
    view.ticking = false;
  }
  if (view === current) timer = setTimeout(() => void tick(view), REFRESH_MS);
}

async function refreshView(view) {
  if (!view.busy()) {
    try {
      await view.refresh();
      if (view === current) setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (err instanceof Unauthorized) return showLogin("The API refused the token; sign in again.");
      if (view === current) setStatus(err.message, true);
    }
  }
}

function tenantsView(root) {
  const summary = h("p", { class: "muted" });
  const body = h("div");
  root.append(h("h2", {}, "Tenants"), summary, body);
  return {
    async refresh() {
      const [{ tenants }, lastJobs] = await Promise.all([api("/v1/tenants"), allLastJobs()]);
      const counts = {};
      for (const t of tenants) counts[t.state] = (counts[t.state] ?? 0) + 1;
      summary.textContent = `${tenants.length} tenant(s)${tenants.length ? ": " : ""}${Object.entries(counts)
        .map(([s, n]) => `${n} ${s}`)
        .join(", ")}`;
      const rows = tenants.map((t) => {
        const job = lastJobs[t.id];
        return h(
          "tr",
          { dataset: { tenant: t.id } },
          h("td", { class: "mono" }, t.id, t.protected ? h("span", { class: "muted", title: "protected: never deprovisioned through the API" }, " 🔒") : null),
          h("td", {}, badge(t.state), t.failure ? h("div", { class: "error" }, `${t.failure.job} failed: ${t.failure.error}`) : null),
          h("td", {}, t.tier),
          h("td", {}, t.region),
          h("td", { class: "mono" }, t.version),
          h(
            "td",
            {},
            job
              ? [h("a", { href: route("jobs", job.id) }, job.kind), " ", badge(job.state), " ", ago(job.createdAt)]
              : h("span", { class: "muted" }, "none in the last 7 days"),
          ),
          h("td", {}, h("a", { href: `#jobs?tenant=${encodeURIComponent(t.id)}` }, "all jobs")),
        );
      });
      body.replaceChildren(table(["Tenant", "State", "Tier", "Region", "Version", "Last job", ""], rows, "No tenant yet: POST /v1/tenants provisions one."));
    },
  };
}

/** The newest job of every tenant, page after page (one request at a time). */
async function allLastJobs() {
  const out = {};
  let cursor = null;
  for (let page = 0; page < LAST_JOBS_PAGES; page += 1) {
    const query = new URLSearchParams({ limit: "500" });
    if (cursor) query.set("cursor", cursor);
    const { lastJobs, next } = await api(`/v1/last-jobs?${query}`);
    Object.assign(out, lastJobs);
    if (!next) break;
    cursor = next;
  }
  return out;
}

function waveLine(w) {
  const done = w.tenants.filter((t) => t.status === "done").length;
  return `wave ${w.wave} (${w.regions.join(", ")}): ${done}/${w.tenants.length} done${w.needsApproval ? (w.approval ? ", approved" : ", needs approval") : ""}`;
}

function releasesView(root, rest) {
  if (rest[0]) return releaseView(root, rest[0]);
  const body = h("div");
  root.append(h("h2", {}, "Releases"), body);
  return {
    async refresh() {
      const { releases } = await api("/v1/releases?limit=30");
      const rows = releases.map((r) =>
        h(
          "tr",
          { dataset: { release: r.id } },
          h("td", { class: "mono" }, h("a", { href: route("releases", r.id) }, r.version ?? "?")),
          h(
            "td",
            {},
            badge(r.state),
            r.awaitingApproval
              ? [" ", h("a", { href: route("releases", r.id), class: "s-awaiting-approval" }, `review and approve wave ${r.awaitingApproval.wave}`)]
              : null,
          ),
          h("td", {}, r.waves.length ? r.waves.map((w) => h("div", {}, waveLine(w))) : h("span", { class: "muted" }, "planning")),
          h("td", {}, ago(r.createdAt)),
          h("td", {}, took(r)),
          h("td", { class: "mono muted" }, r.id),
        ),
      );
      body.replaceChildren(
        table(["Version", "State", "Waves", "Created", "Took", "Job"], rows, "No release in the last 7 days: POST /v1/releases rolls one out."),
      );
    },
  };
}

function diffBlock(text) {
  const pre = h("pre", { class: "diff" });
  for (const line of text.split("\n")) {
    const cls = line.startsWith("@@")
      ? "hunk"
      : line.startsWith("+") && !line.startsWith("+++")
        ? "add"
        : line.startsWith("-") && !line.startsWith("---")
          ? "del"
          : null;
    pre.append(cls ? h("span", { class: cls }, line) : line, "\n");
  }
  return pre;
}

function releaseView(root, id) {
  let confirming = false;
  /** What this page last decided (kept over refreshes, so the operator sees it went through). */
  let decided = null;
  const head = h("div");
  const approval = h("div");
  const waves = h("div");
  const log = h("pre", { class: "log", "aria-label": "rollout log" });
  const open = new Set();
  root.append(h("p", {}, h("a", { href: "#releases" }, "← releases")), head, approval, waves, h("h3", {}, "Rollout log (live)"), log);
  const logs = logFollower(id, log);

  function approvalBox(r) {
    if (!r.awaitingApproval) return null;
    const wave = r.waves.find((w) => w.wave === r.awaitingApproval.wave);
    // What the operator is shown is what is approved: the API refuses (409) once another revision waits.
    const shown = { wave: r.awaitingApproval.wave, revision: r.awaitingApproval.revision };
    const what = `wave ${shown.wave}${wave ? ` (${wave.regions.join(", ")}, ${wave.tenants.length} tenant(s))` : ""}`;
    const box = h("div", { class: "card approval", dataset: { awaiting: String(shown.wave), revision: String(shown.revision) } });
    const result = h("p", { role: "status" });
    const ask = () => {
      confirming = true;
      box.replaceChildren(
        h("p", {}, `Approve ${what}, plan revision ${shown.revision}, of release ${r.version}? The wave's tenants are updated as the plan below shows.`),
        h("button", { type: "button", class: "approve", onclick: () => void approve() }, "Confirm approval"),
        " ",
        h("button", { type: "button", onclick: cancel }, "Cancel"),
        result,
      );
    };
    const cancel = () => {
      confirming = false;
      box.replaceChildren(...initial());
    };
    const approve = async () => {
      for (const b of box.querySelectorAll("button")) b.disabled = true;
      try {
        const res = await api(`/v1/releases/${encodeURIComponent(r.id)}/approve`, { method: "POST", body: shown });
        decided = h(
          "p",
          { class: "card", role: "status", dataset: { approved: String(res.wave) } },
          `Wave ${res.wave} approved by ${res.by}. The rollout continues.`,
        );
        box.replaceWith(decided);
      } catch (err) {
        if (err instanceof Unauthorized) return showLogin("The API refused the token; sign in again.");
        box.replaceChildren(h("p", { class: "error", role: "alert" }, `Not approved: ${err.message}`));
      } finally {
        confirming = false;
      }
    };
    const initial = () => [
      h("strong", {}, `Waiting for approval: ${what}.`),
      " ",
      h("button", { type: "button", class: "approve", onclick: ask }, `Approve wave ${r.awaitingApproval.wave}`),
    ];
    box.append(...initial());
    return box;
  }

  return {
    busy: () => confirming,
    async refresh() {
      const [r, plan] = await Promise.all([api(`/v1/releases/${encodeURIComponent(id)}`), api(`/v1/releases/${encodeURIComponent(id)}/plan`)]);
      logs.sync(r.state);
      head.replaceChildren(
        h("h2", {}, `Release ${r.version ?? "?"} `, badge(r.state)),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Job"),
          h("dd", { class: "mono" }, h("a", { href: route("jobs", r.id) }, r.id)),
          h("dt", {}, "Requested"),
          h("dd", {}, ago(r.createdAt), r.trigger ? ` by ${r.trigger.type === "api" ? `token ${r.trigger.tokenName}` : r.trigger.type}` : ""),
          r.finishedAt ? [h("dt", {}, "Finished"), h("dd", {}, ago(r.finishedAt))] : null,
          r.error ? [h("dt", {}, "Error"), h("dd", { class: "error" }, r.error)] : null,
          r.rejection
            ? [h("dt", {}, "Rejected"), h("dd", {}, `wave ${r.rejection.wave} by ${r.rejection.by}${r.rejection.reason ? `: ${r.rejection.reason}` : ""}`)]
            : null,
        ),
      );
      if (!confirming) approval.replaceChildren(...[decided, approvalBox(r)].filter(Boolean));
      const planned = new Map((plan.waves ?? []).map((w) => [w.wave, w]));
      waves.replaceChildren(
        ...(r.waves.length === 0 ? [h("p", { class: "empty" }, "The rollout is computing its plan.")] : []),
        ...r.waves.map((w) => {
          const pw = planned.get(w.wave);
          const rows = w.tenants.map((t) => {
            const pt = pw?.tenants?.find((x) => x.tenantId === t.id);
            const key = `${w.wave}/${t.id}`;
            const details = h(
              "details",
              { open: open.has(key), ontoggle: (e) => (e.target.open ? open.add(key) : open.delete(key)) },
              h("summary", {}, "plan diff"),
            );
            if (pt) {
              details.append(
                h(
                  "div",
                  {},
                  h("div", { class: "muted" }, "Argo CD manifests"),
                  pt.manifestDiff ? diffBlock(pt.manifestDiff) : h("p", { class: "muted" }, "no change"),
                  h("div", { class: "muted" }, "Pulumi preview"),
                  pt.infra?.error
                    ? h("p", { class: "error" }, pt.infra.error)
                    : pt.infra?.diff?.length
                      ? h(
                          "ul",
                          { class: "diff mono" },
                          pt.infra.diff.map((d) => h("li", {}, `${d.op} ${d.urn}${d.properties?.length ? ` [${d.properties.join(", ")}]` : ""}`)),
                        )
                      : h("p", { class: "muted" }, "no resource changes"),
                  pt.infra?.violations?.length
                    ? h(
                        "ul",
                        { class: "error" },
                        pt.infra.violations.map((v) => h("li", {}, `${v.policy}: ${v.message}`)),
                      )
                    : null,
                ),
              );
            }
            return h(
              "tr",
              { dataset: { tenant: t.id, status: t.status } },
              h("td", { class: "mono" }, t.id),
              h("td", { class: "mono" }, `${t.from ?? "–"} → ${t.to ?? "–"}`),
              h("td", {}, badge(t.status), t.error ? h("div", { class: "error" }, t.error) : null),
              h("td", {}, details),
            );
          });
          return h(
            "div",
            { class: "card", dataset: { wave: String(w.wave) } },
            h("h3", {}, waveLine(w)),
            w.approval ? h("p", { class: "muted" }, `approved by ${w.approval.by} (${w.approval.via}) ${new Date(w.approval.at).toLocaleString()}`) : null,
            w.commit ? h("p", { class: "muted mono" }, `commit ${w.commit}`) : null,
            table(["Tenant", "Version", "Status", "Plan"], rows, "no tenant in this wave"),
          );
        }),
      );
    },
  };
}

function previewsView(root) {
  const body = h("div");
  root.append(h("h2", {}, "Previews"), body);
  return {
    async refresh() {
      const { previews } = await api("/v1/previews");
      const rows = previews.map((p) => {
        const safeUrl = typeof p.url === "string" && /^https?:\/\//i.test(p.url) ? p.url : null;
        return h(
          "tr",
          { dataset: { preview: p.stack } },
          h("td", { class: "mono" }, `${p.repo}#${p.pr}`),
          h("td", { class: "title" }, p.title ?? ""),
          h("td", { class: "mono" }, p.headSha ? p.headSha.slice(0, 12) : "–"),
          h("td", {}, safeUrl ? h("a", { href: safeUrl, target: "_blank", rel: "noopener noreferrer" }, safeUrl) : h("span", { class: "muted" }, p.url ?? "–")),
          h("td", {}, badge(p.state)),
          h("td", {}, ago(p.openedAt)),
          h("td", {}, h("a", { href: route("jobs", p.lastJob.id) }, p.lastJob.kind), " ", ago(p.updatedAt)),
        );
      });
      body.replaceChildren(table(["Pull request", "Title", "Head", "URL", "State", "Age", "Last job"], rows, "No live preview."));
    },
  };
}

function subject(job) {
  const d = job.data ?? {};
  if (d.tenantId) return d.version ? `${d.tenantId} @ ${d.version}` : d.tenantId;
  if (d.repo && d.pr) return `${d.repo.owner}/${d.repo.name}#${d.pr}`;
  if (d.version) return d.version;
  return d.region ?? "";
}

function jobsView(root, rest, params) {
  if (rest[0]) return jobView(root, rest[0]);
  const select = (name, values) =>
    h(
      "select",
      {
        "aria-label": name,
        onchange: (e) => {
          const next = new URLSearchParams(params);
          if (e.target.value) next.set(name, e.target.value);
          else next.delete(name);
          location.hash = `#jobs${next.size ? `?${next}` : ""}`;
        },
      },
      h("option", { value: "" }, `any ${name}`),
      values.map((v) => h("option", { value: v, selected: params.get(name) === v }, v)),
    );
  const body = h("div");
  const tenant = params.get("tenant");
  root.append(
    h("h2", {}, "Jobs"),
    h(
      "div",
      { class: "toolbar" },
      select("kind", JOB_KINDS),
      select("state", JOB_STATES),
      tenant ? h("span", {}, `tenant ${tenant} `, h("a", { href: "#jobs" }, "(all)")) : null,
    ),
    body,
  );
  const query = new URLSearchParams({ limit: "50" });
  for (const name of ["kind", "state", "tenant"]) if (params.get(name)) query.set(name, params.get(name));
  return {
    async refresh() {
      const { jobs } = await api(`/v1/jobs?${query}`);
      const rows = jobs.map((j) =>
        h(
          "tr",
          { dataset: { job: j.id } },
          h("td", { class: "mono" }, h("a", { href: route("jobs", j.id) }, j.id)),
          h("td", {}, j.kind),
          h("td", { class: "mono" }, subject(j)),
          h("td", {}, badge(j.state)),
          h("td", {}, ago(j.createdAt)),
          h("td", {}, took(j)),
        ),
      );
      body.replaceChildren(table(["Job", "Kind", "Subject", "State", "Created", "Took"], rows, "No job matches."));
    },
  };
}

function jobView(root, id) {
  const head = h("div");
  const log = h("pre", { class: "log", "aria-label": "job log" });
  root.append(h("p", {}, h("a", { href: "#jobs" }, "← jobs")), head, h("h3", {}, "Log (live)"), log);
  const logs = logFollower(id, log);
  return {
    async refresh() {
      const j = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      logs.sync(j.state);
      const json = (v) => h("pre", {}, JSON.stringify(v, null, 2));
      head.replaceChildren(
        h("h2", {}, `${j.kind} `, badge(j.state)),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Job"),
          h("dd", { class: "mono" }, j.id),
          h("dt", {}, "Subject"),
          h("dd", { class: "mono" }, subject(j) || "–"),
          j.kind === "release.rollout" ? [h("dt", {}, "Release"), h("dd", {}, h("a", { href: route("releases", j.id) }, "plan, waves and approval"))] : null,
          h("dt", {}, "Stack"),
          h("dd", { class: "mono" }, j.stack ?? "–"),
          h("dt", {}, "Requested"),
          h(
            "dd",
            {},
            ago(j.createdAt),
            j.trigger ? ` (${j.trigger.type}${j.trigger.tokenName ? `: ${j.trigger.tokenName}` : ""}${j.trigger.event ? `: ${j.trigger.event}` : ""})` : "",
          ),
          h("dt", {}, "Ran"),
          h("dd", {}, j.startedAt ? `${duration(j.startedAt, j.finishedAt)}, attempt(s) ${j.attempts}` : "not started"),
          j.error ? [h("dt", {}, "Error"), h("dd", { class: "error" }, j.error)] : null,
        ),
        h("details", {}, h("summary", {}, "job data"), json(j.data)),
        j.result !== undefined ? h("details", {}, h("summary", {}, "result"), json(j.result)) : null,
      );
    },
  };
}

/**
 * The job's log in `pre`, kept up to date by the view's refresh (sync(state)): followed
 * (GET /v1/jobs/:id/logs?follow=1) while the job waits or runs, for at most FOLLOW_MAX_MS, then
 * again from the next refresh; read once, without holding a connection, while it awaits an
 * approval (that may take days) and once it has ended. Each read shows the whole log again.
 */
function logFollower(id, pre) {
  let controller;
  /** The state the log was last read once for (awaiting an approval, or ended). */
  let readFor = null;
  const stop = () => {
    controller?.abort();
    controller = undefined;
  };
  /** Reads the whole log into `pre`; `follow`: and what comes until the job ends (or the cap). */
  const read = (follow, ended) => {
    stop();
    const mine = new AbortController();
    controller = mine;
    const cap = follow ? setTimeout(() => mine.abort(), FOLLOW_MAX_MS) : undefined;
    void (async () => {
      try {
        const res = await api(`/v1/jobs/${encodeURIComponent(id)}/logs${follow ? "?follow=1" : ""}`, { raw: true, signal: mine.signal });
        if (!res.ok) {
          pre.replaceChildren(`[console] the log is not available (${res.status})\n`);
          return;
        }
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        pre.replaceChildren();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.append(value);
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        if (follow || ended) pre.append(h("span", { class: "hunk" }, "[console] end of log: the job has ended\n"));
      } catch (err) {
        if (mine.signal.aborted) return;
        if (err instanceof Unauthorized) return showLogin("The API refused the token; sign in again.");
        pre.append(`[console] the log stream stopped: ${err.message}\n`);
      } finally {
        clearTimeout(cap);
        if (controller === mine) controller = undefined;
      }
    })();
  };
  const follower = {
    stop,
    /** Called with the job's state at every refresh of the view. */
    sync(state) {
      if (LOG_GROWS.has(state)) {
        readFor = null;
        if (!controller) read(true, false);
        return;
      }
      if (readFor === state) return;
      readFor = state;
      // An approval may take days: the log is read once, no connection is held until the job runs again.
      if (state === "awaiting-approval") return read(false, false);
      // Ended: a follow still open ends by itself, with the end-of-log line.
      if (!controller) read(false, true);
    },
  };
  stream = follower;
  return follower;
}

// ---- start ----------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (e) => void signIn(e));
$("forget").addEventListener("click", forget);
window.addEventListener("hashchange", () => void render());
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && current.refresh) void tick(current);
});
void render();
