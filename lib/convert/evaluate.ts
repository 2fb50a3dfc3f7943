import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { OnnxModel } from '../onnx/model';
import { collectGarbage } from '../runtime/gc';
import { prng } from './random';
import { iou, maskBits, type AccuracyReport, type MaskRule } from './accuracy';

/** Per-output agreement between the original and the converted model. */
export interface OutputAgreement {
  maxAbsError: number;
  meanAbsError: number;
  /** Cosine similarity of the flattened outputs over all samples (1 = same direction). */
  cosine: number;
  /** Share of rows whose argmax agrees, for classification-shaped outputs ([N, C], C > 1). */
  top1Agreement?: number;
  /**
   * The same over decisive rows only: rows whose original top two classes are further apart
   * than twice the row's largest conversion error. A near-tie (an embedding, a flat softmax)
   * can flip on noise and says nothing about the conversion; undefined when no row is decisive.
   */
  top1DecisiveAgreement?: number;
  decisiveRows?: number;
  /** For an output declared as a mask: IoU of the converted model's thresholded masks with the original's. */
  maskIoU?: number;
}

export interface Evaluation {
  samples: number;
  outputs: Record<string, OutputAgreement>;
  bytes: { original: number; converted: number; compressionPercent: number };
  latencyMs: { original: number; converted: number; speedup: number };
  sessionCreateMs: { original: number; converted: number };
  /** Accuracy on the upload's labelled `evaluationSet`, when it gives one. */
  accuracy?: AccuracyReport;
}

export interface EvaluateOptions {
  /** Feeds to compare on; generated from the input metadata when absent. */
  samples?: Record<string, Tensor>[];
  /** Samples to generate when none are given. */
  sampleCount: number;
  /** Size of dynamic dimensions in generated samples: the first one, and any other. */
  dynamicDims: { first: number; other: number };
  /** Timed runs per model for the latency median. */
  latencyRuns: number;
  intraOpNumThreads: number;
  seed: number;
  /** Outputs declared as masks, by name: their agreement is also judged as IoU of thresholded masks. */
  masks?: Record<string, MaskRule>;
}

export const DEFAULT_EVALUATE_OPTIONS: EvaluateOptions = {
  sampleCount: 4,
  dynamicDims: { first: 1, other: 32 },
  latencyRuns: 15,
  intraOpNumThreads: 1,
  seed: 1234,
};

/**
 * Upper bounds for integer inputs that index a table: an input read directly as the indices of
 * a Gather on a constant keeps its values below the table's first dimension.
 */
function indexBounds(model: OnnxModel): Map<string, number> {
  const graph = model.graph();
  const tables = new Map(graph.initializers().map((t) => [t.name, t.dims[0] ?? 0]));
  const bounds = new Map<string, number>();
  for (const node of graph.nodes()) {
    if (node.opType !== 'Gather') continue;
    const [data, indices] = node.inputs;
    const rows = data ? tables.get(data) : undefined;
    if (indices && rows) bounds.set(indices, Math.min(bounds.get(indices) ?? Infinity, rows));
  }
  return bounds;
}

/**
 * Most elements one generated sample may hold, over all its inputs (64 MiB of float32). Input
 * dims come from the upload: without a limit, an 800-byte model declaring `x[16777216, 4]`
 * has the conversion allocate and run gigabytes, and the function dies of memory before it
 * writes the job's report.
 */
export const MAX_GENERATED_SAMPLE_ELEMENTS = 2 ** 24;

