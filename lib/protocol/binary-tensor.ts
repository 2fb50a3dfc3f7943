import { endianness } from 'node:os';
import { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import type { DatatypeInfo } from './dtypes';
import { checkBytesElement, elementCount } from './tensor-codec';

/**
 * Tensor data <-> the binary tensor format of Triton's binary data extension, per datatype:
 * little-endian, row-major, no padding; BOOL one byte (0 or 1); FP16 its binary16 bits; BYTES
 * each element as a 4-byte little-endian length and then its bytes. The same format carries
 * staged tensors (lib/service/staging.ts).
 */

// Typed arrays use the host's byte order; the format is little-endian. Every Lambda and
// onnxruntime-node platform is little-endian, so the data is copied as it is.
if (endianness() !== 'LE') throw new Error('the binary tensor format needs a little-endian host');

type NumericArray = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | BigUint64Array | BigInt64Array | Float32Array | Float64Array;
const ARRAYS: Partial<Record<Tensor.Type, new (n: number) => NumericArray>> = {
  bool: Uint8Array,
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  float16: Uint16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  uint64: BigUint64Array,
  int64: BigInt64Array,
  float32: Float32Array,
  float64: Float64Array,
};

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes the binary form of a tensor holds, for every datatype but BYTES (whose elements vary). */
export function binarySize(info: DatatypeInfo, shape: readonly number[]): number | undefined {
  return info.size === undefined ? undefined : elementCount(shape) * info.size;
}

/**
 * One tensor from its binary form. `bytes` must be exactly the tensor's data: its size is
 * checked against the shape before anything is copied, and every BYTES length against what is
 * left, so a frame that lies about its sizes is a 400 naming the input.
 */
export function decodeBinaryTensor(input: string, info: DatatypeInfo, shape: readonly number[], bytes: Uint8Array): Tensor {
  const dims = shape as number[];
  const count = elementCount(shape);
  if (info.size === undefined) return new Tensor('string', decodeBytesElements(input, count, bytes), dims);
  const expected = count * info.size;
  if (bytes.byteLength !== expected) {
    throw new InvalidRequestError(
      `input "${input}": binary data is ${bytes.byteLength} bytes but shape ${JSON.stringify(shape)} of ${info.oip} needs ${expected} (${count} x ${info.size})`,
    );
  }
  const Ctor = ARRAYS[info.ort] as new (n: number) => NumericArray;
  const out = new Ctor(count);
  // A fresh array is aligned for its type; the request's bytes may sit at any offset.
  new Uint8Array(out.buffer, out.byteOffset, expected).set(bytes);
  if (info.ort === 'bool') {
    const at = (out as Uint8Array).findIndex((b) => b > 1);
    if (at >= 0) throw new InvalidRequestError(`input "${input}": element ${at} is byte ${(out as Uint8Array)[at]}; BOOL elements are one byte, 0 or 1`);
  }
  return new Tensor(info.ort, out as Tensor.DataTypeMap[Tensor.Type], dims);
}

function decodeBytesElements(input: string, count: number, bytes: Uint8Array): string[] {
  return splitBytesElements(input, count, bytes).map((element, i) => bytesElementText(input, i, element));
}

/**
 * The elements of a binary BYTES tensor (each a 4-byte little-endian length, then that many
 * bytes), as views into `bytes`. Every length is checked against what is left, and the
 * elements must fill the data exactly.
 */
export function splitBytesElements(input: string, count: number, bytes: Uint8Array): Uint8Array[] {
  const out = new Array<Uint8Array>(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.byteLength) {
      throw new InvalidRequestError(`input "${input}": BYTES element ${i} of ${count}: its 4-byte length runs past the tensor's ${bytes.byteLength} bytes of binary data`);
    }
    const length = view.getUint32(at, true);
    at += 4;
    if (length > bytes.byteLength - at) {
      throw new InvalidRequestError(`input "${input}": BYTES element ${i} says it is ${length} bytes long, past the end of the tensor's binary data (${bytes.byteLength - at} bytes left)`);
    }
    out[i] = bytes.subarray(at, at + length);
    at += length;
  }
  if (at !== bytes.byteLength) {
    throw new InvalidRequestError(`input "${input}": ${bytes.byteLength - at} bytes of binary data are left after its ${count} BYTES elements`);
  }
  return out;
}

/** One BYTES element as UTF-8 text, or a 400 naming the input and element. */
export function bytesElementText(input: string, index: number, element: Uint8Array): string {
  let text: string;
  try {
    text = utf8.decode(element);
  } catch {
    throw new InvalidRequestError(`input "${input}": BYTES element ${index} is not valid UTF-8; onnxruntime-node carries BYTES tensors as UTF-8 strings`);
  }
  checkBytesElement(input, index, text);
  return text;
}

/** A tensor's binary form, as chunks to concatenate (numeric data is a view, not a copy). */
export function encodeBinaryTensor(tensor: Tensor): Uint8Array[] {
  const data = tensor.data;
  if (tensor.type === 'string') {
    const chunks: Uint8Array[] = [];
    for (const s of data as string[]) {
      const text = Buffer.from(s, 'utf8');
      const length = Buffer.allocUnsafe(4);
      length.writeUInt32LE(text.byteLength, 0);
      chunks.push(length, text);
    }
    return chunks;
  }
  const typed = data as NumericArray;
  return [new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength)];
}

/** Total bytes of a list of chunks. */
export function chunksSize(chunks: readonly Uint8Array[]): number {
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  return n;
}
