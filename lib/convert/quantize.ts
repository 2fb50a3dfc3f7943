import { toHalfBits } from '../protocol/half';
import {
  ATTRIBUTE,
  DATA_TYPE,
  GraphView,
  makeNode,
  makeTensor,
  NODE,
  NodeView,
  OnnxModel,
  TensorView,
} from '../onnx/model';
import type { ProtoMessage } from '../onnx/proto-tree';
import { MS_DOMAIN } from './attention';
import type { StaticInt8Report } from './static-int8';

/** How weights are stored in the converted model. */
export type QuantizationMode = 'int8-dynamic' | 'int8-static' | 'fp16' | 'none';

export interface QuantizeOptions {
  mode: QuantizationMode;
  /** Weights with fewer elements stay float. */
  minElements: number;
  /** Embedding tables (Gather on a constant) with fewer elements stay float. */
  minGatherElements: number;
  /** Node names (or output names) to leave in float. */
  keepFloat: readonly string[];
  /** 7-bit weights, for CPUs without VNNI where u8 x s8 products can saturate. */
  reduceRange: boolean;
}

export interface QuantizeReport {
  mode: QuantizationMode;
  /** Nodes rewritten, by op type (e.g. `{MatMul: 24, Gemm: 1, Gather: 1}`). */
  rewritten: Record<string, number>;
  /** Weight tensors converted. */
  tensors: number;
  /** Nodes left in float on purpose (keepFloat) or because their weight was too small or not constant. */
  skipped: number;
  /** int8-static: what the calibrated Conv rewrite did (lib/convert/static-int8.ts). */
  static?: StaticInt8Report;
}

/** A constant visible in a graph: an initializer of it or of an enclosing graph, or a Constant node's value. */
interface ConstantRef {
  tensor: TensorView;
  /** The graph that holds it and how: removing it when no consumer is left. */
  owner: GraphView;
  kind: 'initializer' | 'constant-node';
  proto: ProtoMessage;
}

class Rewriter {
  private readonly uses = new Map<string, number>();
  private readonly removed = new Set<ProtoMessage>();
  private counter = 0;
  readonly report: QuantizeReport;

  constructor(
    private readonly model: OnnxModel,
    private readonly options: QuantizeOptions,
  ) {
    this.report = { mode: options.mode, rewritten: {}, tensors: 0, skipped: 0 };
    this.countUses(model.graph());
  }

  run(): void {
    this.rewriteGraph(this.model.graph(), new Map(), true);
  }

  private countUses(graph: GraphView): void {
    for (const node of graph.nodes()) {
      for (const input of node.inputs) this.uses.set(input, (this.uses.get(input) ?? 0) + 1);
      for (const sub of node.subgraphs()) this.countUses(sub);
    }
    for (const output of graph.outputNames()) this.uses.set(output, (this.uses.get(output) ?? 0) + 1);
  }

  private fresh(base: string): string {
    return `${base}__q${this.counter++}`;
  }

  private rewriteGraph(graph: GraphView, outer: ReadonlyMap<string, ConstantRef>, isMain: boolean): void {
    const scope = new Map(outer);
    for (const t of graph.initializers()) scope.set(t.name, { tensor: t, owner: graph, kind: 'initializer', proto: t.proto });
    // A graph input is not a constant, even with an initializer of its name (an overridable
    // default a caller may feed): rewriting it would drop the input's value and leave it required.
    for (const name of graph.inputNames()) scope.delete(name);
    const nodes = graph.nodes();
    for (const node of nodes) {
      if (node.opType !== 'Constant' || node.domain) continue;
      const value = node.attribute('value')?.first(ATTRIBUTE.t)?.message();
      const out = node.outputs[0];
      if (value && out) scope.set(out, { tensor: new TensorView(value), owner: graph, kind: 'constant-node', proto: node.proto });
    }

    const newNodes: ProtoMessage[] = [];
    const newConstants: ProtoMessage[] = [];
    const halved = new Map<string, string>(); // fp16: constant -> its float32 Cast output in this graph
    const addConstant = (name: string, tensor: ProtoMessage): void => {
      if (isMain) newConstants.push(tensor);
      else newNodes.push(makeNode('Constant', [], [name], this.fresh(`${name}_const`), { value: { t: tensor } }));
    };

    for (const node of nodes) {
      for (const sub of node.subgraphs()) this.rewriteGraph(sub, scope, false);
      const replacement = this.rewriteNode(node, scope, addConstant, halved);
      if (replacement) newNodes.push(...replacement);
      else newNodes.push(node.proto);
    }

    // Drop float weights nobody reads any more.
    const kept = newNodes.filter((n) => !this.removed.has(n));
    graph.setNodes(kept);
    if (isMain || newConstants.length > 0 || graph.initializers().some((t) => this.removed.has(t.proto))) {
      graph.setInitializers([...graph.initializers().map((t) => t.proto).filter((p) => !this.removed.has(p)), ...newConstants]);
    }
  }

