// Checks an uploaded function bundle before anything is stored (issue 11, finding 11). A bundle is
// tenant code bound for an extractor we do not control (Lambda, a local unpack), so the archive is
// read the way a hostile one would be built: the central directory through yauzl, every entry's
// local header against it, and every entry's data inflated as a stream under a byte cap. The
// declared sizes are only a first filter — a header can lie, so the bytes actually inflated are
// counted and compared, and inflation stops at the first byte past what was declared or allowed.
// Nothing is extracted to disk. A refusal is a ValidationError on `code` (or `handler`) whose
// message names the rule, e.g. `code: bundle refused (path-traversal): entry "../x" ...`.
import type { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import { fromBuffer, type Entry, type ZipFile } from "yauzl";
import { ValidationError } from "../core/errors.ts";

export interface BundleLimits {
  /** Entries in the central directory, directories included. */
  readonly maxEntries: number;
  /** Sum of the uncompressed sizes (declared, and then actually inflated). Lambda's own unzipped limit is 250 MB. */
  readonly maxTotalBytes: number;
  /** Uncompressed / compressed, per entry, judged for entries larger than ratioMinBytes. */
  readonly maxRatio: number;
  readonly ratioMinBytes: number;
  /** Bytes of a whole entry name, and of one path segment. */
  readonly maxNameBytes: number;
  readonly maxSegmentBytes: number;
}

export const DEFAULT_BUNDLE_LIMITS: BundleLimits = {
  maxEntries: 5000,
  maxTotalBytes: 250 * 1024 * 1024,
  maxRatio: 100,
  ratioMinBytes: 1024 * 1024,
  maxNameBytes: 1024,
  maxSegmentBytes: 255,
};

export type BundleRule =
  | "corrupt-archive"
  | "too-many-entries"
  | "encrypted"
  | "unsupported-compression"
  | "name-not-utf8"
  | "control-character"
  | "absolute-path"
  | "backslash"
  | "path-traversal"
  | "non-canonical-path"
  | "duplicate-name"
  | "symlink"
  | "not-regular-file"
  | "special-permissions"
  | "total-size"
  | "compression-ratio"
  | "name-mismatch"
  | "overlapping-entries"
  | "unlisted-data"
  | "size-mismatch"
  | "checksum-mismatch"
  | "handler-missing";

/** A bundle refused by one of the rules above; a 400 naming the rule. */
export class BundleRejectedError extends ValidationError {
  readonly rule: BundleRule;
  constructor(rule: BundleRule, detail: string, field = "code") {
    super(field, `bundle refused (${rule}): ${detail}`);
    this.rule = rule;
  }
}

export interface BundleSummary {
  readonly files: number;
  readonly totalBytes: number;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
/** "Version made by" hosts whose external attributes carry a unix mode: Unix, and macOS. */
const UNIX_HOSTS = new Set([3, 19]);
const MSDOS_DIRECTORY = 0x10;
const INFO_ZIP_UNICODE_PATH = 0x7075;

const DATA_DESCRIPTOR_MAX = 24;
const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;

/**
 * Where the central directory starts, from the end-of-central-directory record (yauzl has already
 * found and validated it); null for zip64 archives, whose offset lives elsewhere.
 */
function centralDirectoryOffset(bundle: Buffer): number | null {
  for (let at = bundle.length - 22; at >= 0 && at >= bundle.length - 22 - 0xffff; at--) {
    if (bundle.readUInt32LE(at) !== EOCD_SIGNATURE || at + 22 + bundle.readUInt16LE(at + 20) !== bundle.length) continue;
    if (at >= 20 && bundle.readUInt32LE(at - 20) === ZIP64_LOCATOR_SIGNATURE) return null;
    const offset = bundle.readUInt32LE(at + 16);
    return offset === 0xffffffff ? null : offset;
  }
  return null;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** An entry name as it may appear in a message: quoted, escaped, bounded. */
function shown(name: string): string {
  const s = JSON.stringify(name.length > 120 ? `${name.slice(0, 119)}…` : name);
  return s;
}

function hasControl(name: string): boolean {
  for (const ch of name) {
    const c = ch.codePointAt(0) ?? 0;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return true;
  }
  return false;
}

/** The entry's path rules; returns the name without a directory's trailing slash. */
function checkName(raw: Buffer, limits: BundleLimits): { name: string; isDir: boolean } {
  let name: string;
  try {
    name = utf8.decode(raw);
  } catch {
    throw new BundleRejectedError("name-not-utf8", `an entry name is not valid UTF-8 (${raw.length} bytes)`);
  }
  if (hasControl(name)) throw new BundleRejectedError("control-character", `entry ${shown(name)} has a control character in its name`);
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) throw new BundleRejectedError("absolute-path", `entry ${shown(name)} is an absolute path`);
  if (name.includes("\\")) throw new BundleRejectedError("backslash", `entry ${shown(name)} has a backslash in its name`);
  const isDir = name.endsWith("/");
  const bare = isDir ? name.slice(0, -1) : name;
  const segments = bare.split("/");
  if (segments.includes("..")) throw new BundleRejectedError("path-traversal", `entry ${shown(name)} has a .. segment`);
  if (bare === "" || segments.some((s) => s === "" || s === "."))
    throw new BundleRejectedError("non-canonical-path", `entry ${shown(name)} has an empty or . segment`);
  if (raw.length > limits.maxNameBytes || segments.some((s) => Buffer.byteLength(s) > limits.maxSegmentBytes)) {
    throw new BundleRejectedError(
      "non-canonical-path",
      `entry ${shown(name)} has a name longer than ${limits.maxNameBytes} bytes or a segment longer than ${limits.maxSegmentBytes}`,
    );
  }
  return { name: bare.normalize("NFC"), isDir };
}

/** Symlinks, devices, fifos, sockets and setuid/setgid/sticky bits, from a unix mode when there is one. */
function checkType(entry: Entry, name: string, isDir: boolean): void {
  const host = entry.versionMadeBy >> 8;
  if (!UNIX_HOSTS.has(host)) {
    if (!isDir && (entry.externalFileAttributes & MSDOS_DIRECTORY) !== 0) {
      throw new BundleRejectedError("not-regular-file", `entry ${shown(name)} is marked a directory but is named like a file`);
    }
    return;
  }
  const mode = entry.externalFileAttributes >>> 16;
  const type = mode & S_IFMT;
  if (type === S_IFLNK) throw new BundleRejectedError("symlink", `entry ${shown(name)} is a symbolic link`);
  // No type bits at all: a tool that only recorded permissions.
  if (type !== 0 && type !== (isDir ? S_IFDIR : S_IFREG)) {
    throw new BundleRejectedError("not-regular-file", `entry ${shown(name)} is not a regular file or directory (mode ${type.toString(8)})`);
  }
  if ((mode & 0o7000) !== 0) throw new BundleRejectedError("special-permissions", `entry ${shown(name)} has setuid, setgid or sticky bits`);
}

function open(bundle: Buffer): Promise<ZipFile> {
  return new Promise((resolve, reject) => {
    // decodeStrings: false — names are judged here as raw bytes, not decoded as CP437 and patched.
    // validateEntrySizes: false — sizes are counted here, so that a lie is reported as one.
    fromBuffer(bundle, { lazyEntries: true, decodeStrings: false, validateEntrySizes: false, autoClose: false }, (err, zip) => {
      if (err) reject(new BundleRejectedError("corrupt-archive", "not a readable zip archive"));
      else resolve(zip);
    });
  });
}

function readEntries(zip: ZipFile): Promise<Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: Entry[] = [];
    zip.on("entry", (entry: Entry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.once("end", () => resolve(entries));
    zip.once("error", () => reject(new BundleRejectedError("corrupt-archive", "the central directory is not readable")));
    zip.readEntry();
  });
}

function localHeader(zip: ZipFile, entry: Entry): Promise<{ fileDataStart: number; fileName: Buffer }> {
  return new Promise((resolve, reject) => {
    zip.readLocalFileHeader(entry, {}, (err, header) => {
      if (err) reject(new BundleRejectedError("corrupt-archive", "an entry's local header is not readable"));
      else resolve(header);
    });
  });
}

function dataStream(zip: ZipFile, entry: Entry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err) reject(new BundleRejectedError("corrupt-archive", "an entry's data is not readable"));
      else resolve(stream);
    });
  });
}

