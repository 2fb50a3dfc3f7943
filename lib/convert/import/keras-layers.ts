import type { AttributeDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { transposeData, type GraphBuilder, type Shape, type Sym } from './graph-builder';
import type { Weight } from './tfjs-weights';

/** What a layer converter is handed. */
export interface LayerContext {
  g: GraphBuilder;
  /** The layer's name, used for its nodes and to find its weights. */
  name: string;
  className: string;
  config: Record<string, unknown>;
  /** The layer's weight `key` (kernel, bias, gamma...), or undefined when the layer has none of that name. */
  weight(key: string): Weight | undefined;
  /** A weight `key` under `scope` inside the layer (a Bidirectional's `forward_lstm`), any cell scope between. */
  weightIn(scope: string, key: string): Weight | undefined;
  /** Keras major version the file was written by (2 for tfjs-layers, whose semantics follow Keras 2). */
  kerasMajor: number;
  /** The file came from tfjs-layers (its UpSampling2D bilinear uses corner-aligned-free asymmetric sampling). */
  fromTfjs: boolean;
}

type LayerConverter = (ctx: LayerContext, inputs: Sym[]) => Sym;

function fail(ctx: LayerContext, why: string): never {
  throw new ConversionError(`layer "${ctx.name}" (${ctx.className}): ${why}`);
}

function need(ctx: LayerContext, key: string): Weight {
  const w = ctx.weight(key);
  if (!w) fail(ctx, `its weight "${key}" is missing from the weights`);
  return w;
}

function num(ctx: LayerContext, key: string, fallback: number): number {
  const v = ctx.config[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number') fail(ctx, `config "${key}" is ${JSON.stringify(v)}, not a number`);
  return v;
}

function bool(ctx: LayerContext, key: string, fallback: boolean): boolean {
  const v = ctx.config[key];
  return typeof v === 'boolean' ? v : fallback;
}

function str(ctx: LayerContext, key: string, fallback: string): string {
  const v = ctx.config[key];
  return typeof v === 'string' ? v : fallback;
}

/** An int or a list of ints in the config, as a list of `n`. */
function ints(ctx: LayerContext, key: string, n: number, fallback: number): number[] {
  const v = ctx.config[key];
  if (v === undefined || v === null) return new Array<number>(n).fill(fallback);
  if (typeof v === 'number') return new Array<number>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number')) return v;
  return fail(ctx, `config "${key}" is ${JSON.stringify(v)}, expected ${n} integers`);
}

function one(ctx: LayerContext, inputs: Sym[]): Sym {
  if (inputs.length !== 1) fail(ctx, `expects one input, got ${inputs.length}`);
  return inputs[0]!;
}

function channelsLastOnly(ctx: LayerContext): void {
  const fmt = ctx.config.data_format;
  if (fmt !== undefined && fmt !== null && fmt !== 'channels_last') fail(ctx, `data_format ${JSON.stringify(fmt)} is not supported (only channels_last)`);
}

function out(name: string, shape: Shape, like: Sym, channelsFirst = like.channelsFirst): Sym {
  return { name, shape, channelsFirst, dtype: 'float32' };
}

/** Explicit pads `[begins..., ends...]` and output sizes of a window op over `spatial` sizes. */
export function windowPads(padding: string, spatial: (number | null)[], kernel: number[], strides: number[], dilations: number[]) {
  const begins: number[] = [];
  const ends: number[] = [];
  const sizes: (number | null)[] = [];
  let dynamic = false;
  spatial.forEach((size, i) => {
    const k = (kernel[i]! - 1) * dilations[i]! + 1;
    const s = strides[i]!;
    if (padding === 'valid') {
      begins.push(0);
      ends.push(0);
      sizes.push(size === null ? null : Math.floor((size - k) / s) + 1);
    } else if (padding === 'same') {
      if (size === null) {
        dynamic = true;
        sizes.push(null);
        return;
      }
      const total = Math.max((Math.ceil(size / s) - 1) * s + k - size, 0);
      begins.push(Math.floor(total / 2));
      ends.push(total - Math.floor(total / 2));
      sizes.push(Math.ceil(size / s));
    } else if (padding === 'causal') {
      begins.push(k - 1);
      ends.push(0);
      sizes.push(size === null ? null : Math.floor((size - 1) / s) + 1);
    }
  });
  // TF puts the odd pad at the end, which is ONNX's SAME_UPPER when the sizes are not known.
  const attrs: AttributeDef[] = dynamic ? [{ name: 'auto_pad', s: 'SAME_UPPER' }] : [{ name: 'pads', ints: [...begins, ...ends] }];
  return { attrs, sizes };
}

function paddingOf(ctx: LayerContext, allowCausal: boolean): string {
  const p = str(ctx, 'padding', 'valid');
  if (p === 'valid' || p === 'same' || (allowCausal && p === 'causal')) return p;
  return fail(ctx, `padding "${p}" is not supported`);
}

/** Conv1D/Conv2D: Keras kernel (k..., in/groups, out) to ONNX (out, in/groups, k...). */
function convolution(ctx: LayerContext, inputs: Sym[], spatialRank: number): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  if (x.shape.length !== spatialRank + 2) fail(ctx, `expects a rank-${spatialRank + 2} input, got shape ${JSON.stringify(x.shape)}`);
  const kernel = need(ctx, 'kernel');
  const kdims = kernel.shape;
  const perm = [spatialRank + 1, spatialRank, ...Array.from({ length: spatialRank }, (_, i) => i)];
  const w = ctx.g.floats(`${ctx.name}/kernel`, perm.map((p) => kdims[p]!), transposeData(kernel.data, kdims, perm));
  const k = kdims.slice(0, spatialRank);
  const strides = ints(ctx, 'strides', spatialRank, 1);
  const dil = ints(ctx, 'dilation_rate', spatialRank, 1);
  const groups = num(ctx, 'groups', 1);
  const { attrs, sizes } = windowPads(paddingOf(ctx, spatialRank === 1), x.shape.slice(1, -1), k, strides, dil);
  const useBias = bool(ctx, 'use_bias', true);
  const bias = useBias ? need(ctx, 'bias') : undefined;
  const inputs2 = [x.name, w];
  if (bias) inputs2.push(ctx.g.floats(`${ctx.name}/bias`, [bias.data.length], bias.data));
  const y = ctx.g.node('Conv', inputs2, `${ctx.name}/conv`, [
    { name: 'kernel_shape', ints: k },
    { name: 'strides', ints: strides },
    { name: 'dilations', ints: dil },
    { name: 'group', i: groups },
    ...attrs,
  ]);
  const filters = kdims[spatialRank + 1]!;
  return activate(ctx, out(y, [x.shape[0]!, ...sizes, filters], x, true));
}

function depthwise(ctx: LayerContext, x: Sym, kernelKey: string, bias: Weight | undefined): Sym {
  const kernel = need(ctx, kernelKey);
  const [kh, kw, c, dm] = kernel.shape as [number, number, number, number];
  // (kh, kw, C, dm) -> (C*dm, 1, kh, kw): output channel c*dm+m reads input channel c.
  const w = ctx.g.floats(`${ctx.name}/${kernelKey}`, [c * dm, 1, kh, kw], transposeData(kernel.data, [kh, kw, c * dm], [2, 0, 1]));
  const strides = ints(ctx, 'strides', 2, 1);
  const dil = ints(ctx, 'dilation_rate', 2, 1);
  const { attrs, sizes } = windowPads(paddingOf(ctx, false), x.shape.slice(1, -1), [kh, kw], strides, dil);
  const ins = [x.name, w];
  if (bias) ins.push(ctx.g.floats(`${ctx.name}/bias`, [bias.data.length], bias.data));
  const y = ctx.g.node('Conv', ins, `${ctx.name}/depthwise`, [
    { name: 'kernel_shape', ints: [kh, kw] },
    { name: 'strides', ints: strides },
    { name: 'dilations', ints: dil },
    { name: 'group', i: c },
    ...attrs,
  ]);
  return out(y, [x.shape[0]!, ...sizes, c * dm], x, true);
}

function convTranspose2d(ctx: LayerContext, inputs: Sym[]): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  const kernel = need(ctx, 'kernel');
  const [kh, kw, o, i] = kernel.shape as [number, number, number, number];
  const w = ctx.g.floats(`${ctx.name}/kernel`, [i, o, kh, kw], transposeData(kernel.data, kernel.shape, [3, 2, 0, 1]));
  const strides = ints(ctx, 'strides', 2, 1);
  const dil = ints(ctx, 'dilation_rate', 2, 1);
  const padding = paddingOf(ctx, false);
  if (ctx.config.output_padding !== undefined && ctx.config.output_padding !== null) fail(ctx, 'output_padding is not supported');
  const begins: number[] = [];
  const ends: number[] = [];
  const outPad: number[] = [];
  const sizes: (number | null)[] = [];
  [kh, kw].forEach((k0, d) => {
    const k = (k0 - 1) * dil[d]! + 1;
    const s = strides[d]!;
    const size = x.shape[1 + d] ?? null;
    if (padding === 'valid') {
      begins.push(0);
      ends.push(0);
      outPad.push(0);
      sizes.push(size === null ? null : (size - 1) * s + k);
    } else {
      // The forward convolution that this one inverts pads max(k - s, 0), the odd one at the end.
      const total = Math.max(k - s, 0);
      begins.push(Math.floor(total / 2));
      ends.push(total - Math.floor(total / 2));
      outPad.push(s - k + total);
      sizes.push(size === null ? null : size * s);
    }
  });
  const bias = bool(ctx, 'use_bias', true) ? need(ctx, 'bias') : undefined;
  const ins = [x.name, w];
  if (bias) ins.push(ctx.g.floats(`${ctx.name}/bias`, [o], bias.data));
  const y = ctx.g.node('ConvTranspose', ins, `${ctx.name}/deconv`, [
    { name: 'kernel_shape', ints: [kh, kw] },
    { name: 'strides', ints: strides },
    { name: 'dilations', ints: dil },
    { name: 'pads', ints: [...begins, ...ends] },
    { name: 'output_padding', ints: outPad },
  ]);
  return activate(ctx, out(y, [x.shape[0]!, ...sizes, o], x, true));
}

