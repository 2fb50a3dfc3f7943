import { ProtoField, ProtoMessage, varintBytes } from './proto-tree';
import { WIRE_LEN, WireReader } from './wire';

// Field numbers from onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
export const MODEL = { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8, metadataProps: 14 } as const;
export const OPSET = { domain: 1, version: 2 } as const;
export const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12, valueInfo: 13, sparseInitializer: 15 } as const;
export const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, docString: 6, domain: 7 } as const;
export const ATTRIBUTE = { name: 1, f: 2, i: 3, s: 4, t: 5, g: 6, floats: 7, ints: 8, strings: 9, tensors: 10, graphs: 11, type: 20 } as const;
export const ATTRIBUTE_TYPE = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10 } as const;
export const TENSOR = { dims: 1, dataType: 2, floatData: 4, int32Data: 5, stringData: 6, int64Data: 7, name: 8, rawData: 9, doubleData: 10, uint64Data: 11, externalData: 13, dataLocation: 14 } as const;
export const DATA_TYPE = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11 } as const;

/** A TensorProto view: name, type, dims and (for float tensors) the values. */
export class TensorView {
  constructor(readonly proto: ProtoMessage) {}

  get name(): string {
    return this.proto.string(TENSOR.name) ?? '';
  }

  get dataType(): number {
    return this.proto.int(TENSOR.dataType) ?? 0;
  }

  get dims(): number[] {
    const out: number[] = [];
    for (const f of this.proto.all(TENSOR.dims)) {
      if (f.wireType === WIRE_LEN) {
        const r = new WireReader(f.payload());
        while (!r.done) out.push(Number(r.int64()));
      } else out.push(f.asInt());
    }
    return out;
  }

  get elementCount(): number {
    return this.dims.reduce((a, b) => a * b, 1);
  }

  get isExternal(): boolean {
    return this.proto.int(TENSOR.dataLocation) === 1 || this.proto.first(TENSOR.externalData) !== undefined;
  }

  /** Bytes of raw_data (or of the typed repeated field) as stored. */
  get storedBytes(): number {
    const raw = this.proto.first(TENSOR.rawData);
    if (raw) return raw.payload().byteLength;
    return this.proto.fields.reduce((sum, f) => (f.number === TENSOR.floatData || f.number === TENSOR.int32Data || f.number === TENSOR.int64Data || f.number === TENSOR.doubleData ? sum + f.payload().byteLength : sum), 0);
  }

  /** The values of an INT64 tensor, from raw_data or int64_data. */
  int64s(): bigint[] {
    if (this.dataType !== DATA_TYPE.INT64) throw new Error(`tensor ${this.name} is not INT64`);
    const raw = this.proto.first(TENSOR.rawData);
    if (raw) {
      const bytes = raw.payload();
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return Array.from({ length: Math.floor(bytes.byteLength / 8) }, (_, i) => view.getBigInt64(i * 8, true));
    }
    const out: bigint[] = [];
    for (const f of this.proto.all(TENSOR.int64Data)) {
      if (f.wireType === WIRE_LEN) {
        const r = new WireReader(f.payload());
        while (!r.done) out.push(r.int64());
      } else out.push(f.asBigInt());
    }
    return out;
  }

  /**
   * Reads rows of a FLOAT tensor (its first dimension) without copying the rest: `(start,
   * count)` returns those rows' values in one buffer the reader reuses, so a result is valid
   * until the next call. A rewrite that walks a large table in chunks of rows so holds one
   * chunk, and leaves no garbage per chunk behind. Tensors stored in float_data (not raw_data)
   * are decoded once and sliced.
   */
  floatRowReader(): (start: number, count: number) => Float32Array {
    if (this.dataType !== DATA_TYPE.FLOAT) throw new Error(`tensor ${this.name} is not FLOAT`);
    const [rows = 1] = this.dims;
    const n = this.elementCount;
    const cols = rows > 0 ? n / rows : 0;
    const raw = this.proto.first(TENSOR.rawData);
    if (!raw) {
      const all = this.floats();
      return (start, count) => all.slice(start * cols, (start + count) * cols);
    }
    const bytes = raw.payload();
    if (bytes.byteLength !== n * 4) throw new Error(`tensor ${this.name} holds ${bytes.byteLength} bytes for ${n} floats`);
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let buffer = new Float32Array(0);
    return (start, count) => {
      if (buffer.length < count * cols) buffer = new Float32Array(count * cols);
      const out = buffer.subarray(0, count * cols);
      source.copy(Buffer.from(out.buffer, out.byteOffset, out.byteLength), 0, start * cols * 4, (start + count) * cols * 4);
      return out;
    };
  }

