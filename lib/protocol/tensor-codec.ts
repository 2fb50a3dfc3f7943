import { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import type { DatatypeInfo } from './dtypes';
import { fromHalfBits, toHalfBits } from './half';

/**
 * Tensor data <-> JSON, per datatype, shared by the OIP and TF Serving codecs.
 *
 * JSON has no NaN or Infinity. Following the protobuf JSON mapping, floating-point values may
 * be sent as the strings "NaN", "Infinity" and "-Infinity", and are answered that way.
 * 64-bit integers are written as exact decimal digits and accepted as numbers or as decimal
 * strings (use strings beyond 2^53, where a JSON number loses precision in most parsers).
 */

/** Largest element count one tensor may have; far above what a 6 MB body can hold. */
const MAX_ELEMENTS = 1 << 28;

const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A value from a parsed request body, quoted as JSON and shortened for an error message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  // A literal like 1e400 parses to Infinity, which JSON.stringify would show as null.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  let text: string;
  try {
    // Parsed JSON always stringifies; JSON text is already escaped, so only shorten it.
    text = JSON.stringify(value) ?? 'undefined';
  } catch {
    // JSON.parse takes 100,000 nested arrays; JSON.stringify recurses and runs out of stack.
    return Array.isArray(value) ? 'a deeply nested array' : 'a deeply nested object';
  }
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

function badElement(input: string, index: number, value: unknown, info: DatatypeInfo, why?: string): never {
  const expected = why ?? `expected ${KIND_NAMES[info.json]} for ${info.oip}`;
  throw new InvalidRequestError(`input "${input}": element ${index} is ${describeValue(value)}, ${expected}`);
}

const KIND_NAMES: Record<DatatypeInfo['json'], string> = {
  bool: 'true or false',
  float: 'a number',
  half: 'a number',
  int: 'an integer',
  bigint: 'an integer',
  string: 'a string',
};

/** Number of elements a shape holds, checked against a limit without overflowing. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > MAX_ELEMENTS) return Infinity;
  }
  return n;
}

/** Checks that every dim of a client-sent shape is a non-negative integer. */
export function checkShapeValues(input: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new InvalidRequestError(`input "${input}": shape must be an array of integers`);
  if (shape.length > 32) throw new InvalidRequestError(`input "${input}": shape has ${shape.length} dimensions; at most 32`);
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new InvalidRequestError(
        `input "${input}": shape ${describeValue(shape)} must hold non-negative integers, found ${describeValue(d)}`,
      );
    }
  }
  return shape as number[];
}

/**
 * Flattens tensor data sent flat or nested (row-major) and checks it holds exactly the
 * elements the shape calls for.
 */
export function flattenToShape(input: string, data: unknown, shape: readonly number[]): unknown[] {
  if (!Array.isArray(data)) throw new InvalidRequestError(`input "${input}": data must be an array`);
  const expected = elementCount(shape);
  if (data.length > 0 && Array.isArray(data[0]) && shape.length > 1) {
    const flat: unknown[] = [];
    const walk = (node: unknown, depth: number): void => {
      const dim = shape[depth] as number;
      if (!Array.isArray(node) || node.length !== dim) {
        throw new InvalidRequestError(
          `input "${input}": nested data does not match shape ${JSON.stringify(shape)} at depth ${depth}`,
        );
      }
      if (depth === shape.length - 1) {
        for (const v of node) flat.push(v);
        return;
      }
      for (const child of node) walk(child, depth + 1);
    };
    walk(data, 0);
    return flat;
  }
  if (data.length !== expected) {
    throw new InvalidRequestError(
      `input "${input}": shape ${JSON.stringify(shape)} holds ${expected === Infinity ? 'too many' : expected} elements but data has ${data.length}`,
    );
  }
  return data;
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return NON_FINITE[value];
  return undefined;
}

function toBigInt(value: unknown, info: DatatypeInfo): bigint | undefined {
  let big: bigint;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return undefined;
    big = BigInt(value);
  } else if (typeof value === 'string' && /^-?[0-9]{1,20}$/.test(value)) {
    big = BigInt(value);
  } else return undefined;
  return big >= (info.min as bigint) && big <= (info.max as bigint) ? big : undefined;
}

/** Converts flat JSON values to an onnxruntime tensor of the given datatype. */
export function toOrtTensor(input: string, info: DatatypeInfo, shape: readonly number[], flat: readonly unknown[]): Tensor {
  const n = flat.length;
  const dims = shape as number[];
  switch (info.json) {
    case 'float': {
      const out = info.ort === 'float32' ? new Float32Array(n) : new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v === 'number') out[i] = v;
        else {
          const x = toNumber(v);
          if (x === undefined) badElement(input, i, v, info);
          out[i] = x;
        }
      }
      return new Tensor(info.ort, out, dims);
    }
    case 'half': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const x = toNumber(flat[i]);
        if (x === undefined) badElement(input, i, flat[i], info);
        out[i] = toHalfBits(x);
      }
      return new Tensor('float16', out, dims);
    }
    case 'int': {
      const Ctor = INT_ARRAYS[info.ort as IntType];
      const out = new Ctor(n);
      const min = info.min as number;
      const max = info.max as number;
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v !== 'number' || !Number.isInteger(v)) badElement(input, i, v, info);
        if (v < min || v > max) badElement(input, i, v, info, `out of range for ${info.oip} [${min}, ${max}]`);
        out[i] = v;
      }
      return new Tensor(info.ort, out, dims);
    }
    case 'bigint': {
      const out = info.ort === 'int64' ? new BigInt64Array(n) : new BigUint64Array(n);
      for (let i = 0; i < n; i++) {
        const big = toBigInt(flat[i], info);
        if (big === undefined) {
          badElement(input, i, flat[i], info, `expected an integer in [${info.min}, ${info.max}] for ${info.oip}`);
        }
        out[i] = big;
      }
      return new Tensor(info.ort, out, dims);
    }
    case 'bool': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v !== 'boolean') badElement(input, i, v, info);
        out[i] = v ? 1 : 0;
      }
      return new Tensor('bool', out, dims);
    }
    case 'string': {
      const out = new Array<string>(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v !== 'string') badElement(input, i, v, info);
        checkBytesElement(input, i, v);
        out[i] = v;
      }
      return new Tensor('string', out, dims);
    }
  }
}

