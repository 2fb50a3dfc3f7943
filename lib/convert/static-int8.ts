import { ATTRIBUTE, DATA_TYPE, GraphView, makeNode, makeTensor, NODE, NodeView, OnnxModel, TensorView, TENSOR } from '../onnx/model';
import { ProtoField } from '../onnx/proto-tree';
import type { ProtoMessage } from '../onnx/proto-tree';
import type { TensorRange } from './calibrate';

/** Per-axis DequantizeLinear (one weight scale per output channel) is an opset 13 feature. */
export const STATIC_INT8_MIN_OPSET = 13;

export interface StaticInt8Options {
  /** Node names (or output names) to leave in float. */
  keepFloat: readonly string[];
  /** Convs (by node name, or output name for an unnamed node) the sensitivity pass keeps in float, with why. */
  sensitive?: Readonly<Record<string, string>>;
  /**
   * Activation type: `uint8` (what the job writes) or `int8` (zero point - 128, same scale and
   * grid). Internal: the bench measures both; uploads cannot choose.
   */
  activations?: 'uint8' | 'int8';
}

export interface StaticInt8Report {
  /** Conv nodes written as DQ -> Conv -> Q, the pattern onnxruntime fuses into QLinearConv. */
  convs: number;
  /** Relu nodes whose range was folded into their Conv's output quantization and removed. */
  reluFolded: number;
  /** BatchNormalization nodes folded into the Conv before them (its weights and bias). */
  batchNormsFolded: number;
  /** Mul by a scalar or per-channel constant folded into the Conv before them. */
  affineFolded: number;
  /** Mul/Add by a scalar or per-channel constant folded into the Conv after them (`foldIntoNextConvs`). */
  affineFoldedIntoNext: number;
  /** Adds of two quantized Conv outputs written in QDQ form (onnxruntime's QLinearAdd). */
  addsQuantized: number;
  /** Concats written DQ per input -> Concat -> Q (onnxruntime's QLinearConcat). */
  concatsQuantized: number;
  /**
   * ConvTransposes whose weights are stored int8 (per output channel) behind a DequantizeLinear:
   * onnxruntime has no integer ConvTranspose on CPU, so it still runs in float; the weights take
   * a quarter of the bytes.
   */
  convTransposeWeightsQuantized: number;
  /** Conv nodes left in float, by name, and why. */
  keptFloat: Record<string, string>;
  /** The sensitivity pass, when asked for: each Conv's cost quantized alone (1 - output cosine), by name. */
  sensitivity?: { threshold: number; costs: Record<string, number> };
}

/** One Conv the rewrite quantizes: which tensors it reads and which tensor its Q/DQ writes. */
interface ConvPlan {
  node: NodeView;
  weight: TensorView;
  bias?: TensorView;
  input: string;
  /** The tensor downstream nodes read: the Conv's output, or its Relu's when folded. */
  output: string;
  relu?: NodeView;
}

function uses(graph: GraphView): Map<string, number> {
  const count = new Map<string, number>();
  for (const node of graph.nodes()) for (const i of node.inputs) count.set(i, (count.get(i) ?? 0) + 1);
  for (const o of graph.outputNames()) count.set(o, (count.get(o) ?? 0) + 1);
  return count;
}

/** Constant nodes of the main graph holding a tensor (how some exporters store weights), by output name. */
function constantNodes(graph: GraphView): Map<string, { node: NodeView; tensor: TensorView }> {
  const out = new Map<string, { node: NodeView; tensor: TensorView }>();
  for (const node of graph.nodes()) {
    const value = node.opType === 'Constant' && !node.domain ? node.attribute('value')?.first(ATTRIBUTE.t)?.message() : undefined;
    if (value && node.outputs[0]) out.set(node.outputs[0], { node, tensor: new TensorView(value) });
  }
  return out;
}

/**
 * Makes the Constant nodes that hold Conv weights and biases initializers of the same name, so
 * the rewrite treats every constant weight alike (and can drop the float copy once quantized).
 */
function hoistConvConstants(graph: GraphView): void {
  const wanted = new Set<string>();
  for (const n of graph.nodes()) if ((n.opType === 'Conv' || n.opType === 'ConvTranspose' || n.opType === 'BatchNormalization') && !n.domain) for (const i of n.inputs.slice(1)) wanted.add(i);
  const hoisted = [...constantNodes(graph)].filter(([name]) => wanted.has(name));
  if (hoisted.length === 0) return;
  const gone = new Set(hoisted.map(([, c]) => c.node.proto));
  const tensors = hoisted.map(([name, c]) => {
    const t = c.tensor.proto;
    t.set(TENSOR.name, [ProtoField.string(TENSOR.name, name)]);
    return t;
  });
  graph.setNodes(graph.nodes().filter((n) => !gone.has(n.proto)).map((n) => n.proto));
  graph.setInitializers([...graph.initializers().map((t) => t.proto), ...tensors]);
}

/** Every tensor name a node reads, in the graph and its subgraphs, and the graph's outputs. */
function namesRead(graph: GraphView, into = new Set<string>()): Set<string> {
  for (const n of graph.nodes()) {
    for (const i of n.inputs) into.add(i);
    for (const sub of n.subgraphs()) namesRead(sub, into);
  }
  for (const o of graph.outputNames()) into.add(o);
  return into;
}

