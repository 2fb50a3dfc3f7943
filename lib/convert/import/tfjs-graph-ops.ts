// TF ops of a TF.js graph model, one converter each, on tensors that carry their layout.
import type { AttributeDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { transposeData, type GraphBuilder, type Shape, type Sym } from './graph-builder';
import { activation, windowPads } from './keras-layers';


/** A TF `AttrValue` in proto3 JSON: ints are decimal strings, `s` is base64. */
interface AttrValue {
  s?: string | number[];
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  shape?: TensorShape;
  list?: { s?: (string | number[])[]; i?: (string | number)[]; f?: number[] };
  tensor?: { dtype?: string; tensorShape?: TensorShape };
}

interface TensorShape {
  dim?: { size?: string | number }[];
  unknownRank?: boolean;
}

/** A GraphDef node as TF.js stores it in model.json. */
export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, AttrValue>;
}

export interface SignatureEntry {
  name?: string;
  dtype?: string;
  tensorShape?: TensorShape;
}

/** `signature` of a graph model.json: its inputs and outputs, keyed by the names callers use. */
export interface GraphSignature {
  inputs?: Record<string, SignatureEntry>;
  outputs?: Record<string, SignatureEntry>;
}

/** A value known while converting: its data, with the TF shape. Integer values keep integral floats. */
export interface ConstValue {
  kind: 'const';
  shape: number[];
  data: Float32Array;
  dtype: 'float32' | 'int32';
}

/**
 * A shape computed at run time (Shape, then StridedSlice and Pack, as Keras's Flatten writes it):
 * each entry a known size, or the unknown size of `axis` of the tensor named `source`.
 */
export interface ShapeValue {
  kind: 'shape';
  dims: (number | { source: string; axis: number })[];
  /** One entry taken out by a shrinking StridedSlice. */
  scalar: boolean;
}

export type Value = ConstValue | { kind: 'sym'; sym: Sym } | ShapeValue;

interface OpContext {
  g: GraphBuilder;
  node: GraphNode;
  /** The node's data inputs (control inputs dropped), in order. */
  inputs: Value[];
}

type OpConverter = (ctx: OpContext) => Value[];

export const DTYPES: Record<string, 'float32' | 'int32'> = { DT_FLOAT: 'float32', DT_INT32: 'int32', DT_INT64: 'int32', DT_BOOL: 'int32' };

export function where(node: GraphNode): string {
  return `node "${node.name}" (${node.op})`;
}

export function fail(node: GraphNode, why: string): never {
  throw new ConversionError(`${where(node)}: ${why}`);
}

function decodeString(v: string | number[]): string {
  return Array.isArray(v) ? Buffer.from(v).toString('utf8') : Buffer.from(v, 'base64').toString('utf8');
}

function attrString(node: GraphNode, key: string, fallback: string): string {
  const v = node.attr?.[key]?.s;
  return v === undefined ? fallback : decodeString(v);
}

function attrInt(node: GraphNode, key: string, fallback: number): number {
  const v = node.attr?.[key]?.i;
  return v === undefined ? fallback : Number(v);
}

function attrFloat(node: GraphNode, key: string, fallback: number): number {
  const v = node.attr?.[key]?.f;
  return typeof v === 'number' ? v : fallback;
}

function attrBool(node: GraphNode, key: string, fallback: boolean): boolean {
  const v = node.attr?.[key]?.b;
  return typeof v === 'boolean' ? v : fallback;
}

function attrInts(node: GraphNode, key: string): number[] | undefined {
  const list = node.attr?.[key]?.list;
  if (!list) return undefined;
  return (list.i ?? []).map(Number);
}

function attrStrings(node: GraphNode, key: string): string[] {
  return (node.attr?.[key]?.list?.s ?? []).map(decodeString);
}

export function dimsOf(shape: TensorShape | undefined): Shape | undefined {
  if (!shape || shape.unknownRank) return undefined;
  return (shape.dim ?? []).map((d) => {
    const n = Number(d.size ?? -1);
    return n < 0 ? null : n;
  });
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const RUNTIME_SHAPE = 'a shape computed at run time is used as data; it may only reach a Reshape through StridedSlice and Pack';

function sym(ctx: OpContext, i: number): Sym {
  const v = ctx.inputs[i];
  if (!v) fail(ctx.node, `has ${ctx.inputs.length} inputs, expected at least ${i + 1}`);
  if (v.kind === 'shape') fail(ctx.node, RUNTIME_SHAPE);
  return v.kind === 'sym' ? v.sym : materialize(ctx.g, v, `${ctx.node.name}/const`, where(ctx.node));
}

function constant(ctx: OpContext, i: number, what: string): ConstValue {
  const v = ctx.inputs[i];
  if (!v) fail(ctx.node, `has ${ctx.inputs.length} inputs, expected at least ${i + 1}`);
  if (v.kind !== 'const') fail(ctx.node, `its ${what} must be a constant`);
  return v;
}

function constInts(ctx: OpContext, i: number, what: string): number[] {
  return Array.from(constant(ctx, i, what).data, Math.round);
}

/** A constant as an initializer (float32 data only; integer constants are read at conversion). */
export function materialize(g: GraphBuilder, c: ConstValue, base: string, where: string): Sym {
  if (c.dtype !== 'float32') throw new ConversionError(`${where}: an integer constant used as data is not supported (only float32 data)`);
  return { name: g.floats(base, c.shape, c.data), shape: c.shape, channelsFirst: false, dtype: 'float32' };
}

export function symValue(s: Sym): Value {
  return { kind: 'sym', sym: s };
}

/** The ONNX axis of TF axis `axis` in `x` (channels-first tensors have TF's last axis at 1). */
function onnxAxis(node: GraphNode, x: Sym, axis: number): number {
  const r = x.shape.length;
  const a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) fail(node, `axis ${axis} is out of range for shape ${JSON.stringify(x.shape)}`);
  if (!x.channelsFirst || a === 0) return a;
  return a === r - 1 ? 1 : a + 1;
}

