import { ATTRIBUTE, GRAPH, MODEL, NODE, OnnxModel, TENSOR, type GraphView, type NodeView } from '../../lib/onnx/model';
import { ProtoField, ProtoMessage, varintBytes } from '../../lib/onnx/proto-tree';
import { WireWriter } from '../../lib/onnx/wire';

/**
 * Seeded mutators of real ONNX models, for the upload fuzzing (uploads.test.ts). Each takes a
 * model's bytes and a seeded random source and returns the mutated bytes with what was done.
 * Structured mutations edit the model through the repo's own field-preserving tree
 * (lib/onnx/model.ts, proto-tree.ts), so everything they do not touch stays byte for byte.
 */

/**
 * `fail`: invalid by construction, must be refused; `succeed`: still valid by construction, must
 * convert; `either`: may or may not still be a valid model.
 */
export type Expectation = 'fail' | 'succeed' | 'either';

export interface Mutant {
  kind: string;
  /** What exactly was done, enough to reproduce it by eye. */
  detail: string;
  bytes: Uint8Array;
  expect: Expectation;
  /** When the refusal has one right reason (e.g. external data), the reason it must give. */
  reason?: RegExp;
  /** Files the model names (external-data locations): none may ever be opened. */
  namedPaths: string[];
}

export type Rand = () => number;
export type Mutator = (bytes: Uint8Array, rand: Rand) => Mutant;

const int = (rand: Rand, n: number): number => Math.floor(rand() * n);
const pick = <T>(rand: Rand, items: readonly T[]): T => items[int(rand, items.length)] as T;

// onnx.proto numbers the tree in lib/onnx does not name.
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensor: 1, sequence: 4 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIM = { value: 1 } as const;
const OPSET = { domain: 1, version: 2 } as const;
const ENTRY = { key: 1, value: 2 } as const;
const SPARSE = { values: 1, indices: 2, dims: 3 } as const;
const ATTR_TYPE = { INT: 2, GRAPH: 5 } as const;
const FUNCTION = { name: 1, output: 5, node: 7, opsetImport: 9, domain: 10 } as const;
const MODEL_MORE = { trainingInfo: 20, functions: 25 } as const;
const ATTRIBUTE_MORE = { sparseTensors: 23 } as const;
const BOOL = 9;
const INT64 = 7;
const FLOAT = 1;

/** Every graph of a model, the main one first, then If/Loop/Scan bodies depth-first. */
function allGraphs(model: OnnxModel): GraphView[] {
  const out: GraphView[] = [];
  const walk = (g: GraphView): void => {
    out.push(g);
    for (const n of g.nodes()) for (const s of n.subgraphs()) walk(s);
  };
  walk(model.graph());
  return out;
}

/** TensorProtos anywhere: initializers of every graph and the `value` of Constant nodes. */
function allTensors(model: OnnxModel): { tensor: ProtoMessage; where: string }[] {
  const out: { tensor: ProtoMessage; where: string }[] = [];
  allGraphs(model).forEach((g, gi) => {
    for (const t of g.initializers()) out.push({ tensor: t.proto, where: `graph#${gi} initializer "${t.name}"` });
    for (const n of g.nodes()) {
      const value = n.opType === 'Constant' ? n.attribute('value')?.first(ATTRIBUTE.t)?.message() : undefined;
      if (value) out.push({ tensor: value, where: `graph#${gi} Constant "${n.name}"` });
    }
  });
  return out;
}

/** Replaces the `n`th field numbered `number` of `message` in place. */
function replaceNth(message: ProtoMessage, number: number, n: number, field: ProtoField): void {
  let seen = 0;
  const i = message.fields.findIndex((f) => f.number === number && seen++ === n);
  if (i >= 0) message.fields[i] = field;
}

function packed(values: readonly bigint[]): Uint8Array {
  return Buffer.concat(values.map((v) => varintBytes(v)));
}

/** The dims of a ValueInfoProto's tensor type, as messages (empty when it has no shape). */
function valueDims(valueInfo: ProtoMessage): ProtoMessage[] {
  const tensorType = valueInfo.first(VALUE_INFO.type)?.message().first(TYPE.tensor)?.message();
  return tensorType?.first(TENSOR_TYPE.shape)?.message().messages(SHAPE.dim) ?? [];
}

function mutant(kind: string, detail: string, model: OnnxModel | Uint8Array, expect: Expectation, extra: Partial<Mutant> = {}): Mutant {
  return { kind, detail, bytes: model instanceof OnnxModel ? model.encode() : model, expect, namedPaths: [], ...extra };
}

// ---- byte-level ------------------------------------------------------------------------

const bitFlip: Mutator = (bytes, rand) => {
  const out = Uint8Array.from(bytes);
  const flips = 1 + int(rand, 8);
  const at: number[] = [];
  for (let i = 0; i < flips; i++) {
    const pos = int(rand, out.length);
    const bit = int(rand, 8);
    out[pos] = (out[pos] as number) ^ (1 << bit);
    at.push(pos * 8 + bit);
  }
  return mutant('bit-flip', `flipped bits ${at.join(', ')}`, out, 'either');
};

