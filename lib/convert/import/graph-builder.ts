import { ConversionError } from '../errors';
import { floatTensor, int64Tensor, type AttributeDef, type NodeDef, type TensorDef } from '../../onnx/writer';

/** Keras shape of a tensor: batch first, `null` for an unknown dimension. */
export type Shape = (number | null)[];

/**
 * A tensor while converting: its ONNX name, its Keras shape and where its channels sit.
 * `channelsFirst` means the channel (Keras's last axis) was moved to axis 1, as ONNX convolutions want.
 */
export interface Sym {
  name: string;
  shape: Shape;
  channelsFirst: boolean;
  dtype: 'float32' | 'int32';
}

/** Collects ONNX nodes and initializers with unique names. */
export class GraphBuilder {
  readonly nodes: NodeDef[] = [];
  readonly initializers: TensorDef[] = [];
  private readonly used = new Set<string>();
  private readonly transposed = new Map<string, Sym>();

  unique(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  reserve(name: string): void {
    this.used.add(name);
  }

  node(opType: string, inputs: string[], base: string, attributes?: AttributeDef[]): string {
    const out = this.unique(base);
    this.nodes.push({ opType, inputs, outputs: [out], name: this.unique(`${out}/${opType}`), attributes });
    return out;
  }

  floats(base: string, dims: number[], values: ArrayLike<number>): string {
    const name = this.unique(base);
    // A weight whose stored shape does not fit its layer shows here as dims that are not whole or
    // do not hold its values: refused, naming the tensor, before it can make a broken model.
    if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0) || dims.reduce((a, b) => a * b, 1) !== values.length) {
      throw new ConversionError(`weight tensor "${base}": its shape does not fit the layer (dims ${JSON.stringify(dims)} for ${values.length} values)`);
    }
    // A Float32Array (a weight) is stored as it is: a copy would add a model-sized buffer to the peak.
    if (values instanceof Float32Array) {
      this.initializers.push({ name, dataType: 1, dims, raw: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
    } else {
      this.initializers.push(floatTensor(name, dims, values));
    }
    return name;
  }

  ints(base: string, values: number[]): string {
    const name = this.unique(base);
    this.initializers.push(int64Tensor(name, [values.length], values));
    return name;
  }

  scalar(base: string, value: number): string {
    const name = this.unique(base);
    this.initializers.push(floatTensor(name, [], [value]));
    return name;
  }

  /** The tensor with its channels at axis 1 (one Transpose, made once per tensor). */
  channelsFirst(s: Sym): Sym {
    if (s.channelsFirst || s.shape.length < 3) return { ...s, channelsFirst: s.shape.length >= 3 };
    const key = `cf:${s.name}`;
    const cached = this.transposed.get(key);
    if (cached) return cached;
    const r = s.shape.length;
    const perm = [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
    const out: Sym = { ...s, name: this.node('Transpose', [s.name], `${s.name}/nchw`, [{ name: 'perm', ints: perm }]), channelsFirst: true };
    this.transposed.set(key, out);
    this.transposed.set(`cl:${out.name}`, s);
    return out;
  }

  /** The tensor in Keras's own (channels-last) order. */
  channelsLast(s: Sym): Sym {
    if (!s.channelsFirst) return s;
    const key = `cl:${s.name}`;
    const cached = this.transposed.get(key);
    if (cached) return cached;
    const r = s.shape.length;
    const perm = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];
    const out: Sym = { ...s, name: this.node('Transpose', [s.name], `${s.name}/nhwc`, [{ name: 'perm', ints: perm }]), channelsFirst: false };
    this.transposed.set(key, out);
    this.transposed.set(`cf:${out.name}`, s);
    return out;
  }
}

/** Permutes a dense row-major array of `shape` by `perm` (output axis i is input axis perm[i]). */
export function transposeData(data: Float32Array, shape: number[], perm: number[]): Float32Array {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = new Array<number>(rank);
  let stride = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = stride;
    stride *= shape[i]!;
  }
  const strideOfOut = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const index = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < rank; i++) src += index[i]! * strideOfOut[i]!;
    out[o] = data[src]!;
    for (let i = rank - 1; i >= 0; i--) {
      if (++index[i]! < outShape[i]!) break;
      index[i] = 0;
    }
  }
  return out;
}