  private excluded(node: NodeView): boolean {
    return this.options.keepFloat.some((name) => name === node.name || node.outputs.includes(name));
  }

  private constantFloat(scope: ReadonlyMap<string, ConstantRef>, name: string | undefined, minElements: number): ConstantRef | undefined {
    if (!name) return undefined;
    const ref = scope.get(name);
    if (!ref || ref.tensor.dataType !== DATA_TYPE.FLOAT || ref.tensor.isExternal) return undefined;
    if (ref.tensor.elementCount < minElements) return undefined;
    return ref;
  }

  /** Consumes one use of a constant; removes its storage when that was the last. */
  private release(name: string, ref: ConstantRef): void {
    const left = (this.uses.get(name) ?? 1) - 1;
    this.uses.set(name, left);
    if (left <= 0) this.removed.add(ref.proto);
  }

  private rewriteNode(
    node: NodeView,
    scope: ReadonlyMap<string, ConstantRef>,
    addConstant: (name: string, tensor: ProtoMessage) => void,
    halved: Map<string, string>,
  ): ProtoMessage[] | undefined {
    const { mode } = this.options;
    if (mode === 'none') return undefined;
    if (node.domain === MS_DOMAIN && node.opType === 'Attention' && mode === 'int8-dynamic') {
      if (this.excluded(node)) {
        this.report.skipped++;
        return undefined;
      }
      const weight = this.constantFloat(scope, node.inputs[1], this.options.minElements);
      const bias = this.constantFloat(scope, node.inputs[2], 0);
      // QAttention takes neither a mask nor past state here: those forms stay float.
      if (!weight || !bias || weight.tensor.dims.length !== 2 || node.inputs.length > 3) {
        this.report.skipped++;
        return undefined;
      }
      return this.quantizeAttention(node, weight, addConstant);
    }
    if (node.domain) return undefined;
    if (mode === 'fp16') return this.excluded(node) ? undefined : this.toHalf(node, scope, addConstant, halved);
    const op = node.opType;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Gather' && op !== 'Slice') return undefined;
    if (this.excluded(node)) {
      this.report.skipped++;
      return undefined;
    }

    if (op === 'Gather') {
      const table = this.constantFloat(scope, node.inputs[0], this.options.minGatherElements);
      if (!table || table.tensor.dims.length !== 2 || node.intAttribute('axis', 0) !== 0) return undefined;
      return this.quantizeRows(node, table, addConstant);
    }
    if (op === 'Slice') {
      const table = this.constantFloat(scope, node.inputs[0], this.options.minGatherElements);
      if (!table || table.tensor.dims.length !== 2 || !slicesRowsOnly(node, scope)) return undefined;
      return this.quantizeRows(node, table, addConstant);
    }

    const weightName = node.inputs[1];
    const weight = this.constantFloat(scope, weightName, this.options.minElements);
    if (!weight || weight.tensor.dims.length !== 2) {
      this.report.skipped++;
      return undefined;
    }
    if (op === 'Gemm' && (node.intAttribute('transA', 0) !== 0 || (node.inputs[2] && node.floatAttribute('beta', 1) !== 1))) {
      this.report.skipped++;
      return undefined;
    }
    return this.quantizeMatMul(node, weight, addConstant);
  }

