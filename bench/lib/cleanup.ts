// Removes what a benchmark created: Redis keys under its queue prefix, the local-target objects
// of tenants or previews it did not destroy through the service (shared with the tests), and
// its temporary folders.
import { rmSync } from "node:fs";

export { deleteRedisPrefix, dropLocalLeftovers } from "../../test/support/cleanup.ts";

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}
