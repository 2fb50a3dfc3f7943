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
 * Min/max of each named float tensor over the samples, one sample at a time: the session
 * fetches the tensors as extra outputs and only their running min and max are kept, so memory
 * is the model plus one sample's activations, whatever the number of samples.
 */
export async function calibrateMinMax(
  bytes: Uint8Array,
  names: readonly string[],
  samples: readonly Record<string, Tensor>[],
  intraOpNumThreads = 1,
): Promise<Map<string, TensorRange>> {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  const declared = new Set(graph.outputNames());
  for (const name of names) if (!declared.has(name)) graph.proto.fields.push(ProtoField.message(GRAPH.output, floatOutput(name)));
  const session = await InferenceSession.create(model.encode(), { intraOpNumThreads, logSeverityLevel: 3 });
  const ranges = new Map<string, TensorRange>();
  try {
    for (const feeds of samples) {
      const out = await session.run(feeds, [...names]);
      for (const name of names) {
        const data = out[name]?.data;
        if (!(data instanceof Float32Array)) throw new Error(`calibration: tensor "${name}" is not float32`);
        const range = ranges.get(name) ?? { min: Infinity, max: -Infinity };
        for (let i = 0; i < data.length; i++) {
          const v = data[i] as number;
          // A NaN or infinity says nothing about the range a finite 8-bit grid must cover.
          if (!Number.isFinite(v)) continue;
          if (v < range.min) range.min = v;
          if (v > range.max) range.max = v;
        }
        ranges.set(name, range);
      }
    }
  } finally {
    await session.release();
  }
  for (const range of ranges.values()) {
    if (range.min > range.max) range.min = range.max = 0;
  }
  return ranges;
}