/** Inflates one entry, stopping at the first byte past `cap`; its real size and CRC-32. */
async function inflate(zip: ZipFile, entry: Entry, cap: number): Promise<{ bytes: number; crc: number; capped: boolean }> {
  const stream = await dataStream(zip, entry);
  let bytes = 0;
  let crc = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > cap) return { bytes, crc, capped: true };
      crc = crc32(chunk, crc);
    }
  } catch {
    throw new BundleRejectedError("corrupt-archive", "an entry's compressed data is not valid");
  } finally {
    stream.destroy();
  }
  return { bytes, crc, capped: false };
}

/**
 * Module files the Node.js runtime would load for `handler` (`path/file.export` → `path/file.js`,
 * `.mjs` or `.cjs`).
 */
export function handlerFiles(handler: string): string[] {
  const dot = handler.lastIndexOf(".");
  const module = dot > 0 ? handler.slice(0, dot) : handler;
  return [".js", ".mjs", ".cjs"].map((ext) => `${module}${ext}`);
}

/**
 * Reads the whole archive and throws BundleRejectedError for the first rule it breaks; returns what
 * it holds. Entries are checked in the central directory's order, each rule before its data is read.
 */
export async function checkBundle(bundle: Buffer, handler: string, limits: BundleLimits = DEFAULT_BUNDLE_LIMITS): Promise<BundleSummary> {
  const zip = await open(bundle);
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new BundleRejectedError("too-many-entries", `${zip.entryCount} entries; at most ${limits.maxEntries} are allowed`);
    }
    const entries = await readEntries(zip);

    // Names, types, flags and declared sizes: everything the central directory says.
    const seen = new Set<string>();
    const files = new Set<string>();
    const checked: { entry: Entry; name: string; isDir: boolean }[] = [];
    let declaredTotal = 0;
    for (const entry of entries) {
      const { name, isDir } = checkName(entry.fileNameRaw, limits);
      if (seen.has(name)) throw new BundleRejectedError("duplicate-name", `entry ${shown(name)} appears more than once`);
      seen.add(name);
      checkType(entry, name, isDir);
      if (entry.isEncrypted() || (entry.generalPurposeBitFlag & 0x40) !== 0) throw new BundleRejectedError("encrypted", `entry ${shown(name)} is encrypted`);
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
        throw new BundleRejectedError(
          "unsupported-compression",
          `entry ${shown(name)} uses compression method ${entry.compressionMethod}; only stored and deflated are accepted`,
        );
      }
      const unicodePath = entry.extraFields.find((f) => f.id === INFO_ZIP_UNICODE_PATH);
      // Extractors that honour the Info-ZIP Unicode Path field would write the file under that name.
      if (unicodePath && !unicodePath.data.subarray(5).equals(entry.fileNameRaw)) {
        throw new BundleRejectedError("name-mismatch", `entry ${shown(name)} carries a different name in its Unicode Path field`);
      }
      if (isDir && entry.uncompressedSize > 0) throw new BundleRejectedError("not-regular-file", `directory entry ${shown(name)} has content`);
      declaredTotal += entry.uncompressedSize;
      if (declaredTotal > limits.maxTotalBytes) {
        throw new BundleRejectedError("total-size", `the archive declares more than ${limits.maxTotalBytes} uncompressed bytes`);
      }
      if (entry.uncompressedSize > limits.ratioMinBytes && entry.uncompressedSize > limits.maxRatio * Math.max(entry.compressedSize, 1)) {
        throw new BundleRejectedError("compression-ratio", `entry ${shown(name)} declares a compression ratio over ${limits.maxRatio}`);
      }
      if (entry.compressionMethod === 0 && entry.compressedSize !== entry.uncompressedSize) {
        throw new BundleRejectedError(
          "size-mismatch",
          `stored entry ${shown(name)} declares ${entry.uncompressedSize} bytes but holds ${entry.compressedSize}`,
        );
      }
      checked.push({ entry, name, isDir });
      if (!isDir) files.add(name);
    }
    // Directories are entries of their own or implied by files; a file may not also be a directory.
    for (const file of files) {
      const parts = file.split("/");
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join("/");
        if (files.has(parent)) throw new BundleRejectedError("duplicate-name", `${shown(parent)} is both a file and a directory`);
      }
    }

    // Local headers: each entry's bytes its own, the same name as in the central directory, and
    // together they tile the archive up to the central directory. Bytes in front of the first
    // entry, between two, or before the directory could hold a local entry that only a streaming
    // extractor (one that reads local headers, not the directory) would unpack.
    const spans: { start: number; end: number; name: string; trailer: number; localName: Buffer; rawName: Buffer }[] = [];
    for (const { entry, name } of checked) {
      const local = await localHeader(zip, entry);
      spans.push({
        start: entry.relativeOffsetOfLocalHeader,
        end: local.fileDataStart + entry.compressedSize,
        name,
        // An entry written with a data descriptor (flag bit 3) is followed by 12 to 24 bytes of it.
        trailer: (entry.generalPurposeBitFlag & 0x8) !== 0 ? DATA_DESCRIPTOR_MAX : 0,
        localName: local.fileName,
        rawName: entry.fileNameRaw,
      });
    }
    spans.sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) {
      const prev = spans[i - 1];
      const cur = spans[i];
      if (prev && cur && cur.start < prev.end)
        throw new BundleRejectedError("overlapping-entries", `entries ${shown(prev.name)} and ${shown(cur.name)} share bytes`);
    }
    for (const span of spans) {
      if (!span.localName.equals(span.rawName))
        throw new BundleRejectedError("name-mismatch", `entry ${shown(span.name)} has another name in its local header`);
    }
    let cursor = 0;
    let slack = 0;
    for (const span of spans) {
      const gap = span.start - cursor;
      if (gap > slack) throw new BundleRejectedError("unlisted-data", `${gap} bytes before entry ${shown(span.name)} belong to no listed entry`);
      cursor = span.end;
      slack = span.trailer;
    }
    const cdOffset = centralDirectoryOffset(bundle);
    if (cdOffset !== null && (cdOffset < cursor || cdOffset - cursor > slack)) {
      throw new BundleRejectedError("unlisted-data", `${cdOffset - cursor} bytes before the central directory belong to no listed entry`);
    }

    // The data itself: a lying header cannot inflate past what it declared, nor the total past the limit.
    let actualTotal = 0;
    for (const { entry, name, isDir } of checked) {
      if (isDir) continue;
      const budget = limits.maxTotalBytes - actualTotal;
      const real = await inflate(zip, entry, Math.min(entry.uncompressedSize, budget));
      if (real.capped) {
        if (real.bytes > entry.uncompressedSize) {
          throw new BundleRejectedError("size-mismatch", `entry ${shown(name)} inflates to more than the ${entry.uncompressedSize} bytes it declares`);
        }
        throw new BundleRejectedError("total-size", `the archive inflates to more than ${limits.maxTotalBytes} bytes`);
      }
      if (real.bytes !== entry.uncompressedSize) {
        throw new BundleRejectedError("size-mismatch", `entry ${shown(name)} inflates to ${real.bytes} bytes but declares ${entry.uncompressedSize}`);
      }
      if (real.crc >>> 0 !== entry.crc32 >>> 0) throw new BundleRejectedError("checksum-mismatch", `entry ${shown(name)} does not match its CRC-32`);
      actualTotal += real.bytes;
    }

    const candidates = handlerFiles(handler);
    if (!candidates.some((f) => files.has(f))) {
      throw new BundleRejectedError("handler-missing", `the archive has no ${candidates.map(shown).join(", ")} for handler ${shown(handler)}`, "handler");
    }
    return { files: files.size, totalBytes: actualTotal };
  } finally {
    zip.close();
  }
}
