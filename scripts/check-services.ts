// Run before the test suite: fails fast, naming the service and how to start it.
import { checkMariaDb, checkRedis } from "../test/support/services.ts";

try {
  await checkRedis();
  await checkMariaDb();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
