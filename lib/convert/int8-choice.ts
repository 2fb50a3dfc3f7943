import type { Tensor } from 'onnxruntime-node';
import { OnnxModel } from '../onnx/model';
import { forEachActivation, MIN_CALIBRATION_SAMPLES } from './calibrate';

/** What `mode: "int8"` picked for a model, and why. */
export interface Int8Choice {
  chosen: 'int8-static' | 'int8-dynamic';
  reason: string;
  /** Multiply-accumulates of one sample's run, by where they are spent (undefined when not measured). */
  macs?: { conv: number; matmul: number };
  /** When int8-static was built and measured: its median latency against the float model's. */
  staticLatency?: StaticLatency;
}

/** int8-static's measured median latency against the float model's, on the same sample and threads. */
export interface StaticLatency {
  floatMs: number;
  int8Ms: number;
  /** int8Ms / floatMs: above 1, the int8 model is slower. */
  ratio: number;
}

/** The latency figures of an evaluation (original = the float model as onnxruntime loads it, optimized). */
export function staticLatency(latencyMs: { original: number; converted: number }): StaticLatency {
  const ratio = latencyMs.original > 0 ? latencyMs.converted / latencyMs.original : 1;
  return { floatMs: latencyMs.original, int8Ms: latencyMs.converted, ratio };
}

const describeLatency = (l: StaticLatency) => `${l.ratio.toFixed(2)}x the float latency (${l.int8Ms.toFixed(3)} ms vs ${l.floatMs.toFixed(3)} ms)`;

/** int8-static is not worth publishing when it measured slower than the float model. */
export function staticIsSlower(l: StaticLatency): boolean {
  return l.ratio > 1;
}

/**
 * `mode: "int8"` after int8-static was measured: the choice with its latency recorded, or, when
 * static was slower than float, the choice turned to what was published instead (`published`:
 * int8-dynamic, or the optimized float model when dynamic found nothing to convert) and why.
 */
export function reconsiderStatic(choice: Int8Choice, l: StaticLatency, published: 'int8-dynamic' | 'float'): Int8Choice {
  if (!staticIsSlower(l)) return { ...choice, staticLatency: l };
  const instead =
    published === 'int8-dynamic' ? 'published int8-dynamic instead' : 'int8-dynamic found no weight to convert, so published the optimized float model instead';
  return { ...choice, chosen: 'int8-dynamic', reason: `${choice.reason}; but int8-static measured ${describeLatency(l)}; ${instead}`, staticLatency: l };
}

/** For an explicit `mode: "int8-static"` slower than float: the warning the report carries, else undefined. */
export function slowStaticWarning(l: StaticLatency): string | undefined {
  return staticIsSlower(l) ? `int8-static measured ${describeLatency(l)}; published as asked (mode "int8" would have fallen back to int8-dynamic)` : undefined;
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/**
 * Multiply-accumulates of one run on `feeds`, in Conv and in MatMul/Gemm (main graph). Shapes
 * are read from the run itself (the intermediate tensors fetched as outputs), so dynamic dims
 * count at the size the sample gives them. A Conv costs its output's elements x its weight's
 * elements per output channel; a MatMul or Gemm its output's elements x the shared dimension.
 */
export async function countMacs(bytes: Uint8Array, feeds: Record<string, Tensor>, intraOpNumThreads: number): Promise<{ conv: number; matmul: number }> {
  const graph = OnnxModel.decode(bytes).graph();
  const known = new Map<string, readonly number[]>();
  for (const t of graph.initializers()) known.set(t.name, t.dims);
  for (const [name, t] of Object.entries(feeds)) known.set(name, t.dims);
  const nodes = graph.nodes().filter((n) => !n.domain && (n.opType === 'Conv' || n.opType === 'MatMul' || n.opType === 'Gemm'));
  const wanted = new Set<string>();
  for (const n of nodes) {
    const needs = n.opType === 'Conv' ? [n.inputs[1], n.outputs[0]] : [n.inputs[0], n.outputs[0]];
    for (const name of needs) if (name && !known.has(name)) wanted.add(name);
  }
  await forEachActivation(bytes, [...wanted], [feeds], intraOpNumThreads, (name, _data, dims) => void known.set(name, dims));
  const macs = { conv: 0, matmul: 0 };
  for (const n of nodes) {
    const y = known.get(n.outputs[0] ?? '');
    if (!y) continue;
    if (n.opType === 'Conv') {
      const w = known.get(n.inputs[1] ?? '');
      if (w && w.length >= 2) macs.conv += product(y) * product(w.slice(1));
      continue;
    }
    const a = known.get(n.inputs[0] ?? '');
    if (!a || a.length === 0) continue;
    const k = n.opType === 'Gemm' && n.intAttribute('transA', 0) ? (a[0] as number) : (a[a.length - 1] as number);
    macs.matmul += product(y) * k;
  }
  return macs;
}

/**
 * `mode: "int8"`: int8-static when there is calibration data (at least 8 samples) and most of
 * the model's multiply-accumulates are in Conv, where only static quantization helps; else
 * int8-dynamic, which needs no calibration and is what MatMul/Gemm models get from int8.
 */
export async function chooseInt8Mode(bytes: Uint8Array, samples: readonly Record<string, Tensor>[] | undefined, intraOpNumThreads: number): Promise<Int8Choice> {
  if (!samples || samples.length < MIN_CALIBRATION_SAMPLES) {
    return {
      chosen: 'int8-dynamic',
      reason: `no calibration data (int8-static needs at least ${MIN_CALIBRATION_SAMPLES} samples in "sampleInputs" or "calibration"; ${samples?.length ?? 0} given)`,
    };
  }
  const macs = await countMacs(bytes, samples[0] ?? {}, intraOpNumThreads);
  const total = macs.conv + macs.matmul;
  const share = total > 0 ? macs.conv / total : 0;
  const figures = `${(share * 100).toFixed(1)}% of ${total.toExponential(2)} multiply-accumulates are in Conv`;
  return share > 0.5
    ? { chosen: 'int8-static', reason: `${figures}, and ${samples.length} calibration samples are given`, macs }
    : { chosen: 'int8-dynamic', reason: `${figures}; MatMul/Gemm dominate, and int8-dynamic quantizes those`, macs };
}