/** Bit flips in the model's first 512 bytes: the headers, graph structure and names, not the weights. */
const headerBitFlip: Mutator = (bytes, rand) => {
  const out = Uint8Array.from(bytes);
  const span = Math.min(512, out.length);
  const flips = 1 + int(rand, 4);
  const at: number[] = [];
  for (let i = 0; i < flips; i++) {
    const pos = int(rand, span);
    const bit = int(rand, 8);
    out[pos] = (out[pos] as number) ^ (1 << bit);
    at.push(pos * 8 + bit);
  }
  return mutant('header-bit-flip', `flipped bits ${at.join(', ')}`, out, 'either');
};

const byteSplat: Mutator = (bytes, rand) => {
  const out = Uint8Array.from(bytes);
  const start = int(rand, out.length);
  const length = Math.min(1 + int(rand, 64), out.length - start);
  for (let i = 0; i < length; i++) out[start + i] = int(rand, 256);
  return mutant('byte-splat', `${length} random bytes at ${start}`, out, 'either');
};

const truncate: Mutator = (bytes, rand) => {
  // Half of the cuts fall in the last 64 bytes, where the opset and graph outputs live.
  const length = rand() < 0.5 ? int(rand, bytes.length) : Math.max(0, bytes.length - 1 - int(rand, 64));
  return mutant('truncate', `kept ${length} of ${bytes.length} bytes`, bytes.slice(0, length), 'either');
};

/** A top-level field whose length prefix claims far more bytes than the file holds. */
const lengthBomb: Mutator = (bytes, rand) => {
  const claim = pick(rand, [2n ** 31n, 2n ** 40n, 2n ** 62n, BigInt(bytes.length) * 2n]);
  const field = pick(rand, [MODEL.graph, 99]);
  const bomb = Buffer.concat([varintBytes(BigInt(field * 8 + 2)), varintBytes(claim), Buffer.from('xx')]);
  return mutant('length-bomb', `field ${field} claiming ${claim} bytes appended`, Buffer.concat([bytes, bomb]), 'fail', {
    reason: /not a readable ONNX file/,
  });
};

// ---- dims and data ---------------------------------------------------------------------

const HUGE = [2n ** 40n, 2n ** 62n, 2n ** 31n, 2n ** 32n + 1n, 2n ** 28n, 2n ** 26n, 2n ** 24n, -1n, -(2n ** 63n)];

/** A graph input's or output's dimension set huge (or negative). */
const hugeValueDim: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const role = rand() < 0.7 ? GRAPH.input : GRAPH.output;
  const values = graph.proto.messages(role).filter((v) => valueDims(v).length > 0);
  if (values.length === 0) return mutant('huge-dim', 'no value with dims: unchanged', bytes, 'either');
  const value = pick(rand, values);
  const dims = valueDims(value);
  const size = pick(rand, HUGE);
  const d = int(rand, dims.length);
  const dim = dims[d] as ProtoMessage;
  dim.fields.splice(0, dim.fields.length, ProtoField.varint(DIM.value, size));
  const name = value.string(VALUE_INFO.name) ?? '';
  return mutant('huge-dim', `${role === GRAPH.input ? 'input' : 'output'} "${name}" dim ${d} = ${size}`, model, 'either');
};

/** An initializer whose dims claim far more (or fewer, or negative) elements than its data holds. */
const hugeTensorDim: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const candidates = allTensors(model).filter(({ tensor }) => tensor.first(TENSOR.rawData) !== undefined);
  if (candidates.length === 0) return mutant('huge-tensor-dim', 'no raw tensor: unchanged', bytes, 'either');
  const { tensor, where } = pick(rand, candidates);
  const size = pick(rand, HUGE);
  const dims = tensor.all(TENSOR.dims);
  const rank = Math.max(1, dims.length);
  const values = Array.from({ length: rank }, (_, i) => (i === int(rand, rank) ? size : 1n));
  tensor.set(TENSOR.dims, [ProtoField.bytes(TENSOR.dims, packed(values))]);
  return mutant('huge-tensor-dim', `${where} dims = [${values.join(', ')}]`, model, 'fail');
};

/** An initializer whose raw_data is shorter than its dims say. */
const shortRawData: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const candidates = allTensors(model).filter(({ tensor }) => (tensor.first(TENSOR.rawData)?.payload().byteLength ?? 0) > 0);
  if (candidates.length === 0) return mutant('short-raw-data', 'no raw tensor: unchanged', bytes, 'either');
  const { tensor, where } = pick(rand, candidates);
  const raw = tensor.first(TENSOR.rawData)!.payload();
  const keep = int(rand, raw.byteLength);
  tensor.set(TENSOR.rawData, [ProtoField.bytes(TENSOR.rawData, raw.slice(0, keep))]);
  return mutant('short-raw-data', `${where} raw_data cut to ${keep} of ${raw.byteLength} bytes`, model, 'fail');
};