  /**
   * MatMul / Gemm with a constant weight -> DynamicQuantizeLinear + MatMulInteger + Cast + scale
   * multiply (+ bias Add): the pattern onnxruntime fuses into DynamicQuantizeMatMul. Weights are
   * int8, symmetric, one scale per output column; activations are quantized at run time.
   */
  private quantizeMatMul(node: NodeView, weight: ConstantRef, addConstant: (name: string, tensor: ProtoMessage) => void): ProtoMessage[] {
    const gemm = node.opType === 'Gemm';
    let [k, n] = weight.tensor.dims as [number, number];
    let values: Float32Array | RowReader = weight.tensor.floatRowReader();
    if (gemm && node.intAttribute('transB', 0) === 1) {
      values = transpose(weight.tensor.floats(), k, n);
      [k, n] = [n, k];
    }
    const alpha = gemm ? node.floatAttribute('alpha', 1) : 1;
    const { q, scales } = quantizePerColumn(values, k, n, this.options.reduceRange ? 63 : 127);
    if (alpha !== 1) for (let j = 0; j < n; j++) scales[j] = (scales[j] as number) * alpha;

    const base = this.fresh(node.name || node.outputs[0] || 'matmul');
    const [input = '', weightName = ''] = node.inputs;
    const output = node.outputs[0] ?? '';
    addConstant(`${base}_w`, makeTensor(`${base}_w`, DATA_TYPE.INT8, [k, n], new Uint8Array(q.buffer)));
    addConstant(`${base}_wscale`, makeTensor(`${base}_wscale`, DATA_TYPE.FLOAT, [n], new Uint8Array(scales.buffer)));
    addConstant(`${base}_wzero`, makeTensor(`${base}_wzero`, DATA_TYPE.INT8, [n], new Uint8Array(n)));
    this.release(weightName, weight);
    this.report.tensors++;
    this.report.rewritten[node.opType] = (this.report.rewritten[node.opType] ?? 0) + 1;

    const scaled = gemm && node.inputs[2] ? `${base}_scaled` : output;
    const nodes = [
      makeNode('DynamicQuantizeLinear', [input], [`${base}_xq`, `${base}_xscale`, `${base}_xzero`], `${base}_dql`),
      makeNode('MatMulInteger', [`${base}_xq`, `${base}_w`, `${base}_xzero`, `${base}_wzero`], [`${base}_mmi`], `${base}_mmi`),
      makeNode('Cast', [`${base}_mmi`], [`${base}_mmf`], `${base}_cast`, { to: { i: DATA_TYPE.FLOAT } }),
      makeNode('Mul', [`${base}_xscale`, `${base}_wscale`], [`${base}_scale`], `${base}_scale`),
      makeNode('Mul', [`${base}_mmf`, `${base}_scale`], [scaled], `${base}_out`),
    ];
    if (scaled !== output) nodes.push(makeNode('Add', [scaled, node.inputs[2] as string], [output], `${base}_bias`));
    return nodes;
  }

  /**
   * com.microsoft Attention with constant Q/K/V weights -> DynamicQuantizeLinear + QAttention:
   * the same int8 weights, per output column, as a MatMul gets; the bias stays float.
   */
  private quantizeAttention(node: NodeView, weight: ConstantRef, addConstant: (name: string, tensor: ProtoMessage) => void): ProtoMessage[] {
    const [k, n] = weight.tensor.dims as [number, number];
    const { q, scales } = quantizePerColumn(weight.tensor.floatRowReader(), k, n, this.options.reduceRange ? 63 : 127);
    const base = this.fresh(node.name || node.outputs[0] || 'attention');
    const [input = '', weightName = '', bias = ''] = node.inputs;
    addConstant(`${base}_w`, makeTensor(`${base}_w`, DATA_TYPE.INT8, [k, n], new Uint8Array(q.buffer)));
    addConstant(`${base}_wscale`, makeTensor(`${base}_wscale`, DATA_TYPE.FLOAT, [n], new Uint8Array(scales.buffer)));
    this.release(weightName, weight);
    this.report.tensors++;
    this.report.rewritten.Attention = (this.report.rewritten.Attention ?? 0) + 1;
    const quantized = makeNode(
      'QAttention',
      [`${base}_xq`, `${base}_w`, bias, `${base}_xscale`, `${base}_wscale`, '', `${base}_xzero`],
      node.outputs,
      `${base}_qattention`,
      {},
      MS_DOMAIN,
    );
    // The same attributes (num_heads, unidirectional...) as the float node.
    for (const a of node.proto.all(NODE.attribute)) quantized.fields.push(a);
    return [makeNode('DynamicQuantizeLinear', [input], [`${base}_xq`, `${base}_xscale`, `${base}_xzero`], `${base}_dql`), quantized];
  }

