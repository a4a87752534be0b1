// The shape every local operation module implements. Kept free of runtime imports from
// @pulumi/pulumi: these modules are loaded inside the dynamic-provider host process.
import { createHash } from "node:crypto";

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

/**
 * Who may have a per-tenant object: `<key>/<token>`, the tenant id or preview key and a random
 * token made once per stack incarnation (a GeneratedPassword in the stack). A stack that lost its
 * state, or another stack with a colliding name, holds a different token.
 */
const OWNER_PATTERN = /^([a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?)\/([A-Za-z0-9]{16,128})$/;

/**
 * What an owner registry stores for `owner`: the key (so an operator sees whose it is) and a
 * digest of the whole value (so the registry never holds the token itself).
 */
export function ownerRecord(owner: string): string {
  const m = OWNER_PATTERN.exec(owner);
  if (!m) throw new Error("input owner must be <key>/<token>");
  return `${m[1]}/${createHash("sha256").update(owner, "utf8").digest("hex")}`;
}

/** The owner record of a resource's props, or undefined for state written before owners existed. */
export function ownerOf(props: Props): string | undefined {
  return props.owner === undefined ? undefined : ownerRecord(str(props, "owner"));
}

// Refusals: static text around names only (these messages reach job records and PR comments), never
// the other owner's key or token. The engine reports them as a failed resource operation, which the
// worker classifies as a program error: the job fails at once, without retries.

export function notRecordedError(what: string, name: string): Error {
  return new Error(
    `ownership refused: ${what} ${name} exists but is not recorded as this tenant's; remove it, or deprovision the tenant or preview that made it, then run again`,
  );
}

export function ownedByOtherError(what: string, name: string): Error {
  return new Error(
    `ownership refused: ${what} ${name} is recorded as owned by another tenant or an earlier incarnation of this stack; deprovision that one (or remove the object and its owner record) first`,
  );
}