// ---- external data ---------------------------------------------------------------------

/** Where a hostile model points its tensors' data. None of these may ever be opened. */
export const EXTERNAL_LOCATIONS = [
  '../../etc/passwd',
  '/proc/self/environ',
  '/etc/passwd',
  '/etc/shadow',
  '../../../../../../../../etc/hostname',
  '/proc/self/cmdline',
  '/dev/zero',
  '/dev/urandom',
  'weights.bin',
  './model.onnx.data',
  'canary.bin',
  'file:///etc/passwd',
  '..\\..\\windows\\win.ini',
  '%2e%2e/%2e%2e/etc/passwd',
  '/root/.aws/credentials',
  '~/.aws/credentials',
];

/** Relative locations the test keeps as canary files in the working directory (onnxruntime resolves a model's relative paths there). */
export const CANARY_LOCATIONS = ['weights.bin', 'model.onnx.data', 'canary.bin'];

/** A FunctionProto (model-local function) whose body is a Constant node holding `tensor`. */
function functionWithConstant(name: string, domain: string, opset: number, tensor: ProtoMessage): ProtoMessage {
  const value = new ProtoMessage([ProtoField.string(ATTRIBUTE.name, 'value'), ProtoField.message(ATTRIBUTE.t, tensor), ProtoField.varint(ATTRIBUTE.type, 4)]);
  const constant = new ProtoMessage([ProtoField.string(NODE.output, 'out'), ProtoField.string(NODE.name, `${name}_const`), ProtoField.string(NODE.opType, 'Constant'), ProtoField.message(NODE.attribute, value)]);
  return new ProtoMessage([
    ProtoField.string(FUNCTION.name, name),
    ProtoField.string(FUNCTION.output, 'out'),
    ProtoField.message(FUNCTION.node, constant),
    ProtoField.message(FUNCTION.opsetImport, new ProtoMessage([ProtoField.varint(OPSET.version, opset)])),
    ProtoField.string(FUNCTION.domain, domain),
  ]);
}

/**
 * A tensor's data moved to an external file: raw_data dropped (or kept), `external_data`
 * entries naming a hostile path, with data_location EXTERNAL, or only one of the two markers.
 * The tensor is an existing one (initializer or Constant, in any graph), or a new one in a
 * place a check could forget to look: a sparse initializer, a model-local function's Constant
 * (called from the main graph), a list attribute, a training-info graph.
 * `extraLocations` adds absolute paths of real files (the repo's own model files).
 */