/** TF's order of axes in a channels-first tensor of rank r: ONNX axis i holds TF axis perm[i]. */
function cfPerm(r: number): number[] {
  return [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
}

/**
 * A constant that broadcasts against `x` in TF's order, as a tensor that broadcasts the same way
 * against x's ONNX layout: right-aligned to x's rank and permuted when x is channels-first.
 */
function alignedConstant(g: GraphBuilder, c: ConstValue, x: Sym, base: string): string {
  const r = x.shape.length;
  if (!x.channelsFirst || c.shape.length === 0 || elementCount(c.shape) === 1) return g.floats(base, c.shape, c.data);
  const full = [...new Array<number>(r - c.shape.length).fill(1), ...c.shape];
  const perm = cfPerm(r);
  return g.floats(base, perm.map((p) => full[p]!), transposeData(c.data, full, perm));
}

function broadcastShape(a: Shape, b: Shape): Shape {
  const r = Math.max(a.length, b.length);
  const out: Shape = [];
  for (let i = 0; i < r; i++) {
    // A missing leading axis is 1; an unknown size (null) stays unknown.
    const ia = a.length - r + i;
    const ib = b.length - r + i;
    const x = ia < 0 ? 1 : a[ia]!;
    const y = ib < 0 ? 1 : b[ib]!;
    out.push(x === 1 ? y : y === 1 ? x : (x ?? y));
  }
  return out;
}

/** A binary elementwise op; a constant operand is laid out to match the other's layout. */
function binary(ctx: OpContext, op: string): Sym {
  const [a, b] = ctx.inputs;
  if (!a || !b) fail(ctx.node, `expects two inputs, got ${ctx.inputs.length}`);
  if (a.kind === 'shape' || b.kind === 'shape') fail(ctx.node, RUNTIME_SHAPE);
  const g = ctx.g;
  const base = ctx.node.name;
  let x: Sym;
  let y: Sym;
  if (a.kind === 'const' && b.kind === 'const') {
    x = materialize(g, a, `${base}/a`, where(ctx.node));
    y = materialize(g, b, `${base}/b`, where(ctx.node));
  } else if (a.kind === 'const' || b.kind === 'const') {
    const c = a.kind === 'const' ? a : (b as ConstValue);
    if (c.dtype !== 'float32') fail(ctx.node, 'an integer constant used as data is not supported (only float32 data)');
    let v = a.kind === 'sym' ? a.sym : (b as { kind: 'sym'; sym: Sym }).sym;
    // A constant of higher rank than the tensor broadcasts it to a new rank: do it in TF's order.
    if (c.shape.length > v.shape.length) v = g.channelsLast(v);
    const cs: Sym = { name: alignedConstant(g, c, v, `${base}/const`), shape: c.shape, channelsFirst: v.channelsFirst, dtype: 'float32' };
    [x, y] = a.kind === 'const' ? [cs, v] : [v, cs];
  } else {
    const r = a.sym.shape.length;
    const cf = (a.sym.channelsFirst || b.sym.channelsFirst) && b.sym.shape.length === r;
    x = cf ? g.channelsFirst(a.sym) : g.channelsLast(a.sym);
    y = cf ? g.channelsFirst(b.sym) : g.channelsLast(b.sym);
  }
  const layout = x.shape.length >= y.shape.length ? x : y;
  const shape = broadcastShape(x.shape, y.shape);
  let name: string;
  if (op === 'SquaredDifference') {
    const d = g.node('Sub', [x.name, y.name], `${base}/diff`);
    name = g.node('Mul', [d, d], base);
  } else {
    name = g.node(op, [x.name, y.name], base);
  }
  return { name, shape, channelsFirst: layout.channelsFirst && shape.length >= 3, dtype: 'float32' };
}

function unary(ctx: OpContext, build: (g: GraphBuilder, x: string, base: string) => string): Value[] {
  const x = sym(ctx, 0);
  return [symValue({ ...x, name: build(ctx.g, x.name, ctx.node.name) })];
}

/** An activation op on its own: the same converter as the fused one. */
function activationOp(op: string): OpConverter {
  return (ctx) => {
    const x = sym(ctx, 0);
    const alpha = op === 'Prelu' ? constant(ctx, 1, 'alpha') : undefined;
    return [symValue({ ...x, name: applyActivation(ctx.g, ctx.node, op, x.name, x, ctx.node.name, alpha) })];
  };
}

/** An activation by TF op name, on ONNX tensor `x` laid out like `like`. */
function applyActivation(g: GraphBuilder, node: GraphNode, op: string, x: string, like: Sym, base: string, alpha?: ConstValue): string {
  const at = where(node);
  switch (op) {
    case 'Relu':
    case 'Relu6':
    case 'Elu':
    case 'Selu':
    case 'Sigmoid':
    case 'Tanh':
    case 'Softplus':
      // The Keras activation of the same name, lower-cased.
      return activation(g, base, op.toLowerCase(), x, 2, at);
    case 'LeakyRelu':
      // TF's default alpha is 0.2 (ONNX's is 0.01): always set it.
      return g.node('LeakyRelu', [x], `${base}/leaky`, [{ name: 'alpha', f: attrFloat(node, node.op === 'LeakyRelu' ? 'alpha' : 'leakyrelu_alpha', 0.2) }]);
    case 'Prelu': {
      if (!alpha) fail(node, 'Prelu has no alpha argument');
      return g.node('PRelu', [x, alignedConstant(g, alpha, like, `${base}/alpha`)], `${base}/prelu`);
    }
    default:
      return fail(node, `fused op "${op}" is not supported (supported: ${FUSED_OPS.join(', ')})`);
  }
}

const FUSED_OPS = ['BiasAdd', 'FusedBatchNorm', 'FusedBatchNormV3', 'NoOp', 'Relu', 'Relu6', 'Elu', 'Selu', 'Sigmoid', 'Tanh', 'Softplus', 'LeakyRelu', 'Prelu'];

/**
 * The fused ops of a `_FusedConv2D`, `FusedDepthwiseConv2dNative` or `_FusedMatMul` in order,
 * each with the extra arguments it takes (bias: 1; batch norm: scale, offset, mean, variance; Prelu: alpha).
 */
function fusedOps(ctx: OpContext, firstArg: number): { op: string; args: ConstValue[] }[] {
  const ops = attrStrings(ctx.node, 'fused_ops');
  let at = firstArg;
  return ops.map((op) => {
    const take = op === 'BiasAdd' || op === 'Prelu' ? 1 : op.startsWith('FusedBatchNorm') ? 4 : 0;
    if (!FUSED_OPS.includes(op)) fail(ctx.node, `fused op "${op}" is not supported (supported: ${FUSED_OPS.join(', ')})`);
    const args = Array.from({ length: take }, (_, k) => constant(ctx, at + k, `${op} argument ${k + 1}`));
    at += take;
    return { op, args };
  });
}

/** Batch norm folded to y = x * scale + shift per channel. */
function foldBatchNorm(node: GraphNode, args: ConstValue[]): { scale: Float32Array; shift: Float32Array } {
  const [gamma, beta, mean, variance] = args.map((a) => a.data) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const eps = attrFloat(node, 'epsilon', 1e-3);
  const c = mean.length;
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    scale[i] = gamma[i]! / Math.sqrt(variance[i]! + eps);
    shift[i] = beta[i]! - mean[i]! * scale[i]!;
  }
  return { scale, shift };
}

