// Source 1: Argo CD. Each tenant has two Applications (worker/gitops/manifests.ts):
//   tenant-<id>-gitops  made by the regional ApplicationSet; syncs tenants/<id>/ from the GitOps
//                       repository, so its status.sync.revision is a GitOps commit;
//   tenant-<id>         the workload; its source is the application's chart at the tenant's
//                       version (status.sync.revision there is an application-repository commit).
// A tenant passes when the wave's commit has reached Argo CD (the -gitops Application Synced at the
// wave's revision, or — once a later GitOps commit moved it on — the workload Application's spec
// already at the wave's version) and the workload Application is Synced to that version and
// Healthy. One list call per region of the wave per poll, whatever the number of tenants.
import { z } from "zod";
import { publicUrl } from "../../core/urls.ts";
import type { GateRuntime, TenantHealth, WaveGateInput, WaveGateOptions, WaveGateReport } from "./gate-types.ts";
import { cancelled, detailLine, networkReason, seconds, throwIfCancelled } from "./gate-support.ts";

const statusPart = z.object({ status: z.string().optional(), revision: z.string().optional(), message: z.string().optional() });
const applicationSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional() }),
  spec: z.object({ source: z.object({ targetRevision: z.string().optional() }).optional() }).optional(),
  status: z
    .object({
      sync: statusPart.extend({ comparedTo: z.object({ source: z.object({ targetRevision: z.string().optional() }).optional() }).optional() }).optional(),
      health: statusPart.optional(),
      operationState: z.object({ phase: z.string().optional(), message: z.string().optional() }).optional(),
    })
    .optional(),
});
type Application = z.infer<typeof applicationSchema>;
const listSchema = z.object({ items: z.array(applicationSchema).nullish() });

export interface ArgocdSettings {
  readonly server: string;
  readonly authToken: string;
  /** Where Stackrail's Applications live (STACKRAIL_ARGOCD_NAMESPACE). */
  readonly namespace: string;
}

type Fetched =
  | { readonly kind: "ok"; readonly apps: Map<string, Application> }
  | { readonly kind: "refused"; readonly status: number }
  | { readonly kind: "error"; readonly reason: string };

type Verdict = "pending" | "healthy" | "failed";
interface TenantState {
  verdict: Verdict;
  detail: string;
  /** Since when the workload has been Missing/Unknown at the wave's version. */
  settleSince?: number;
  /** The last state Argo CD reported, kept while the server cannot be reached. */
  seen?: string;
}

const short = (sha: string | undefined): string => (sha === undefined || sha === "" ? "no revision" : sha.slice(0, 12));
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_FACTOR = 8;

