// Source 2: a per-tenant health endpoint (STACKRAIL_HEALTH_URL, `{tenant}` replaced by the id,
// which is validated before it reaches here). A tenant passes when its endpoint answers 2xx and
// reports the version the wave rolled out, in the `X-App-Version` response header or, without that
// header, in the top-level `version` string of a JSON body. Any other answer is retried until the
// gate's timeout (old pods may still be answering while the new ones roll in).
import { publicUrl, urlCredentials } from "../../core/urls.ts";
import type { GateRuntime, TenantHealth, WaveGateInput, WaveGateOptions, WaveGateReport } from "./gate-types.ts";
import { cancelled, detailLine, mapLimited, networkReason, seconds, throwIfCancelled } from "./gate-support.ts";

const REQUEST_TIMEOUT_MS = 10_000;
const PARALLEL = 16;

/** The version an answer reports: the header first, then a JSON body's `version`. */
export function reportedVersion(headers: Headers, body: string): string | undefined {
  const header = headers.get("x-app-version");
  if (header !== null && header.trim() !== "") return header.trim();
  try {
    const json: unknown = JSON.parse(body);
    if (json !== null && typeof json === "object" && typeof (json as { version?: unknown }).version === "string") return (json as { version: string }).version;
  } catch {
    // not JSON: no version in the body
  }
  return undefined;
}

/** fetch refuses URLs with user information: it travels as a Basic header instead. */
function request(template: string, tenantId: string): { url: URL; headers: Record<string, string> } {
  const url = new URL(template.replaceAll("{tenant}", tenantId));
  const headers: Record<string, string> = { accept: "application/json" };
  if (url.username !== "" || url.password !== "") {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`;
    url.username = "";
    url.password = "";
  }
  return { url, headers };
}

export async function healthUrlGate(template: string, rt: GateRuntime, input: WaveGateInput, opts: WaveGateOptions): Promise<WaveGateReport> {
  const secrets = urlCredentials(template);
  const deadline = rt.now() + rt.timeoutMs;
  const log = rt.logger.child({ gate: "health-url", wave: input.wave });
  opts.onProgress(
    `wave ${input.wave} health gate: ${input.tenants.length} tenant(s) must answer ${publicUrl(template)} with 2xx and their new version within ${seconds(rt.timeoutMs)}`,
  );

  const check = async (tenantId: string, version: string): Promise<TenantHealth> => {
    const { url, headers } = request(template, tenantId);
    const shown = publicUrl(url.toString());
    let last: string;
    let errors = 0;
    for (;;) {
      throwIfCancelled(opts.signal);
      const timeout = AbortSignal.timeout(Math.max(1000, Math.min(REQUEST_TIMEOUT_MS, deadline - rt.now())));
      let outcome: "healthy" | "retry" = "retry";
      try {
        const res = await rt.fetch(url, { headers, signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout, redirect: "manual" });
        const body = await res.text().catch(() => "");
        const reported = reportedVersion(res.headers, body);
        if (res.status < 200 || res.status > 299) last = `${shown} answered HTTP ${res.status}`;
        else if (reported === undefined) last = `${shown} answered HTTP ${res.status} without a version (X-App-Version header or JSON "version")`;
        else if (reported !== version) last = `${shown} reports version ${reported}, waiting for ${version}`;
        else {
          last = `${shown} answered HTTP ${res.status} at version ${version}`;
          outcome = "healthy";
        }
        errors = 0;
      } catch (err) {
        if (opts.signal?.aborted) throw cancelled(opts.signal);
        last = `${shown} unreachable (${networkReason(err)})`;
        errors++;
      }
      const detail = detailLine(last, secrets);
      if (outcome === "healthy") return { tenantId, healthy: true, detail };
      if (rt.now() >= deadline) return { tenantId, healthy: false, detail: detailLine(`not healthy within ${seconds(rt.timeoutMs)}: ${detail}`, secrets) };
      const interval = rt.pollMs * Math.min(8, 2 ** errors);
      await rt.sleep(Math.max(0, Math.min(interval, deadline - rt.now())), opts.signal);
    }
  };

  const tenants = await mapLimited(input.tenants, PARALLEL, async ({ tenant }) => {
    const result = await check(tenant.id, tenant.version);
    log.info({ tenantId: tenant.id, healthy: result.healthy }, "wave health gate tenant checked");
    opts.onProgress(`wave ${input.wave} tenant ${tenant.id}: ${result.healthy ? "healthy" : "NOT healthy"}: ${result.detail}`);
    return result;
  });
  return { source: "health-url", passed: tenants.every((t) => t.healthy), tenants };
}
