import { crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { ConversionError } from '../errors';

/** Limits a zip must keep before anything in it is expanded. */
export interface ZipLimits {
  /** Most entries the archive may list. */
  maxEntries: number;
  /** Largest total of the entries' declared uncompressed sizes. */
  maxTotalBytes: number;
  /** Largest declared ratio of uncompressed to compressed size for one entry (deflate tops out near 1032). */
  maxRatio: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxEntries: 10_000, maxTotalBytes: 1024 * 1024 * 1024, maxRatio: 1100 };

interface Entry {
  name: string;
  method: number;
  compressed: number;
  size: number;
  crc: number;
  localOffset: number;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function bad(why: string): never {
  throw new ConversionError(`zip: ${why}`);
}

/** An entry name that stays inside the archive's folder: no absolute path, drive, or `..` segment. */
function checkName(name: string): void {
  if (name.startsWith('/') || name.startsWith('\\') || /^[A-Za-z]:/.test(name)) bad(`entry "${name}" has an absolute path`);
  if (name.split(/[\\/]/).includes('..')) bad(`entry "${name}" climbs out of the archive with ".."`);
}

/**
 * A zip archive read through its central directory. Every declared size is checked against
 * `limits` when it is opened, before any entry is expanded; an entry's inflate is bounded by
 * its declared size, and its CRC is checked. ZIP64 and encrypted archives are refused.
 */
export class ZipArchive {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly bytes: Uint8Array, limits: ZipLimits = DEFAULT_ZIP_LIMITS) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let eocd = -1;
    for (let i = bytes.byteLength - 22; i >= Math.max(0, bytes.byteLength - 22 - 65535); i--) {
      if (view.getUint32(i, true) === EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) bad('no end-of-central-directory record: not a zip file');
    const count = view.getUint16(eocd + 10, true);
    const dirSize = view.getUint32(eocd + 12, true);
    const dirOffset = view.getUint32(eocd + 16, true);
    if (count === 0xffff || dirOffset === 0xffffffff) bad('ZIP64 archives are not supported');
    if (count > limits.maxEntries) bad(`${count} entries, over the limit of ${limits.maxEntries}`);
    if (dirOffset + dirSize > eocd) bad('the central directory lies outside the file');
    let at = dirOffset;
    let total = 0;
    for (let n = 0; n < count; n++) {
      if (at + 46 > eocd || view.getUint32(at, true) !== CENTRAL) bad(`central directory entry ${n} is damaged`);
      const flags = view.getUint16(at + 8, true);
      const method = view.getUint16(at + 10, true);
      const crc = view.getUint32(at + 16, true);
      const compressed = view.getUint32(at + 20, true);
      const size = view.getUint32(at + 24, true);
      const nameLen = view.getUint16(at + 28, true);
      const extraLen = view.getUint16(at + 30, true);
      const commentLen = view.getUint16(at + 32, true);
      const localOffset = view.getUint32(at + 42, true);
      const name = Buffer.from(bytes.subarray(at + 46, at + 46 + nameLen)).toString('utf8');
      at += 46 + nameLen + extraLen + commentLen;
      checkName(name);
      if (flags & 1) bad(`entry "${name}" is encrypted`);
      if (name.endsWith('/')) continue;
      if (method !== 0 && method !== 8) bad(`entry "${name}" uses compression method ${method} (only stored and deflate)`);
      if (method === 0 && size !== compressed) bad(`entry "${name}" is stored but declares ${size} bytes in ${compressed}`);
      if (size > Math.max(compressed, 1) * limits.maxRatio) bad(`entry "${name}" declares ${size} bytes from ${compressed}: a ratio over ${limits.maxRatio} (zip bomb?)`);
      total += size;
      if (total > limits.maxTotalBytes) bad(`entries declare more than ${limits.maxTotalBytes} bytes in all`);
      if (this.entries.has(name)) bad(`entry "${name}" appears twice`);
      this.entries.set(name, { name, method, compressed, size, crc, localOffset });
    }
  }

  /** File names in the archive (folders left out). */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** An entry's bytes, expanded to at most its declared size. */
  read(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (!e) bad(`no entry "${name}"`);
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    if (e.localOffset + 30 > this.bytes.byteLength || view.getUint32(e.localOffset, true) !== LOCAL) bad(`entry "${name}": local header is damaged`);
    const start = e.localOffset + 30 + view.getUint16(e.localOffset + 26, true) + view.getUint16(e.localOffset + 28, true);
    if (start + e.compressed > this.bytes.byteLength) bad(`entry "${name}" runs past the end of the file`);
    const raw = this.bytes.subarray(start, start + e.compressed);
    let data: Uint8Array;
    if (e.method === 0) data = raw;
    else {
      try {
        const inflated = inflateRawSync(raw, { maxOutputLength: Math.max(e.size, 1) });
        data = new Uint8Array(inflated.buffer, inflated.byteOffset, inflated.byteLength);
      } catch (err) {
        bad(`entry "${name}" does not inflate to its declared ${e.size} bytes (${(err as Error).message})`);
      }
    }
    if (data.byteLength !== e.size) bad(`entry "${name}" holds ${data.byteLength} bytes, not the ${e.size} it declares`);
    if (crc32(data) >>> 0 !== e.crc >>> 0) bad(`entry "${name}" fails its CRC check`);
    return data;
  }
}

/** Writes a zip of `files` (deflated unless `store`), for the CLI and tests. */
export function writeZip(files: { name: string; data: Uint8Array }[], store = false): Uint8Array {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const body = store ? Buffer.from(f.data) : deflateRawSync(f.data);
    const crc = crc32(f.data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(LOCAL, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(store ? 0 : 8, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.byteLength, 18);
    local.writeUInt32LE(f.data.byteLength, 22);
    local.writeUInt16LE(name.byteLength, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(CENTRAL, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(store ? 0 : 8, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.byteLength, 20);
    central.writeUInt32LE(f.data.byteLength, 24);
    central.writeUInt16LE(name.byteLength, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += 30 + name.byteLength + body.byteLength;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(EOCD, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(dir.byteLength, 12);
  end.writeUInt32LE(offset, 16);
  return new Uint8Array(Buffer.concat([...locals, dir, end]));
}