/** Generates feeds from a session's input metadata (documented defaults for dynamic dims). */
export function generateSamples(session: InferenceSession, model: OnnxModel, options: EvaluateOptions): Record<string, Tensor>[] {
  const rand = prng(options.seed);
  const bounds = indexBounds(model);
  const samples: Record<string, Tensor>[] = [];
  for (let s = 0; s < options.sampleCount; s++) {
    const feeds: Record<string, Tensor> = {};
    let elements = 0;
    for (const meta of session.inputMetadata) {
      if (!meta.isTensor) throw new Error(`input "${meta.name}" is not a tensor`);
      const dims = meta.shape.map((d, i) => (typeof d === 'number' && d >= 0 ? d : i === 0 ? options.dynamicDims.first : options.dynamicDims.other));
      const n = dims.reduce((a, b) => a * b, 1);
      elements += n;
      if (!(elements <= MAX_GENERATED_SAMPLE_ELEMENTS)) {
        throw new Error(
          `input "${meta.name}" [${dims.join(', ')}] makes a generated sample of ${elements} elements, over the limit of ${MAX_GENERATED_SAMPLE_ELEMENTS}; give sample inputs in the upload's options`,
        );
      }
      const bound = bounds.get(meta.name) ?? 2;
      const int = () => Math.floor(rand() * bound);
      switch (meta.type) {
        case 'float32':
          feeds[meta.name] = new Tensor('float32', Float32Array.from({ length: n }, () => rand() * 2 - 1), dims);
          break;
        case 'float64':
          feeds[meta.name] = new Tensor('float64', Float64Array.from({ length: n }, () => rand() * 2 - 1), dims);
          break;
        case 'int64':
          feeds[meta.name] = new Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(int())), dims);
          break;
        case 'int32':
          feeds[meta.name] = new Tensor('int32', Int32Array.from({ length: n }, int), dims);
          break;
        case 'bool':
          feeds[meta.name] = new Tensor('bool', Uint8Array.from({ length: n }, () => (rand() < 0.5 ? 1 : 0)), dims);
          break;
        case 'string':
          feeds[meta.name] = new Tensor('string', Array.from({ length: n }, () => 'sample'), dims);
          break;
        default:
          throw new Error(`input "${meta.name}" has type ${meta.type}; give sample inputs in the upload's options`);
      }
    }
    samples.push(feeds);
  }
  return samples;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** onnxruntime would not make a session of these bytes. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}

async function timedCreate(bytes: Uint8Array, threads: number): Promise<{ session: InferenceSession; ms: number }> {
  collectGarbage();
  const started = performance.now();
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(bytes, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
  } catch (err) {
    throw new ModelLoadError((err as Error).message, { cause: err });
  }
  return { session, ms: performance.now() - started };
}

/** Compares one output of the original (a) and converted (b) model over all samples. */
export function agreement(a: Float32Array[], b: Float32Array[], dims: readonly number[]): OutputAgreement {
  let maxAbs = 0;
  let sumAbs = 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  let count = 0;
  let rows = 0;
  let agree = 0;
  let decisive = 0;
  let decisiveAgree = 0;
  const classes = dims.length === 2 && (dims[1] as number) > 1 ? (dims[1] as number) : 0;
  a.forEach((x, s) => {
    const y = b[s] as Float32Array;
    for (let i = 0; i < x.length; i++) {
      const u = x[i] as number;
      const v = y[i] as number;
      const d = Math.abs(u - v);
      if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
      sumAbs += d;
      dot += u * v;
      na += u * u;
      nb += v * v;
      count++;
    }
    if (classes) {
      for (let r = 0; r * classes < x.length; r++) {
        const base = r * classes;
        let ia = 0;
        let ib = 0;
        let rowError = 0;
        for (let c = 0; c < classes; c++) {
          if ((x[base + c] as number) > (x[base + ia] as number)) ia = c;
          if ((y[base + c] as number) > (y[base + ib] as number)) ib = c;
          rowError = Math.max(rowError, Math.abs((x[base + c] as number) - (y[base + c] as number)));
        }
        let second = -Infinity;
        for (let c = 0; c < classes; c++) if (c !== ia) second = Math.max(second, x[base + c] as number);
        rows++;
        if (ia === ib) agree++;
        if ((x[base + ia] as number) - second > 2 * rowError) {
          decisive++;
          if (ia === ib) decisiveAgree++;
        }
      }
    }
  });
  const cosine = na === 0 && nb === 0 ? 1 : dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
  const out: OutputAgreement = { maxAbsError: maxAbs, meanAbsError: count ? sumAbs / count : 0, cosine };
  if (classes) {
    out.top1Agreement = rows ? agree / rows : 1;
    out.decisiveRows = decisive;
    if (decisive > 0) out.top1DecisiveAgreement = decisiveAgree / decisive;
  }
  return out;
}

/** IoU of the thresholded masks of two models over all samples; two empty masks agree fully. */
export function maskAgreement(a: Float32Array[], b: Float32Array[], rule: MaskRule): number {
  let intersection = 0;
  let union = 0;
  a.forEach((x, s) => {
    const u = iou(maskBits(x, rule), maskBits(b[s] as Float32Array, rule));
    intersection += u.intersection;
    union += u.union;
  });
  return union ? intersection / union : 1;
}