  /** The values of a FLOAT tensor, from raw_data or float_data. */
  floats(): Float32Array {
    if (this.dataType !== DATA_TYPE.FLOAT) throw new Error(`tensor ${this.name} is not FLOAT`);
    const n = this.elementCount;
    const raw = this.proto.first(TENSOR.rawData);
    const out = new Float32Array(n);
    if (raw) {
      const bytes = raw.payload();
      if (bytes.byteLength !== n * 4) throw new Error(`tensor ${this.name} holds ${bytes.byteLength} bytes for ${n} floats`);
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).copy(Buffer.from(out.buffer));
      return out;
    }
    let i = 0;
    for (const f of this.proto.all(TENSOR.floatData)) {
      if (f.wireType === WIRE_LEN) {
        const p = f.payload();
        const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
        for (let o = 0; o + 4 <= p.byteLength && i < n; o += 4) out[i++] = view.getFloat32(o, true);
      } else if (i < n) out[i++] = f.asFloat();
    }
    if (i !== n) throw new Error(`tensor ${this.name} holds ${i} floats, its dims call for ${n}`);
    return out;
  }
}

/** Builds a TensorProto with raw data. */
export function makeTensor(name: string, dataType: number, dims: readonly number[], raw: Uint8Array): ProtoMessage {
  const fields: ProtoField[] = [];
  if (dims.length > 0) fields.push(ProtoField.bytes(TENSOR.dims, packedVarints(dims)));
  fields.push(ProtoField.varint(TENSOR.dataType, dataType), ProtoField.string(TENSOR.name, name), ProtoField.bytes(TENSOR.rawData, raw));
  return new ProtoMessage(fields);
}

function packedVarints(values: readonly number[]): Uint8Array {
  return Buffer.concat(values.map((v) => varintBytes(BigInt(v))));
}

/** An attribute to put on a node. */
export type AttributeValue = { i: number } | { f: number } | { s: string } | { ints: number[] } | { t: ProtoMessage };

/** Builds a NodeProto. */
export function makeNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  name: string,
  attributes: Record<string, AttributeValue> = {},
  domain = '',
): ProtoMessage {
  const fields: ProtoField[] = [
    ...inputs.map((i) => ProtoField.string(NODE.input, i)),
    ...outputs.map((o) => ProtoField.string(NODE.output, o)),
    ProtoField.string(NODE.name, name),
    ProtoField.string(NODE.opType, opType),
  ];
  for (const [attrName, value] of Object.entries(attributes)) {
    const a: ProtoField[] = [ProtoField.string(ATTRIBUTE.name, attrName)];
    if ('i' in value) a.push(ProtoField.varint(ATTRIBUTE.i, value.i), ProtoField.varint(ATTRIBUTE.type, ATTRIBUTE_TYPE.INT));
    else if ('f' in value) a.push(ProtoField.float(ATTRIBUTE.f, value.f), ProtoField.varint(ATTRIBUTE.type, ATTRIBUTE_TYPE.FLOAT));
    else if ('s' in value) a.push(ProtoField.string(ATTRIBUTE.s, value.s), ProtoField.varint(ATTRIBUTE.type, ATTRIBUTE_TYPE.STRING));
    else if ('ints' in value) a.push(ProtoField.bytes(ATTRIBUTE.ints, packedVarints(value.ints)), ProtoField.varint(ATTRIBUTE.type, ATTRIBUTE_TYPE.INTS));
    else a.push(ProtoField.message(ATTRIBUTE.t, value.t), ProtoField.varint(ATTRIBUTE.type, ATTRIBUTE_TYPE.TENSOR));
    fields.push(ProtoField.message(NODE.attribute, new ProtoMessage(a)));
  }
  if (domain) fields.push(ProtoField.string(NODE.domain, domain));
  return new ProtoMessage(fields);
}

/** A NodeProto view. */
export class NodeView {
  constructor(readonly proto: ProtoMessage) {}