function externalData(extraLocations: readonly string[]): Mutator {
  return (bytes, rand) => {
    const model = OnnxModel.decode(bytes);
    const candidates = allTensors(model);
    const placement = pick(rand, ['existing', 'existing', 'existing', 'sparse-initializer', 'function', 'function', 'attribute-list', 'training-info'] as const);
    const location = placement === 'function' && rand() < 0.5 ? pick(rand, CANARY_LOCATIONS) : pick(rand, [...EXTERNAL_LOCATIONS, ...extraLocations]);
    const markers = pick(rand, ['entries+location', 'entries+location', 'entries-only', 'location-only', 'entries+default-location'] as const);
    const keepRaw = rand() < 0.25;
    const target = pick(rand, [...candidates.map((c) => c.tensor), undefined]);
    const entries: [string, string][] = [['location', location]];
    if (rand() < 0.7) entries.push(['offset', String(pick(rand, [0, 4096, 2 ** 40, -1]))]);
    if (rand() < 0.7) entries.push(['length', String(pick(rand, [16, 1 << 20, 2 ** 40]))]);
    if (rand() < 0.2) entries.push(['checksum', 'deadbeef']);
    const fields: ProtoField[] = [];
    if (markers !== 'location-only') {
      for (const [k, v] of entries) fields.push(ProtoField.message(TENSOR.externalData, new ProtoMessage([ProtoField.string(ENTRY.key, k), ProtoField.string(ENTRY.value, v)])));
    }
    if (markers === 'entries+location' || markers === 'location-only') fields.push(ProtoField.varint(TENSOR.dataLocation, 1));
    if (markers === 'entries+default-location') fields.push(ProtoField.varint(TENSOR.dataLocation, 0));
    const fresh = (name: string): ProtoMessage =>
      new ProtoMessage([ProtoField.bytes(TENSOR.dims, packed([4n])), ProtoField.varint(TENSOR.dataType, FLOAT), ProtoField.string(TENSOR.name, name), ...fields]);
    let where: string;
    if (placement === 'existing' && target) {
      if (!keepRaw) target.set(TENSOR.rawData, []);
      target.fields.push(...fields);
      where = candidates.find((c) => c.tensor === target)?.where ?? 'a tensor';
    } else if (placement === 'function') {
      const opset = model.opsets.find((o) => o.domain === '')?.version ?? 17;
      model.proto.fields.push(
        ProtoField.message(MODEL_MORE.functions, functionWithConstant('FzConst', 'fz.local', opset, fresh('fz_fn_tensor'))),
        ProtoField.message(MODEL.opsetImport, new ProtoMessage([ProtoField.string(OPSET.domain, 'fz.local'), ProtoField.varint(OPSET.version, 1)])),
      );
      const call = new ProtoMessage([ProtoField.string(NODE.output, 'fz_fn_out'), ProtoField.string(NODE.name, 'fz_fn_call'), ProtoField.string(NODE.opType, 'FzConst'), ProtoField.string(NODE.domain, 'fz.local')]);
      const graph = model.graph();
      graph.proto.fields.unshift(ProtoField.message(GRAPH.node, call));
      // Its value is a graph output, so that onnxruntime must load it to run the model.
      const output = new WireWriter();
      valueInfo(output, 'fz_fn_out', FLOAT, [4]);
      graph.proto.fields.push(ProtoField.bytes(GRAPH.output, output.finish()));
      where = "a model-local function's Constant (a graph output)";
    } else if (placement === 'attribute-list') {
      const node = pick(rand, model.graph().nodes());
      const sparse = new ProtoMessage([ProtoField.message(SPARSE.values, fresh('fz_list_values')), ProtoField.bytes(SPARSE.dims, packed([4n]))]);
      const attribute = new ProtoMessage([ProtoField.string(ATTRIBUTE.name, 'fz_list'), ProtoField.message(ATTRIBUTE_MORE.sparseTensors, sparse), ProtoField.varint(ATTRIBUTE.type, 12)]);
      node.proto.fields.push(ProtoField.message(NODE.attribute, attribute));
      where = `node "${node.name}" sparse_tensors attribute`;
    } else if (placement === 'training-info') {
      const graph = new ProtoMessage([ProtoField.string(GRAPH.name, 'fz_init'), ProtoField.message(GRAPH.initializer, fresh('fz_train_tensor'))]);
      model.proto.fields.push(ProtoField.message(MODEL_MORE.trainingInfo, new ProtoMessage([ProtoField.message(1, graph)])));
      where = 'a training-info initialization graph';
    } else {
      const values = fresh('sparse_values');
      const indices = new ProtoMessage([
        ProtoField.bytes(TENSOR.dims, packed([4n])),
        ProtoField.varint(TENSOR.dataType, INT64),
        ProtoField.string(TENSOR.name, 'sparse_indices'),
        ProtoField.bytes(TENSOR.int64Data, packed([0n, 1n, 2n, 3n])),
      ]);
      const sparse = new ProtoMessage([
        ProtoField.message(SPARSE.values, values),
        ProtoField.message(SPARSE.indices, indices),
        ProtoField.bytes(SPARSE.dims, packed([16n])),
      ]);
      model.graph().proto.fields.push(ProtoField.message(GRAPH.sparseInitializer, sparse));
      where = 'a sparse initializer';
    }
    const detail = `${where} -> ${location} (${markers}${keepRaw ? ', raw_data kept' : ''})`;
    return mutant('external-data', detail, model, 'fail', { reason: /keeps its data in an external file/, namedPaths: [location] });
  };
}

// ---- graph structure -------------------------------------------------------------------

/** Values each node of `graph` depends on, transitively (main-graph edges only). */
function ancestorsOf(graph: GraphView): Set<number>[] {
  const nodes = graph.nodes();
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.outputs.forEach((o) => producer.set(o, i)));
  const memo: (Set<number> | undefined)[] = [];
  const visit = (i: number, stack: Set<number>): Set<number> => {
    const known = memo[i];
    if (known) return known;
    const out = new Set<number>();
    stack.add(i);
    for (const input of nodes[i]!.inputs) {
      const p = producer.get(input);
      if (p === undefined || stack.has(p)) continue;
      out.add(p);
      for (const a of visit(p, stack)) out.add(a);
    }
    stack.delete(i);
    memo[i] = out;
    return out;
  };
  return nodes.map((_, i) => visit(i, new Set()));
}

/** A node output fed back into one of that node's ancestors (or into the node itself). */
const cycle: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const nodes = graph.nodes();
  const ancestors = ancestorsOf(graph);
  const late = nodes.map((_, i) => i).filter((i) => ancestors[i]!.size > 0 && nodes[i]!.outputs.length > 0);
  if (late.length === 0 || rand() < 0.2) {
    const i = int(rand, nodes.length);
    const node = nodes[i]!;
    if (node.inputs.length === 0 || node.outputs.length === 0) return mutant('cycle', 'no edge to loop: unchanged', bytes, 'either');
    replaceNth(node.proto, NODE.input, 0, ProtoField.string(NODE.input, node.outputs[0]!));
    return mutant('cycle', `node ${i} (${node.opType}) reads its own output`, model, 'fail');
  }
  const i = pick(rand, late);
  const computing = [...ancestors[i]!].filter((a) => nodes[a]!.opType !== 'Constant');
  const j = pick(rand, computing.length > 0 && rand() < 0.8 ? computing : [...ancestors[i]!]);
  const from = nodes[i]!;
  const to = nodes[j]!;
  const slot = int(rand, Math.max(1, to.inputs.length));
  const value = pick(rand, from.outputs);
  if (to.inputs.length === 0) to.proto.fields.unshift(ProtoField.string(NODE.input, value));
  else replaceNth(to.proto, NODE.input, slot, ProtoField.string(NODE.input, value));
  const detail = `node ${i} (${from.opType}) output "${value}" feeds its ancestor node ${j} (${to.opType}) input ${slot}`;
  return mutant('cycle', detail, model, lenientConstant(to));
};