function nhwcOnly(node: GraphNode): void {
  const fmt = attrString(node, 'data_format', 'NHWC');
  if (fmt !== 'NHWC') fail(node, `data_format ${fmt} is not supported (NHWC only)`);
}

/** An NHWC 4-int attribute (strides, dilations, ksize) as its two spatial values. */
function spatialPair(node: GraphNode, key: string): [number, number] {
  const v = attrInts(node, key);
  if (!v || v.length === 0) return [1, 1];
  if (v.length !== 4 || v[0] !== 1 || v[3] !== 1) fail(node, `${key} ${JSON.stringify(v)} is not [1, h, w, 1]`);
  return [v[1]!, v[2]!];
}

/** ONNX pad attributes and output sizes for TF padding SAME, VALID or EXPLICIT. */
function tfPads(node: GraphNode, x: Sym, kernel: number[], strides: number[], dilations: number[]) {
  const padding = attrString(node, 'padding', 'VALID');
  const spatial = x.shape.slice(1, 3);
  if (padding === 'SAME' || padding === 'VALID') return windowPads(padding.toLowerCase(), spatial, kernel, strides, dilations);
  if (padding !== 'EXPLICIT') fail(node, `padding "${padding}" is not supported (SAME, VALID, EXPLICIT)`);
  const ex = attrInts(node, 'explicit_paddings') ?? [];
  if (ex.length !== 8 || ex[0] || ex[1] || ex[6] || ex[7]) fail(node, `explicit_paddings ${JSON.stringify(ex)} must pad only the spatial axes`);
  const [t, b, l, r] = [ex[2]!, ex[3]!, ex[4]!, ex[5]!];
  const sizes = spatial.map((size, i) => {
    const k = (kernel[i]! - 1) * dilations[i]! + 1;
    const pads = i === 0 ? t + b : l + r;
    return size === null ? null : Math.floor((size + pads - k) / strides[i]!) + 1;
  });
  const attrs: AttributeDef[] = [{ name: 'pads', ints: [t, l, b, r] }];
  return { attrs, sizes };
}

/** Conv2D, DepthwiseConv2dNative and their fused forms: one ONNX Conv on channels-first data. */
function convolution(ctx: OpContext, depthwise: boolean, fused: boolean): Value[] {
  const node = ctx.node;
  nhwcOnly(node);
  const g = ctx.g;
  const x = g.channelsFirst(sym(ctx, 0));
  if (x.shape.length !== 4) fail(node, `expects a rank-4 NHWC input, got shape ${JSON.stringify(x.shape)}`);
  const filter = constant(ctx, 1, 'filter');
  if (filter.shape.length !== 4) fail(node, `its filter has shape ${JSON.stringify(filter.shape)}, not [h, w, in, out]`);
  const [kh, kw, cin, m] = filter.shape as [number, number, number, number];
  const outChannels = depthwise ? cin * m : m;
  // HWIO -> OIHW; depthwise (kh, kw, C, dm) -> (C*dm, 1, kh, kw): output channel c*dm+k reads channel c.
  const weights = depthwise ? transposeData(filter.data, [kh, kw, cin * m], [2, 0, 1]) : transposeData(filter.data, filter.shape, [3, 2, 0, 1]);
  const wDims = depthwise ? [cin * m, 1, kh, kw] : [m, cin, kh, kw];
  const group = depthwise ? cin : x.shape[3] !== null && x.shape[3] !== cin ? x.shape[3]! / cin : 1;
  if (!Number.isInteger(group) || group < 1) fail(node, `its filter reads ${cin} channels, the input has ${String(x.shape[3])}`);
  const strides = spatialPair(node, 'strides');
  const dilations = spatialPair(node, 'dilations');
  const { attrs, sizes } = tfPads(node, x, [kh, kw], strides, dilations);
  let bias: Float32Array | undefined;
  const activations: { op: string; args: ConstValue[] }[] = [];
  for (const f of fused ? fusedOps(ctx, 2) : []) {
    if (f.op === 'BiasAdd') {
      if (activations.length) fail(node, 'a BiasAdd after an activation is not supported');
      bias = Float32Array.from(f.args[0]!.data, (v, i) => v + (bias?.[i] ?? 0));
    } else if (f.op.startsWith('FusedBatchNorm')) {
      if (activations.length) fail(node, 'a FusedBatchNorm after an activation is not supported');
      // Folded into the convolution: each output channel's weights and bias scaled, then shifted.
      const { scale, shift } = foldBatchNorm(node, f.args);
      const per = weights.length / outChannels;
      for (let o = 0; o < outChannels; o++) for (let k = 0; k < per; k++) weights[o * per + k]! *= scale[o]!;
      bias = Float32Array.from(shift, (s, o) => s + (bias?.[o] ?? 0) * scale[o]!);
    } else if (f.op !== 'NoOp') {
      activations.push(f);
    }
  }
  const inputs = [x.name, g.floats(`${node.name}/filter`, wDims, weights)];
  if (bias) {
    if (bias.length !== outChannels) fail(node, `its bias has ${bias.length} values for ${outChannels} output channels`);
    inputs.push(g.floats(`${node.name}/bias`, [outChannels], bias));
  }
  let y = g.node('Conv', inputs, activations.length ? `${node.name}/conv` : node.name, [
    { name: 'kernel_shape', ints: [kh, kw] },
    { name: 'strides', ints: strides },
    { name: 'dilations', ints: dilations },
    { name: 'group', i: group },
    ...attrs,
  ]);
  const out: Sym = { name: y, shape: [x.shape[0]!, ...sizes, outChannels], channelsFirst: true, dtype: 'float32' };
  for (const a of activations) y = applyActivation(g, node, a.op, y, out, node.name, a.args[0]);
  return [symValue({ ...out, name: y })];
}

