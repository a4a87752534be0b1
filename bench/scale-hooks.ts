// `node --import ./bench/scale-hooks.ts main.ts --role worker`: a worker process whose Pulumi step
// is the recorded no-op runner. The product has no runner seam reachable from `main.ts` (the worker
// role builds its runner with worker/runner-factory.ts createRunner), so this module hook resolves
// that one module to bench/scale-runner-factory.ts, which has the same exports. Nothing else changes.
import { registerHooks } from "node:module";

const replacement = new URL("./scale-runner-factory.ts", import.meta.url).href;

registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    if (resolved.url.endsWith("/worker/runner-factory.ts")) return { ...resolved, url: replacement, shortCircuit: true };
    return resolved;
  },
});