/** One value per channel of a rank-`rank` tensor laid out NCHW-like (a scalar, or [C] at axis 1 with 1s elsewhere); undefined otherwise. */
function channelValues(t: TensorView | undefined, channels: number, rank: number): Float32Array | undefined {
  if (!t) return undefined;
  const values = t.floats();
  if (values.length === 1) return new Float32Array(channels).fill(values[0] as number);
  const dims = [...new Array<number>(Math.max(0, rank - t.dims.length)).fill(1), ...t.dims];
  if (dims.length !== rank || values.length !== channels || dims.some((d, i) => (i === 1 ? d !== channels : d !== 1))) return undefined;
  return Float32Array.from(values);
}

/**
 * Folds into each Conv the per-channel affine steps that alone read its output, in a chain:
 * BatchNormalization (inference form: `w' = w x s`, `b' = (b - mean) x s + beta` with
 * `s = gamma / sqrt(var + eps)`), and Mul by a constant that is a scalar or one value per
 * output channel (the scale of PP-LCNet's learnable affine blocks, scale layers). The Conv then
 * writes the chain's last output, and is quantized with the weights and output range it really
 * has. An Add of a constant (the affine block's shift) is left float: folded, it moves the
 * Conv's output range away from 0, which the 8-bit range must still hold, and costs levels
 * (measured on the PP-OCRv4 detector: mask IoU 0.956 folding the scale, 0.943 folding both).
 * Constant operands only; exact up to float rounding. Dead constants are dropped.
 */
export function foldIntoConvs(graph: GraphView): { batchNorms: number; affine: number } {
  hoistConvConstants(graph);
  const inputs = new Set(graph.inputNames());
  const constants = new Map<string, TensorView>();
  for (const t of graph.initializers()) if (!inputs.has(t.name)) constants.set(t.name, t);
  for (const [name, c] of constantNodes(graph)) constants.set(name, c.tensor);
  const nodes = graph.nodes();
  const readers = new Map<string, NodeView[]>();
  for (const n of nodes) for (const i of n.inputs) readers.set(i, [...(readers.get(i) ?? []), n]);
  const outputs = new Set(graph.outputNames());
  const floatConst = (name: string | undefined) => {
    const t = name ? constants.get(name) : undefined;
    return t && t.dataType === DATA_TYPE.FLOAT && !t.isExternal ? t : undefined;
  };
  const replaced = new Map<ProtoMessage, ProtoMessage>();
  const dropped = new Set<ProtoMessage>();
  const added: ProtoMessage[] = [];
  const folded = { batchNorms: 0, affine: 0 };
  for (const conv of nodes) {
    if (conv.opType !== 'Conv' || conv.domain) continue;
    const w = floatConst(conv.inputs[1]);
    const b = conv.inputs[2] ? floatConst(conv.inputs[2]) : undefined;
    if (!w || (conv.inputs[2] && !b) || w.dims.length < 3) continue;
    const channels = w.dims[0] as number;
    const rank = w.dims.length;
    let scale: Float32Array | undefined;
    let bias: Float32Array | undefined;
    let y = conv.outputs[0] ?? '';
    for (;;) {
      const next = readers.get(y) ?? [];
      const step = next[0];
      if (next.length !== 1 || outputs.has(y) || !step || step.domain || step.outputs.length !== 1) break;
      scale ??= new Float32Array(channels).fill(1);
      bias ??= b ? Float32Array.from(b.floats()) : new Float32Array(channels);
      if (step.opType === 'BatchNormalization') {
        const [gamma, beta, mean, variance] = step.inputs.slice(1, 5).map(floatConst);
        if (!gamma || !beta || !mean || !variance || [gamma, beta, mean, variance].some((t) => t.elementCount !== channels)) break;
        const eps = step.floatAttribute('epsilon', 1e-5);
        const [g, bt, m, v] = [gamma.floats(), beta.floats(), mean.floats(), variance.floats()];
        for (let c = 0; c < channels; c++) {
          const s = (g[c] as number) / Math.sqrt((v[c] as number) + eps);
          scale[c] = (scale[c] as number) * s;
          bias[c] = ((bias[c] as number) - (m[c] as number)) * s + (bt[c] as number);
        }
        folded.batchNorms++;
      } else if (step.opType === 'Mul') {
        const k = step.inputs.indexOf(y);
        const c = k >= 0 && step.inputs.length === 2 ? channelValues(floatConst(step.inputs[1 - k]), channels, rank) : undefined;
        if (!c) break;
        for (let i = 0; i < channels; i++) {
          scale[i] = (scale[i] as number) * (c[i] as number);
          bias[i] = (bias[i] as number) * (c[i] as number);
        }
        folded.affine++;
      } else break;
      dropped.add(step.proto);
      y = step.outputs[0] ?? '';
    }
    if (y === conv.outputs[0] || !scale || !bias) continue;
    const weights = Float32Array.from(w.floats());
    const per = weights.length / channels;
    for (let c = 0; c < channels; c++) for (let i = 0; i < per; i++) weights[c * per + i] = (weights[c * per + i] as number) * (scale[c] as number);
    const base = conv.name || y;
    added.push(makeTensor(`${base}__folded_w`, DATA_TYPE.FLOAT, w.dims, bytesOf(weights)), makeTensor(`${base}__folded_b`, DATA_TYPE.FLOAT, [channels], bytesOf(bias)));
    const node = makeNode('Conv', [conv.inputs[0] ?? '', `${base}__folded_w`, `${base}__folded_b`], [y], conv.name || `${base}_conv`);
    for (const a of conv.proto.all(NODE.attribute)) node.fields.push(a);
    replaced.set(conv.proto, node);
  }
  if (replaced.size === 0) return folded;
  const kept = nodes.filter((n) => !dropped.has(n.proto)).map((n) => replaced.get(n.proto) ?? n.proto);
  graph.setNodes(kept);
  const read = namesRead(graph);
  // Constant nodes and initializers nothing reads any more (the folded operands, the old weights).
  graph.setNodes(graph.nodes().filter((n) => !(n.opType === 'Constant' && !n.domain && n.outputs.every((o) => !read.has(o)))).map((n) => n.proto));
  graph.setInitializers([...graph.initializers().filter((t) => read.has(t.name)).map((t) => t.proto), ...added]);
  return folded;
}

