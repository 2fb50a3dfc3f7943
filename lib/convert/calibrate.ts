import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { GRAPH, OnnxModel } from '../onnx/model';
import { ProtoField, ProtoMessage } from '../onnx/proto-tree';

/** The range a float activation took over the calibration samples. */
export interface TensorRange {
  min: number;
  max: number;
}

/** Fewest samples a static calibration accepts: fewer give ranges that one outlier decides. */
export const MIN_CALIBRATION_SAMPLES = 8;

/** How an activation's 8-bit range is chosen from what the calibration samples produced. */
export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';

export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile', 'entropy'];

export interface CalibrationOptions {
  method: CalibrationMethod;
  /** For `percentile`: the share of values (in %) the range keeps on each side; the tails beyond are clipped. */
  percentile: number;
  /** Samples read from the `calibration` option's files; the evaluation's samples when absent. */
  samples?: Record<string, Tensor>[];
}

export const DEFAULT_CALIBRATION_OPTIONS: CalibrationOptions = { method: 'minmax', percentile: 99.99 };

/** Bins of each activation's histogram: fine enough that a 256-level grid spans at least 256 of them. */
export const HISTOGRAM_BINS = 2048;

/** Levels of the u8 activation grid the entropy method compares distributions at. */
const LEVELS = 256;

/**
 * A float graph output of unknown shape: onnxruntime fetches an intermediate tensor once it is
 * declared an output, whatever its rank.
 */
function floatOutput(name: string): ProtoMessage {
  const tensorType = new ProtoMessage([ProtoField.varint(1, 1)]);
  const type = new ProtoMessage([ProtoField.message(1, tensorType)]);
  return new ProtoMessage([ProtoField.string(1, name), ProtoField.message(2, type)]);
}

/**
 * Runs every sample through the model, one at a time, and hands each named float tensor to
 * `visit`; nothing is kept between samples but what `visit` keeps, so memory is the model plus
 * one sample's activations, whatever the number of samples.
 */
export async function forEachActivation(
  bytes: Uint8Array,
  names: readonly string[],
  samples: readonly Record<string, Tensor>[],
  intraOpNumThreads: number,
  visit: (name: string, data: Float32Array, dims: readonly number[]) => void,
): Promise<void> {
  if (names.length === 0) return;
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const declared = new Set(graph.outputNames());
  for (const name of names) if (!declared.has(name)) graph.proto.fields.push(ProtoField.message(GRAPH.output, floatOutput(name)));
  const session = await InferenceSession.create(model.encode(), { intraOpNumThreads, logSeverityLevel: 3 });
  try {
    for (const feeds of samples) {
      const out = await session.run(feeds, [...names]);
      for (const name of names) {
        const data = out[name]?.data;
        if (!(data instanceof Float32Array)) throw new Error(`calibration: tensor "${name}" is not float32`);
        visit(name, data, out[name]?.dims ?? []);
      }
    }
  } finally {
    await session.release();
  }
}

/**
 * Min/max of each named float tensor over the samples. NaN and infinities are skipped: they say
 * nothing about the range a finite 8-bit grid must cover.
 */
export async function calibrateMinMax(
  bytes: Uint8Array,
  names: readonly string[],
  samples: readonly Record<string, Tensor>[],
  intraOpNumThreads = 1,
): Promise<Map<string, TensorRange>> {
  const ranges = new Map<string, TensorRange>();
  await forEachActivation(bytes, names, samples, intraOpNumThreads, (name, data) => {
    const range = ranges.get(name) ?? { min: Infinity, max: -Infinity };
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as number;
      if (!Number.isFinite(v)) continue;
      if (v < range.min) range.min = v;
      if (v > range.max) range.max = v;
    }
    ranges.set(name, range);
  });
  for (const name of names) {
    const range = ranges.get(name);
    if (!range || range.min > range.max) ranges.set(name, { min: 0, max: 0 });
  }
  return ranges;
}

/** A fixed-range histogram: `counts[i]` holds the values in `[min + i*width, min + (i+1)*width)`. */
export interface Histogram {
  min: number;
  max: number;
  counts: Float64Array;
  /** How many of the values were exactly 0 (counted in their bin too). */
  zeros: number;
}

export function emptyHistogram(range: TensorRange, bins = HISTOGRAM_BINS): Histogram {
  return { min: range.min, max: range.max, counts: new Float64Array(bins), zeros: 0 };
}

/** Adds finite values to a histogram; values outside its range land in the end bins. */
export function addToHistogram(h: Histogram, data: ArrayLike<number>): void {
  const bins = h.counts.length;
  const width = (h.max - h.min) / bins;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (!Number.isFinite(v)) continue;
    if (v === 0) h.zeros++;
    const b = width > 0 ? Math.floor((v - h.min) / width) : 0;
    h.counts[b < 0 ? 0 : b >= bins ? bins - 1 : b]! += 1;
  }
}

/** The value below which `share` (0..1) of the histogram's mass lies, interpolated within its bin. */
function quantile(h: Histogram, share: number): number {
  const total = h.counts.reduce((a, b) => a + b, 0);
  const width = (h.max - h.min) / h.counts.length;
  const target = share * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i] as number;
    if (c > 0 && seen + c >= target) return h.min + (i + (target - seen) / c) * width;
    seen += c;
  }
  return h.max;
}