/**
 * onnxruntime turns Constant nodes into initializers when it builds the graph, reading only the
 * value attribute: an input, unknown attributes or a foreign domain on a Constant are dropped,
 * not refused, and the model loads and runs as before. Such a mutant may be published.
 */
function lenientConstant(node: NodeView): Expectation {
  return node.opType === 'Constant' ? 'either' : 'fail';
}

/** A node reading a value nothing produces; or a graph input or initializer removed under its readers. */
const missingInput: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const variant = pick(rand, ['dangling-name', 'dangling-name', 'drop-graph-input', 'drop-initializer'] as const);
  if (variant === 'drop-graph-input') {
    const inputs = graph.proto.all(GRAPH.input);
    const initializers = new Set(graph.initializers().map((t) => t.name));
    const real = inputs.filter((f) => !initializers.has(f.message().string(VALUE_INFO.name) ?? ''));
    const victim = pick(rand, real);
    graph.proto.remove(victim);
    return mutant('missing-input', `graph input "${victim.message().string(VALUE_INFO.name)}" removed`, model, 'fail');
  }
  if (variant === 'drop-initializer') {
    const read = new Set(graph.nodes().flatMap((n) => n.inputs));
    const victims = graph.proto.all(GRAPH.initializer).filter((f) => read.has(f.message().string(TENSOR.name) ?? ''));
    if (victims.length > 0) {
      const victim = pick(rand, victims);
      graph.proto.remove(victim);
      return mutant('missing-input', `initializer "${victim.message().string(TENSOR.name)}" removed`, model, 'fail');
    }
  }
  const nodes = graph.nodes().filter((n) => n.inputs.some((i) => i !== ''));
  const node = pick(rand, nodes);
  const slots = node.inputs.map((name, k) => (name === '' ? -1 : k)).filter((k) => k >= 0);
  const slot = pick(rand, slots);
  replaceNth(node.proto, NODE.input, slot, ProtoField.string(NODE.input, `missing_${int(rand, 1e6)}`));
  return mutant('missing-input', `node "${node.name}" (${node.opType}) input ${slot} renamed to a value nothing produces`, model, 'fail');
};

/** Two nodes producing the same value (ONNX graphs are single-assignment). */
const duplicateOutput: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const nodes = model.graph().nodes().filter((n) => n.outputs.length > 0);
  if (nodes.length < 2) return mutant('duplicate-output', 'one node: unchanged', bytes, 'either');
  const a = int(rand, nodes.length);
  let b = int(rand, nodes.length - 1);
  if (b >= a) b++;
  const taken = nodes[a]!.outputs[0]!;
  replaceNth(nodes[b]!.proto, NODE.output, 0, ProtoField.string(NODE.output, taken));
  return mutant('duplicate-output', `node "${nodes[b]!.name}" also produces "${taken}"`, model, 'fail');
};

/** A node's op renamed to one no opset has, or moved to an unknown domain. */
const unknownOp: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const nodes = model.graph().nodes();
  const node = pick(rand, nodes);
  const variant = pick(rand, ['op', 'domain', 'empty-op'] as const);
  if (variant === 'domain') node.proto.set(NODE.domain, [ProtoField.string(NODE.domain, 'com.example.evil')]);
  else node.proto.set(NODE.opType, [ProtoField.string(NODE.opType, variant === 'op' ? `NoSuchOp${int(rand, 100)}` : '')]);
  return mutant('unknown-op', `node "${node.name}" (${node.opType}): ${variant}`, model, variant === 'domain' ? lenientConstant(node) : 'fail');
};

/** Every node removed: the outputs are produced by nothing. */
const emptyGraph: Mutator = (bytes) => {
  const model = OnnxModel.decode(bytes);
  model.graph().setNodes([]);
  return mutant('empty-graph', 'all nodes removed', model, 'fail');
};

// ---- types and opsets ------------------------------------------------------------------

const BAD_ELEM_TYPES = [0, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 999, 2 ** 31 - 1];