export async function argocdGate(settings: ArgocdSettings, rt: GateRuntime, input: WaveGateInput, opts: WaveGateOptions): Promise<WaveGateReport> {
  const secrets = [settings.authToken];
  const base = settings.server.replace(/\/+$/, "");
  const regions = [...new Set(input.tenants.map((t) => t.tenant.region))].sort();
  const states = new Map<string, TenantState>(input.tenants.map((t) => [t.tenant.id, { verdict: "pending", detail: "not looked at yet" }]));
  const log = rt.logger.child({ gate: "argocd", wave: input.wave, revision: input.revision });
  const deadline = rt.now() + rt.timeoutMs;
  opts.onProgress(
    `wave ${input.wave} health gate: Argo CD at ${publicUrl(base)}, ${input.tenants.length} tenant(s) must be Synced at GitOps commit ${short(input.revision)} and Healthy within ${seconds(rt.timeoutMs)}`,
  );

  const listRegion = async (region: string): Promise<Fetched> => {
    const url = new URL(`${base}/api/v1/applications`);
    url.searchParams.set("selector", `app.kubernetes.io/managed-by=stackrail,stackrail.io/region=${region}`);
    url.searchParams.set("appNamespace", settings.namespace);
    const timeout = AbortSignal.timeout(Math.max(1000, Math.min(REQUEST_TIMEOUT_MS, deadline - rt.now())));
    let res: Response;
    try {
      res = await rt.fetch(url, {
        headers: { authorization: `Bearer ${settings.authToken}`, accept: "application/json" },
        signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout,
        redirect: "error",
      });
    } catch (err) {
      if (opts.signal?.aborted) throw cancelled(opts.signal);
      return { kind: "error", reason: `Argo CD unreachable (${networkReason(err)})` };
    }
    // The body is read (or dropped) either way so the connection can be reused.
    const text = await res.text().catch(() => "");
    if (res.status === 401 || res.status === 403) return { kind: "refused", status: res.status };
    if (!res.ok) return { kind: "error", reason: `Argo CD answered HTTP ${res.status}` };
    let parsed: z.infer<typeof listSchema>;
    try {
      parsed = listSchema.parse(JSON.parse(text));
    } catch {
      return { kind: "error", reason: "Argo CD answered a body that is not an application list" };
    }
    return { kind: "ok", apps: new Map((parsed.items ?? []).map((a) => [a.metadata.name, a])) };
  };

  const evaluate = (id: string, version: string, apps: Map<string, Application>, state: TenantState): void => {
    const name = `tenant-${id}`;
    const workload = apps.get(name);
    const gitops = apps.get(`${name}-gitops`);
    const set = (verdict: Verdict, detail: string): void => {
      state.verdict = verdict;
      state.detail = detailLine(detail, secrets);
      if (verdict !== "pending" || !/^(Missing|Unknown) /.test(detail)) delete state.settleSince;
    };
    if (!workload) return set("pending", `Application ${name} not found in Argo CD namespace ${settings.namespace}`);
    const gSync = gitops?.status?.sync;
    const target = workload.spec?.source?.targetRevision;
    const gitopsAtWave = gSync?.status === "Synced" && gSync.revision === input.revision;
    const arrived = gitopsAtWave || (target === version && (gitops === undefined || gSync?.status === "Synced"));
    if (!arrived) {
      if (gSync)
        return set(
          "pending",
          `${name}-gitops ${gSync.status ?? "Unknown"} at ${short(gSync.revision)}, waiting for the wave's commit ${short(input.revision)}`,
        );
      return set("pending", `${name} targets ${target ?? "nothing"}, waiting for ${version}`);
    }
    if (target !== version) return set("pending", `${name} still targets ${target ?? "nothing"} although its GitOps commit is synced, waiting for ${version}`);
    const sync = workload.status?.sync;
    const compared = sync?.comparedTo?.source?.targetRevision;
    if (sync?.status !== "Synced" || (compared !== undefined && compared !== version)) {
      const op = workload.status?.operationState;
      const opNote = op?.phase === "Failed" || op?.phase === "Error" ? `; last sync ${op.phase}: ${op.message ?? ""}` : "";
      return set("pending", `${name} ${sync?.status ?? "Unknown"} (compared to ${compared ?? "?"}), waiting for a sync to ${version}${opNote}`);
    }
    const health = workload.status?.health?.status ?? "Unknown";
    const message = workload.status?.health?.message;
    const what = `${name} Synced at ${version} (GitOps commit ${short(input.revision)})`;
    if (health === "Healthy") return set("healthy", `${what}, Healthy`);
    // Degraded at the new version is the application failing: no point waiting out the timeout.
    if (health === "Degraded") return set("failed", `${what}, Degraded${message ? `: ${message}` : ""}`);
    if (health === "Missing" || health === "Unknown") {
      // Right after a sync the controller may not have seen the new objects yet: a short grace.
      const since = state.settleSince ?? rt.now();
      if (rt.now() - since >= rt.settleMs) return set("failed", `${what}, ${health} for ${seconds(rt.now() - since)}${message ? `: ${message}` : ""}`);
      set("pending", `${health} ${what}${message ? `: ${message}` : ""}`);
      state.settleSince = since;
      return;
    }
    return set("pending", `${what}, ${health}${message ? `: ${message}` : ""}`);
  };

  let errors = 0;
  let lastError: string | undefined;
  for (;;) {
    throwIfCancelled(opts.signal);
    const fetched = await Promise.all(regions.map(async (r) => [r, await listRegion(r)] as const));
    const byRegion = new Map(fetched);
    const refused = fetched.find(([, f]) => f.kind === "refused");
    if (refused && refused[1].kind === "refused") {
      // A token Argo CD does not accept will not start working by itself: stop now, say why.
      const detail = `Argo CD refused the request (HTTP ${refused[1].status}): ARGOCD_AUTH_TOKEN is invalid or lacks applications get permission`;
      log.warn({ status: refused[1].status }, "argo cd refused the health gate's token");
      return { source: "argocd", passed: false, tenants: input.tenants.map((t) => ({ tenantId: t.tenant.id, healthy: false, detail })), note: detail };
    }
    const firstError = fetched.find(([, f]) => f.kind === "error")?.[1];
    errors = firstError ? errors + 1 : 0;
    // One line for an outage, not one per tenant: a region holds hundreds.
    if (firstError?.kind === "error" && firstError.reason !== lastError) opts.onProgress(`wave ${input.wave} health gate: ${firstError.reason}, retrying`);
    if (firstError?.kind === "error") log.warn({ errors }, "wave health gate cannot reach argo cd");
    lastError = firstError?.kind === "error" ? firstError.reason : undefined;
    for (const { tenant } of input.tenants) {
      const state = states.get(tenant.id) as TenantState;
      if (state.verdict !== "pending") continue;
      const f = byRegion.get(tenant.region);
      const before = state.detail;
      if (f?.kind === "error") {
        state.detail = detailLine(state.seen === undefined ? f.reason : `${f.reason}; last seen: ${state.seen}`, secrets);
        continue;
      }
      if (f?.kind === "ok") {
        evaluate(tenant.id, tenant.version, f.apps, state);
        state.seen = state.detail;
      }
      if (state.detail !== before) {
        log.info({ tenantId: tenant.id, verdict: state.verdict }, "wave health gate tenant changed");
        opts.onProgress(`wave ${input.wave} tenant ${tenant.id}: ${state.detail}`);
      }
    }
    const all = [...states.values()];
    const failed = all.some((s) => s.verdict === "failed");
    const done = all.every((s) => s.verdict === "healthy");
    const timedOut = rt.now() >= deadline;
    if (done || failed || timedOut) {
      const tenants: TenantHealth[] = input.tenants.map(({ tenant }) => {
        const s = states.get(tenant.id) as TenantState;
        if (s.verdict === "healthy") return { tenantId: tenant.id, healthy: true, detail: s.detail };
        if (s.verdict === "failed") return { tenantId: tenant.id, healthy: false, detail: s.detail };
        const why = timedOut ? `not healthy within ${seconds(rt.timeoutMs)}` : "not decided when another tenant of the wave failed";
        return { tenantId: tenant.id, healthy: false, detail: detailLine(`${why}: ${s.detail}`, secrets) };
      });
      const passed = tenants.every((t) => t.healthy);
      log.info({ passed, healthy: tenants.filter((t) => t.healthy).length, total: tenants.length }, "wave health gate decided");
      return { source: "argocd", passed, tenants };
    }
    const interval = rt.pollMs * Math.min(MAX_BACKOFF_FACTOR, 2 ** errors);
    await rt.sleep(Math.max(0, Math.min(interval, deadline - rt.now())), opts.signal);
  }
}