/**
 * onnxruntime-node hands strings to ORT as NUL-terminated UTF-8: it cuts them at a NUL and turns
 * lone surrogates into U+FFFD. Both are refused rather than the data changed.
 */
export function checkBytesElement(input: string, index: number, value: string): void {
  if (value.includes('\0')) {
    throw new InvalidRequestError(`input "${input}": element ${index} contains a NUL character, which onnxruntime-node cannot carry in a BYTES tensor`);
  }
  if (LONE_SURROGATE.test(value)) {
    throw new InvalidRequestError(`input "${input}": element ${index} is not valid Unicode (a lone surrogate); BYTES travel as UTF-8`);
  }
}

type IntType = 'uint8' | 'uint16' | 'uint32' | 'int8' | 'int16' | 'int32';
const INT_ARRAYS: Record<IntType, new (n: number) => Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array> = {
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
};

function floatJson(x: number): string {
  if (Number.isFinite(x)) return String(x);
  return Number.isNaN(x) ? '"NaN"' : x > 0 ? '"Infinity"' : '"-Infinity"';
}

function allFinite(data: Float32Array | Float64Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const x = data[i] as number;
    if (x - x !== 0) return false;
  }
  return true;
}

/**
 * Each element of a tensor as a JSON literal, by index. The hot path for big float outputs is
 * {@link flatDataJson}; this serves nested (TF Serving) answers.
 */
export function elementJson(tensor: Tensor): (i: number) => string {
  const data = tensor.data;
  switch (tensor.type) {
    case 'float32':
    case 'float64':
      return (i) => floatJson((data as Float32Array)[i] as number);
    case 'float16':
      return (i) => floatJson(fromHalfBits((data as Uint16Array)[i] as number));
    case 'bool':
      return (i) => ((data as Uint8Array)[i] ? 'true' : 'false');
    case 'string':
      return (i) => JSON.stringify((data as string[])[i]);
    default:
      return (i) => String((data as Int32Array | BigInt64Array)[i]);
  }
}

/** Element counts up to which outputs are written through the reused array below. */
const SCRATCH_LIMIT = 1 << 21;
/**
 * One plain array of doubles, reused for every big numeric output: filled from the typed array,
 * then written by one JSON.stringify call, the fastest way V8 has to print numbers. Reuse
 * matters: a fresh million-element array costs more to allocate (page faults here) than the
 * copy, and stringifying blocks of it costs a second copy of the text to join them. It is kept
 * packed (shrunk by length, grown by push, never holey: JSON.stringify takes a slow path over
 * holey arrays), and bounded: at most 16 MiB of doubles stay allocated between requests.
 * JSON.stringify is synchronous, so no two requests can share it at once.
 */
const scratch: number[] = [];

/** Finite numbers as a JSON array (the same text as JSON.stringify of a plain array). */
function numbersJson(data: ArrayLike<number>): string {
  const n = data.length;
  if (n > SCRATCH_LIMIT) return JSON.stringify(Array.from(data));
  if (scratch.length > n) scratch.length = n;
  const reused = scratch.length;
  for (let i = 0; i < reused; i++) scratch[i] = data[i] as number;
  for (let i = reused; i < n; i++) scratch.push(data[i] as number);
  return JSON.stringify(scratch);
}

/** A tensor's data as one flat JSON array. */
export function flatDataJson(tensor: Tensor): string {
  const data = tensor.data;
  switch (tensor.type) {
    case 'float32':
    case 'float64':
      if (allFinite(data as Float32Array)) return numbersJson(data as Float32Array);
      break;
    case 'string':
      return JSON.stringify(data);
    case 'int64':
    case 'uint64':
      // BigInt arrays join to exact decimal digits (JSON.stringify refuses BigInt).
      return `[${(data as BigInt64Array).join(',')}]`;
    case 'bool':
    case 'float16':
      break;
    default:
      return numbersJson(data as Int32Array);
  }
  const at = elementJson(tensor);
  const parts = new Array<string>(data.length);
  for (let i = 0; i < data.length; i++) parts[i] = at(i);
  return `[${parts.join(',')}]`;
}

/** A tensor's data (or a slice of it) nested to its shape, as JSON. */
export function nestedDataJson(tensor: Tensor, dims: readonly number[], offset = 0): string {
  const at = elementJson(tensor);
  const walk = (depth: number, start: number): string => {
    if (depth === dims.length) return at(start);
    const dim = dims[depth] as number;
    const stride = elementCount(dims.slice(depth + 1));
    const parts = new Array<string>(dim);
    for (let i = 0; i < dim; i++) parts[i] = walk(depth + 1, start + i * stride);
    return `[${parts.join(',')}]`;
  };
  return walk(0, offset);
}