/** Applies a Keras activation by name to `x`. */
export function activation(g: GraphBuilder, base: string, name: string, x: string, kerasMajor: number, where: string): string {
  const k = (v: number) => g.scalar(`${base}/const`, v);
  switch (name) {
    case 'linear':
    case undefined:
      return x;
    case 'relu':
      return g.node('Relu', [x], `${base}/relu`);
    case 'relu6':
      return g.node('Clip', [x, k(0), k(6)], `${base}/relu6`);
    case 'sigmoid':
      return g.node('Sigmoid', [x], `${base}/sigmoid`);
    case 'tanh':
      return g.node('Tanh', [x], `${base}/tanh`);
    case 'softmax':
      return g.node('Softmax', [x], `${base}/softmax`, [{ name: 'axis', i: -1 }]);
    case 'swish':
    case 'silu':
      return g.node('Mul', [x, g.node('Sigmoid', [x], `${base}/sigmoid`)], `${base}/swish`);
    case 'elu':
      return g.node('Elu', [x], `${base}/elu`, [{ name: 'alpha', f: 1 }]);
    case 'selu':
      return g.node('Selu', [x], `${base}/selu`, [
        { name: 'alpha', f: 1.6732632423543772 },
        { name: 'gamma', f: 1.0507009873554805 },
      ]);
    case 'softplus':
      return g.node('Softplus', [x], `${base}/softplus`);
    case 'softsign':
      return g.node('Softsign', [x], `${base}/softsign`);
    case 'mish':
      return g.node('Mul', [x, g.node('Tanh', [g.node('Softplus', [x], `${base}/softplus`)], `${base}/tanh`)], `${base}/mish`);
    case 'hard_sigmoid':
    case 'hardSigmoid':
      // Keras 2 and tfjs: clip(0.2x + 0.5); Keras 3: clip(x/6 + 0.5).
      return g.node('HardSigmoid', [x], `${base}/hard_sigmoid`, [
        { name: 'alpha', f: kerasMajor >= 3 ? 1 / 6 : 0.2 },
        { name: 'beta', f: 0.5 },
      ]);
    case 'gelu': {
      // Exact GELU in the form onnxruntime fuses: 0.5 * x * (1 + erf(x / sqrt2)).
      const erf = g.node('Erf', [g.node('Div', [x, k(Math.SQRT2)], `${base}/scaled`)], `${base}/erf`);
      return g.node('Mul', [g.node('Mul', [x, g.node('Add', [erf, k(1)], `${base}/one_plus`)], `${base}/prod`), k(0.5)], `${base}/gelu`);
    }
    case 'gelu_new': {
      // Tanh approximation: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
      const cube = g.node('Mul', [g.node('Mul', [x, x], `${base}/sq`), x], `${base}/cube`);
      const inner = g.node('Mul', [g.node('Add', [x, g.node('Mul', [cube, k(0.044715)], `${base}/c3`)], `${base}/poly`), k(Math.sqrt(2 / Math.PI))], `${base}/inner`);
      const t = g.node('Tanh', [inner], `${base}/tanh`);
      return g.node('Mul', [g.node('Mul', [x, g.node('Add', [t, k(1)], `${base}/one_plus`)], `${base}/prod`), k(0.5)], `${base}/gelu`);
    }
    default:
      throw new ConversionError(`${where}: activation "${name}" is not supported (supported: ${SUPPORTED_ACTIVATIONS.join(', ')})`);
  }
}