  /**
   * A large constant table read by rows (Gather on axis 0, or a Slice along rows) -> an int8
   * table with a float scale per row; the scales are read the same way and multiplied back.
   */
  private quantizeRows(node: NodeView, table: ConstantRef, addConstant: (name: string, tensor: ProtoMessage) => void): ProtoMessage[] {
    const op = node.opType as 'Gather' | 'Slice';
    const [rows, cols] = table.tensor.dims as [number, number];
    const { q, scales } = quantizePerRow(table.tensor.floatRowReader(), rows, cols, this.options.reduceRange ? 63 : 127);
    const base = this.fresh(node.name || node.outputs[0] || op.toLowerCase());
    addConstant(`${base}_table`, makeTensor(`${base}_table`, DATA_TYPE.INT8, [rows, cols], new Uint8Array(q.buffer)));
    addConstant(`${base}_rowscale`, makeTensor(`${base}_rowscale`, DATA_TYPE.FLOAT, [rows, 1], new Uint8Array(scales.buffer)));
    this.release(node.inputs[0] as string, table);
    this.report.tensors++;
    this.report.rewritten[op] = (this.report.rewritten[op] ?? 0) + 1;
    const rest = node.inputs.slice(1);
    const read = (data: string, out: string, name: string) =>
      op === 'Gather' ? makeNode('Gather', [data, ...rest], [out], name, { axis: { i: 0 } }) : makeNode('Slice', [data, ...rest], [out], name);
    return [
      read(`${base}_table`, `${base}_q`, `${base}_read`),
      read(`${base}_rowscale`, `${base}_s`, `${base}_read_scale`),
      makeNode('Cast', [`${base}_q`], [`${base}_f`], `${base}_cast`, { to: { i: DATA_TYPE.FLOAT } }),
      makeNode('Mul', [`${base}_f`, `${base}_s`], [node.outputs[0] as string], `${base}_dequant`),
    ];
  }

  /**
   * fp16 mode: every large float constant a node reads is stored as float16 and cast back to
   * float32 in front of it (onnxruntime folds the Cast at load time). Inputs, outputs and the
   * kernels' types stay as they were; the file is about half the size.
   */
  private toHalf(
    node: NodeView,
    scope: ReadonlyMap<string, ConstantRef>,
    addConstant: (name: string, tensor: ProtoMessage) => void,
    halved: Map<string, string>,
  ): ProtoMessage[] | undefined {
    const inputs = [...node.inputs];
    const casts: ProtoMessage[] = [];
    let changed = false;
    inputs.forEach((name, index) => {
      const done = halved.get(name);
      if (done !== undefined) {
        this.release(name, scope.get(name) as ConstantRef);
        inputs[index] = done;
        changed = true;
        return;
      }
      const weight = this.constantFloat(scope, name, this.options.minElements);
      if (!weight) return;
      const values = weight.tensor.floats();
      const half = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) half[i] = toHalfBits(values[i] as number);
      const base = this.fresh(name);
      addConstant(`${base}_fp16`, makeTensor(`${base}_fp16`, DATA_TYPE.FLOAT16, weight.tensor.dims, new Uint8Array(half.buffer)));
      casts.push(makeNode('Cast', [`${base}_fp16`], [`${base}_f32`], `${base}_cast`, { to: { i: DATA_TYPE.FLOAT } }));
      this.release(name, weight);
      this.report.tensors++;
      halved.set(name, `${base}_f32`);
      inputs[index] = `${base}_f32`;
      changed = true;
    });
    if (!changed) return undefined;
    this.report.rewritten[node.opType] = (this.report.rewritten[node.opType] ?? 0) + 1;
    return [...casts, withInputs(node.proto, inputs)];
  }
}

/**
 * True for a Slice (opset 10+ form) that cuts along axis 0 only, so the same slice applies to a
 * [rows, 1] scale table: axes given as a constant [0] (or [-2]), or absent with one start.
 */
function slicesRowsOnly(node: NodeView, scope: ReadonlyMap<string, ConstantRef>): boolean {
  const [, starts, , axes] = node.inputs;
  if (node.inputs.length < 3 || !starts) return false;
  const axesRef = axes ? scope.get(axes) : undefined;
  if (axes) {
    if (!axesRef || axesRef.tensor.dataType !== DATA_TYPE.INT64) return false;
    const values = axesRef.tensor.int64s();
    return values.length === 1 && (values[0] === 0n || values[0] === -2n);
  }
  const startsRef = scope.get(starts);
  return startsRef !== undefined && startsRef.tensor.elementCount === 1;
}