/** MatMul, BatchMatMul(V2) and _FusedMatMul, in TF's (channels-last) order. */
function matmul(ctx: OpContext, fused: boolean): Value[] {
  const node = ctx.node;
  const g = ctx.g;
  const batch = node.op.startsWith('BatchMatMul');
  const ta = batch ? attrBool(node, 'adj_x', false) : attrBool(node, 'transpose_a', false);
  const tb = batch ? attrBool(node, 'adj_y', false) : attrBool(node, 'transpose_b', false);
  const swapLast = (s: Sym, base: string): Sym => {
    const r = s.shape.length;
    const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
    return { ...s, name: g.node('Transpose', [s.name], base, [{ name: 'perm', ints: perm }]), shape: perm.map((p) => s.shape[p]!) };
  };
  let a = g.channelsLast(sym(ctx, 0));
  if (ta) a = swapLast(a, `${node.name}/a_t`);
  let b: Sym;
  const bv = ctx.inputs[1];
  if (bv?.kind === 'const' && bv.shape.length === 2) {
    const [r0, c0] = bv.shape as [number, number];
    const data = tb ? transposeData(bv.data, [r0, c0], [1, 0]) : bv.data;
    const shape = tb ? [c0, r0] : [r0, c0];
    b = { name: g.floats(`${node.name}/b`, shape, data), shape, channelsFirst: false, dtype: 'float32' };
  } else {
    b = g.channelsLast(sym(ctx, 1));
    if (tb) b = swapLast(b, `${node.name}/b_t`);
  }
  const ops = fused ? fusedOps(ctx, 2) : [];
  const acts = ops.filter((f) => f.op !== 'BiasAdd' && f.op !== 'NoOp');
  if (ops.some((f) => f.op.startsWith('FusedBatchNorm'))) fail(node, 'FusedBatchNorm is not supported in a fused MatMul');
  const biasOp = ops.find((f) => f.op === 'BiasAdd');
  const last = acts.length || biasOp ? `${node.name}/matmul` : node.name;
  let y = g.node('MatMul', [a.name, b.name], last);
  const shape: Shape = [...broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), a.shape[a.shape.length - 2]!, b.shape[b.shape.length - 1]!];
  const out: Sym = { name: y, shape, channelsFirst: false, dtype: 'float32' };
  if (biasOp) y = g.node('Add', [y, g.floats(`${node.name}/bias`, biasOp.args[0]!.shape, biasOp.args[0]!.data)], acts.length ? `${node.name}/biased` : node.name);
  for (const f of acts) y = applyActivation(g, node, f.op, y, out, node.name, f.args[0]);
  return [symValue({ ...out, name: y })];
}

function biasAdd(ctx: OpContext): Value[] {
  nhwcOnly(ctx.node);
  const x = sym(ctx, 0);
  const bias = constant(ctx, 1, 'bias');
  const name = ctx.g.node('Add', [x.name, alignedConstant(ctx.g, bias, x, `${ctx.node.name}/bias`)], ctx.node.name);
  return [symValue({ ...x, name })];
}

/** FusedBatchNorm(V2/V3) at inference: y = x * scale + shift on the channel axis. Only output 0 is computed. */
function batchNorm(ctx: OpContext): Value[] {
  nhwcOnly(ctx.node);
  if (attrBool(ctx.node, 'is_training', false)) fail(ctx.node, 'is_training is true; only inference batch norm is supported');
  const x = sym(ctx, 0);
  const args = [1, 2, 3, 4].map((i) => constant(ctx, i, ['scale', 'offset', 'mean', 'variance'][i - 1]!));
  const { scale, shift } = foldBatchNorm(ctx.node, args);
  const c = scale.length;
  const g = ctx.g;
  const mul = g.node('Mul', [x.name, alignedConstant(g, { kind: 'const', shape: [c], data: scale, dtype: 'float32' }, x, `${ctx.node.name}/scale`)], `${ctx.node.name}/scaled`);
  const y = g.node('Add', [mul, alignedConstant(g, { kind: 'const', shape: [c], data: shift, dtype: 'float32' }, x, `${ctx.node.name}/shift`)], ctx.node.name);
  return [symValue({ ...x, name: y })];
}