/** A graph input or output declared with a datatype onnxruntime-node cannot carry, or as a sequence. */
const badIoType: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const role = rand() < 0.5 ? GRAPH.input : GRAPH.output;
  const value = pick(rand, graph.proto.messages(role));
  const name = value.string(VALUE_INFO.name) ?? '';
  const type = value.first(VALUE_INFO.type)!.message();
  if (rand() < 0.15) {
    const tensorType = type.first(TYPE.tensor)!;
    type.set(TYPE.tensor, []);
    type.fields.push(ProtoField.message(TYPE.sequence, new ProtoMessage([ProtoField.message(1, new ProtoMessage([tensorType]))])));
    return mutant('bad-io-type', `${role === GRAPH.input ? 'input' : 'output'} "${name}" made a sequence`, model, 'fail', { reason: /is a sequence, not a tensor/ });
  }
  const elemType = pick(rand, BAD_ELEM_TYPES);
  const tensorType = type.first(TYPE.tensor)!.message();
  tensorType.set(TENSOR_TYPE.elemType, [ProtoField.varint(TENSOR_TYPE.elemType, elemType)]);
  return mutant('bad-io-type', `${role === GRAPH.input ? 'input' : 'output'} "${name}" elem_type ${elemType}`, model, 'fail', { reason: /has datatype/ });
};

/** The default-domain opset set too new, absurd, old, duplicated, or removed. */
const wrongOpset: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const variant = pick(rand, ['too-new', 'too-new', 'absurd', 'old', 'removed', 'foreign-domain', 'duplicate'] as const);
  const opsets = model.proto.all(MODEL.opsetImport);
  const main = opsets.find((f) => (f.message().string(OPSET.domain) ?? '') === '')!;
  const withVersion = (v: bigint, domain = ''): ProtoField =>
    ProtoField.message(MODEL.opsetImport, new ProtoMessage([...(domain ? [ProtoField.string(OPSET.domain, domain)] : []), ProtoField.varint(OPSET.version, v)]));
  const replace = (field: ProtoField): void => {
    const i = model.proto.fields.indexOf(main);
    model.proto.fields[i] = field;
  };
  switch (variant) {
    case 'too-new': {
      const v = BigInt(27 + int(rand, 1000));
      replace(withVersion(v));
      return mutant('wrong-opset', `opset ${v}`, model, 'fail', { reason: /opset \d+ is newer than onnxruntime-node/ });
    }
    case 'absurd': {
      const v = pick(rand, [2n ** 31n - 1n, 2n ** 40n, 2n ** 63n - 1n, -1n]);
      replace(withVersion(v));
      return mutant('wrong-opset', `opset ${v}`, model, 'fail');
    }
    case 'old': {
      const v = BigInt(int(rand, 7));
      replace(withVersion(v));
      return mutant('wrong-opset', `opset ${v}`, model, 'either');
    }
    case 'removed':
      model.proto.remove(main);
      return mutant('wrong-opset', 'default opset import removed', model, 'fail', { reason: /imports no default \(ai\.onnx\) opset/ });
    case 'foreign-domain':
      replace(withVersion(17n, pick(rand, ['ai.onnx.ml', 'com.microsoft', 'com.example.evil'])));
      return mutant('wrong-opset', 'default opset moved to another domain', model, 'fail', { reason: /imports no default \(ai\.onnx\) opset/ });
    case 'duplicate':
      model.proto.fields.push(withVersion(BigInt(pick(rand, [1, 13, 21, 99]))));
      return mutant('wrong-opset', 'a second default-domain opset import', model, 'either');
  }
};

// ---- subgraphs and attributes ----------------------------------------------------------

function valueInfo(w: WireWriter, name: string, elemType: number, dims: readonly number[] | undefined): void {
  w.string(VALUE_INFO.name, name).message(VALUE_INFO.type, (t) =>
    t.message(TYPE.tensor, (tt) => {
      tt.varint(TENSOR_TYPE.elemType, elemType);
      if (dims) tt.message(TENSOR_TYPE.shape, (s) => dims.forEach((d) => s.message(SHAPE.dim, (dim) => dim.varint(DIM.value, d))));
    }),
  );
}

function graphBytes(name: string, nodes: readonly Uint8Array[], inputs: (w: WireWriter) => void, outputs: (w: WireWriter) => void): Uint8Array {
  const w = new WireWriter();
  for (const n of nodes) w.bytes(GRAPH.node, n);
  w.string(GRAPH.name, name);
  inputs(w);
  outputs(w);
  return w.finish();
}

function nodeBytes(op: string, inputs: readonly string[], outputs: readonly string[], name: string, graphs: Record<string, Uint8Array> = {}, extra?: (w: WireWriter) => void): Uint8Array {
  const w = new WireWriter();
  for (const i of inputs) w.string(NODE.input, i);
  for (const o of outputs) w.string(NODE.output, o);
  w.string(NODE.name, name).string(NODE.opType, op);
  for (const [attr, g] of Object.entries(graphs)) {
    w.message(NODE.attribute, (a) => a.string(ATTRIBUTE.name, attr).bytes(ATTRIBUTE.g, g).varint(ATTRIBUTE.type, ATTR_TYPE.GRAPH));
  }
  extra?.(w);
  return w.finish();
}