/**
 * Folds into a Conv the constant affine steps (Mul, Add by a scalar or one value per input
 * channel) that alone carry another Conv's output to its input, as PP-LCNetV3's learnable
 * affine block does between a depthwise and a pointwise Conv: `Conv(s x + b)` is a Conv with
 * its weights scaled by `s` along their input channels and `sum(w x b)` added to its bias. The
 * steps stop running in float, and the tensor between the two Convs is quantized once instead
 * of twice (the first Conv's output, then the second's input). A shift is folded only into a
 * Conv without padding (a padded border would read 0, not `b`); a scale into any. Exact up to
 * float rounding. Returns the steps folded.
 */
export function foldIntoNextConvs(graph: GraphView): number {
  const inputs = new Set(graph.inputNames());
  const constants = new Map<string, TensorView>();
  for (const t of graph.initializers()) if (!inputs.has(t.name) && t.dataType === DATA_TYPE.FLOAT && !t.isExternal) constants.set(t.name, t);
  for (const [name, c] of constantNodes(graph)) if (c.tensor.dataType === DATA_TYPE.FLOAT && !c.tensor.isExternal) constants.set(name, c.tensor);
  const nodes = graph.nodes();
  const producer = new Map<string, NodeView>();
  for (const n of nodes) for (const o of n.outputs) producer.set(o, n);
  const count = uses(graph);
  const perChannel = (name: string | undefined, channels: number, rank: number) => channelValues(name ? constants.get(name) : undefined, channels, rank);
  const replaced = new Map<ProtoMessage, ProtoMessage>();
  const dropped = new Set<ProtoMessage>();
  const added: ProtoMessage[] = [];
  let folded = 0;
  for (const conv of nodes) {
    if (conv.opType !== 'Conv' || conv.domain) continue;
    const w = constants.get(conv.inputs[1] ?? '');
    const b = conv.inputs[2] ? constants.get(conv.inputs[2]) : undefined;
    if (!w || (conv.inputs[2] && !b) || w.dims.length < 3) continue;
    const group = conv.intAttribute('group', 1);
    const channels = (w.dims[1] as number) * group;
    const rank = w.dims.length;
    const autoPad = conv.attribute('auto_pad')?.first(ATTRIBUTE.s)?.payload();
    const padded = (conv.intsAttribute('pads') ?? []).some((v) => v !== 0) || (!!autoPad && !['NOTSET', 'VALID'].includes(Buffer.from(autoPad).toString()));
    // x_conv = scale x x + shift, composed from the Conv backwards.
    const scale = new Float32Array(channels).fill(1);
    const shift = new Float32Array(channels);
    const steps: NodeView[] = [];
    let x = conv.inputs[0] ?? '';
    for (;;) {
      const step = producer.get(x);
      if (!step || step.domain || (step.opType !== 'Mul' && step.opType !== 'Add') || step.inputs.length !== 2 || count.get(x) !== 1 || step.outputs.length !== 1) break;
      const k = step.inputs.findIndex((i) => !constants.has(i));
      const c = k >= 0 && constants.has(step.inputs[1 - k] ?? '') ? perChannel(step.inputs[1 - k], channels, rank) : undefined;
      if (!c || (step.opType === 'Add' && padded)) break;
      for (let i = 0; i < channels; i++) {
        if (step.opType === 'Add') shift[i] = (shift[i] as number) + (scale[i] as number) * (c[i] as number);
        else scale[i] = (scale[i] as number) * (c[i] as number);
      }
      steps.push(step);
      x = step.inputs[k] ?? '';
    }
    // Only between two Convs: the tensor before the steps is then quantized anyway (the first
    // Conv's output), so one quantization goes instead of two. Folded after a float op (a
    // hard-swish), the Conv would quantize a different tensor; measured on the PP-OCRv4 detector
    // that cost mask IoU (0.9668 -> 0.9602, percentile) for 2.5% of its kernel time.
    const from = producer.get(x);
    if (steps.length === 0 || !from || from.opType !== 'Conv' || from.domain) continue;
    const out = w.dims[0] as number;
    const perGroup = out / group;
    const per = w.dims.slice(2).reduce((a, d) => a * d, 1);
    const inPer = w.dims[1] as number;
    const weights = Float32Array.from(w.floats());
    const bias = b ? Float32Array.from(b.floats()) : new Float32Array(out);
    for (let o = 0; o < out; o++) {
      let add = 0;
      for (let j = 0; j < inPer; j++) {
        const c = Math.floor(o / perGroup) * inPer + j;
        for (let i = 0; i < per; i++) {
          const at = (o * inPer + j) * per + i;
          add += (weights[at] as number) * (shift[c] as number);
          weights[at] = (weights[at] as number) * (scale[c] as number);
        }
      }
      bias[o] = (bias[o] as number) + add;
    }
    const base = conv.name || conv.outputs[0] || 'Conv';
    added.push(makeTensor(`${base}__in_w`, DATA_TYPE.FLOAT, w.dims, bytesOf(weights)), makeTensor(`${base}__in_b`, DATA_TYPE.FLOAT, [out], bytesOf(bias)));
    const node = makeNode('Conv', [x, `${base}__in_w`, `${base}__in_b`], conv.outputs, conv.name);
    for (const a of conv.proto.all(NODE.attribute)) node.fields.push(a);
    replaced.set(conv.proto, node);
    for (const s of steps) dropped.add(s.proto);
    folded += steps.length;
  }
  if (folded === 0) return 0;
  graph.setNodes(nodes.filter((n) => !dropped.has(n.proto)).map((n) => replaced.get(n.proto) ?? n.proto));
  const read = namesRead(graph);
  graph.setNodes(graph.nodes().filter((n) => !(n.opType === 'Constant' && !n.domain && n.outputs.every((o) => !read.has(o)))).map((n) => n.proto));
  graph.setInitializers([...graph.initializers().filter((t) => read.has(t.name)).map((t) => t.proto), ...added]);
  return folded;
}

