// Reads the tenants' desired state back from the GitOps repository, the system of record:
// start-up rebuilds the API's tenant index from it. A file that does not parse or validate is
// skipped with a warning rather than trusted.
import { parse } from "yaml";
import { z } from "zod";
import { regionSchema, tenantIdSchema, tierSchema } from "../../core/ids.ts";
import type { Logger } from "../../core/logger.ts";
import type { TenantDesired } from "../../core/tenant-index.ts";
import type { GitOpsWriter } from "./writer.ts";

const tenantFileSchema = z.object({
  kind: z.literal("Tenant"),
  id: tenantIdSchema,
  region: regionSchema,
  tier: tierSchema,
  version: z.string().max(100),
  protected: z.boolean().optional(),
});

export async function readDesiredTenants(reader: Pick<GitOpsWriter, "listFiles" | "readFile">, logger?: Logger): Promise<TenantDesired[]> {
  const files = (await reader.listFiles("tenants/")).filter((f) => /^tenants\/[^/]+\/tenant\.yaml$/.test(f));
  const out: TenantDesired[] = [];
  for (const file of files) {
    const text = await reader.readFile(file);
    let parsed: z.infer<typeof tenantFileSchema>;
    try {
      parsed = tenantFileSchema.parse(parse(text ?? ""));
    } catch {
      logger?.warn({ file }, "skipping a tenant file that does not validate");
      continue;
    }
    if (file !== `tenants/${parsed.id}/tenant.yaml`) {
      logger?.warn({ file }, "skipping a tenant file whose id does not match its folder");
      continue;
    }
    out.push({ id: parsed.id, region: parsed.region, tier: parsed.tier, version: parsed.version, ...(parsed.protected ? { protected: true } : {}) });
  }
  return out;
}
