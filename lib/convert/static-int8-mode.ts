import type { Tensor } from 'onnxruntime-node';
import { OnnxModel } from '../onnx/model';
import { calibrate, MIN_CALIBRATION_SAMPLES, type TensorRange } from './calibrate';
import { ConversionError } from './errors';
import type { PipelineOptions } from './pipeline';
import { quantizeModel, type QuantizeReport } from './quantize';
import { quantizeStatic, staticCalibrationTargets } from './static-int8';

/**
 * Why `count` calibration samples cannot calibrate int8-static, or undefined when they can.
 * Generated noise is never used instead: its ranges are not the ones the model meets in service.
 */
export function calibrationSamplesProblem(count: number | undefined): string | undefined {
  if (count === undefined || count === 0) {
    return `int8-static calibrates on your data: give at least ${MIN_CALIBRATION_SAMPLES} samples in "sampleInputs" or files under "calibration" (generated noise is not used, its activation ranges are not those of real inputs)`;
  }
  if (count < MIN_CALIBRATION_SAMPLES) return `int8-static needs at least ${MIN_CALIBRATION_SAMPLES} calibration samples in "sampleInputs" or "calibration"; got ${count}`;
  return undefined;
}

/** Calibrates the tensors int8-static quantizes, on the upload's own samples (`calibration` files, else `sampleInputs`). */
export async function calibrateStatic(source: Uint8Array, options: PipelineOptions): Promise<Map<string, TensorRange>> {
  const given = options.calibration.samples ?? options.evaluate.samples;
  const samples: readonly Record<string, Tensor>[] = given ?? [];
  const problem = calibrationSamplesProblem(given?.length);
  if (problem) throw new ConversionError(problem);
  const targets = staticCalibrationTargets(OnnxModel.decode(source), options);
  return calibrate(source, targets, samples, options.calibration, options.evaluate.intraOpNumThreads);
}

/**
 * int8-static: Convs in calibrated QDQ form, then MatMul/Gemm (and embeddings) on the dynamic
 * path, which keeps its run-time activation ranges. One report for both.
 */
export function quantizeStaticModel(
  model: OnnxModel,
  ranges: ReadonlyMap<string, TensorRange>,
  options: PipelineOptions,
  sensitivity?: { threshold: number; costs: Record<string, number>; sensitive: Record<string, string> },
): QuantizeReport {
  let report;
  try {
    report = quantizeStatic(model, ranges, {
      keepFloat: options.keepFloat,
      ...(sensitivity ? { sensitive: sensitivity.sensitive } : {}),
      ...(options.staticActivations ? { activations: options.staticActivations } : {}),
    });
    if (sensitivity) report.sensitivity = { threshold: sensitivity.threshold, costs: sensitivity.costs };
  } catch (err) {
    throw new ConversionError((err as Error).message);
  }
  const dynamic = quantizeModel(model, { ...options, mode: 'int8-dynamic' });
  const rewritten = { ...dynamic.rewritten };
  if (report.convs > 0) rewritten.Conv = report.convs;
  return {
    mode: 'int8-static',
    rewritten,
    tensors: dynamic.tensors + report.convs,
    skipped: dynamic.skipped + Object.keys(report.keptFloat).length,
    static: report,
  };
}