function pool(ctx: OpContext, op: 'MaxPool' | 'AveragePool'): Value[] {
  const node = ctx.node;
  nhwcOnly(node);
  const x = ctx.g.channelsFirst(sym(ctx, 0));
  if (x.shape.length !== 4) fail(node, `expects a rank-4 NHWC input, got shape ${JSON.stringify(x.shape)}`);
  const ksize = spatialPair(node, 'ksize');
  const strides = spatialPair(node, 'strides');
  const { attrs, sizes } = tfPads(node, x, ksize, strides, [1, 1]);
  // TF's SAME average pooling divides by the window's count of real values, not the padded size.
  const extra: AttributeDef[] = op === 'AveragePool' ? [{ name: 'count_include_pad', i: 0 }] : [];
  const y = ctx.g.node(op, [x.name], node.name, [{ name: 'kernel_shape', ints: ksize }, { name: 'strides', ints: strides }, ...attrs, ...extra]);
  return [symValue({ name: y, shape: [x.shape[0]!, ...sizes, x.shape[3]!], channelsFirst: true, dtype: 'float32' })];
}

/** TF axes (any sign) as sorted non-negative ones. */
function normalizeAxes(node: GraphNode, axes: number[], rank: number): number[] {
  return [...new Set(axes.map((a) => (a < 0 ? a + rank : a)))].sort((p, q) => p - q).map((a) => {
    if (a < 0 || a >= rank) fail(node, `axis ${a} is out of range for rank ${rank}`);
    return a;
  });
}

/**
 * Where the axes left after dropping `dropped` from `x` sit in ONNX: on a channels-first tensor,
 * the ONNX axes to drop and whether the result is in TF's order; undefined when it would not be.
 */
function dropLayout(node: GraphNode, x: Sym, dropped: number[]): { axes: number[] } | undefined {
  if (!x.channelsFirst) return { axes: dropped };
  const perm = cfPerm(x.shape.length);
  const kept = perm.filter((p) => !dropped.includes(p));
  if (kept.some((p, i) => i > 0 && p < kept[i - 1]!)) return undefined;
  return { axes: dropped.map((a) => onnxAxis(node, x, a)).sort((p, q) => p - q) };
}

function reduce(ctx: OpContext, op: string): Value[] {
  const node = ctx.node;
  const g = ctx.g;
  let x = sym(ctx, 0);
  const r = x.shape.length;
  const axes = normalizeAxes(node, constInts(ctx, 1, 'reduction axes'), r);
  // No axes reduce nothing in TF (ONNX would reduce every axis).
  if (axes.length === 0) return [ctx.inputs[0]!];
  const keep = attrBool(node, 'keep_dims', false);
  let onnxAxes: number[];
  if (keep) {
    onnxAxes = axes.map((a) => onnxAxis(node, x, a));
  } else {
    const layout = dropLayout(node, x, axes);
    if (!layout) x = g.channelsLast(x);
    onnxAxes = layout ? layout.axes : axes;
  }
  const keepAttr = { name: 'keepdims', i: keep ? 1 : 0 };
  // Opset 17: ReduceSum takes its axes as an input, the others as an attribute.
  const y =
    op === 'ReduceSum'
      ? g.node(op, [x.name, g.ints(`${node.name}/axes`, onnxAxes)], node.name, [keepAttr])
      : g.node(op, [x.name], node.name, [{ name: 'axes', ints: onnxAxes }, keepAttr]);
  const shape = keep ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
  return [symValue({ name: y, shape, channelsFirst: x.channelsFirst && shape.length === r, dtype: 'float32' })];
}

function squeeze(ctx: OpContext): Value[] {
  const node = ctx.node;
  const g = ctx.g;
  let x = sym(ctx, 0);
  const r = x.shape.length;
  const given = attrInts(node, 'squeeze_dims') ?? attrInts(node, 'axis') ?? [];
  const axes = given.length ? normalizeAxes(node, given, r) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  if (!given.length && x.shape.includes(null)) fail(node, 'squeezing every size-1 axis needs a known shape; name the axes (squeeze_dims)');
  const layout = dropLayout(node, x, axes);
  if (!layout) x = g.channelsLast(x);
  const y = g.node('Squeeze', [x.name, g.ints(`${node.name}/axes`, layout ? layout.axes : axes)], node.name);
  return [symValue({ name: y, shape: x.shape.filter((_, i) => !axes.includes(i)), channelsFirst: false, dtype: x.dtype })];
}

function expandDims(ctx: OpContext): Value[] {
  const x = ctx.g.channelsLast(sym(ctx, 0));
  const [dim] = constInts(ctx, 1, 'dim');
  const r = x.shape.length + 1;
  const axis = dim! < 0 ? dim! + r : dim!;
  if (axis < 0 || axis >= r) fail(ctx.node, `dim ${dim} is out of range for rank ${r}`);
  const y = ctx.g.node('Unsqueeze', [x.name, ctx.g.ints(`${ctx.node.name}/axes`, [axis])], ctx.node.name);
  const shape = [...x.shape];
  shape.splice(axis, 0, 1);
  return [symValue({ ...x, name: y, shape })];
}