function withInputs(node: ProtoMessage, inputs: readonly string[]): ProtoMessage {
  const view = new NodeView(node);
  const rebuilt = makeNode(view.opType, inputs, view.outputs, view.name, {}, view.domain);
  // Keep the original attributes as they were.
  for (const a of node.all(NODE.attribute)) rebuilt.fields.push(a);
  return rebuilt;
}

function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c] as number;
  return out;
}

/** Rows of a [rows, cols] float matrix, read a chunk at a time: `(start, count)` -> their values (valid until the next read). */
export type RowReader = (start: number, count: number) => Float32Array;

/** About a mebibyte of floats per chunk: what a quantization holds of a table beside its result. */
const CHUNK_ELEMENTS = 1 << 18;

function rowsOf(values: Float32Array | RowReader, cols: number): RowReader {
  return typeof values === 'function' ? values : (start, count) => values.subarray(start * cols, (start + count) * cols);
}

function chunkRows(cols: number): number {
  return Math.max(1, Math.floor(CHUNK_ELEMENTS / Math.max(1, cols)));
}

/** Symmetric int8 per output column of a [k, n] matrix (two passes over its rows, a chunk at a time). */
export function quantizePerColumn(values: Float32Array | RowReader, k: number, n: number, qmax: number): { q: Int8Array; scales: Float32Array } {
  const read = rowsOf(values, n);
  const step = chunkRows(n);
  const scales = new Float32Array(n);
  for (let start = 0; start < k; start += step) {
    const count = Math.min(step, k - start);
    const chunk = read(start, count);
    for (let r = 0; r < count; r++) {
      for (let c = 0; c < n; c++) {
        const a = Math.abs(chunk[r * n + c] as number);
        if (a > (scales[c] as number)) scales[c] = a;
      }
    }
  }
  for (let c = 0; c < n; c++) scales[c] = (scales[c] as number) > 0 ? (scales[c] as number) / qmax : 1;
  const q = new Int8Array(k * n);
  for (let start = 0; start < k; start += step) {
    const count = Math.min(step, k - start);
    const chunk = read(start, count);
    for (let r = 0; r < count; r++) {
      for (let c = 0; c < n; c++) {
        const v = Math.round((chunk[r * n + c] as number) / (scales[c] as number));
        q[(start + r) * n + c] = Math.max(-qmax, Math.min(qmax, v));
      }
    }
  }
  return { q, scales };
}

/** Symmetric int8 per row of a [rows, cols] table (one pass over its rows, a chunk at a time). */
export function quantizePerRow(values: Float32Array | RowReader, rows: number, cols: number, qmax: number): { q: Int8Array; scales: Float32Array } {
  const read = rowsOf(values, cols);
  const step = chunkRows(cols);
  const scales = new Float32Array(rows);
  const q = new Int8Array(rows * cols);
  for (let start = 0; start < rows; start += step) {
    const count = Math.min(step, rows - start);
    const chunk = read(start, count);
    for (let r = 0; r < count; r++) {
      let max = 0;
      for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(chunk[r * cols + c] as number));
      const s = max > 0 ? max / qmax : 1;
      scales[start + r] = s;
      for (let c = 0; c < cols; c++) q[(start + r) * cols + c] = Math.max(-qmax, Math.min(qmax, Math.round((chunk[r * cols + c] as number) / s)));
    }
  }
  return { q, scales };
}

/** Rewrites a model's weights in place per `options`; returns what was done. */
export function quantizeModel(model: OnnxModel, options: QuantizeOptions): QuantizeReport {
  const rewriter = new Rewriter(model, options);
  rewriter.run();
  if (options.mode === 'int8-dynamic' && Object.keys(rewriter.report.rewritten).length > 0) {
    // DynamicQuantizeLinear and MatMulInteger need opset 11 or later.
    const main = model.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx');
    if (main && main.version < 11) throw new Error(`int8-dynamic needs opset 11 or later; the model uses opset ${main.version}`);
  }
  return rewriter.report;
}