/**
 * The range keeping `percentile` % of the values on each side: the lowest and highest
 * (100 - percentile) % are clipped. A tensor whose values all sit at one end (a Relu output
 * at 0) keeps that end exactly.
 */
export function percentileRange(h: Histogram, percentile: number): TensorRange {
  const tail = (100 - percentile) / 100;
  return { min: Math.max(h.min, quantile(h, tail)), max: Math.min(h.max, quantile(h, 1 - tail)) };
}

/**
 * How much information is lost when the histogram bins `[lo, hi)` stand for the whole tensor on
 * a grid of LEVELS steps: KL(P || Q), where P is the clipped distribution (the mass outside the
 * window piled onto its end bins, as saturation does) and Q is what the grid can say about the
 * window's own bins (each step's mass spread evenly over the bins of the step that held any).
 * A narrow window has fine steps but a P with heavy end bins that Q does not have; a wide one
 * pays in coarse steps. The minimum is the range to keep.
 */
function clippingCost(counts: Float64Array, lo: number, hi: number, below: number, above: number): number {
  const n = hi - lo;
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) p[i] = counts[lo + i] as number;
  p[0]! += below;
  p[n - 1]! += above;
  const q = new Float64Array(n);
  for (let level = 0; level < LEVELS; level++) {
    const start = Math.floor((level * n) / LEVELS);
    const end = Math.floor(((level + 1) * n) / LEVELS);
    let mass = 0;
    let used = 0;
    for (let i = start; i < end; i++) {
      const c = counts[lo + i] as number;
      mass += c;
      if (c > 0) used++;
    }
    for (let i = start; i < end; i++) if ((counts[lo + i] as number) > 0) q[i] = mass / used;
  }
  let pTotal = 0;
  let qTotal = 0;
  for (let i = 0; i < n; i++) {
    pTotal += p[i] as number;
    qTotal += q[i] as number;
  }
  let kl = 0;
  for (let i = 0; i < n; i++) {
    const pi = (p[i] as number) / pTotal;
    if (pi === 0) continue;
    const qi = (q[i] as number) / qTotal;
    // A bin P holds and Q does not (the piled-up outliers of an empty end bin): a large
    // finite cost, so the window is not chosen, without an infinity that hides the others.
    kl += pi * Math.log(pi / (qi > 0 ? qi : 1e-12));
  }
  return kl;
}

/**
 * Entropy (KL) calibration: the range whose 256-level grid loses the least information. The
 * upper end is searched first with the lower end at the minimum, then the lower end with the
 * upper end found, each in steps of 1/64 of the histogram, never narrower than 256 bins. A
 * histogram that starts at 0 (a Relu output) keeps 0 as its lower end.
 */
export function entropyRange(h: Histogram): TensorRange {
  const bins = h.counts.length;
  const width = (h.max - h.min) / bins;
  if (!(width > 0) || bins < LEVELS) return { min: h.min, max: h.max };
  // Exact zeros (a Relu's, padding) are exact on every grid, since the zero point is a level:
  // they say nothing about the range, and as one tall bin they would make every window look
  // coarse at its first level and drive the search to the narrowest.
  const counts = Float64Array.from(h.counts);
  const zeroBin = Math.min(bins - 1, Math.max(0, Math.floor(-h.min / width)));
  counts[zeroBin] = Math.max(0, (counts[zeroBin] as number) - h.zeros);
  const prefix = new Float64Array(bins + 1);
  for (let i = 0; i < bins; i++) prefix[i + 1] = (prefix[i] as number) + (counts[i] as number);
  const total = prefix[bins] as number;
  const step = Math.max(1, Math.floor(bins / 64));
  const cost = (lo: number, hi: number) => clippingCost(counts, lo, hi, prefix[lo] as number, total - (prefix[hi] as number));

  let hi = bins;
  let best = cost(0, bins);
  for (let c = bins - step; c >= LEVELS; c -= step) {
    const k = cost(0, c);
    if (k < best) [best, hi] = [k, c];
  }
  let lo = 0;
  if (h.min < 0) {
    for (let c = step; hi - c >= LEVELS; c += step) {
      const k = cost(c, hi);
      if (k < best) [best, lo] = [k, c];
    }
  }
  return { min: h.min + lo * width, max: h.min + hi * width };
}

/**
 * Calibrated ranges of the named float tensors by `options.method`. `minmax` is one pass over
 * the samples; `percentile` and `entropy` take a second, filling one fixed histogram per tensor
 * over the range the first found, so only histograms are kept, never activations.
 */
export async function calibrate(
  bytes: Uint8Array,
  names: readonly string[],
  samples: readonly Record<string, Tensor>[],
  options: CalibrationOptions,
  intraOpNumThreads = 1,
): Promise<Map<string, TensorRange>> {
  const ranges = await calibrateMinMax(bytes, names, samples, intraOpNumThreads);
  if (options.method === 'minmax') return ranges;
  const histograms = new Map<string, Histogram>();
  for (const [name, range] of ranges) histograms.set(name, emptyHistogram(range));
  await forEachActivation(bytes, names, samples, intraOpNumThreads, (name, data) => {
    const h = histograms.get(name);
    if (h) addToHistogram(h, data);
  });
  for (const [name, h] of histograms) ranges.set(name, options.method === 'percentile' ? percentileRange(h, options.percentile) : entropyRange(h));
  return ranges;
}