function reshape(ctx: OpContext): Value[] {
  const source = sym(ctx, 0);
  const x = ctx.g.channelsLast(source);
  const t = ctx.inputs[1];
  const target = t?.kind === 'shape' ? shapeTarget(ctx.node, t, source) : constInts(ctx, 1, 'shape');
  // A 0 only comes from a run-time shape: the input's own size there (ONNX copies it).
  const sizes: Shape = target.map((d, i) => (d === 0 && t?.kind === 'shape' ? (x.shape[i] ?? null) : d));
  const known = x.shape.every((d) => d !== null) ? elementCount(x.shape) : undefined;
  const fixed = sizes.every((d) => d !== null) ? sizes.filter((d) => d >= 0).reduce((a, b) => a * b, 1) : undefined;
  const shape: Shape = sizes.map((d) => (d === null || d >= 0 ? d : known !== undefined && fixed !== undefined ? known / fixed : null));
  const y = ctx.g.node('Reshape', [x.name, ctx.g.ints(`${ctx.node.name}/shape`, target)], ctx.node.name);
  return [symValue({ ...x, name: y, shape })];
}

function transpose(ctx: OpContext): Value[] {
  const x = ctx.g.channelsLast(sym(ctx, 0));
  const perm = constInts(ctx, 1, 'perm');
  if (perm.length !== x.shape.length) fail(ctx.node, `perm ${JSON.stringify(perm)} does not match rank ${x.shape.length}`);
  const y = ctx.g.node('Transpose', [x.name], ctx.node.name, [{ name: 'perm', ints: perm }]);
  return [symValue({ ...x, name: y, shape: perm.map((p) => x.shape[p]!) })];
}

function concat(ctx: OpContext): Value[] {
  const node = ctx.node;
  const g = ctx.g;
  const parts = ctx.inputs.slice(0, -1);
  if (parts.length === 0) fail(node, 'has nothing to concatenate');
  const [axis0] = constInts(ctx, ctx.inputs.length - 1, 'axis');
  const syms = parts.filter((p): p is { kind: 'sym'; sym: Sym } => p.kind === 'sym').map((p) => p.sym);
  const firstConst = parts.find((p): p is ConstValue => p.kind === 'const');
  const r = (syms[0] ?? firstConst ?? fail(node, RUNTIME_SHAPE)).shape.length;
  const cf = syms.some((s) => s.channelsFirst) && syms.every((s) => s.shape.length === r) && r >= 3;
  const like: Sym = { name: '', shape: new Array<number>(r).fill(1), channelsFirst: cf, dtype: 'float32' };
  const aligned = parts.map((p, i): Sym => {
    if (p.kind === 'sym') return cf ? g.channelsFirst(p.sym) : g.channelsLast(p.sym);
    if (p.kind === 'shape') fail(node, RUNTIME_SHAPE);
    if (p.dtype !== 'float32') fail(node, 'an integer constant used as data is not supported (only float32 data)');
    return { name: alignedConstant(g, p, like, `${node.name}/part${i}`), shape: p.shape, channelsFirst: cf, dtype: 'float32' };
  });
  const axis = axis0! < 0 ? axis0! + r : axis0!;
  const y = g.node('Concat', aligned.map((s) => s.name), node.name, [{ name: 'axis', i: onnxAxis(node, like, axis) }]);
  const shape = aligned[0]!.shape.slice();
  shape[axis] = aligned.reduce<number | null>((sum, s) => (sum === null || s.shape[axis] == null ? null : sum + s.shape[axis]), 0);
  return [symValue({ name: y, shape, channelsFirst: cf, dtype: 'float32' })];
}

function pad(ctx: OpContext): Value[] {
  const node = ctx.node;
  const g = ctx.g;
  const x = sym(ctx, 0);
  const r = x.shape.length;
  const pads = constInts(ctx, 1, 'paddings');
  if (pads.length !== 2 * r) fail(node, `paddings has ${pads.length} values for rank ${r}`);
  const order = x.channelsFirst ? cfPerm(r) : Array.from({ length: r }, (_, i) => i);
  const onnxPads = [...order.map((a) => pads[2 * a]!), ...order.map((a) => pads[2 * a + 1]!)];
  const inputs = [x.name, g.ints(`${node.name}/pads`, onnxPads)];
  let mode = 'constant';
  if (node.op === 'MirrorPad') {
    const m = attrString(node, 'mode', 'REFLECT');
    if (m !== 'REFLECT') fail(node, `mode ${m} is not supported (REFLECT only)`);
    mode = 'reflect';
  } else if (node.op === 'PadV2') {
    inputs.push(g.scalar(`${node.name}/value`, constant(ctx, 2, 'constant_values').data[0] ?? 0));
  }
  const y = g.node('Pad', inputs, node.name, [{ name: 'mode', s: mode }]);
  const shape = x.shape.map((d, i) => (d === null ? null : d + pads[2 * i]! + pads[2 * i + 1]!));
  return [symValue({ ...x, name: y, shape })];
}

function pack(ctx: OpContext): Value[] {
  const node = ctx.node;
  const first = ctx.inputs[0];
  if (!first) fail(node, 'has nothing to stack');
  if (ctx.inputs.some((v) => v.kind === 'shape')) return [packShape(ctx)];
  const r = (first.kind === 'const' ? first.shape : sym(ctx, 0).shape).length + 1;
  const a0 = attrInt(node, 'axis', 0);
  const axis = a0 < 0 ? a0 + r : a0;
  if (ctx.inputs.every((v): v is ConstValue => v.kind === 'const')) {
    // Constant stacking (a shape built from constants) is done here.
    const cs = ctx.inputs;
    const inner = cs[0]!.shape.slice(axis);
    const outer = elementCount(cs[0]!.shape.slice(0, axis));
    const block = elementCount(inner);
    const data = new Float32Array(block * outer * cs.length);
    for (let o = 0; o < outer; o++) cs.forEach((c, k) => data.set(c.data.subarray(o * block, (o + 1) * block), (o * cs.length + k) * block));
    const shape = [...cs[0]!.shape];
    shape.splice(axis, 0, cs.length);
    return [{ kind: 'const', shape, data, dtype: cs[0]!.dtype }];
  }
  const parts = ctx.inputs.map((_, i) => ctx.g.channelsLast(sym(ctx, i)));
  const unsq = parts.map((p, i) => ctx.g.node('Unsqueeze', [p.name, ctx.g.ints(`${node.name}/axes`, [axis])], `${node.name}/part${i}`));
  const y = ctx.g.node('Concat', unsq, node.name, [{ name: 'axis', i: axis }]);
  const shape = [...parts[0]!.shape];
  shape.splice(axis, 0, parts.length);
  return [symValue({ ...parts[0]!, name: y, shape })];
}

