// Where the blob store lives (STACKRAIL_BLOB_URL; issue 14 §1), parsed without loading the AWS SDK
// so that configuration stays cheap. Two forms:
//   file:///abs/dir                                            a directory (the one-machine default)
//   s3://bucket[/prefix]?endpoint=http://host:port&region=…&forcePathStyle=true
// The same parser reads a Pulumi diy backend URL (`s3://bucket/prefix?endpoint=host:port&
// s3ForcePathStyle=true&disableSSL=true&region=…`, gocloud's spelling) so that Stackrail can
// reach the engine's lock objects in the state bucket with the same client. Credentials never
// appear in these URLs: the SDK takes them from the standard AWS environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, web identity, instance roles).
import { fileURLToPath } from "node:url";
import { z } from "zod";

export interface FileBlobLocation {
  readonly kind: "file";
  /** Absolute directory. */
  readonly root: string;
}

export interface S3BlobLocation {
  readonly kind: "s3";
  readonly bucket: string;
  /** Key prefix without leading or trailing `/`; "" for the bucket's root. */
  readonly prefix: string;
  /** Custom endpoint (an S3-compatible store); undefined: AWS S3 itself. */
  readonly endpoint: string | undefined;
  /** undefined: the SDK's own resolution (AWS_REGION, profile). */
  readonly region: string | undefined;
  readonly forcePathStyle: boolean;
}

export type BlobLocation = FileBlobLocation | S3BlobLocation;

/** S3 bucket names (the DNS-compatible rules). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** Prefix segments: the same characters blob keys allow. */
const SEGMENT = /^[A-Za-z0-9._-]{1,200}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$|^[a-z0-9-]{2,40}$/;
const flag = z.enum(["true", "false", "1", "0"], { message: "must be true or false" }).transform((v) => v === "true" || v === "1");

export class BlobUrlError extends Error {}

/**
 * Parses a blob URL. `dialect: "pulumi"` accepts gocloud's parameter names (s3ForcePathStyle,
 * disableSSL, an endpoint without a scheme, awssdk, profile); `blob` accepts Stackrail's own.
 * Throws BlobUrlError with a message fit to follow the variable's name.
 */
export function parseBlobUrl(raw: string, dialect: "blob" | "pulumi" = "blob"): BlobLocation {
  if (raw.startsWith("file://")) {
    let root: string;
    try {
      root = fileURLToPath(raw.split("?")[0] ?? raw);
    } catch {
      throw new BlobUrlError("must be file:///absolute/path or s3://bucket/prefix?endpoint=...");
    }
    return { kind: "file", root };
  }
  if (!raw.startsWith("s3://")) throw new BlobUrlError("must be file:///absolute/path or s3://bucket/prefix?endpoint=...");
  const m = /^s3:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/.exec(raw);
  if (!m) throw new BlobUrlError("must be s3://bucket/prefix?endpoint=...");
  const [, bucket = "", rawPrefix = "", query = ""] = m;
  if (bucket.includes("@"))
    throw new BlobUrlError("must not carry credentials; the AWS SDK reads them from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile");
  if (!BUCKET.test(bucket)) throw new BlobUrlError(`bucket "${bucket}" is not a valid S3 bucket name`);
  const segments = rawPrefix.split("/").filter((s) => s.length > 0);
  for (const s of segments) {
    if (!SEGMENT.test(s) || s === "." || s === "..") throw new BlobUrlError(`prefix segment "${s}" must match [A-Za-z0-9._-] and not be . or ..`);
  }
  const params = new URLSearchParams(query);
  // The engine validates its own URL's parameters (gocloud has many: profile, role, fips, ...);
  // Stackrail's own are checked here.
  if (dialect === "blob") {
    const known = ["endpoint", "region", "forcePathStyle"];
    for (const key of params.keys()) {
      if (!known.includes(key)) throw new BlobUrlError(`unknown parameter "${key}" (known: ${known.join(", ")})`);
    }
  }
  const bool = (name: string): boolean => {
    const v = params.get(name);
    if (v === null) return false;
    const r = flag.safeParse(v);
    if (!r.success) throw new BlobUrlError(`${name} must be true or false`);
    return r.data;
  };
  let endpoint = params.get("endpoint") ?? undefined;
  if (endpoint !== undefined) {
    // gocloud takes `host:port` and a separate disableSSL; Stackrail's own form is a full URL.
    if (dialect === "pulumi" && !/^https?:\/\//.test(endpoint)) endpoint = `${bool("disableSSL") || bool("disable_https") ? "http" : "https"}://${endpoint}`;
    let u: URL;
    try {
      u = new URL(endpoint);
    } catch {
      throw new BlobUrlError("endpoint must be an http(s) URL such as http://127.0.0.1:9000");
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new BlobUrlError("endpoint must be an http(s) URL such as http://127.0.0.1:9000");
    if (u.username || u.password) throw new BlobUrlError("endpoint must not carry credentials");
    endpoint = `${u.protocol}//${u.host}${u.pathname.replace(/\/$/, "")}`;
  }
  const region = params.get("region") ?? undefined;
  if (region !== undefined && !REGION.test(region)) throw new BlobUrlError(`region "${region}" is not a region name`);
  const forcePathStyle = dialect === "blob" ? bool("forcePathStyle") : bool("s3ForcePathStyle") || bool("use_path_style");
  return { kind: "s3", bucket, prefix: segments.join("/"), endpoint, region, forcePathStyle };
}

/** The location for messages: scheme, bucket and prefix (or the directory), nothing else. */
export function describeBlobLocation(location: BlobLocation): string {
  if (location.kind === "file") return `file://${location.root}`;
  return `s3://${location.bucket}${location.prefix ? `/${location.prefix}` : ""}`;
}