function constantNode(output: string, name: string): Uint8Array {
  return nodeBytes('Constant', [], [output], name, {}, (w) =>
    w.message(NODE.attribute, (a) =>
      a
        .string(ATTRIBUTE.name, 'value')
        .message(ATTRIBUTE.t, (t) => t.packedVarints(TENSOR.dims, [1]).varint(TENSOR.dataType, FLOAT).string(TENSOR.name, `${name}_t`).bytes(TENSOR.rawData, new Uint8Array(4)))
        .varint(ATTRIBUTE.type, 4),
    ),
  );
}

/**
 * `depth` If nodes (or Loops) nested inside each other's bodies, built bottom-up so that no
 * recursion deeper than one level is needed, added to the main graph beside the real nodes.
 */
function nestedBomb(op: 'If' | 'Loop', depth: number): { node: Uint8Array; initializers: ProtoMessage[] } {
  const none = (): void => undefined;
  if (op === 'If') {
    let body = graphBytes(`bomb_g${depth}`, [constantNode(`bomb_v${depth}`, `bomb_c${depth}`)], none, (w) => w.message(GRAPH.output, (v) => valueInfo(v, `bomb_v${depth}`, FLOAT, [1])));
    for (let level = depth - 1; level >= 1; level--) {
      const elseBranch = graphBytes(`bomb_e${level}`, [constantNode(`bomb_ev${level}`, `bomb_ec${level}`)], none, (w) => w.message(GRAPH.output, (v) => valueInfo(v, `bomb_ev${level}`, FLOAT, [1])));
      const node = nodeBytes('If', ['bomb_cond'], [`bomb_v${level}`], `bomb_if${level}`, { then_branch: body, else_branch: elseBranch });
      body = graphBytes(`bomb_g${level}`, [node], none, (w) => w.message(GRAPH.output, (v) => valueInfo(v, `bomb_v${level}`, FLOAT, [1])));
    }
    const elseBranch = graphBytes('bomb_e0', [constantNode('bomb_ev0', 'bomb_ec0')], none, (w) => w.message(GRAPH.output, (v) => valueInfo(v, 'bomb_ev0', FLOAT, [1])));
    const node = nodeBytes('If', ['bomb_cond'], ['bomb_out'], 'bomb_if0', { then_branch: body, else_branch: elseBranch });
    return { node, initializers: [boolScalar('bomb_cond')] };
  }
  // Loop(trip, cond, v) with a body (iter, cond_in, v_in) -> (cond_out, v_out) that loops again.
  const loopBody = (level: number, inner: Uint8Array | undefined): Uint8Array => {
    const nodes = [
      nodeBytes('Identity', [`bomb_ci${level}`], [`bomb_co${level}`], `bomb_id${level}`),
      inner ?? nodeBytes('Identity', [`bomb_vi${level}`], [`bomb_vo${level}`], `bomb_vid${level}`),
    ];
    return graphBytes(
      `bomb_body${level}`,
      nodes,
      (w) => {
        w.message(GRAPH.input, (v) => valueInfo(v, `bomb_it${level}`, INT64, []));
        w.message(GRAPH.input, (v) => valueInfo(v, `bomb_ci${level}`, BOOL, []));
        w.message(GRAPH.input, (v) => valueInfo(v, `bomb_vi${level}`, FLOAT, [1]));
      },
      (w) => {
        w.message(GRAPH.output, (v) => valueInfo(v, `bomb_co${level}`, BOOL, []));
        w.message(GRAPH.output, (v) => valueInfo(v, `bomb_vo${level}`, FLOAT, [1]));
      },
    );
  };
  let loop = loopBody(depth, undefined);
  for (let level = depth - 1; level >= 1; level--) {
    const node = nodeBytes('Loop', ['bomb_trip', 'bomb_cond', `bomb_vi${level}`], [`bomb_vo${level}`], `bomb_loop${level}`, { body: loop });
    loop = loopBody(level, node);
  }
  const node = nodeBytes('Loop', ['bomb_trip', 'bomb_cond', 'bomb_v0'], ['bomb_out'], 'bomb_loop0', { body: loop });
  return { node, initializers: [boolScalar('bomb_cond'), int64Scalar('bomb_trip', 1n), floatOne('bomb_v0')] };
}

function boolScalar(name: string): ProtoMessage {
  return new ProtoMessage([ProtoField.varint(TENSOR.dataType, BOOL), ProtoField.string(TENSOR.name, name), ProtoField.bytes(TENSOR.rawData, Uint8Array.of(1))]);
}

function int64Scalar(name: string, value: bigint): ProtoMessage {
  const raw = new Uint8Array(8);
  new DataView(raw.buffer).setBigInt64(0, value, true);
  return new ProtoMessage([ProtoField.varint(TENSOR.dataType, INT64), ProtoField.string(TENSOR.name, name), ProtoField.bytes(TENSOR.rawData, raw)]);
}

