import { WireWriter } from './wire';

/** A tensor to store in a model: numeric data as raw little-endian bytes, strings as a list. */
export interface TensorDef {
  name: string;
  /** ONNX `TensorProto.DataType`. */
  dataType: number;
  dims: number[];
  raw?: Uint8Array;
  strings?: string[];
  /** External-data entries (`location`, `offset`, ...); marks the tensor's data as stored outside the model. */
  externalData?: Record<string, string>;
}

/** A graph input or output. A string dimension is symbolic (dynamic). */
export interface ValueDef {
  name: string;
  elemType: number;
  shape: (number | string)[];
}

export type AttributeDef =
  | { name: string; f: number }
  | { name: string; i: number | bigint }
  | { name: string; s: string }
  | { name: string; floats: number[] }
  | { name: string; ints: (number | bigint)[] }
  | { name: string; strings: string[] }
  | { name: string; t: TensorDef }
  | { name: string; g: GraphDef };

export interface NodeDef {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: AttributeDef[];
}

export interface GraphDef {
  name: string;
  nodes: NodeDef[];
  inputs: ValueDef[];
  outputs: ValueDef[];
  initializers?: TensorDef[];
}

export interface ModelDef {
  graph: GraphDef;
  irVersion?: number;
  opsets?: { domain: string; version: number }[];
  producerName?: string;
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_GRAPH = 5;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;
const ATTR_STRINGS = 8;

function writeTensor(w: WireWriter, t: TensorDef): void {
  if (t.dims.length) w.packedVarints(1, t.dims);
  w.varint(2, t.dataType);
  if (t.strings) for (const s of t.strings) w.string(6, s);
  w.string(8, t.name);
  if (t.raw) w.bytes(9, t.raw);
  if (t.externalData) {
    for (const [key, value] of Object.entries(t.externalData)) w.message(13, (e) => e.string(1, key).string(2, value));
    w.varint(14, 1);
  }
}

function writeValue(w: WireWriter, v: ValueDef): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensorType) => {
      tensorType.varint(1, v.elemType);
      tensorType.message(2, (shape) => {
        for (const d of v.shape) {
          shape.message(1, (dim) => (typeof d === 'number' ? dim.varint(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
}

function writeAttribute(w: WireWriter, a: AttributeDef): void {
  w.string(1, a.name);
  if ('f' in a) w.float(2, a.f).varint(20, ATTR_FLOAT);
  else if ('i' in a) w.varint(3, a.i).varint(20, ATTR_INT);
  else if ('s' in a) w.string(4, a.s).varint(20, ATTR_STRING);
  else if ('t' in a) w.message(5, (t) => writeTensor(t, a.t)).varint(20, ATTR_TENSOR);
  else if ('g' in a) w.message(6, (g) => writeGraph(g, a.g)).varint(20, ATTR_GRAPH);
  else if ('floats' in a) w.packedFloats(7, a.floats).varint(20, ATTR_FLOATS);
  else if ('strings' in a) {
    for (const v of a.strings) w.string(9, v);
    w.varint(20, ATTR_STRINGS);
  }
  else w.packedVarints(8, a.ints).varint(20, ATTR_INTS);
}

function writeNode(w: WireWriter, n: NodeDef, index: number): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name ?? `${n.opType}_${index}`);
  w.string(4, n.opType);
  for (const a of n.attributes ?? []) w.message(5, (m) => writeAttribute(m, a));
  if (n.domain) w.string(7, n.domain);
}

function writeGraph(w: WireWriter, g: GraphDef): void {
  g.nodes.forEach((n, i) => w.message(1, (m) => writeNode(m, n, i)));
  w.string(2, g.name);
  for (const t of g.initializers ?? []) w.message(5, (m) => writeTensor(m, t));
  for (const v of g.inputs) w.message(11, (m) => writeValue(m, v));
  for (const v of g.outputs) w.message(12, (m) => writeValue(m, v));
}

/** Encodes a model as ONNX protobuf bytes (IR 8 and opset 17 unless told otherwise). */
export function encodeModel(def: ModelDef): Uint8Array {
  const w = new WireWriter();
  w.varint(1, def.irVersion ?? 8);
  w.string(2, def.producerName ?? 'onnx-lambda');
  w.message(7, (g) => writeGraph(g, def.graph));
  for (const o of def.opsets ?? [{ domain: '', version: 17 }]) {
    w.message(8, (m) => {
      if (o.domain) m.string(1, o.domain);
      m.varint(2, o.version);
    });
  }
  return w.finish();
}

/** A float32 tensor from values. */
export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): TensorDef {
  const data = Float32Array.from(values);
  return { name, dataType: 1, dims, raw: new Uint8Array(data.buffer) };
}

/** An int64 tensor from values. */
export function int64Tensor(name: string, dims: number[], values: ArrayLike<number | bigint>): TensorDef {
  const data = BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
  return { name, dataType: 7, dims, raw: new Uint8Array(data.buffer) };
}