export const SUPPORTED_ACTIVATIONS = [
  'linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'swish', 'silu', 'elu', 'selu',
  'softplus', 'softsign', 'mish', 'hard_sigmoid', 'gelu', 'gelu_new',
];

function activationName(v: unknown): string {
  if (v === undefined || v === null) return 'linear';
  if (typeof v === 'string') return v;
  // Keras 3 may serialize a function as {class_name: 'function', config: 'relu'}.
  if (typeof v === 'object' && 'config' in v && typeof v.config === 'string') return v.config;
  return JSON.stringify(v);
}

/** The layer's own `activation` option, applied to its output. Softmax runs on Keras's last axis. */
function activate(ctx: LayerContext, y: Sym): Sym {
  const name = activationName(ctx.config.activation);
  if (name === 'linear') return y;
  if (name === 'softmax' && y.channelsFirst) {
    return { ...y, name: ctx.g.node('Softmax', [y.name], `${ctx.name}/softmax`, [{ name: 'axis', i: 1 }]) };
  }
  return { ...y, name: activation(ctx.g, ctx.name, name, y.name, ctx.kerasMajor, `layer "${ctx.name}" (${ctx.className})`) };
}

/** A Keras axis (negative counts from the end) as the ONNX axis of `x`. */
function onnxAxis(ctx: LayerContext, x: Sym, axis: number): number {
  const r = x.shape.length;
  const a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) fail(ctx, `axis ${axis} is out of range for shape ${JSON.stringify(x.shape)}`);
  if (!x.channelsFirst || a === 0) return a;
  return a === r - 1 ? 1 : a + 1;
}

/** A per-axis constant shaped to broadcast against `x` at Keras axis `axis`. */
function axisConstant(ctx: LayerContext, x: Sym, axis: number, values: Float32Array, label: string): string {
  const r = x.shape.length;
  const a = onnxAxis(ctx, x, axis);
  const dims = new Array<number>(r).fill(1);
  dims[a] = values.length;
  return ctx.g.floats(`${ctx.name}/${label}`, dims, values);
}

function pool(ctx: LayerContext, inputs: Sym[], spatialRank: number, op: 'MaxPool' | 'AveragePool'): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  const size = ints(ctx, 'pool_size', spatialRank, 2);
  const strides = ctx.config.strides === null || ctx.config.strides === undefined ? size : ints(ctx, 'strides', spatialRank, 1);
  const { attrs, sizes } = windowPads(paddingOf(ctx, false), x.shape.slice(1, -1), size, strides, new Array<number>(spatialRank).fill(1));
  const extra: AttributeDef[] = op === 'AveragePool' ? [{ name: 'count_include_pad', i: 0 }] : [];
  const y = ctx.g.node(op, [x.name], `${ctx.name}/pool`, [{ name: 'kernel_shape', ints: size }, { name: 'strides', ints: strides }, ...attrs, ...extra]);
  return out(y, [x.shape[0]!, ...sizes, x.shape[x.shape.length - 1]!], x, true);
}

function globalPool(ctx: LayerContext, inputs: Sym[], op: 'ReduceMean' | 'ReduceMax'): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  const r = x.shape.length;
  const keep = bool(ctx, 'keepdims', false);
  const axes = Array.from({ length: r - 2 }, (_, i) => i + 2);
  const y = ctx.g.node(op, [x.name], `${ctx.name}/pool`, [
    { name: 'axes', ints: axes },
    { name: 'keepdims', i: keep ? 1 : 0 },
  ]);
  const c = x.shape[r - 1]!;
  if (keep) return out(y, [x.shape[0]!, ...new Array<number | null>(r - 2).fill(1), c], x, true);
  return out(y, [x.shape[0]!, c], x, false);
}

function elementwise(ctx: LayerContext, inputs: Sym[], op: string): Sym {
  if (inputs.length < 2) fail(ctx, `expects at least two inputs, got ${inputs.length}`);
  const aligned = alignLayouts(ctx, inputs);
  let acc = aligned[0]!.name;
  for (const s of aligned.slice(1)) acc = ctx.g.node(op, [acc, s.name], `${ctx.name}/${op.toLowerCase()}`);
  if (ctx.className === 'Average') acc = ctx.g.node('Div', [acc, ctx.g.scalar(`${ctx.name}/count`, inputs.length)], `${ctx.name}/mean`);
  const shape = aligned[0]!.shape.map((d, i) => aligned.reduce<number | null>((m, s) => (m === null || m === 1 ? (s.shape[i] ?? m) : m), d));
  return out(acc, shape, aligned[0]!);
}

