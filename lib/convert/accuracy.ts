import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { ConversionError } from './errors';

/** What a labelled example should produce on the judged output. */
export type Expected =
  /** Class index per row of a classification output ([N, C] or [C]). */
  | { kind: 'class'; classes: number[] }
  /** An expected tensor: elements within tolerance count as correct, or mask pixels when the output is a mask. */
  | { kind: 'tensor'; values: Float32Array };

export interface LabelledExample {
  /** Where it came from, to name it in an error: `evaluationSet.examples[3]` or a file key. */
  source: string;
  feeds: Record<string, Tensor>;
  expected: Expected;
}

/** How a mask output is made binary: the declared post-processing's activation and threshold. */
export interface MaskRule {
  activation: 'sigmoid' | 'none';
  /** A soft mask (declared `null`) is judged at 0.5. */
  threshold: number;
}

/** A labelled set, ready to judge both models on. */
export interface LabelledSet {
  /** The output the labels are about. */
  output: string;
  examples: LabelledExample[];
  /** An expected tensor matches where |got - expected| <= atol + rtol x |expected|. */
  tolerance: { atol: number; rtol: number };
  /** Set when the judged output is a mask: pixels are compared after thresholding. */
  mask?: MaskRule;
}

/** One model's score on a labelled set. */
export interface AccuracyScore {
  correct: number;
  total: number;
  /** correct / total x 100. */
  percent: number;
  /** For a mask output: intersection over union of its thresholded masks with the expected ones. */
  maskIoU?: number;
}

/** Accuracy of the original and the converted model on the user's labelled set. */
export interface AccuracyReport {
  output: string;
  kind: 'classification' | 'mask' | 'tensor';
  examples: number;
  original: AccuracyScore & { balance: number };
  converted: AccuracyScore & { balance: number };
  /** original - converted, in percentage points. */
  drop: number;
}

export function maskBits(values: ArrayLike<number>, rule: MaskRule): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    const p = rule.activation === 'sigmoid' ? 1 / (1 + Math.exp(-v)) : v;
    out[i] = p >= rule.threshold ? 1 : 0;
  }
  return out;
}

/** Intersection over union of two binary masks; two empty masks agree fully. */
export function iou(a: Uint8Array, b: Uint8Array): { intersection: number; union: number } {
  let intersection = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && b[i]) intersection++;
    if (a[i] || b[i]) union++;
  }
  return { intersection, union };
}

function asFloats(t: Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  return Float32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

/** Which kind of judgement a set makes. */
export function setKind(set: LabelledSet): AccuracyReport['kind'] {
  if (set.examples[0]?.expected.kind === 'class') return 'classification';
  return set.mask ? 'mask' : 'tensor';
}

/**
 * Scores one model on a labelled set, one example at a time. A classification example counts
 * each row whose argmax is its class; an expected tensor counts its elements within tolerance,
 * or, for a mask, its pixels whose thresholded value matches the expected mask's.
 */
export async function scoreModel(bytes: Uint8Array, set: LabelledSet, intraOpNumThreads: number): Promise<AccuracyScore> {
  const session = await InferenceSession.create(bytes, { intraOpNumThreads, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  let correct = 0;
  let total = 0;
  let intersection = 0;
  let union = 0;
  try {
    for (const example of set.examples) {
      let got: Tensor | undefined;
      try {
        got = (await session.run(example.feeds, [set.output]))[set.output];
      } catch (err) {
        throw new ConversionError(`evaluationSet: ${example.source} does not run on the model: ${(err as Error).message.slice(0, 300)}`, { cause: err });
      }
      if (!got) throw new Error(`output "${set.output}" missing from a run`);
      const values = asFloats(got);
      const { expected } = example;
      if (expected.kind === 'class') {
        const classes = got.dims[got.dims.length - 1] ?? 1;
        const rows = classes > 0 ? values.length / classes : 0;
        if (rows !== expected.classes.length) {
          throw new ConversionError(`evaluationSet: ${example.source}: ${expected.classes.length} labels for ${rows} rows of output "${set.output}" [${got.dims.join(', ')}]`);
        }
        for (let r = 0; r < rows; r++) {
          let best = 0;
          for (let c = 1; c < classes; c++) if ((values[r * classes + c] as number) > (values[r * classes + best] as number)) best = c;
          const label = expected.classes[r] as number;
          if (label >= classes) throw new ConversionError(`evaluationSet: ${example.source}: class ${label} is not below output "${set.output}"'s ${classes} classes`);
          if (best === label) correct++;
          total++;
        }
        continue;
      }
      if (expected.values.length !== values.length) {
        throw new ConversionError(`evaluationSet: ${example.source}: the expected tensor has ${expected.values.length} elements, output "${set.output}" [${got.dims.join(', ')}] has ${values.length}`);
      }
      if (set.mask) {
        const a = maskBits(values, set.mask);
        const b = maskBits(expected.values, set.mask);
        for (let i = 0; i < a.length; i++) if (a[i] === b[i]) correct++;
        total += a.length;
        const u = iou(a, b);
        intersection += u.intersection;
        union += u.union;
        continue;
      }
      const { atol, rtol } = set.tolerance;
      for (let i = 0; i < values.length; i++) {
        const e = expected.values[i] as number;
        if (Math.abs((values[i] as number) - e) <= atol + rtol * Math.abs(e)) correct++;
      }
      total += values.length;
    }
  } finally {
    await session.release();
  }
  return { correct, total, percent: total ? (correct / total) * 100 : 0, ...(set.mask ? { maskIoU: union ? intersection / union : 1 } : {}) };
}

/** The accuracy figures of both models: scores, drop in points, and accuracy per millisecond of median latency. */
export function accuracyReport(set: LabelledSet, original: AccuracyScore, converted: AccuracyScore, latencyMs: { original: number; converted: number }): AccuracyReport {
  const balance = (s: AccuracyScore, ms: number) => ({ ...s, balance: ms > 0 ? s.percent / ms : 0 });
  return {
    output: set.output,
    kind: setKind(set),
    examples: set.examples.length,
    original: balance(original, latencyMs.original),
    converted: balance(converted, latencyMs.converted),
    drop: original.percent - converted.percent,
  };
}