function floatOne(name: string): ProtoMessage {
  const raw = new Uint8Array(new Float32Array([1]).buffer);
  return new ProtoMessage([ProtoField.bytes(TENSOR.dims, packed([1n])), ProtoField.varint(TENSOR.dataType, FLOAT), ProtoField.string(TENSOR.name, name), ProtoField.bytes(TENSOR.rawData, raw)]);
}

/** The subgraph depth past which an upload is refused unread (lib/onnx/inspect.ts MAX_GRAPH_DEPTH). */
export const MAX_SUBGRAPH_DEPTH = 64;

const subgraphBomb: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const op = rand() < 0.5 ? 'If' : 'Loop';
  const depth = pick(rand, [2, 8, 16, 32, 64, 65, 66, 100, 300, 1000]);
  const bomb = nestedBomb(op, depth);
  const taken = new Set(graph.proto.fields.filter((f) => f.number === GRAPH.initializer).map((f) => f.message().string(TENSOR.name)));
  graph.proto.fields.unshift(ProtoField.bytes(GRAPH.node, bomb.node));
  for (const t of bomb.initializers) if (!taken.has(t.string(TENSOR.name))) graph.proto.fields.push(ProtoField.message(GRAPH.initializer, t));
  const deep = depth > MAX_SUBGRAPH_DEPTH;
  return mutant('subgraph-bomb', `${depth} nested ${op} bodies`, model, deep ? 'fail' : 'either', deep ? { reason: /subgraphs nested deeper than 64/ } : {});
};

/** One node given thousands of attributes (unknown names, or one name repeated). */
const attributeFlood: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const node = pick(rand, model.graph().nodes());
  const count = pick(rand, [100, 1000, 10_000, 50_000]);
  const repeated = rand() < 0.3;
  for (let k = 0; k < count; k++) {
    const name = repeated ? 'axis' : `flood_${k}`;
    node.proto.fields.push(ProtoField.message(NODE.attribute, new ProtoMessage([ProtoField.string(ATTRIBUTE.name, name), ProtoField.varint(ATTRIBUTE.i, k), ProtoField.varint(ATTRIBUTE.type, ATTR_TYPE.INT)])));
  }
  return mutant('attribute-flood', `node "${node.name}" (${node.opType}) + ${count} ${repeated ? '"axis"' : 'unknown'} attributes`, model, lenientConstant(node));
};

/** Fields no ONNX version defines, added at the top level and in the graph: must be ignored, as protobuf does. */
const unknownFields: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const payload = Uint8Array.from({ length: 1 + int(rand, 64) }, () => int(rand, 256));
  model.proto.fields.push(ProtoField.bytes(100 + int(rand, 1000), payload), ProtoField.varint(2000 + int(rand, 1000), BigInt(int(rand, 1e9))));
  model.graph().proto.fields.push(ProtoField.bytes(100 + int(rand, 1000), payload));
  return mutant('unknown-fields', `${payload.length}-byte unknown fields added`, model, 'succeed');
};

/**
 * Initializers also declared as graph inputs (IR >= 4: overridable defaults a caller may feed).
 * Still a valid model; a conversion must keep them feedable or leave them alone.
 */
const overridableInitializer: Mutator = (bytes, rand) => {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const declared = new Set(graph.inputNames());
  const tensors = graph.initializers().filter((t) => !declared.has(t.name) && t.dims.length > 0 && t.dataType === FLOAT);
  if (tensors.length === 0) return mutant('overridable-initializer', 'no float initializer: unchanged', bytes, 'either');
  const chosen = rand() < 0.5 ? tensors : [pick(rand, tensors)];
  for (const t of chosen) {
    const w = new WireWriter();
    valueInfo(w, t.name, FLOAT, t.dims);
    graph.proto.fields.push(ProtoField.bytes(GRAPH.input, w.finish()));
  }
  return mutant('overridable-initializer', `${chosen.map((t) => `"${t.name}"`).join(', ')} declared as graph inputs`, model, 'succeed');
};

/** Every mutator, by kind: the test draws them round-robin so that any prefix covers them all. */
export function mutators(extraLocations: readonly string[]): [string, Mutator][] {
  return [
    ['bit-flip', bitFlip],
    ['external-data', externalData(extraLocations)],
    ['truncate', truncate],
    ['huge-dim', hugeValueDim],
    ['short-raw-data', shortRawData],
    ['cycle', cycle],
    ['missing-input', missingInput],
    ['subgraph-bomb', subgraphBomb],
    ['header-bit-flip', headerBitFlip],
    ['attribute-flood', attributeFlood],
    ['wrong-opset', wrongOpset],
    ['huge-tensor-dim', hugeTensorDim],
    ['bad-io-type', badIoType],
    ['byte-splat', byteSplat],
    ['duplicate-output', duplicateOutput],
    ['unknown-op', unknownOp],
    ['length-bomb', lengthBomb],
    ['empty-graph', emptyGraph],
    ['unknown-fields', unknownFields],
    ['overridable-initializer', overridableInitializer],
  ];
}