/** What a static quantization of a graph writes, found before anything is rewritten. */
interface StaticPlan {
  plans: ConvPlan[];
  keptFloat: Record<string, string>;
  adds: NodeView[];
  concats: NodeView[];
  /** MaxPool/Resize output -> its input: the tensor whose scale and zero point it carries. */
  passThrough: Map<string, string>;
  /**
   * Float tensors quantized where they are produced because a quantized Concat reads them
   * (through pass-through ops or not), with the nodes that then read the DQ: the Concat, or the
   * first MaxPool/Resize on the way to it. Other readers keep the float tensor.
   */
  sources: Map<string, Set<ProtoMessage>>;
  /**
   * Tensor -> the quantized Concat output whose scale and zero point it takes: a Concat input
   * (or the tensor a MaxPool/Resize chain moves into it) that nothing else reads. onnxruntime's
   * QLinearConcat then copies its bytes instead of requantizing them through a lookup table.
   */
  shared: Map<string, string>;
}

/** Finds the Convs to quantize, with why each other Conv stays float, and the joins around them. */
function plan(model: OnnxModel, options: StaticInt8Options): StaticPlan {
  const graph = model.graph();
  const inputs = new Set(graph.inputNames());
  const constants = new Map<string, TensorView>();
  for (const t of graph.initializers()) if (!inputs.has(t.name)) constants.set(t.name, t);
  for (const [name, t] of constantNodes(graph)) constants.set(name, t.tensor);
  const count = uses(graph);
  const outputs = new Set(graph.outputNames());
  const consumers = new Map<string, NodeView[]>();
  const nodes = graph.nodes();
  for (const node of nodes) for (const i of node.inputs) consumers.set(i, [...(consumers.get(i) ?? []), node]);

  const plans: ConvPlan[] = [];
  const keptFloat: Record<string, string> = {};
  for (const node of nodes) {
    if (node.opType !== 'Conv' || node.domain) continue;
    const label = node.name || node.outputs[0] || 'Conv';
    const sensitive = options.sensitive?.[label];
    if (sensitive) {
      keptFloat[label] = sensitive;
      continue;
    }
    if (options.keepFloat.some((k) => k === node.name || node.outputs.includes(k))) {
      keptFloat[label] = 'keepFloat';
      continue;
    }
    const [input = '', weightName = '', biasName] = node.inputs;
    const weight = constants.get(weightName);
    const bias = biasName ? constants.get(biasName) : undefined;
    if (!weight || weight.dataType !== DATA_TYPE.FLOAT || weight.isExternal || weight.dims.length < 3) {
      keptFloat[label] = 'its weight is not a constant float tensor';
      continue;
    }
    if (biasName && (!bias || bias.dataType !== DATA_TYPE.FLOAT || bias.isExternal)) {
      keptFloat[label] = 'its bias is not a constant float tensor';
      continue;
    }
    const y = node.outputs[0] ?? '';
    const next = consumers.get(y) ?? [];
    const relu = next.length === 1 && count.get(y) === 1 && !outputs.has(y) && next[0]?.opType === 'Relu' && !next[0].domain ? next[0] : undefined;
    plans.push({ node, weight, ...(bias ? { bias } : {}), input, output: relu ? (relu.outputs[0] ?? '') : y, ...(relu ? { relu } : {}) });
  }
  const adds = quantizedAdds(nodes, plans, outputs);
  const quantized = new Set([...plans.map((p) => p.output), ...adds.map((a) => a.outputs[0] ?? '')]);
  const passThrough = new Map<string, string>();
  for (const node of nodes) {
    if (!isPassThrough(node)) continue;
    const x = node.inputs[0] ?? '';
    if (quantized.has(x) || passThrough.has(x)) passThrough.set(node.outputs[0] ?? '', x);
  }
  const { concats, sources, shared } = quantizedConcats(nodes, plans, quantized, passThrough, count, outputs);
  return { plans, keptFloat, adds, concats, passThrough, sources, shared };
}

