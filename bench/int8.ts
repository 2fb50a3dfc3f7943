// Bench section `int8`: int8-static (QDQ Convs, min/max calibration) against fp32, interleaved in
// one process at one intra-op thread (as the infer function serves), on generated conv stacks
// with image-like inputs. Figures are ratios against the fp32 run of the same process; nothing
// is asserted. Real pretrained CNNs and real images are not in this section yet.
import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { calibrateMinMax } from '../lib/convert/calibrate';
import { quantizeStatic, staticCalibrationTargets } from '../lib/convert/static-int8';
import { OnnxModel } from '../lib/onnx/model';
import { convStackModel, prng } from '../test/helpers/models';

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

async function runCase(title: string, source: Uint8Array, size: number): Promise<void> {
  const calibration = images(32, size, 1);
  const held = images(64, size, 2);
  const rssBefore = process.memoryUsage().rss;
  const started = performance.now();
  const model = OnnxModel.decode(source);
  const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: [] }), calibration);
  const report = quantizeStatic(model, ranges, { keepFloat: [] });
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
    `| ${title} | ${median(ta).toFixed(2)} | ${median(tb).toFixed(2)} | ${(median(tb) / median(ta)).toFixed(2)}x | ${(quantized.byteLength / source.byteLength).toFixed(3)}x | ${((agree / held.length) * 100).toFixed(1)}% | ${report.convs} | ${convertMs.toFixed(0)} | ${(rssGrowth / 2 ** 20).toFixed(1)} / ${(source.byteLength / 2 ** 20).toFixed(1)} |`,
  );
}

async function main(): Promise<void> {
  console.log('\n## int8: int8-static vs fp32, one intra-op thread, interleaved (generated conv stacks, image-like inputs, 32 calibration / 64 held-out samples)\n');
  console.log('| model | fp32 ms | int8 ms | latency ratio | size ratio | top-1 agreement | QDQ convs | calibrate + quantize ms | RSS growth / model MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  await runCase('convStackModel(64, 6, 56)', convStackModel(64, 6, 56), 56);
  await runCase('convStackModel(128, 6, 32)', convStackModel(128, 6, 32), 32);
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
