// The orphan audit's report as GET /v1/audit/orphans answers it (orphan-report.ts builds it): the
// schema the edge's OpenAPI description is generated from; the check keeps the two the same shape.
import { z } from "zod";
import { ORPHAN_KINDS, type OrphanReport } from "./orphan-report.ts";

export const orphanReportSchema = z
  .object({
    scope: z.enum(["server", "installation"]),
    checkedAt: z.string(),
    durationMs: z.number(),
    findings: z.array(
      z.object({
        id: z.string().meta({ description: "`<kind>:<name>`: what `npm run orphans -- --repair <id>` takes" }),
        kind: z.enum(ORPHAN_KINDS),
        name: z.string(),
        problem: z.enum(["unowned", "missing", "unregistered", "stale-registry", "stale-lock", "stale-lease", "dead-entries", "stuck-active", "stuck-record"]),
        owner: z.string().optional(),
        detail: z.string().optional(),
        repair: z.string(),
      }),
    ),
    retained: z.array(z.object({ kind: z.enum(["backup", "stack-history"]), name: z.string(), detail: z.string() })),
    failed: z.array(z.object({ tenant: z.string(), failure: z.string(), repair: z.string() })),
    skipped: z.array(z.string()),
    incomplete: z.array(z.object({ source: z.string(), error: z.string() })),
  })
  .meta({ id: "OrphanReport", description: "What exists without an owner, and what is owned but missing" });

const reportAccepted: OrphanReport extends z.infer<typeof orphanReportSchema> ? true : false = true;
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
const reportKeys: SameKeys<OrphanReport, z.infer<typeof orphanReportSchema>> = true;
void [reportAccepted, reportKeys];
