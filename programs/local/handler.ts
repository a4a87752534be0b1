// The shape every local operation module implements. Kept free of runtime imports from
// @pulumi/pulumi: these modules are loaded inside the dynamic-provider host process.

export interface DiffResult {
  changes: boolean;
  replaces: string[];
  stables: string[];
  deleteBeforeReplace: boolean;
}

export type Props = Record<string, unknown>;

/**
 * What `read` (pulumi refresh) found: the resource's current props, or an empty result (no id)
 * when it is gone, which makes the engine drop it from the state so the next `up` recreates it.
 * Secret props (passwords) are never read back from a server: the ones in state are returned as
 * they are when they still match, or a fixed marker when they no longer do (the engine keeps
 * them secret either way).
 */
export interface ReadResult {
  id?: string;
  props?: Props;
}

/** Stands in for a credential that no longer matches the server (never the real value). */
export const CHANGED_OUTSIDE = "(changed outside Stackrail)";

export interface Handler {
  create(inputs: Props): Promise<{ id: string; outs: Props }>;
  diff(id: string, olds: Props, news: Props): Promise<DiffResult>;
  update(id: string, olds: Props, news: Props): Promise<{ outs: Props }>;
  delete(id: string, props: Props): Promise<void>;
  /** The live state for `pulumi refresh`: what drift detection compares with the stack's state. */
  read(id: string, props: Props): Promise<ReadResult>;
}

/** The result of a read that found nothing: the engine removes the resource from the state. */
export function gone(): ReadResult {
  return {};
}

/** Inputs written by Pulumi itself; they never decide a diff. */
const INTERNAL = new Set(["__provider"]);

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * A change to any key in `replaceKeys` replaces the resource (it names a different object);
 * every other changed key is updated in place.
 */
export function diffProps(olds: Props, news: Props, replaceKeys: readonly string[]): DiffResult {
  const keys = new Set([...Object.keys(olds), ...Object.keys(news)].filter((k) => !INTERNAL.has(k)));
  const changed = [...keys].filter((k) => !same(olds[k], news[k]));
  const replaces = changed.filter((k) => replaceKeys.includes(k));
  return { changes: changed.length > 0, replaces, stables: [], deleteBeforeReplace: false };
}

export function str(props: Props, key: string): string {
  const v = props[key];
  if (typeof v !== "string" || v === "") throw new Error(`input ${key} must be a non-empty string`);
  return v;
}

export function num(props: Props, key: string): number {
  const v = props[key];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`input ${key} must be a number`);
  return v;
}

export function strings(props: Props, key: string): string[] {
  const v = props[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new Error(`input ${key} must be a list of strings`);
  return v;
}
