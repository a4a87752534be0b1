// Generates the GitOps manifest validators ahead of time (standalone ajv code for the Argo CD CRDs,
// see worker/gitops/precompiled-validators.ts). Runs from `npm ci` (postinstall) and before
// `npm test` / `npm start` / `npm run demo` / `npm run bench`; returns at once when the current
// CRDs' validators are already built.
import { buildPrecompiled } from "../worker/gitops/precompiled-validators.ts";

const started = Date.now();
const { fingerprint, built, bytes } = await buildPrecompiled();
if (built) {
  process.stdout.write(
    `[stackrail validators] generated the manifest validators ${fingerprint} (${Math.round(bytes / 1024)} KiB) in ${Date.now() - started} ms\n`,
  );
}
