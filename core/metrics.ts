// Prometheus metrics (prom-client), one registry per process, passed in rather than global so
// tests can read a fresh one. The HTTP edge registers its own delivery counters on the same registry.
// Labels take values from small fixed sets only (job kind and state, tier, region, HTTP status):
// never a tenant, stack, repository, delivery or job id, each of which would make one series per
// tenant or per event. Which stack a number is about belongs in the job's record (GET /v1/jobs).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  readonly registry: Registry;
  readonly jobsTotal: Counter<"kind" | "state">;
  readonly pulumiDuration: Histogram<"operation" | "result">;
  readonly queueDepth: Gauge<"state">;
  readonly oldestWaitingSeconds: Gauge;
  readonly githubCalls: Counter<"status">;
  readonly githubRateRemaining: Gauge;
  /**
   * Drift checks that found drift, by stack kind (`tenant`), tier and region; which stack and what
   * drifted are in the `tenant.drift` job's result.
   */
  readonly driftFound: Counter<"kind" | "tier" | "region">;
  /** Findings of the installation's last orphan audit, by kind (jobs/orphan-report.ts ORPHAN_KINDS). */
  readonly orphans: Gauge<"kind">;
  /** When that audit ran (seconds since the epoch): an alert on its age finds an audit that stopped running. */
  readonly orphanAuditTime: Gauge;
  /** Where queue depth and the oldest waiting job come from, read at each scrape. */
  setQueueSource(source: () => Promise<QueueStats>): void;
  /**
   * Where the last orphan audit's counts come from, read at each scrape: stored in Redis by whichever
   * process ran the audit, so every process of the installation exports the same values.
   */
  setOrphanSource(source: () => Promise<OrphanStats | undefined>): void;
}

export interface OrphanStats {
  readonly counts: Readonly<Record<string, number>>;
  /** When the audit ran, ms since the epoch. */
  readonly at: number;
}

export interface QueueStats {
  readonly counts: Record<string, number>;
  readonly oldestWaitingMs: number | null;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  let queueSource: (() => Promise<QueueStats>) | undefined;
  let orphanSource: (() => Promise<OrphanStats | undefined>) | undefined;
  let lastOrphans: Promise<OrphanStats | undefined> | undefined;
  // Both orphan gauges read the same snapshot per scrape.
  const orphanStats = (): Promise<OrphanStats | undefined> => {
    lastOrphans ??= (orphanSource?.() ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .finally(() => {
        setTimeout(() => {
          lastOrphans = undefined;
        }, 250);
      });
    return lastOrphans;
  };
  let lastStats: Promise<QueueStats | undefined> | undefined;
  // Both queue gauges read the same snapshot per scrape.
  const stats = (): Promise<QueueStats | undefined> => {
    lastStats ??= (queueSource?.() ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .finally(() => {
        setTimeout(() => {
          lastStats = undefined;
        }, 250);
      });
    return lastStats;
  };
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: "stackrail_process_" });
  return {
    registry,
    jobsTotal: new Counter({
      name: "stackrail_jobs_total",
      help: "Jobs that reached a state, by kind",
      labelNames: ["kind", "state"],
      registers: [registry],
    }),
    pulumiDuration: new Histogram({
      name: "stackrail_pulumi_operation_seconds",
      help: "Duration of Pulumi operations",
      labelNames: ["operation", "result"],
      buckets: [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: "stackrail_queue_jobs",
      help: "Jobs in the queue by state",
      labelNames: ["state"],
      registers: [registry],
      async collect() {
        const s = await stats();
        for (const [state, n] of Object.entries(s?.counts ?? {})) this.set({ state }, n);
      },
    }),
    oldestWaitingSeconds: new Gauge({
      name: "stackrail_queue_oldest_waiting_seconds",
      help: "Age of the oldest waiting job",
      registers: [registry],
      async collect() {
        const s = await stats();
        this.set(s?.oldestWaitingMs ? s.oldestWaitingMs / 1000 : 0);
      },
    }),
    githubCalls: new Counter({
      name: "stackrail_github_api_calls_total",
      help: "GitHub API calls by response status",
      labelNames: ["status"],
      registers: [registry],
    }),
    githubRateRemaining: new Gauge({
      name: "stackrail_github_rate_limit_remaining",
      help: "Remaining GitHub API rate limit as last reported",
      registers: [registry],
    }),
    driftFound: new Counter({
      name: "stackrail_drift_found_total",
      help: "Drift checks that found drift, by stack kind, tier and region (the stack and its drifted resources are in the job's result)",
      labelNames: ["kind", "tier", "region"],
      registers: [registry],
    }),
    orphans: new Gauge({
      name: "stackrail_orphans",
      help: "Findings of the last orphan audit (GET /v1/audit/orphans, npm run orphans, the scheduled audit), by kind",
      labelNames: ["kind"],
      registers: [registry],
      async collect() {
        const s = await orphanStats();
        // No audit yet: no value (unknown is not zero).
        if (!s) return;
        for (const [kind, n] of Object.entries(s.counts)) this.set({ kind }, n);
      },
    }),
    orphanAuditTime: new Gauge({
      name: "stackrail_orphan_audit_timestamp_seconds",
      help: "When the last orphan audit of this installation ran",
      registers: [registry],
      async collect() {
        const s = await orphanStats();
        if (s) this.set(s.at / 1000);
      },
    }),
    setQueueSource(source) {
      queueSource = source;
    },
    setOrphanSource(source) {
      orphanSource = source;
    },
  };
}