/** Brings inputs to one layout: channels-first when any is and all have the same rank >= 3. */
function alignLayouts(ctx: LayerContext, inputs: Sym[]): Sym[] {
  const rank = inputs[0]!.shape.length;
  const cf = inputs.some((s) => s.channelsFirst) && inputs.every((s) => s.shape.length === rank);
  return inputs.map((s) => (cf ? ctx.g.channelsFirst(s) : ctx.g.channelsLast(s)));
}

function dense(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = ctx.g.channelsLast(one(ctx, inputs));
  const kernel = need(ctx, 'kernel');
  const [n, m] = kernel.shape as [number, number];
  let y = ctx.g.node('MatMul', [x.name, ctx.g.floats(`${ctx.name}/kernel`, [n, m], kernel.data)], `${ctx.name}/matmul`);
  if (bool(ctx, 'use_bias', true)) y = ctx.g.node('Add', [y, ctx.g.floats(`${ctx.name}/bias`, [m], need(ctx, 'bias').data)], `${ctx.name}/biased`);
  return activate(ctx, out(y, [...x.shape.slice(0, -1), m], x, false));
}

function batchNorm(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = one(ctx, inputs);
  const axisCfg = ctx.config.axis;
  const axis = Array.isArray(axisCfg) ? (axisCfg.length === 1 ? (axisCfg[0] as number) : fail(ctx, 'several axes are not supported')) : num(ctx, 'axis', -1);
  const eps = num(ctx, 'epsilon', 1e-3);
  const mean = need(ctx, 'moving_mean').data;
  const variance = need(ctx, 'moving_variance').data;
  const c = mean.length;
  const gamma = bool(ctx, 'scale', true) ? need(ctx, 'gamma').data : new Float32Array(c).fill(1);
  const beta = bool(ctx, 'center', true) ? need(ctx, 'beta').data : new Float32Array(c);
  // Folded to y = x * a + b, per channel, on whichever axis holds them.
  const a = new Float32Array(c);
  const b = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    a[i] = gamma[i]! / Math.sqrt(variance[i]! + eps);
    b[i] = beta[i]! - mean[i]! * a[i]!;
  }
  const scaled = ctx.g.node('Mul', [x.name, axisConstant(ctx, x, axis, a, 'scale')], `${ctx.name}/scaled`);
  const y = ctx.g.node('Add', [scaled, axisConstant(ctx, x, axis, b, 'shift')], `${ctx.name}/bn`);
  return out(y, x.shape, x);
}

function layerNorm(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = ctx.g.channelsLast(one(ctx, inputs));
  const r = x.shape.length;
  const axisCfg = ctx.config.axis;
  const axes = (Array.isArray(axisCfg) ? axisCfg : [axisCfg ?? -1]).map((a) => ((a as number) < 0 ? (a as number) + r : (a as number))).sort((p, q) => p - q);
  // ONNX normalizes over the trailing axes from `axis`: Keras axes must be those.
  if (axes.some((a, i) => a !== r - axes.length + i)) fail(ctx, `axis ${JSON.stringify(axisCfg)} is not a run of trailing axes`);
  const normShape = x.shape.slice(r - axes.length).map((d) => d ?? fail(ctx, 'normalized axes must have known sizes'));
  const size = normShape.reduce((p, q) => p * q, 1);
  const gamma = bool(ctx, 'scale', true) ? need(ctx, 'gamma').data : new Float32Array(size).fill(1);
  const beta = bool(ctx, 'center', true) ? need(ctx, 'beta').data : new Float32Array(size);
  const y = ctx.g.node(
    'LayerNormalization',
    [x.name, ctx.g.floats(`${ctx.name}/gamma`, normShape, gamma), ctx.g.floats(`${ctx.name}/beta`, normShape, beta)],
    `${ctx.name}/ln`,
    [
      { name: 'axis', i: r - axes.length },
      { name: 'epsilon', f: num(ctx, 'epsilon', 1e-3) },
    ],
  );
  return out(y, x.shape, x);
}

function relu(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = one(ctx, inputs);
  const g = ctx.g;
  const max = ctx.config.max_value ?? ctx.config.maxValue;
  const slope = num(ctx, 'negative_slope', 0);
  const threshold = num(ctx, 'threshold', 0);
  let y: string;
  if (threshold === 0 && slope === 0) y = g.node('Relu', [x.name], `${ctx.name}/relu`);
  else if (threshold === 0) y = g.node('LeakyRelu', [x.name], `${ctx.name}/leaky`, [{ name: 'alpha', f: slope }]);
  else {
    // x >= threshold ? x : slope * (x - threshold)
    const t = g.scalar(`${ctx.name}/threshold`, threshold);
    const below = g.node('Mul', [g.node('Sub', [x.name, t], `${ctx.name}/shifted`), g.scalar(`${ctx.name}/slope`, slope)], `${ctx.name}/below`);
    y = g.node('Where', [g.node('GreaterOrEqual', [x.name, t], `${ctx.name}/above`), x.name, below], `${ctx.name}/relu`);
  }
  if (typeof max === 'number') y = g.node('Min', [y, g.scalar(`${ctx.name}/max`, max)], `${ctx.name}/capped`);
  return out(y, x.shape, x);
}

function prelu(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = one(ctx, inputs);
  const alpha = need(ctx, 'alpha');
  let shape = alpha.shape;
  let data = alpha.data;
  if (x.channelsFirst && shape.length >= 2) {
    const r = shape.length;
    const perm = [r - 1, ...Array.from({ length: r - 1 }, (_, i) => i)];
    data = transposeData(data, shape, perm);
    shape = perm.map((p) => shape[p]!);
  }
  const y = ctx.g.node('PRelu', [x.name, ctx.g.floats(`${ctx.name}/alpha`, shape, data)], `${ctx.name}/prelu`);
  return out(y, x.shape, x);
}

