// Validators generated ahead of time as standalone ajv code (one CommonJS file per schema), so a
// worker loads only the code for the kinds it writes instead of compiling the Argo CD CRDs at run
// time. Written by scripts/build-validators.ts (from `npm ci` and before test/start/demo/bench)
// into .build/crd-validators/<fingerprint>/; used only when the fingerprint of the current CRDs,
// schema rewrite and ajv version matches, so a stale build can never validate against old schemas.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import { PROJECT_ROOT } from "../../core/engine.ts";
import { CRD_DIR, loadSchemas, schemaFingerprint } from "./crd-schemas.ts";

const require = createRequire(import.meta.url);

export const PRECOMPILED_DIR = path.join(PROJECT_ROOT, ".build", "crd-validators");

/** The ajv options of every validator, generated or compiled at run time. */
export const AJV_OPTIONS = { allErrors: true, strict: false } as const;

export function ajvVersion(): string {
  return (require("ajv/package.json") as { version: string }).version;
}

interface Index {
  fingerprint: string;
  /** schema key → file name in the same folder */
  files: Record<string, string>;
}

/** Precompiled validators by schema key, each loaded on first use. */
export interface Precompiled {
  readonly fingerprint: string;
  keys(): string[];
  get(key: string): ValidateFunction | undefined;
}

export function currentFingerprint(crdDir: string = CRD_DIR): string {
  return schemaFingerprint(crdDir, ajvVersion());
}

/** The precompiled validators for the current schemas, or undefined when none were built for them. */
export function loadPrecompiled(crdDir: string = CRD_DIR, root: string = PRECOMPILED_DIR): Precompiled | undefined {
  const fingerprint = currentFingerprint(crdDir);
  const dir = path.join(root, fingerprint);
  const indexFile = path.join(dir, "index.json");
  if (!existsSync(indexFile)) return undefined;
  const index = JSON.parse(readFileSync(indexFile, "utf8")) as Index;
  if (index.fingerprint !== fingerprint) return undefined;
  const loaded = new Map<string, ValidateFunction>();
  return {
    fingerprint,
    keys: () => Object.keys(index.files),
    get(key) {
      const file = index.files[key];
      if (file === undefined) return undefined;
      let fn = loaded.get(key);
      if (!fn) {
        fn = require(path.join(dir, file)) as ValidateFunction;
        loaded.set(key, fn);
      }
      return fn;
    },
  };
}

/**
 * Generates the standalone validators for the current schemas unless they exist. Writes into a
 * temporary folder renamed into place, so a cut-off build leaves nothing half-written behind, and
 * removes the builds of other fingerprints.
 */
export async function buildPrecompiled(
  crdDir: string = CRD_DIR,
  root: string = PRECOMPILED_DIR,
): Promise<{ fingerprint: string; built: boolean; bytes: number }> {
  const fingerprint = currentFingerprint(crdDir);
  const dir = path.join(root, fingerprint);
  if (existsSync(path.join(dir, "index.json"))) return { fingerprint, built: false, bytes: 0 };
  const { default: standaloneCode } = (await import("ajv/dist/standalone/index.js")) as unknown as {
    default: (ajv: Ajv, fn: ValidateFunction) => string;
  };
  mkdirSync(root, { recursive: true });
  const tmp = path.join(root, `.tmp-${fingerprint}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const files: Record<string, string> = {};
  let bytes = 0;
  for (const [key, schema] of loadSchemas(crdDir)) {
    // A fresh ajv per schema, so each file holds the code of one schema only.
    const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: true } });
    const code = standaloneCode(ajv, ajv.compile(schema));
    const file = `${key.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "")}.cjs`;
    writeFileSync(path.join(tmp, file), code);
    files[key] = file;
    bytes += code.length;
  }
  writeFileSync(path.join(tmp, "index.json"), `${JSON.stringify({ fingerprint, files } satisfies Index, null, 2)}\n`);
  try {
    renameSync(tmp, dir);
  } catch (error) {
    // A build running at the same time got there first; its files are the same.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(path.join(dir, "index.json"))) throw error;
  }
  for (const other of readdirSync(root)) {
    if (other !== fingerprint && !other.startsWith(".tmp-")) rmSync(path.join(root, other), { recursive: true, force: true });
  }
  return { fingerprint, built: true, bytes };
}
