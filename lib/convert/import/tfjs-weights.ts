import { ConversionError } from '../errors';

/** A weight read from a TF.js manifest, dequantized to float32 (int32 weights keep integral values). */
export interface Weight {
  name: string;
  shape: number[];
  data: Float32Array;
}

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  group?: string;
  quantization?: { dtype: string; min?: number; scale?: number };
}

interface ManifestGroup {
  paths: string[];
  weights: ManifestEntry[];
}

const BYTES_PER: Record<string, number> = { float32: 4, int32: 4, uint8: 1, uint16: 2, float16: 2, bool: 1 };

/** IEEE half to float: exponent 0 is subnormal, 31 is infinity/NaN. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function decodeEntry(entry: ManifestEntry, bytes: Uint8Array): Float32Array {
  const count = entry.shape.reduce((a, b) => a * b, 1);
  const q = entry.quantization;
  // Aligned little-endian floats are used in place (the hosts Lambda and Node run on are little-endian).
  if (!q && entry.dtype === 'float32' && bytes.byteOffset % 4 === 0 && LITTLE_ENDIAN) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (q) {
    if (q.dtype === 'float16') {
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      return out;
    }
    if (q.dtype !== 'uint8' && q.dtype !== 'uint16') throw new ConversionError(`weight "${entry.name}": unknown quantization dtype "${q.dtype}"`);
    const scale = q.scale ?? 1;
    const min = q.min ?? 0;
    const round = entry.dtype === 'int32';
    for (let i = 0; i < count; i++) {
      const v = (q.dtype === 'uint8' ? view.getUint8(i) : view.getUint16(2 * i, true)) * scale + min;
      out[i] = round ? Math.round(v) : v;
    }
    return out;
  }
  if (entry.dtype === 'float32') {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  } else if (entry.dtype === 'int32') {
    for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, true);
  } else if (entry.dtype === 'bool') {
    for (let i = 0; i < count; i++) out[i] = view.getUint8(i);
  } else {
    throw new ConversionError(`weight "${entry.name}": unsupported dtype "${entry.dtype}"`);
  }
  return out;
}

/** A manifest entry as TF.js writes it: a name, and a shape of whole, non-negative dimensions. */
function checkEntry(entry: unknown): asserts entry is ManifestEntry {
  const e = entry as Partial<ManifestEntry> | null;
  if (!e || typeof e !== 'object' || typeof e.name !== 'string') throw new ConversionError('model.json: a weightsManifest entry has no name');
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && (d) >= 0)) {
    throw new ConversionError(`weight "${e.name}": shape ${JSON.stringify(e.shape)} is not a list of whole, non-negative dimensions`);
  }
  if (typeof e.dtype !== 'string') throw new ConversionError(`weight "${e.name}": dtype ${JSON.stringify(e.dtype)} is not a name`);
  if (e.quantization !== undefined && (typeof e.quantization !== 'object' || e.quantization === null)) throw new ConversionError(`weight "${e.name}": quantization is not an object`);
  const q = e.quantization;
  if (q && ((q.scale !== undefined && !Number.isFinite(q.scale)) || (q.min !== undefined && !Number.isFinite(q.min)))) {
    throw new ConversionError(`weight "${e.name}": quantization scale and min must be finite numbers`);
  }
}

function entryBytes(entry: ManifestEntry): number {
  const dtype = entry.quantization?.dtype ?? entry.dtype;
  const per = BYTES_PER[dtype];
  if (per === undefined) throw new ConversionError(`weight "${entry.name}": unsupported dtype "${dtype}"`);
  return per * entry.shape.reduce((a, b) => a * b, 1);
}

/**
 * Reads every group of a TF.js `weightsManifest`: a group's shards are concatenated in order and
 * its weights lie back to back in listed order. `readShard` returns a shard's bytes by its path.
 * Optimizer weights are skipped.
 */
export function readTfjsWeights(manifest: unknown, readShard: (path: string) => Uint8Array, onGroupBytes?: (bytes: Uint8Array) => void): Map<string, Weight> {
  if (!Array.isArray(manifest)) throw new ConversionError('model.json: weightsManifest is not a list');
  const weights = new Map<string, Weight>();
  for (const group of manifest as ManifestGroup[]) {
    if (!Array.isArray(group?.paths) || !Array.isArray(group.weights)) throw new ConversionError('model.json: a weightsManifest group lacks paths or weights');
    if (!group.paths.every((p) => typeof p === 'string')) throw new ConversionError('model.json: a weightsManifest group has a path that is not a string');
    const shards = group.paths.map((p) => readShard(p));
    const total = shards.reduce((a, s) => a + s.byteLength, 0);
    // One shard is used as it is: a copy would be one more model-sized buffer at the peak.
    const joined = shards.length === 1 ? shards[0]! : new Uint8Array(total);
    if (shards.length !== 1) {
      let at = 0;
      for (const s of shards) {
        joined.set(s, at);
        at += s.byteLength;
      }
    }
    onGroupBytes?.(joined);
    let offset = 0;
    for (const entry of group.weights) {
      checkEntry(entry);
      const size = entryBytes(entry);
      if (offset + size > total) {
        throw new ConversionError(`weight "${entry.name}" ends at byte ${offset + size}, past the ${total} bytes of its shards (${group.paths.join(', ')})`);
      }
      if (entry.group !== 'optimizer') {
        weights.set(entry.name, { name: entry.name, shape: entry.shape, data: decodeEntry(entry, joined.subarray(offset, offset + size)) });
      }
      offset += size;
    }
  }
  return weights;
}