function asFloats(t: Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'string') return new Float32Array(0);
  return Float32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

/** What the original model answers and costs, measured once and compared against each candidate. */
export interface Reference {
  samples: Record<string, Tensor>[];
  names: readonly string[];
  /** Per output: its type and dims, and its values per sample (as float32 for comparison). */
  outputs: Map<string, { type: string; dims: readonly number[]; values: Float32Array[] }>;
  bytes: number;
  latencyMs: number;
  createMs: number;
}

/** Runs `session` on every sample and returns each output's type, dims and values. */
async function runSamples(session: InferenceSession, samples: readonly Record<string, Tensor>[], names: readonly string[]): Promise<Reference['outputs']> {
  const outputs: Reference['outputs'] = new Map();
  for (const feeds of samples) {
    const result = await session.run(feeds);
    for (const n of names) {
      const t = result[n];
      if (!t) throw new Error(`output "${n}" missing from a run`);
      const entry = outputs.get(n) ?? { type: t.type, dims: t.dims, values: [] };
      entry.values.push(asFloats(t));
      outputs.set(n, entry);
    }
  }
  return outputs;
}

/** Median of `runs` timed runs on the first sample, after two warm-up runs. */
async function latency(session: InferenceSession, feeds: Record<string, Tensor>, runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs + 2; i++) {
    const started = performance.now();
    await session.run(feeds);
    if (i >= 2) times.push(performance.now() - started);
  }
  return median(times);
}

/**
 * Measures the original model: its answers on the samples (given, or generated from its input
 * metadata), its median latency and its session-create time. The session is released before
 * this returns, so the conversion's own sessions never sit beside the largest one.
 */
export async function measureReference(original: Uint8Array, options: EvaluateOptions = DEFAULT_EVALUATE_OPTIONS): Promise<Reference> {
  const { session, ms } = await timedCreate(original, options.intraOpNumThreads);
  try {
    const samples = options.samples ?? generateSamples(session, OnnxModel.decode(original), options);
    const names = session.outputNames;
    const outputs = await runSamples(session, samples, names);
    const latencyMs = await latency(session, samples[0] ?? {}, options.latencyRuns);
    return { samples, names, outputs, bytes: original.byteLength, latencyMs, createMs: ms };
  } finally {
    await session.release();
  }
}

/**
 * Runs the converted model on the reference's samples and measures what the conversion cost
 * and bought: per-output error and agreement, bytes, median latency, session-create time (with
 * the same session options as the reference).
 */
export async function compareWith(reference: Reference, converted: Uint8Array, options: EvaluateOptions = DEFAULT_EVALUATE_OPTIONS): Promise<Evaluation> {
  const { session, ms } = await timedCreate(converted, options.intraOpNumThreads);
  try {
    const got = await runSamples(session, reference.samples, reference.names);
    const outputs: Record<string, OutputAgreement> = {};
    for (const n of reference.names) {
      const a = reference.outputs.get(n);
      const b = got.get(n);
      if (!a || !b) throw new Error(`output "${n}" missing from a run`);
      if (a.type !== b.type || a.dims.join() !== b.dims.join()) {
        throw new Error(`output "${n}" changed: ${a.type}[${a.dims.join(',')}] became ${b.type}[${b.dims.join(',')}]`);
      }
      outputs[n] = agreement(a.values, b.values, a.dims);
      const rule = options.masks?.[n];
      if (rule) outputs[n].maskIoU = maskAgreement(a.values, b.values, rule);
    }
    const latB = await latency(session, reference.samples[0] ?? {}, options.latencyRuns);
    const latA = reference.latencyMs;
    return {
      samples: reference.samples.length,
      outputs,
      bytes: {
        original: reference.bytes,
        converted: converted.byteLength,
        compressionPercent: ((reference.bytes - converted.byteLength) / reference.bytes) * 100,
      },
      latencyMs: { original: latA, converted: latB, speedup: latB > 0 ? latA / latB : 1 },
      sessionCreateMs: { original: reference.createMs, converted: ms },
    };
  } finally {
    await session.release();
  }
}

/** Measures the original, then compares the converted model with it (one session at a time). */
export async function evaluate(original: Uint8Array, converted: Uint8Array, options: EvaluateOptions = DEFAULT_EVALUATE_OPTIONS): Promise<Evaluation> {
  return compareWith(await measureReference(original, options), converted, options);
}