/** MaxPool and Resize move 8-bit values without computing new ones: onnxruntime runs them on 8-bit data between a DQ and a Q of the same parameters. */
function isPassThrough(node: NodeView): boolean {
  return !node.domain && (node.opType === 'MaxPool' || node.opType === 'Resize') && node.outputs.length === 1;
}

/**
 * Concats onnxruntime can run as QLinearConcat: each input read through its own DequantizeLinear
 * (scales may differ; the kernel requantizes each to the output's), the output through one
 * QuantizeLinear. A Concat qualifies when its output is a quantized Conv's input (whose Q it
 * then takes over), or when all its inputs are already quantized. An input that is not yet
 * quantized is traced back through MaxPool/Resize that only it reads to the float tensor they
 * move, and that tensor is quantized where it is produced, so they run on 8-bit data too (in a
 * feature pyramid: the upsampling of each level before the Concat). A Concat read by a Conv
 * holds float data, so every tensor traced from it is float.
 */
function quantizedConcats(
  nodes: readonly NodeView[],
  plans: readonly ConvPlan[],
  quantized: ReadonlySet<string>,
  passThrough: Map<string, string>,
  count: ReadonlyMap<string, number>,
  outputs: ReadonlySet<string>,
): { concats: NodeView[]; sources: Map<string, Set<ProtoMessage>>; shared: Map<string, string> } {
  const producer = new Map<string, NodeView>();
  for (const n of nodes) for (const o of n.outputs) producer.set(o, n);
  const convInputs = new Set(plans.map((p) => p.input));
  const concats: NodeView[] = [];
  const sources = new Map<string, Set<ProtoMessage>>();
  const shared = new Map<string, string>();
  for (const node of nodes) {
    const y = node.outputs[0];
    if (node.opType !== 'Concat' || node.domain || node.outputs.length !== 1 || !y || outputs.has(y) || node.inputs.length === 0) continue;
    const traced: [string, ProtoMessage][] = [];
    const chains: [string, string][] = [];
    const ends: string[] = [];
    let ok = true;
    for (const x of node.inputs) {
      let t = x;
      let reader = node.proto;
      const chain: string[] = [];
      for (;;) {
        if (quantized.has(t) || passThrough.has(t)) break;
        const p = producer.get(t);
        if (p && isPassThrough(p) && count.get(t) === 1 && !outputs.has(t)) {
          chain.push(t);
          t = p.inputs[0] ?? '';
          reader = p.proto;
          continue;
        }
        break;
      }
      const known = quantized.has(t) || passThrough.has(t);
      // A float source must be some node's output: not a constant, not a graph input.
      if (!known && !producer.has(t)) ok = false;
      if (!known) traced.push([t, reader]);
      let root = t;
      while (passThrough.has(root) && count.get(root) === 1 && !outputs.has(root)) root = passThrough.get(root) ?? '';
      if (!passThrough.has(root) && count.get(root) === 1 && !outputs.has(root)) ends.push(root);
      for (const c of chain) chains.push([c, t]);
    }
    if (!ok || (traced.length > 0 && !convInputs.has(y))) continue;
    concats.push(node);
    for (const [t, reader] of traced) sources.set(t, (sources.get(t) ?? new Set()).add(reader));
    for (const [c, t] of chains) passThrough.set(c, t);
    for (const t of ends) shared.set(t, y);
  }
  return { concats, sources, shared };
}

/**
 * Adds both of whose inputs are quantized Conv outputs (a residual join): written DQ, DQ -> Add
 * -> Q -> DQ, the pattern onnxruntime fuses into QLinearAdd, so the join runs on 8-bit data.
 */
function quantizedAdds(nodes: readonly NodeView[], plans: readonly ConvPlan[], outputs: ReadonlySet<string>): NodeView[] {
  const convOutputs = new Set(plans.map((p) => p.output));
  return nodes.filter(
    (n) => n.opType === 'Add' && !n.domain && n.inputs.length === 2 && n.inputs.every((i) => convOutputs.has(i)) && !!n.outputs[0] && !outputs.has(n.outputs[0]),
  );
}

/**
 * The float tensors whose ranges a static quantization of `model` needs: each quantized Conv's
 * input, and its output (its Relu's output when the Relu is folded in).
 */
export function staticCalibrationTargets(model: OnnxModel, options: StaticInt8Options): string[] {
  // Ranges are those of the graph as it will be quantized: BatchNormalizations and affine steps folded.
  foldIntoConvs(model.graph());
  foldIntoNextConvs(model.graph());
  const names = new Set<string>();
  const planned = plan(model, options);
  for (const p of planned.plans) names.add(p.input).add(p.output);
  for (const a of planned.adds) names.add(a.outputs[0] ?? '');
  for (const c of planned.concats) names.add(c.outputs[0] ?? '');
  for (const t of planned.sources.keys()) names.add(t);
  return [...names];
}

