import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { OnnxModel } from '../onnx/model';
import type { TensorRange } from './calibrate';
import { quantizeStatic, staticConvNames, type StaticInt8Options } from './static-int8';

/** Samples the sensitivity pass runs each candidate on (the first ones of the calibration set). */
export const SENSITIVITY_SAMPLES = 8;

async function floatOutputs(bytes: Uint8Array, samples: readonly Record<string, Tensor>[], threads: number): Promise<Float32Array[]> {
  const session = await InferenceSession.create(bytes, { intraOpNumThreads: threads, logSeverityLevel: 3 });
  try {
    const out: Float32Array[] = [];
    for (const feeds of samples) {
      const result = await session.run(feeds);
      for (const name of session.outputNames) {
        const data = result[name]?.data;
        if (data instanceof Float32Array) out.push(data);
      }
    }
    return out;
  } finally {
    await session.release();
  }
}

/** 1 - cosine of two lists of outputs taken as one vector; NaN anywhere costs 1 (the worst). */
function cosineCost(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  a.forEach((x, k) => {
    const y = b[k] as Float32Array;
    for (let i = 0; i < x.length; i++) {
      const u = x[i] as number;
      const v = y[i] as number;
      dot += u * v;
      na += u * u;
      nb += v * v;
    }
  });
  if (na === 0 && nb === 0) return 0;
  const cost = 1 - dot / Math.sqrt(na * nb);
  return Number.isFinite(cost) ? Math.max(0, cost) : 1;
}

/**
 * The sensitivity pass: each Conv quantized alone (every other one kept float), run on the
 * first calibration samples, and its cost measured as 1 - the cosine of the model's float
 * outputs with the float model's. A Conv whose cost exceeds `threshold` is kept in float;
 * the first conv and a classifier head are the usual ones. One candidate model at a time.
 */
export async function measureSensitivity(
  source: Uint8Array,
  ranges: ReadonlyMap<string, TensorRange>,
  options: StaticInt8Options,
  samples: readonly Record<string, Tensor>[],
  threshold: number,
  threads: number,
): Promise<{ costs: Record<string, number>; sensitive: Record<string, string> }> {
  const subset = samples.slice(0, SENSITIVITY_SAMPLES);
  const reference = await floatOutputs(source, subset, threads);
  const convs = staticConvNames(OnnxModel.decode(source), options);
  const costs: Record<string, number> = {};
  const sensitive: Record<string, string> = {};
  for (const conv of convs) {
    const model = OnnxModel.decode(source);
    quantizeStatic(model, ranges, { keepFloat: [...options.keepFloat, ...convs.filter((c) => c !== conv)] });
    const cost = cosineCost(reference, await floatOutputs(model.encode(), subset, threads));
    costs[conv] = cost;
    if (cost > threshold) sensitive[conv] = `sensitivity: quantized alone it costs ${cost.toExponential(2)} of the output cosine, over ${threshold}`;
  }
  return { costs, sensitive };
}