function zeroPadding2d(ctx: LayerContext, inputs: Sym[]): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  const [[t, b], [l, r]] = pairs(ctx, 'padding', 1);
  const y = ctx.g.node('Pad', [x.name, ctx.g.ints(`${ctx.name}/pads`, [0, 0, t, l, 0, 0, b, r])], `${ctx.name}/pad`);
  const [n, h, w, c] = x.shape;
  return out(y, [n!, h == null ? null : h + t + b, w == null ? null : w + l + r, c!], x, true);
}

/** A 2-D (top, bottom), (left, right) option from an int, two ints, or two pairs. */
function pairs(ctx: LayerContext, key: string, fallback: number): [[number, number], [number, number]] {
  const v = ctx.config[key] ?? fallback;
  if (typeof v === 'number') return [[v, v], [v, v]];
  if (Array.isArray(v) && v.length === 2) {
    const [a, b] = v as unknown[];
    if (typeof a === 'number' && typeof b === 'number') return [[a, a], [b, b]];
    if (Array.isArray(a) && Array.isArray(b)) return [[a[0] as number, a[1] as number], [b[0] as number, b[1] as number]];
  }
  return fail(ctx, `config "${key}" is ${JSON.stringify(v)}`);
}

function cropping2d(ctx: LayerContext, inputs: Sym[]): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  const [[t, b], [l, r]] = pairs(ctx, 'cropping', 0);
  const end = (v: number) => (v === 0 ? 2 ** 31 - 1 : -v);
  const y = ctx.g.node(
    'Slice',
    [x.name, ctx.g.ints(`${ctx.name}/starts`, [t, l]), ctx.g.ints(`${ctx.name}/ends`, [end(b), end(r)]), ctx.g.ints(`${ctx.name}/axes`, [2, 3])],
    `${ctx.name}/crop`,
  );
  const [n, h, w, c] = x.shape;
  return out(y, [n!, h == null ? null : h - t - b, w == null ? null : w - l - r, c!], x, true);
}

function upSampling2d(ctx: LayerContext, inputs: Sym[]): Sym {
  channelsLastOnly(ctx);
  const x = ctx.g.channelsFirst(one(ctx, inputs));
  const [sh, sw] = ints(ctx, 'size', 2, 2) as [number, number];
  const interpolation = str(ctx, 'interpolation', 'nearest');
  if (interpolation !== 'nearest' && interpolation !== 'bilinear') fail(ctx, `interpolation "${interpolation}" is not supported (nearest, bilinear)`);
  const attrs: AttributeDef[] =
    interpolation === 'nearest'
      ? [
          { name: 'mode', s: 'nearest' },
          { name: 'coordinate_transformation_mode', s: 'asymmetric' },
          { name: 'nearest_mode', s: 'floor' },
        ]
      : [
          { name: 'mode', s: 'linear' },
          // tfjs resizes without half-pixel centers; Keras in Python resizes with them.
          { name: 'coordinate_transformation_mode', s: ctx.fromTfjs ? 'asymmetric' : 'half_pixel' },
        ];
  const y = ctx.g.node('Resize', [x.name, '', ctx.g.floats(`${ctx.name}/scales`, [4], [1, 1, sh, sw])], `${ctx.name}/resize`, attrs);
  const [n, h, w, c] = x.shape;
  return out(y, [n!, h == null ? null : h * sh, w == null ? null : w * sw, c!], x, true);
}

function flatten(ctx: LayerContext, inputs: Sym[]): Sym {
  // Keras flattens in channels-last order, so a channels-first tensor goes back first.
  const x = ctx.g.channelsLast(one(ctx, inputs));
  const rest = x.shape.slice(1);
  const size = rest.every((d) => d !== null) ? (rest).reduce((a, b) => a * b, 1) : null;
  return out(ctx.g.node('Flatten', [x.name], `${ctx.name}/flatten`, [{ name: 'axis', i: 1 }]), [x.shape[0]!, size], x, false);
}

function reshape(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = ctx.g.channelsLast(one(ctx, inputs));
  const target = ctx.config.target_shape;
  // tfjs writes the inferred dimension as null, Keras as -1.
  if (!Array.isArray(target) || !target.every((d) => typeof d === 'number' || d === null)) fail(ctx, `target_shape ${JSON.stringify(target)} is not a list of integers`);
  const dims = (target as (number | null)[]).map((d) => d ?? -1);
  let shape: Shape = [x.shape[0]!, ...dims];
  if (dims.includes(-1)) {
    const known = x.shape.slice(1);
    const total = known.every((d) => d !== null) ? (known).reduce((a, b) => a * b, 1) : null;
    const others = dims.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    shape = [x.shape[0]!, ...dims.map((d) => (d === -1 ? (total === null ? null : total / others) : d))];
  }
  const y = ctx.g.node('Reshape', [x.name, ctx.g.ints(`${ctx.name}/shape`, [0, ...dims])], `${ctx.name}/reshape`);
  return out(y, shape, x, false);
}

function permute(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = ctx.g.channelsLast(one(ctx, inputs));
  const dims = ctx.config.dims;
  if (!Array.isArray(dims)) fail(ctx, `dims ${JSON.stringify(dims)} is not a list`);
  const perm = [0, ...(dims as number[])];
  const y = ctx.g.node('Transpose', [x.name], `${ctx.name}/permute`, [{ name: 'perm', ints: perm }]);
  return out(y, perm.map((p) => x.shape[p] ?? null), x, false);
}

function concatenate(ctx: LayerContext, inputs: Sym[]): Sym {
  const aligned = alignLayouts(ctx, inputs);
  const first = aligned[0]!;
  const axis = num(ctx, 'axis', -1);
  const r = first.shape.length;
  const a = axis < 0 ? axis + r : axis;
  const y = ctx.g.node('Concat', aligned.map((s) => s.name), `${ctx.name}/concat`, [{ name: 'axis', i: onnxAxis(ctx, first, axis) }]);
  const shape = first.shape.slice();
  shape[a] = aligned.reduce<number | null>((sum, s) => (sum === null || s.shape[a] == null ? null : sum + s.shape[a]), 0);
  return out(y, shape, first);
}