  get opType(): string {
    return this.proto.string(NODE.opType) ?? '';
  }

  get domain(): string {
    return this.proto.string(NODE.domain) ?? '';
  }

  get name(): string {
    return this.proto.string(NODE.name) ?? '';
  }

  get inputs(): string[] {
    return this.proto.strings(NODE.input);
  }

  get outputs(): string[] {
    return this.proto.strings(NODE.output);
  }

  attribute(name: string): ProtoMessage | undefined {
    return this.proto.messages(NODE.attribute).find((a) => a.string(ATTRIBUTE.name) === name);
  }

  intAttribute(name: string, fallback: number): number {
    return this.attribute(name)?.int(ATTRIBUTE.i) ?? fallback;
  }

  /** An INTS attribute's values (packed or not), or undefined when absent. */
  intsAttribute(name: string): number[] | undefined {
    const a = this.attribute(name);
    if (!a) return undefined;
    const out: number[] = [];
    for (const f of a.all(ATTRIBUTE.ints)) {
      if (f.wireType === WIRE_LEN) {
        const r = new WireReader(f.payload());
        while (!r.done) out.push(Number(r.int64()));
      } else out.push(f.asInt());
    }
    return out;
  }

  floatAttribute(name: string, fallback: number): number {
    return this.attribute(name)?.first(ATTRIBUTE.f)?.asFloat() ?? fallback;
  }

  /** Subgraphs held by this node's attributes (If branches, Loop and Scan bodies). */
  subgraphs(): GraphView[] {
    const out: GraphView[] = [];
    for (const a of this.proto.messages(NODE.attribute)) {
      for (const g of a.messages(ATTRIBUTE.g)) out.push(new GraphView(g));
      for (const g of a.messages(ATTRIBUTE.graphs)) out.push(new GraphView(g));
    }
    return out;
  }
}

/** A GraphProto view with the edits a conversion needs. */
export class GraphView {
  constructor(readonly proto: ProtoMessage) {}

  nodes(): NodeView[] {
    return this.proto.messages(GRAPH.node).map((m) => new NodeView(m));
  }

  initializers(): TensorView[] {
    return this.proto.messages(GRAPH.initializer).map((m) => new TensorView(m));
  }

  /** Replaces the node list, keeping the position of the node fields in the graph. */
  setNodes(nodes: readonly ProtoMessage[]): void {
    this.proto.set(GRAPH.node, nodes.map((n) => ProtoField.message(GRAPH.node, n)));
  }

  /** Replaces the initializer list. */
  setInitializers(tensors: readonly ProtoMessage[]): void {
    this.proto.set(GRAPH.initializer, tensors.map((t) => ProtoField.message(GRAPH.initializer, t)));
  }

  inputNames(): string[] {
    return this.proto.messages(GRAPH.input).map((v) => v.string(1) ?? '');
  }

  outputNames(): string[] {
    return this.proto.messages(GRAPH.output).map((v) => v.string(1) ?? '');
  }
}

/** A ModelProto view over bytes that re-encodes unchanged parts exactly. */
export class OnnxModel {
  constructor(readonly proto: ProtoMessage) {}

  static decode(bytes: Uint8Array): OnnxModel {
    return new OnnxModel(ProtoMessage.decode(bytes));
  }

  get irVersion(): number {
    return this.proto.int(MODEL.irVersion) ?? 0;
  }

  get opsets(): { domain: string; version: number }[] {
    return this.proto.messages(MODEL.opsetImport).map((o) => ({ domain: o.string(OPSET.domain) ?? '', version: o.int(OPSET.version) ?? 0 }));
  }

  graph(): GraphView {
    const field = this.proto.first(MODEL.graph);
    if (!field) throw new Error('no graph in the model');
    return new GraphView(field.message());
  }

  /** Adds an opset import for `domain` unless present. */
  requireOpset(domain: string, version: number): void {
    if (this.opsets.some((o) => o.domain === domain)) return;
    const fields = [ProtoField.varint(OPSET.version, version)];
    if (domain) fields.unshift(ProtoField.string(OPSET.domain, domain));
    this.proto.fields.push(ProtoField.message(MODEL.opsetImport, new ProtoMessage(fields)));
  }

  encode(): Uint8Array {
    return this.proto.encode();
  }
}