/** Shape: a constant when every size is known, else a run-time shape whose unknown sizes name their tensor. */
function shapeOp(ctx: OpContext): Value[] {
  const v = ctx.inputs[0];
  if (!v) fail(ctx.node, 'has no input');
  if (v.kind === 'shape') return [{ kind: 'const', shape: [1], data: Float32Array.of(v.scalar ? 0 : v.dims.length), dtype: 'int32' }];
  const shape = v.kind === 'const' ? v.shape : v.sym.shape;
  if (shape.every((d): d is number => d !== null)) return [{ kind: 'const', shape: [shape.length], data: Float32Array.from(shape), dtype: 'int32' }];
  const name = (v as { sym: Sym }).sym.name;
  return [{ kind: 'shape', dims: shape.map((d, axis) => d ?? { source: name, axis }), scalar: false }];
}

/** The entries of a 1-D StridedSlice (TF's begin/end masks, negative indices, strides); `shrink` takes one. */
function slice1d<T>(node: GraphNode, items: T[], begin: number, end: number, stride: number, masks: { begin: boolean; end: boolean; shrink: boolean }): T[] {
  const n = items.length;
  if (stride === 0) fail(node, 'stride 0');
  const clamp = (i: number, lo: number, hi: number) => Math.min(Math.max(i, lo), hi);
  if (masks.shrink) {
    const i = begin < 0 ? begin + n : begin;
    if (i < 0 || i >= n) fail(node, `index ${begin} is out of range for ${n} entries`);
    return [items[i]!];
  }
  let b = masks.begin ? (stride > 0 ? 0 : n - 1) : begin < 0 ? begin + n : begin;
  let e = masks.end ? (stride > 0 ? n : -1) : end < 0 ? end + n : end;
  b = stride > 0 ? clamp(b, 0, n) : clamp(b, -1, n - 1);
  e = stride > 0 ? clamp(e, 0, n) : clamp(e, -1, n - 1);
  const out: T[] = [];
  for (let i = b; stride > 0 ? i < e : i > e; i += stride) out.push(items[i]!);
  return out;
}

/**
 * StridedSlice: of a run-time shape or a 1-D constant, computed here; of a tensor, an ONNX Slice
 * in TF's order (then a Squeeze for shrunk axes). Ellipsis and new-axis masks are refused.
 */
function stridedSlice(ctx: OpContext): Value[] {
  const node = ctx.node;
  const g = ctx.g;
  const begin = constInts(ctx, 1, 'begin');
  const end = constInts(ctx, 2, 'end');
  const strides = ctx.inputs[3] ? constInts(ctx, 3, 'strides') : begin.map(() => 1);
  const mask = (key: string) => attrInt(node, key, 0);
  if (mask('ellipsis_mask') || mask('new_axis_mask')) fail(node, 'ellipsis_mask and new_axis_mask are not supported');
  const bit = (key: string, i: number) => ((mask(key) >> i) & 1) === 1;
  const v = ctx.inputs[0];
  if (v?.kind === 'shape' || (v?.kind === 'const' && v.shape.length === 1)) {
    if (begin.length !== 1) fail(node, `slices a 1-D value with ${begin.length} indices`);
    const masks = { begin: bit('begin_mask', 0), end: bit('end_mask', 0), shrink: bit('shrink_axis_mask', 0) };
    if (v.kind === 'const') {
      const data = slice1d(node, Array.from(v.data), begin[0]!, end[0]!, strides[0]!, masks);
      return [{ kind: 'const', shape: masks.shrink ? [] : [data.length], data: Float32Array.from(data), dtype: v.dtype }];
    }
    return [{ kind: 'shape', dims: slice1d(node, v.dims, begin[0]!, end[0]!, strides[0]!, masks), scalar: masks.shrink }];
  }
  const x = g.channelsLast(sym(ctx, 0));
  const r = x.shape.length;
  if (begin.length > r) fail(node, `slices ${begin.length} axes of a rank-${r} tensor`);
  const starts: number[] = [];
  const ends: number[] = [];
  const shrink: number[] = [];
  const shape: Shape = [...x.shape];
  const BIG = 2 ** 31 - 1;
  begin.forEach((b, i) => {
    const s = strides[i]!;
    if (s === 0) fail(node, 'stride 0');
    if (bit('shrink_axis_mask', i)) {
      starts.push(b);
      ends.push(b === -1 ? BIG : b + 1);
      shrink.push(i);
      shape[i] = 1;
      return;
    }
    starts.push(bit('begin_mask', i) ? (s > 0 ? 0 : BIG) : b);
    ends.push(bit('end_mask', i) ? (s > 0 ? BIG : -BIG) : end[i]!);
    const n = x.shape[i];
    shape[i] = n === null || n === undefined ? null : slice1d(node, Array.from({ length: n }, (_, k) => k), b, end[i]!, s, { begin: bit('begin_mask', i), end: bit('end_mask', i), shrink: false }).length;
  });
  const axes = begin.map((_, i) => i);
  let y = g.node('Slice', [x.name, g.ints(`${node.name}/starts`, starts), g.ints(`${node.name}/ends`, ends), g.ints(`${node.name}/axes`, axes), g.ints(`${node.name}/steps`, strides)], shrink.length ? `${node.name}/slice` : node.name);
  if (shrink.length) y = g.node('Squeeze', [y, g.ints(`${node.name}/shrink`, shrink)], node.name);
  return [symValue({ ...x, name: y, shape: shape.filter((_, i) => !shrink.includes(i)) })];
}

