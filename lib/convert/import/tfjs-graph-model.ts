import type { ModelDef, ValueDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { GraphBuilder, type Shape } from './graph-builder';
import { readManifestWeights, type Expand, type TfjsArtifacts } from './tfjs-layers-model';
import {
  DTYPES,
  dimsOf,
  fail,
  materialize,
  OP_CONVERTERS,
  SUPPORTED_GRAPH_OPS,
  symValue,
  type GraphNode,
  type GraphSignature,
  type SignatureEntry,
  type Value,
} from './tfjs-graph-ops';
import type { Weight } from './tfjs-weights';

export { SUPPORTED_GRAPH_OPS, type GraphNode, type GraphSignature };

/** `node:1` -> [node, 1]; `node` -> [node, 0]. */
function parseRef(ref: string): [string, number] {
  const m = /^(.*?)(?::(\d+))?$/.exec(ref)!;
  return [m[1]!, Number(m[2] ?? 0)];
}

function symbolicShape(shape: Shape, prefix: string): (number | string)[] {
  return shape.map((d, i) => (d === null ? (i === 0 ? 'batch' : `${prefix}_${i}`) : d));
}

/** The graph's inputs and outputs: the signature's (by the keys callers use), else placeholders and unread nodes. */
function boundary(nodes: GraphNode[], signature: GraphSignature | undefined) {
  const inputs = new Map<string, { key: string; entry?: SignatureEntry }>();
  for (const [key, entry] of Object.entries(signature?.inputs ?? {})) inputs.set(parseRef(entry.name ?? key)[0], { key, entry });
  if (inputs.size === 0) for (const n of nodes) if (n.op === 'Placeholder') inputs.set(n.name, { key: n.name });
  let outputs: { key: string; ref: [string, number]; entry?: SignatureEntry }[] = Object.entries(signature?.outputs ?? {}).map(([key, entry]) => ({ key, ref: parseRef(entry.name ?? key), entry }));
  if (outputs.length === 0) {
    const read = new Set(nodes.flatMap((n) => (n.input ?? []).filter((i) => !i.startsWith('^')).map((i) => parseRef(i)[0])));
    outputs = nodes.filter((n) => !read.has(n.name) && n.op !== 'Const' && n.op !== 'NoOp' && n.op !== 'Placeholder').map((n) => ({ key: n.name, ref: [n.name, 0] }));
  }
  if (outputs.length === 0) throw new ConversionError('the graph model has no outputs');
  return { inputs, outputs };
}

/**
 * Converts a TF.js graph model (a GraphDef in proto3 JSON, its weights by Const node name and its
 * signature) to an ONNX model. Inputs and outputs keep the signature's names, shapes and dtypes and
 * NHWC order; inside, convolutions, pooling and the elementwise ops between them run channels-first,
 * with a Transpose only where a tensor must be in TF's order (graph edges, Reshape, MatMul...).
 * Only the nodes the outputs depend on are converted.
 */
export function convertTfjsGraph(topology: { node?: unknown }, weights: Map<string, Weight>, signature?: GraphSignature): ModelDef {
  if (!Array.isArray(topology.node)) throw new ConversionError('model.json: the graph model topology has no node list');
  const nodes = topology.node as GraphNode[];
  const byName = new Map<string, GraphNode>();
  for (const n of nodes) {
    if (typeof n?.name !== 'string' || typeof n.op !== 'string') throw new ConversionError(`model.json: a graph node has no name or op (${JSON.stringify(n).slice(0, 200)})`);
    byName.set(n.name, n);
  }
  const g = new GraphBuilder();
  const { inputs: inputNodes, outputs } = boundary(nodes, signature);
  const graphInputs: ValueDef[] = [];
  const values = new Map<string, Value[]>();
  // The boundary keeps TF's names: no tensor inside may take one of them.
  for (const { key } of inputNodes.values()) g.reserve(key);
  for (const { key } of outputs) g.reserve(key);

  const convertNode = (node: GraphNode): Value[] => {
    if (node.op === 'Placeholder') {
      const io = inputNodes.get(node.name);
      const shape = dimsOf(node.attr?.shape?.shape) ?? dimsOf(io?.entry?.tensorShape);
      if (!shape) fail(node, 'its shape is unknown (unknown rank)');
      const tfType = node.attr?.dtype?.type ?? io?.entry?.dtype ?? 'DT_FLOAT';
      const dtype = DTYPES[tfType];
      if (dtype !== 'float32' && dtype !== 'int32') fail(node, `dtype ${tfType} is not supported (DT_FLOAT, DT_INT32)`);
      const name = io?.key ?? node.name;
      g.reserve(name);
      if (graphInputs.some((i) => i.name === name)) fail(node, `its name "${name}" is used by another input`);
      graphInputs.push({ name, elemType: dtype === 'int32' ? 6 : 1, shape: symbolicShape(shape, name.replace(/:\d+$/, '')) });
      return [symValue({ name, shape, channelsFirst: false, dtype })];
    }
    if (node.op === 'Const') {
      const w = weights.get(node.name);
      if (!w) fail(node, 'its value is missing from the weights manifest');
      const tfType = node.attr?.dtype?.type ?? 'DT_FLOAT';
      const dtype = DTYPES[tfType];
      if (!dtype) fail(node, `dtype ${tfType} is not supported`);
      return [{ kind: 'const', shape: w.shape, data: w.data, dtype }];
    }
    const convert = OP_CONVERTERS[node.op];
    if (!convert) fail(node, `op ${node.op} is not supported; supported ops: ${SUPPORTED_GRAPH_OPS.join(', ')}`);
    const ins = (node.input ?? [])
      .filter((i) => !i.startsWith('^'))
      .map((ref) => {
        const [src, idx] = parseRef(ref);
        const v = values.get(src)?.[idx];
        if (!v) fail(node, `reads "${ref}", which no node produces`);
        return v;
      });
    return convert({ g, node, inputs: ins });
  };

  // Depth-first from the outputs, without recursion (graphs can be thousands of nodes deep).
  const state = new Map<string, 'open' | 'done'>();
  for (const out of outputs) {
    const stack: string[] = [out.ref[0]];
    while (stack.length) {
      const name = stack[stack.length - 1]!;
      const node = byName.get(name);
      if (!node) throw new ConversionError(`the graph reads node "${name}", which it does not hold`);
      if (state.get(name) === 'done') {
        stack.pop();
        continue;
      }
      const deps = (node.input ?? []).filter((i) => !i.startsWith('^')).map((i) => parseRef(i)[0]);
      if (state.get(name) !== 'open') {
        state.set(name, 'open');
        const pending = deps.filter((d) => state.get(d) !== 'done');
        for (const d of pending) {
          if (state.get(d) === 'open') throw new ConversionError(`the graph has a cycle through node "${d}"`);
          stack.push(d);
        }
        if (pending.length) continue;
      }
      stack.pop();
      values.set(name, convertNode(node));
      state.set(name, 'done');
    }
  }

  const graphOutputs: ValueDef[] = outputs.map(({ key, ref, entry }) => {
    const v = values.get(ref[0])?.[ref[1]];
    if (!v) throw new ConversionError(`output "${key}" (${ref.join(':')}) is never computed`);
    if (v.kind === 'shape') throw new ConversionError(`output "${key}" is a shape computed at run time, which is not supported`);
    const s = g.channelsLast(v.kind === 'sym' ? v.sym : materialize(g, v, `${key}/const`, `output "${key}"`));
    g.nodes.push({ opType: 'Identity', inputs: [s.name], outputs: [key], name: g.unique(`${key}/output`) });
    const shape = dimsOf(entry?.tensorShape) ?? s.shape;
    return { name: key, elemType: s.dtype === 'int32' ? 6 : 1, shape: symbolicShape(shape.length === s.shape.length ? shape.map((d, i) => d ?? s.shape[i] ?? null) : s.shape, key.replace(/:\d+$/, '')) };
  });
  // Inputs in signature order (or graph order), whether or not an output reads them.
  const order = [...inputNodes.values()].map((i) => i.key);
  graphInputs.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return {
    graph: { name: 'tfjs_graph', nodes: g.nodes, inputs: graphInputs, outputs: graphOutputs, initializers: g.initializers },
    opsets: [{ domain: '', version: 17 }],
    producerName: 'onnx-lambda tfjs graph import',
  };
}

/** The ONNX model of a TF.js graph model (`model.json` parsed, shards read by path), and the artifacts TF.js loads it from. */
export function readTfjsGraphModel(json: Record<string, unknown>, readShard: (path: string) => Uint8Array, expand?: Expand): { def: ModelDef; artifacts: TfjsArtifacts } {
  const topology = json.modelTopology as { node?: unknown };
  if (Array.isArray((json as { modelInitializer?: { node?: unknown[] } }).modelInitializer?.node) && (json.modelInitializer as { node: unknown[] }).node.length) {
    throw new ConversionError('model.json: the graph model has an initializer graph (hash tables or other resources), which is not supported');
  }
  const meta = json.userDefinedMetadata as { signature?: GraphSignature } | undefined;
  const signature = (json.signature ?? meta?.signature);
  const { weights, weightSpecs, weightData } = readManifestWeights(json.weightsManifest, readShard, expand);
  const def = convertTfjsGraph(topology, weights, signature);
  return {
    def,
    artifacts: {
      format: 'graph-model',
      modelTopology: topology,
      weightSpecs,
      weightData,
      ...(json.signature ? { signature: json.signature } : {}),
      ...(meta ? { userDefinedMetadata: meta } : {}),
    },
  };
}