/** The Convs a static quantization of `model` would quantize, in graph order: node name, or output name for an unnamed node. */
export function staticConvNames(model: OnnxModel, options: StaticInt8Options): string[] {
  foldIntoConvs(model.graph());
  foldIntoNextConvs(model.graph());
  return plan(model, options).plans.map((p) => p.node.name || p.node.outputs[0] || 'Conv');
}

/** Round half to even, as ONNX QuantizeLinear rounds (`Math.round` rounds half up). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** u8 scale and zero point for a range, widened to hold 0 so zero padding is exact. */
export function activationParams(range: TensorRange): { scale: number; zeroPoint: number } {
  const min = Math.min(range.min, 0);
  const max = Math.max(range.max, 0);
  const scale = max > min ? (max - min) / 255 : 1;
  return { scale, zeroPoint: Math.max(0, Math.min(255, roundHalfEven(-min / scale))) };
}

/**
 * Symmetric int8 weights, one scale per channel of `axis`: a Conv's output channels are axis 0
 * (depthwise included), a ConvTranspose's axis 1.
 */
function quantizeWeight(weight: TensorView, axis = 0): { q: Int8Array; scales: Float32Array } {
  const values = weight.floats();
  const channels = weight.dims[axis] as number;
  const inner = weight.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = values.length / (channels * inner);
  const at = (o: number, c: number, i: number) => (o * channels + c) * inner + i;
  const scales = new Float32Array(channels);
  const q = new Int8Array(values.length);
  for (let c = 0; c < channels; c++) {
    let max = 0;
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) max = Math.max(max, Math.abs(values[at(o, c, i)] as number));
    const s = max > 0 ? max / 127 : 1;
    scales[c] = s;
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) q[at(o, c, i)] = Math.max(-127, Math.min(127, roundHalfEven((values[at(o, c, i)] as number) / s)));
  }
  return { q, scales };
}

