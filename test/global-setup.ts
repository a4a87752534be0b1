import { checkMariaDb, checkRedis } from "./support/services.ts";

export async function setup(): Promise<void> {
  await checkRedis();
  await checkMariaDb();
}