/** Pack of run-time shape entries and integer scalars: a run-time shape. */
function packShape(ctx: OpContext): ShapeValue {
  if (attrInt(ctx.node, 'axis', 0) !== 0) fail(ctx.node, 'stacks a run-time shape on an axis other than 0');
  const dims = ctx.inputs.map((v) => {
    if (v.kind === 'shape' && v.scalar) return v.dims[0]!;
    if (v.kind === 'const' && elementCount(v.shape) === 1 && v.shape.length <= 1) return Math.round(v.data[0]!);
    return fail(ctx.node, 'stacks a run-time shape with something other than scalars');
  });
  return { kind: 'shape', dims, scalar: false };
}

/**
 * A run-time shape as Reshape's constant target: an unknown size of the reshaped tensor's own axis
 * at the same position is ONNX's 0 (copy the input's size), a single other unknown becomes -1.
 */
function shapeTarget(node: GraphNode, t: ShapeValue, x: Sym): number[] {
  if (t.scalar) fail(node, 'its shape is a scalar');
  const unknown = t.dims.filter((d) => typeof d !== 'number').length;
  const hasMinusOne = t.dims.includes(-1);
  return t.dims.map((d, i) => {
    if (typeof d === 'number') return d;
    if (d.source === x.name && d.axis === i) return 0;
    if (unknown === 1 && !hasMinusOne) return -1;
    return fail(node, `its shape takes the run-time size of axis ${d.axis} of another tensor, which is not supported`);
  });
}

function softmax(ctx: OpContext): Value[] {
  const x = sym(ctx, 0);
  // TF's softmax runs over the last axis, which a channels-first tensor holds at 1.
  const y = ctx.g.node('Softmax', [x.name], ctx.node.name, [{ name: 'axis', i: x.channelsFirst ? 1 : -1 }]);
  return [symValue({ ...x, name: y })];
}

function passThrough(ctx: OpContext): Value[] {
  return ctx.inputs;
}

/** Converters by TF op name. */
export const OP_CONVERTERS: Record<string, OpConverter> = {
  Identity: passThrough,
  IdentityN: passThrough,
  StopGradient: passThrough,
  Snapshot: passThrough,
  NoOp: () => [],
  Conv2D: (ctx) => convolution(ctx, false, false),
  _FusedConv2D: (ctx) => convolution(ctx, false, true),
  DepthwiseConv2dNative: (ctx) => convolution(ctx, true, false),
  FusedDepthwiseConv2dNative: (ctx) => convolution(ctx, true, true),
  MatMul: (ctx) => matmul(ctx, false),
  BatchMatMul: (ctx) => matmul(ctx, false),
  BatchMatMulV2: (ctx) => matmul(ctx, false),
  _FusedMatMul: (ctx) => matmul(ctx, true),
  BiasAdd: biasAdd,
  Add: (ctx) => [symValue(binary(ctx, 'Add'))],
  AddV2: (ctx) => [symValue(binary(ctx, 'Add'))],
  Sub: (ctx) => [symValue(binary(ctx, 'Sub'))],
  Mul: (ctx) => [symValue(binary(ctx, 'Mul'))],
  RealDiv: (ctx) => [symValue(binary(ctx, 'Div'))],
  Maximum: (ctx) => [symValue(binary(ctx, 'Max'))],
  Minimum: (ctx) => [symValue(binary(ctx, 'Min'))],
  SquaredDifference: (ctx) => [symValue(binary(ctx, 'SquaredDifference'))],
  Relu: activationOp('Relu'),
  Relu6: activationOp('Relu6'),
  Elu: activationOp('Elu'),
  Selu: activationOp('Selu'),
  Sigmoid: activationOp('Sigmoid'),
  Tanh: activationOp('Tanh'),
  Softplus: activationOp('Softplus'),
  LeakyRelu: activationOp('LeakyRelu'),
  Prelu: activationOp('Prelu'),
  Rsqrt: (ctx) => unary(ctx, (g, x, b) => g.node('Reciprocal', [g.node('Sqrt', [x], `${b}/sqrt`)], b)),
  Sqrt: (ctx) => unary(ctx, (g, x, b) => g.node('Sqrt', [x], b)),
  Square: (ctx) => unary(ctx, (g, x, b) => g.node('Mul', [x, x], b)),
  Exp: (ctx) => unary(ctx, (g, x, b) => g.node('Exp', [x], b)),
  Neg: (ctx) => unary(ctx, (g, x, b) => g.node('Neg', [x], b)),
  Softmax: softmax,
  MaxPool: (ctx) => pool(ctx, 'MaxPool'),
  AvgPool: (ctx) => pool(ctx, 'AveragePool'),
  Mean: (ctx) => reduce(ctx, 'ReduceMean'),
  Max: (ctx) => reduce(ctx, 'ReduceMax'),
  Sum: (ctx) => reduce(ctx, 'ReduceSum'),
  Squeeze: squeeze,
  ExpandDims: expandDims,
  Reshape: reshape,
  Transpose: transpose,
  ConcatV2: concat,
  Pad: pad,
  PadV2: pad,
  MirrorPad: pad,
  FusedBatchNorm: batchNorm,
  FusedBatchNormV2: batchNorm,
  FusedBatchNormV3: batchNorm,
  Pack: pack,
  Shape: shapeOp,
  StridedSlice: stridedSlice,
};

/** Every TF op the graph-model importer converts. */
export const SUPPORTED_GRAPH_OPS = ['Placeholder', 'Const', ...Object.keys(OP_CONVERTERS)].sort();