function bytesOf(a: Float32Array | Int8Array | Uint8Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Static int8 in QDQ form: each planned Conv reads DequantizeLinear(u8 activation) and
 * DequantizeLinear(int8 weight, per output channel), an int32 bias at `s_in x s_w`, and writes
 * QuantizeLinear -> DequantizeLinear with its calibrated output range; a Relu that alone reads
 * the Conv is removed and its range (which starts at 0) becomes the Conv's output range. A
 * tensor is quantized once however many Convs read it, and a Conv that reads another's output
 * reads that DQ directly, so no DQ -> float op -> Q round trip is left between two Convs.
 * Everything else stays float.
 */
export function quantizeStatic(model: OnnxModel, ranges: ReadonlyMap<string, TensorRange>, options: StaticInt8Options): StaticInt8Report {
  const main = model.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!main || main.version < STATIC_INT8_MIN_OPSET) {
    throw new Error(`int8-static needs opset ${STATIC_INT8_MIN_OPSET} or later (per-channel weights); the model uses opset ${main?.version ?? 'none'}`);
  }
  const graph = model.graph();
  const absorbed = foldIntoConvs(graph);
  const intoNext = foldIntoNextConvs(graph);
  const planned = plan(model, options);
  const { plans, keptFloat, adds } = planned;
  const report: StaticInt8Report = {
    convs: 0,
    reluFolded: 0,
    batchNormsFolded: absorbed.batchNorms,
    affineFolded: absorbed.affine,
    affineFoldedIntoNext: intoNext,
    addsQuantized: 0,
    concatsQuantized: 0,
    convTransposeWeightsQuantized: 0,
    keptFloat,
  };
  const joins = new Set(adds.map((a) => a.proto));
  const concats = new Set(planned.concats.map((c) => c.proto));
  // ConvTransposes with a constant float weight (and not kept float by name): int8 weight storage.
  const transposed = new Map<ProtoMessage, TensorView>();
  const floatInits = new Map(graph.initializers().map((t) => [t.name, t]));
  for (const name of graph.inputNames()) floatInits.delete(name);
  for (const node of graph.nodes()) {
    if (node.opType !== 'ConvTranspose' || node.domain || options.keepFloat.some((k) => k === node.name || node.outputs.includes(k))) continue;
    const w = floatInits.get(node.inputs[1] ?? '');
    if (w && w.dataType === DATA_TYPE.FLOAT && !w.isExternal && w.dims.length >= 3) transposed.set(node.proto, w);
  }
  if (plans.length === 0) return report;
  const byNode = new Map<ProtoMessage, ConvPlan>(plans.map((p) => [p.node.proto, p]));
  const folded = new Set<ProtoMessage>(plans.flatMap((p) => (p.relu ? [p.relu.proto] : [])));
  const count = uses(graph);
  const removed = new Set<string>();
  const initializers: ProtoMessage[] = [];
  // Float tensor -> the DQ output that stands for it (quantized once, shared by every reader).
  const dequantized = new Map<string, string>();
  const params = new Map<string, { scale: number; zeroPoint: number }>();
  let counter = 0;
  // Names of what the rewrite adds are short (they are written twice each, in the initializer
  // and in every node reading it) and must not meet the graph's own names.
  const taken = [...namesRead(graph), ...graph.initializers().map((t) => t.name), ...graph.nodes().flatMap((n) => n.outputs)];
  let prefix = 's8_';
  while (taken.some((n) => n.startsWith(prefix))) prefix = `${prefix}_`;

  // MaxPool and Resize on a quantized tensor pass its 8-bit values through: a Conv reading their
  // output quantizes it with their input's scale and zero point, so onnxruntime drops the
  // DQ -> MaxPool/Resize -> Q round trip and runs them on the 8-bit data.
  const passThrough = planned.passThrough;
  const paramsOf = (name: string): { scale: number; zeroPoint: number } => {
    const source = passThrough.get(name) ?? planned.shared.get(name);
    if (source !== undefined) return paramsOf(source);
    let p = params.get(name);
    if (!p) {
      const range = ranges.get(name);
      if (!range) throw new Error(`int8-static: no calibrated range for tensor "${name}"`);
      p = activationParams(range);
      params.set(name, p);
    }
    return p;
  };
  // Scales and zero points are written once per value: a Q and its DQ, the pass-through pairs,
  // and the all-zero weight zero points of Convs with as many channels share one initializer.
  const small = new Map<string, string>();
  const constant = (name: string, dataType: number, dims: readonly number[], raw: Uint8Array): string => {
    const key = `${dataType}|${dims.join('x')}|${Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64')}`;
    const known = small.get(key);
    if (known !== undefined) return known;
    small.set(key, name);
    initializers.push(makeTensor(name, dataType, dims, raw));
    return name;
  };
  const scalarParams = (base: string, name: string): [string, string] => {
    const { scale, zeroPoint } = paramsOf(name);
    return [
      constant(`${base}_s`, DATA_TYPE.FLOAT, [], bytesOf(Float32Array.of(scale))),
      options.activations === 'int8'
        ? constant(`${base}_z`, DATA_TYPE.INT8, [], bytesOf(Int8Array.of(zeroPoint - 128)))
        : constant(`${base}_z`, DATA_TYPE.UINT8, [], Uint8Array.of(zeroPoint)),
    ];
  };

  const out: ProtoMessage[] = [];
  /** Q -> DQ of `tensor` with its own (or its pass-through source's) parameters; returns the DQ's output. */
  const quantizeHere = (tensor: string, dqName: string): string => {
    const k = counter++;
    const [base, t] = [`${tensor}__s8_${k}`, `${prefix}${k}`];
    const [s, z] = scalarParams(t, tensor);
    out.push(makeNode('QuantizeLinear', [tensor, s, z], [`${t}_q`], `${base}_q`), makeNode('DequantizeLinear', [`${t}_q`, s, z], [dqName], `${base}_dq`));
    return dqName;
  };
  // The readers of a float source quantized where it is produced (the Concat, or the first
  // MaxPool/Resize on the way to it) read its DQ instead.
  const renamed = new Map<ProtoMessage, Map<string, string>>();
  const readInputs = (node: NodeView): ProtoMessage => {
    const names = renamed.get(node.proto);
    if (!names) return node.proto;
    const copy = makeNode(node.opType, node.inputs.map((i) => names.get(i) ?? i), node.outputs, node.name, {}, node.domain);
    for (const a of node.proto.all(NODE.attribute)) copy.fields.push(a);
    return copy;
  };

  for (const node of graph.nodes()) {
    if (folded.has(node.proto)) continue;
    if (concats.has(node.proto)) {
      // DQ per input (each with its own parameters) -> Concat -> Q -> DQ: onnxruntime's QLinearConcat.
      const own = renamed.get(node.proto);
      const inputs = node.inputs.map((x) => own?.get(x) ?? (dequantized.get(x) === x ? x : quantizeHere(x, `${prefix}${counter++}_dq`)));
      const y = node.outputs[0] ?? '';
      const k = counter++;
      const [base, t] = [`${node.name || y}__s8_${k}`, `${prefix}${k}`];
      const concat = makeNode('Concat', inputs, [`${t}_cat`], node.name || `${base}_concat`);
      for (const a of node.proto.all(NODE.attribute)) concat.fields.push(a);
      const [s, z] = scalarParams(`${t}_y`, y);
      out.push(concat, makeNode('QuantizeLinear', [`${t}_cat`, s, z], [`${t}_q`], `${base}_q`), makeNode('DequantizeLinear', [`${t}_q`, s, z], [y], `${base}_dq`));
      dequantized.set(y, y);
      report.concatsQuantized++;
      continue;
    }
    if (joins.has(node.proto)) {
      const y = node.outputs[0] ?? '';
      const k = counter++;
      const [base, t] = [`${node.name || y}__s8_${k}`, `${prefix}${k}`];
      const add = makeNode('Add', node.inputs, [`${t}_sum`], node.name || `${base}_add`);
      const [s, z] = scalarParams(`${t}_y`, y);
      out.push(add, makeNode('QuantizeLinear', [`${t}_sum`, s, z], [`${t}_q`], `${base}_q`), makeNode('DequantizeLinear', [`${t}_q`, s, z], [y], `${base}_dq`));
      dequantized.set(y, y);
      report.addsQuantized++;
      continue;
    }
    const up = transposed.get(node.proto);
    if (up) {
      const k = counter++;
      const [base, t] = [`${node.name || node.outputs[0] || 'ConvTranspose'}__s8_${k}`, `${prefix}${k}`];
      const { q, scales } = quantizeWeight(up, 1);
      initializers.push(makeTensor(`${t}_w`, DATA_TYPE.INT8, up.dims, bytesOf(q)));
      initializers.push(makeTensor(`${t}_ws`, DATA_TYPE.FLOAT, [scales.length], bytesOf(scales)));
      const wzero = constant(`${t}_wz`, DATA_TYPE.INT8, [scales.length], new Uint8Array(scales.length));
      out.push(makeNode('DequantizeLinear', [`${t}_w`, `${t}_ws`, wzero], [`${t}_wdq`], `${base}_wdq`, { axis: { i: 1 } }));
      const inputs = node.inputs.map((i, n) => (n === 1 ? `${t}_wdq` : (renamed.get(node.proto)?.get(i) ?? i)));
      const copy = makeNode(node.opType, inputs, node.outputs, node.name, {}, node.domain);
      for (const a of node.proto.all(NODE.attribute)) copy.fields.push(a);
      out.push(copy);
      if ((count.set(up.name, (count.get(up.name) ?? 1) - 1).get(up.name) ?? 0) <= 0) removed.add(up.name);
      report.convTransposeWeightsQuantized++;
      continue;
    }
    const p = byNode.get(node.proto);
    if (!p) {
      out.push(readInputs(node));
      for (const y of node.outputs) {
        const readers = planned.sources.get(y);
        if (!readers) continue;
        const dq = quantizeHere(y, `${prefix}${counter++}_dq`);
        for (const r of readers) renamed.set(r, (renamed.get(r) ?? new Map<string, string>()).set(y, dq));
        dequantized.set(y, dq);
      }
      continue;
    }
    const k = counter++;
    const [base, t] = [`${p.node.name || p.output}__s8_${k}`, `${prefix}${k}`];
    let input = dequantized.get(p.input);
    if (!input) {
      const [s, z] = scalarParams(`${t}_x`, p.input);
      out.push(makeNode('QuantizeLinear', [p.input, s, z], [`${t}_xq`], `${base}_xq`));
      out.push(makeNode('DequantizeLinear', [`${t}_xq`, s, z], [`${t}_xdq`], `${base}_xdq`));
      input = `${t}_xdq`;
      dequantized.set(p.input, input);
    }
    const inScale = paramsOf(p.input).scale;

    const { q, scales } = quantizeWeight(p.weight);
    const channels = scales.length;
    initializers.push(makeTensor(`${t}_w`, DATA_TYPE.INT8, p.weight.dims, bytesOf(q)));
    initializers.push(makeTensor(`${t}_ws`, DATA_TYPE.FLOAT, [channels], bytesOf(scales)));
    const wzero = constant(`${t}_wz`, DATA_TYPE.INT8, [channels], new Uint8Array(channels));
    out.push(makeNode('DequantizeLinear', [`${t}_w`, `${t}_ws`, wzero], [`${t}_wdq`], `${base}_wdq`, { axis: { i: 0 } }));
    const convInputs = [input, `${t}_wdq`];
    for (const name of [p.weight.name, p.bias?.name]) {
      if (name && (count.set(name, (count.get(name) ?? 1) - 1).get(name) ?? 0) <= 0) removed.add(name);
    }
    if (p.bias) {
      const b = p.bias.floats();
      const bq = new Int32Array(b.length);
      const bscale = new Float32Array(b.length);
      for (let c = 0; c < b.length; c++) {
        bscale[c] = inScale * (scales[c] ?? 1);
        bq[c] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundHalfEven((b[c] as number) / (bscale[c] as number))));
      }
      initializers.push(makeTensor(`${t}_b`, DATA_TYPE.INT32, [b.length], bytesOf(bq)));
      initializers.push(makeTensor(`${t}_bs`, DATA_TYPE.FLOAT, [b.length], bytesOf(bscale)));
      const bzero = constant(`${t}_bz`, DATA_TYPE.INT32, [b.length], new Uint8Array(4 * b.length));
      out.push(makeNode('DequantizeLinear', [`${t}_b`, `${t}_bs`, bzero], [`${t}_bdq`], `${base}_bdq`, { axis: { i: 0 } }));
      convInputs.push(`${t}_bdq`);
    }
    const conv = makeNode('Conv', convInputs, [`${t}_y`], p.node.name || `${base}_conv`, {}, '');
    for (const a of p.node.proto.all(NODE.attribute)) conv.fields.push(a);
    out.push(conv);
    const [s, z] = scalarParams(`${t}_y`, p.output);
    out.push(makeNode('QuantizeLinear', [`${t}_y`, s, z], [`${t}_yq`], `${base}_yq`));
    out.push(makeNode('DequantizeLinear', [`${t}_yq`, s, z], [p.output], `${base}_ydq`));
    // The DQ writes the float tensor's own name, so every later reader (float or Conv) finds it.
    dequantized.set(p.output, p.output);
    report.convs++;
    if (p.relu) report.reluFolded++;
  }
  graph.setNodes(out);
  graph.setInitializers([...graph.initializers().filter((t) => !removed.has(t.name)).map((t) => t.proto), ...initializers]);
  return report;
}