function rescaling(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = one(ctx, inputs);
  const scale = num(ctx, 'scale', 1);
  const offset = num(ctx, 'offset', 0);
  let y = ctx.g.node('Mul', [x.name, ctx.g.scalar(`${ctx.name}/scale`, scale)], `${ctx.name}/scaled`);
  if (offset !== 0) y = ctx.g.node('Add', [y, ctx.g.scalar(`${ctx.name}/offset`, offset)], `${ctx.name}/rescaled`);
  return out(y, x.shape, x);
}

function normalization(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = one(ctx, inputs);
  const mean = need(ctx, 'mean');
  const variance = need(ctx, 'variance');
  const inv = variance.data.map((v) => 1 / Math.max(Math.sqrt(v), 1e-7));
  // The stored mean and variance are shaped to broadcast against Keras's shape (batch dim kept).
  const r = x.shape.length;
  const fit = (w: Float32Array, label: string): string => {
    const shape = [...new Array<number>(r - mean.shape.length).fill(1), ...mean.shape];
    if (x.channelsFirst && shape.length >= 3) {
      const perm = [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
      return ctx.g.floats(`${ctx.name}/${label}`, perm.map((p) => shape[p]!), transposeData(w, shape, perm));
    }
    return ctx.g.floats(`${ctx.name}/${label}`, shape, w);
  };
  const y = ctx.g.node('Mul', [ctx.g.node('Sub', [x.name, fit(mean.data, 'mean')], `${ctx.name}/centered`), fit(inv, 'inv_std')], `${ctx.name}/normalized`);
  return out(y, x.shape, x);
}

function embedding(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = ctx.g.channelsLast(one(ctx, inputs));
  const table = need(ctx, 'embeddings');
  const [, dim] = table.shape as [number, number];
  const idx = x.dtype === 'int32' ? x.name : ctx.g.node('Cast', [x.name], `${ctx.name}/indices`, [{ name: 'to', i: 7 }]);
  const y = ctx.g.node('Gather', [ctx.g.floats(`${ctx.name}/embeddings`, table.shape, table.data), idx], `${ctx.name}/gather`);
  return out(y, [...x.shape, dim], x, false);
}

function simpleActivation(op: (ctx: LayerContext, x: string) => string): LayerConverter {
  return (ctx, inputs) => {
    const x = one(ctx, inputs);
    return out(op(ctx, x.name), x.shape, x);
  };
}

function softmaxLayer(ctx: LayerContext, inputs: Sym[]): Sym {
  const x = one(ctx, inputs);
  const axisCfg = ctx.config.axis;
  const axis = Array.isArray(axisCfg) ? (axisCfg.length === 1 ? (axisCfg[0] as number) : fail(ctx, 'several axes are not supported')) : num(ctx, 'axis', -1);
  return out(ctx.g.node('Softmax', [x.name], `${ctx.name}/softmax`, [{ name: 'axis', i: onnxAxis(ctx, x, axis) }]), x.shape, x);
}

function identity(_ctx: LayerContext, inputs: Sym[]): Sym {
  return one(_ctx, inputs);
}

type RnnKind = 'LSTM' | 'GRU' | 'SimpleRNN';
const GATES: Record<RnnKind, number> = { LSTM: 4, GRU: 3, SimpleRNN: 1 };

/** A Keras activation as an ONNX recurrent activation, with its alpha and beta. */
function rnnActivation(ctx: LayerContext, v: unknown): [string, number, number] {
  const name = activationName(v);
  switch (name) {
    case 'tanh':
      return ['Tanh', 0, 0];
    case 'sigmoid':
      return ['Sigmoid', 0, 0];
    case 'relu':
      return ['Relu', 0, 0];
    case 'linear':
      return ['Affine', 1, 0];
    case 'softsign':
      return ['Softsign', 0, 0];
    case 'softplus':
      return ['Softplus', 0, 0];
    case 'elu':
      return ['Elu', 1, 0];
    case 'hard_sigmoid':
    case 'hardSigmoid':
      return ['HardSigmoid', ctx.kerasMajor >= 3 ? 1 / 6 : 0.2, 0.5];
    default:
      return fail(ctx, `recurrent activation "${name}" is not supported (tanh, sigmoid, relu, linear, softsign, softplus, elu, hard_sigmoid)`);
  }
}

/**
 * Keras (I, g*H) kernel columns to ONNX (g*H, I) rows, gate blocks reordered by `order`
 * (ONNX gate j takes Keras gate order[j]).
 */
function gateRows(w: Weight, hidden: number, order: number[]): Float32Array {
  const [inDim, cols] = w.shape as [number, number];
  const t = transposeData(w.data, [inDim, cols], [1, 0]);
  const out = new Float32Array(t.length);
  order.forEach((src, dst) => out.set(t.subarray(src * hidden * inDim, (src + 1) * hidden * inDim), dst * hidden * inDim));
  return out;
}

/** One direction's W, R and B for the ONNX op. */
function rnnWeights(ctx: LayerContext, kind: RnnKind, cell: Record<string, unknown>, scope: string) {
  const gates = GATES[kind];
  const find = (key: string): Weight => ctx.weightIn(scope, key) ?? fail(ctx, `its weight "${scope}${scope ? '/' : ''}${key}" is missing from the weights`);
  const kernel = find('kernel');
  const recurrent = find('recurrent_kernel');
  const hidden = recurrent.shape[0]!;
  const order = kind === 'LSTM' ? [0, 3, 1, 2] : Array.from({ length: gates }, (_, i) => i);
  const W = gateRows(kernel, hidden, order);
  const R = gateRows(recurrent, hidden, order);
  const B = new Float32Array(2 * gates * hidden);
  const useBias = typeof cell.use_bias === 'boolean' ? cell.use_bias : true;
  if (useBias) {
    const bias = find('bias');
    const resetAfter = kind === 'GRU' && cell.reset_after === true;
    // GRU reset_after keeps two biases (input, recurrent) as shape (2, 3H); ONNX's B is the same pair.
    const rows = resetAfter ? 2 : 1;
    for (let r = 0; r < rows; r++) {
      const row = bias.data.subarray(r * gates * hidden, (r + 1) * gates * hidden);
      order.forEach((src, dst) => B.set(row.subarray(src * hidden, (src + 1) * hidden), r * gates * hidden + dst * hidden));
    }
  }
  return { W, R, B, hidden, inDim: kernel.shape[0]! };
}

/** LSTM, GRU, SimpleRNN (and a Bidirectional around one) as one ONNX recurrent node. */
function recurrent(ctx: LayerContext, inputs: Sym[], kind: RnnKind, cell: Record<string, unknown>, bidirectional: { inner: string; merge: string } | undefined): Sym {
  const x = ctx.g.channelsLast(one(ctx, inputs));
  if (x.shape.length !== 3) fail(ctx, `expects a [batch, time, features] input, got shape ${JSON.stringify(x.shape)}`);
  for (const key of ['return_state', 'stateful', 'go_backwards']) if (cell[key] === true) fail(ctx, `${key} is not supported`);
  const dirs = bidirectional ? [`forward_${bidirectional.inner}`, `backward_${bidirectional.inner}`] : [''];
  const parts = dirs.map((scope) => rnnWeights(ctx, kind, cell, scope));
  const { hidden, inDim } = parts[0]!;
  const gates = GATES[kind];
  const nd = dirs.length;
  const cat = (key: 'W' | 'R' | 'B'): Float32Array => {
    const size = parts[0]![key].length;
    const out = new Float32Array(size * nd);
    parts.forEach((p, i) => out.set(p[key], i * size));
    return out;
  };
  const acts =
    kind === 'LSTM'
      ? [rnnActivation(ctx, cell.recurrent_activation ?? 'sigmoid'), rnnActivation(ctx, cell.activation ?? 'tanh'), rnnActivation(ctx, cell.activation ?? 'tanh')]
      : kind === 'GRU'
        ? [rnnActivation(ctx, cell.recurrent_activation ?? 'sigmoid'), rnnActivation(ctx, cell.activation ?? 'tanh')]
        : [rnnActivation(ctx, cell.activation ?? 'tanh')];
  const allActs = Array.from({ length: nd }, () => acts).flat();
  const attrs: AttributeDef[] = [
    { name: 'hidden_size', i: hidden },
    { name: 'direction', s: nd === 2 ? 'bidirectional' : 'forward' },
    { name: 'activations', strings: allActs.map((a) => a[0]) },
  ];
  // onnxruntime takes alphas and betas in order, only for the activations that have them.
  const alphas = allActs.filter((a) => ['HardSigmoid', 'Affine', 'Elu'].includes(a[0])).map((a) => a[1]);
  const betas = allActs.filter((a) => ['HardSigmoid', 'Affine'].includes(a[0])).map((a) => a[2]);
  if (alphas.length) attrs.push({ name: 'activation_alpha', floats: alphas });
  if (betas.length) attrs.push({ name: 'activation_beta', floats: betas });
  if (kind === 'GRU') attrs.push({ name: 'linear_before_reset', i: cell.reset_after === true ? 1 : 0 });
  const g = ctx.g;
  const timeMajor = g.node('Transpose', [x.name], `${ctx.name}/time_major`, [{ name: 'perm', ints: [1, 0, 2] }]);
  const op = kind === 'SimpleRNN' ? 'RNN' : kind;
  const W = g.floats(`${ctx.name}/W`, [nd, gates * hidden, inDim], cat('W'));
  const R = g.floats(`${ctx.name}/R`, [nd, gates * hidden, hidden], cat('R'));
  const B = g.floats(`${ctx.name}/B`, [nd, 2 * gates * hidden], cat('B'));
  const y = g.unique(`${ctx.name}/Y`);
  const yh = g.unique(`${ctx.name}/Y_h`);
  g.nodes.push({ opType: op, inputs: [timeMajor, W, R, B], outputs: [y, yh], name: g.unique(`${ctx.name}/${op}`), attributes: attrs });
  const sequences = cell.return_sequences === true;
  const merge = bidirectional?.merge ?? 'concat';
  let result: string;
  if (sequences) {
    // Y is [T, dirs, N, H]: to [N, T, dirs, H].
    const batchMajor = g.node('Transpose', [y], `${ctx.name}/batch_major`, [{ name: 'perm', ints: [2, 0, 1, 3] }]);
    result = mergeDirections(ctx, batchMajor, 2, merge, nd);
  } else {
    // Y_h is [dirs, N, H]: to [N, dirs, H].
    const batchMajor = g.node('Transpose', [yh], `${ctx.name}/batch_major`, [{ name: 'perm', ints: [1, 0, 2] }]);
    result = mergeDirections(ctx, batchMajor, 1, merge, nd);
  }
  const last = merge === 'concat' ? nd * hidden : hidden;
  const shape: Shape = sequences ? [x.shape[0]!, x.shape[1]!, last] : [x.shape[0]!, last];
  return out(result, shape, x, false);
}

/** Folds the directions axis: concatenated (Keras's concat puts forward first), summed, multiplied or averaged. */
function mergeDirections(ctx: LayerContext, t: string, axis: number, merge: string, nd: number): string {
  const g = ctx.g;
  if (nd === 1 || merge === 'concat') {
    // Merging the directions axis into the features axis right after it.
    const shape = axis === 2 ? [0, 0, -1] : [0, -1];
    return g.node('Reshape', [t, g.ints(`${ctx.name}/merged_shape`, shape)], `${ctx.name}/merged`);
  }
  switch (merge) {
    case 'sum':
      return g.node('ReduceSum', [t, g.ints(`${ctx.name}/dir_axis`, [axis])], `${ctx.name}/merged`, [{ name: 'keepdims', i: 0 }]);
    case 'ave':
      return g.node('ReduceMean', [t], `${ctx.name}/merged`, [{ name: 'axes', ints: [axis] }, { name: 'keepdims', i: 0 }]);
    case 'mul':
      return g.node('ReduceProd', [t], `${ctx.name}/merged`, [{ name: 'axes', ints: [axis] }, { name: 'keepdims', i: 0 }]);
    default:
      return fail(ctx, `merge_mode "${merge}" is not supported (concat, sum, ave, mul)`);
  }
}

function bidirectionalLayer(ctx: LayerContext, inputs: Sym[]): Sym {
  const layer = ctx.config.layer as { class_name?: string; config?: Record<string, unknown> } | undefined;
  const kind = layer?.class_name;
  if (kind !== 'LSTM' && kind !== 'GRU' && kind !== 'SimpleRNN') fail(ctx, `wraps a ${String(kind)} layer (LSTM, GRU, SimpleRNN are supported)`);
  if (ctx.config.backward_layer) fail(ctx, 'a separate backward_layer is not supported');
  const cell = layer!.config ?? {};
  const merge = ctx.config.merge_mode;
  if (merge === null) fail(ctx, 'merge_mode null (two outputs) is not supported');
  return recurrent(ctx, inputs, kind, cell, { inner: String(cell.name), merge: typeof merge === 'string' ? merge : 'concat' });
}

/** Converters by Keras class name. */
export const LAYER_CONVERTERS: Record<string, LayerConverter> = {
  Dense: dense,
  Conv1D: (ctx, i) => convolution(ctx, i, 1),
  Conv2D: (ctx, i) => convolution(ctx, i, 2),
  Conv2DTranspose: convTranspose2d,
  DepthwiseConv2D: (ctx, inputs) => {
    channelsLastOnly(ctx);
    const x = ctx.g.channelsFirst(one(ctx, inputs));
    return activate(ctx, depthwise(ctx, x, 'depthwise_kernel', bool(ctx, 'use_bias', true) ? need(ctx, 'bias') : undefined));
  },
  SeparableConv2D: (ctx, inputs) => {
    channelsLastOnly(ctx);
    const x = ctx.g.channelsFirst(one(ctx, inputs));
    const d = depthwise(ctx, x, 'depthwise_kernel', undefined);
    const pw = need(ctx, 'pointwise_kernel');
    const [, , cin, cout] = pw.shape as [number, number, number, number];
    const w = ctx.g.floats(`${ctx.name}/pointwise_kernel`, [cout, cin, 1, 1], transposeData(pw.data, [cin, cout], [1, 0]));
    const ins = [d.name, w];
    if (bool(ctx, 'use_bias', true)) ins.push(ctx.g.floats(`${ctx.name}/bias`, [cout], need(ctx, 'bias').data));
    const y = ctx.g.node('Conv', ins, `${ctx.name}/pointwise`, [{ name: 'kernel_shape', ints: [1, 1] }]);
    return activate(ctx, out(y, [...d.shape.slice(0, -1), cout], d, true));
  },
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  Activation: (ctx, inputs) => {
    const x = one(ctx, inputs);
    return activate(ctx, x);
  },
  ReLU: relu,
  LeakyReLU: (ctx, inputs) => {
    const x = one(ctx, inputs);
    // Keras's default slope is 0.3 (ONNX's is 0.01), Keras 3 calls it negative_slope.
    const alpha = num(ctx, 'negative_slope', num(ctx, 'alpha', 0.3));
    return out(ctx.g.node('LeakyRelu', [x.name], `${ctx.name}/leaky`, [{ name: 'alpha', f: alpha }]), x.shape, x);
  },
  PReLU: prelu,
  ELU: simpleActivation((ctx, x) => ctx.g.node('Elu', [x], `${ctx.name}/elu`, [{ name: 'alpha', f: num(ctx, 'alpha', 1) }])),
  ThresholdedReLU: simpleActivation((ctx, x) => ctx.g.node('ThresholdedRelu', [x], `${ctx.name}/thresholded`, [{ name: 'alpha', f: num(ctx, 'theta', 1) }])),
  Softmax: softmaxLayer,
  ZeroPadding2D: zeroPadding2d,
  Cropping2D: cropping2d,
  UpSampling2D: upSampling2d,
  MaxPooling1D: (ctx, i) => pool(ctx, i, 1, 'MaxPool'),
  MaxPooling2D: (ctx, i) => pool(ctx, i, 2, 'MaxPool'),
  AveragePooling1D: (ctx, i) => pool(ctx, i, 1, 'AveragePool'),
  AveragePooling2D: (ctx, i) => pool(ctx, i, 2, 'AveragePool'),
  GlobalAveragePooling1D: (ctx, i) => globalPool(ctx, i, 'ReduceMean'),
  GlobalAveragePooling2D: (ctx, i) => globalPool(ctx, i, 'ReduceMean'),
  GlobalMaxPooling1D: (ctx, i) => globalPool(ctx, i, 'ReduceMax'),
  GlobalMaxPooling2D: (ctx, i) => globalPool(ctx, i, 'ReduceMax'),
  Flatten: flatten,
  Reshape: reshape,
  Permute: permute,
  Add: (ctx, i) => elementwise(ctx, i, 'Add'),
  Subtract: (ctx, i) => {
    if (i.length !== 2) fail(ctx, `expects two inputs, got ${i.length}`);
    return elementwise(ctx, i, 'Sub');
  },
  Multiply: (ctx, i) => elementwise(ctx, i, 'Mul'),
  Average: (ctx, i) => elementwise(ctx, i, 'Add'),
  Maximum: (ctx, i) => elementwise(ctx, i, 'Max'),
  Minimum: (ctx, i) => elementwise(ctx, i, 'Min'),
  Concatenate: concatenate,
  Dropout: identity,
  SpatialDropout1D: identity,
  SpatialDropout2D: identity,
  SpatialDropout3D: identity,
  AlphaDropout: identity,
  GaussianDropout: identity,
  GaussianNoise: identity,
  ActivityRegularization: identity,
  Rescaling: rescaling,
  Normalization: normalization,
  Embedding: embedding,
  LSTM: (ctx, i) => recurrent(ctx, i, 'LSTM', ctx.config, undefined),
  GRU: (ctx, i) => recurrent(ctx, i, 'GRU', ctx.config, undefined),
  SimpleRNN: (ctx, i) => recurrent(ctx, i, 'SimpleRNN', ctx.config, undefined),
  Bidirectional: bidirectionalLayer,
};
