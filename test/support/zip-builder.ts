// Writes zip archives byte by byte, including the hostile ones a careful zip library would never
// produce: names with `..` or control characters, symlink and device modes, lying sizes, entries
// sharing their data, encrypted flags. Tests build every archive they upload with it.
import { constants, crc32, deflateRawSync } from "node:zlib";

export interface ZipEntrySpec {
  /** The name in the central directory (a string is written as UTF-8 with the UTF-8 flag). */
  name: string | Buffer;
  data?: Buffer | string;
  /** 0 stored, 8 deflated (default for non-empty data); any other number is written as is. */
  method?: number;
  /** Already-compressed bytes for the entry (e.g. from deflatedZeros); `size` and `crc` should be given. */
  compressed?: Buffer;
  /** Declared uncompressed size (default: the real one). */
  size?: number;
  /** Declared CRC-32 (default: the real one). */
  crc?: number;
  /** Unix mode in the external attributes (default 0o100644, 0o040755 for a name ending in `/`). */
  mode?: number;
  /** Extra general-purpose flags (bit 0: encrypted). */
  flags?: number;
  /** A different name in the local header than in the central directory. */
  localName?: string | Buffer;
  /** Central-directory extra field bytes. */
  extra?: Buffer;
  /** Point this central-directory entry at the local header and data of an earlier entry (index). */
  dataOf?: number;
  /** Write the local header and data only: no central-directory entry lists it. */
  hidden?: boolean;
}

const UTF8_FLAG = 0x800;

function nameBytes(name: string | Buffer): { bytes: Buffer; utf8: boolean } {
  return typeof name === "string" ? { bytes: Buffer.from(name, "utf8"), utf8: true } : { bytes: name, utf8: false };
}

/** A whole archive: local headers and data, the central directory, the end record. */
export function buildZip(entries: readonly ZipEntrySpec[], options: { prefix?: Buffer } = {}): Buffer {
  const locals: Buffer[] = options.prefix ? [options.prefix] : [];
  const central: Buffer[] = [];
  const offsets: number[] = [];
  let offset = options.prefix?.length ?? 0;
  let listed = 0;
  entries.forEach((e, index) => {
    const { bytes: name, utf8 } = nameBytes(e.name);
    const local = e.localName === undefined ? { bytes: name, utf8 } : nameBytes(e.localName);
    const data = typeof e.data === "string" ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
    const method = e.method ?? (e.compressed || data.length > 0 ? 8 : 0);
    const body = e.compressed ?? (method === 8 ? deflateRawSync(data) : data);
    const size = e.size ?? data.length;
    const crc = e.crc ?? crc32(data);
    const flags = (e.flags ?? 0) | (utf8 ? UTF8_FLAG : 0);
    const isDir = (typeof e.name === "string" ? e.name : e.name.toString("latin1")).endsWith("/");
    const mode = e.mode ?? (isDir ? 0o040755 : 0o100644);

    let localOffset: number;
    if (e.dataOf !== undefined) {
      localOffset = offsets[e.dataOf] ?? 0;
    } else {
      const header = Buffer.alloc(30);
      header.writeUInt32LE(0x04034b50, 0);
      header.writeUInt16LE(20, 4);
      header.writeUInt16LE((e.flags ?? 0) | (local.utf8 ? UTF8_FLAG : 0), 6);
      header.writeUInt16LE(method, 8);
      header.writeUInt16LE(0, 10);
      header.writeUInt16LE(0x21, 12); // 1980-01-01
      header.writeUInt32LE(crc >>> 0, 14);
      header.writeUInt32LE(body.length, 18);
      header.writeUInt32LE(size, 22);
      header.writeUInt16LE(local.bytes.length, 26);
      header.writeUInt16LE(0, 28);
      localOffset = offset;
      locals.push(header, local.bytes, body);
      offset += header.length + local.bytes.length + body.length;
    }
    offsets[index] = localOffset;
    if (e.hidden) return;
    listed++;

    const extra = e.extra ?? Buffer.alloc(0);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE((3 << 8) | 20, 4); // made by: Unix
    c.writeUInt16LE(20, 6);
    c.writeUInt16LE(flags, 8);
    c.writeUInt16LE(method, 10);
    c.writeUInt16LE(0, 12);
    c.writeUInt16LE(0x21, 14);
    c.writeUInt32LE(crc >>> 0, 16);
    c.writeUInt32LE(body.length, 20);
    c.writeUInt32LE(size, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(extra.length, 30);
    c.writeUInt16LE(0, 32);
    c.writeUInt16LE(0, 34);
    c.writeUInt16LE(0, 36);
    c.writeUInt32LE((((mode & 0xffff) << 16) | (isDir ? 0x10 : 0)) >>> 0, 38);
    c.writeUInt32LE(localOffset, 42);
    central.push(c, name, extra);
  });
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(listed, 8);
  end.writeUInt16LE(listed, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const MIB = 1024 * 1024;

/**
 * A raw deflate stream of `mib` MiB of zeros without holding them: one MiB compressed with a full
 * flush is a byte-aligned, self-contained run of blocks, so it can be repeated; an empty final
 * block ends the stream. 1 GiB comes out at about 1 MiB.
 */
export function deflatedZeros(mib: number): Buffer {
  const chunk = deflateRawSync(Buffer.alloc(MIB), { finishFlush: constants.Z_FULL_FLUSH });
  return Buffer.concat([...Array.from({ length: mib }, () => chunk), Buffer.from([0x03, 0x00])]);
}

/** CRC-32 of `mib` MiB of zeros. */
export function zerosCrc(mib: number): number {
  const zeros = Buffer.alloc(MIB);
  let crc = 0;
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  return crc;
}

/** A small valid Node.js function bundle with `index.mjs` exporting `handler`. */
export function functionZip(text = "export const handler = async () => ({ statusCode: 200 });\n", file = "index.mjs"): Buffer {
  return buildZip([{ name: file, data: text }]);
}
