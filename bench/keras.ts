// Bench section `keras`: a MobileNetV2-sized TF.js layers model (224x224x3, width 1.0, seeded
// weights, not trained) zipped as an upload and taken through the import: conversion time, RSS
// growth against the upload's size, export fidelity against TF.js, then the usual int8-static
// conversion of the export. Figures are printed, nothing is asserted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Tensor } from 'onnxruntime-node';
import { measureImportFidelity } from '../lib/convert/import/fidelity';
import { importTfjsZip } from '../lib/convert/import/import-upload';
import { writeZip } from '../lib/convert/import/zip';
import { convertModel, DEFAULT_PIPELINE_OPTIONS } from '../lib/convert/pipeline';
import { prng } from '../lib/convert/random';
import { saveTfjs, seedWeights, tfl, useCpuBackend } from '../test/helpers/tfjs';

type T = tfl.SymbolicTensor;

function convBnRelu6(x: T, filters: number, kernel: number, strides: number): T {
  const c = tfl.layers.conv2d({ filters, kernelSize: kernel, strides, padding: 'same', useBias: false }).apply(x) as T;
  const b = tfl.layers.batchNormalization().apply(c) as T;
  return tfl.layers.reLU({ maxValue: 6 }).apply(b) as T;
}

/** MobileNetV2's layout (inverted residual blocks, expansion 6), as Keras builds it. */
function mobileNetV2(): tfl.LayersModel {
  const input = tfl.input({ shape: [224, 224, 3], name: 'image' });
  let x = convBnRelu6(input, 32, 3, 2);
  let channels = 32;
  const blocks: [number, number, number, number][] = [
    [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
  ];
  for (const [t, c, n, s] of blocks) {
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      let y = t === 1 ? x : convBnRelu6(x, channels * t, 1, 1);
      y = tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: stride, padding: 'same', useBias: false }).apply(y) as T;
      y = tfl.layers.reLU({ maxValue: 6 }).apply(tfl.layers.batchNormalization().apply(y)) as T;
      y = tfl.layers.batchNormalization().apply(tfl.layers.conv2d({ filters: c, kernelSize: 1, useBias: false }).apply(y)) as T;
      x = stride === 1 && channels === c ? (tfl.layers.add().apply([x, y]) as T) : y;
      channels = c;
    }
  }
  x = convBnRelu6(x, 1280, 1, 1);
  x = tfl.layers.globalAveragePooling2d({}).apply(x) as T;
  const out = tfl.layers.dense({ units: 1000, activation: 'softmax', name: 'probs' }).apply(x) as T;
  return tfl.model({ inputs: input, outputs: out });
}

function images(count: number, seed: number): Record<string, Tensor>[] {
  const rand = prng(seed);
  return Array.from({ length: count }, () => {
    const data = new Float32Array(224 * 224 * 3);
    const [a, b] = [rand(), rand()];
    for (let i = 0; i < data.length; i++) {
      const p = Math.floor(i / 3);
      data[i] = Math.min(1, Math.max(-1, a * ((p % 224) / 112 - 1) + b * (Math.floor(p / 224) / 112 - 1) + 0.3 * (rand() - 0.5)));
    }
    return { image: new Tensor('float32', data, [1, 224, 224, 3]) };
  });
}

/** The model as TF.js saves it, zipped as an upload. */
async function zipped(model: tfl.LayersModel): Promise<Uint8Array> {
  const saved = await saveTfjs(model);
  return writeZip([{ name: 'model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name, data }))]);
}

async function main(): Promise<void> {
  await useCpuBackend();
  const model = mobileNetV2();
  seedWeights(model, 1);
  // Seeded weights at the scale of trained ones keep activations in range through 50+ layers.
  const zip = await zipped(model);

  // The import runs in a fresh process, so its peak RSS is the import's own, not the model building's.
  const dir = mkdtempSync(join(tmpdir(), 'bench-keras-'));
  const zipPath = join(dir, 'model.zip');
  writeFileSync(zipPath, zip);
  const child = JSON.parse(execFileSync(process.execPath, ['--expose-gc', process.argv[1]!, 'import-child', zipPath], { encoding: 'utf8', maxBuffer: 1 << 20 }).trim().split('\n').pop()!) as { importMs: number; peakGrowth: number; afterFidelity: number; afterInt8: number };
  rmSync(dir, { recursive: true, force: true });
  const { importMs, peakGrowth, afterFidelity, afterInt8 } = child;
  const imported = importTfjsZip(zip);

  const samples = images(4, 1);
  let t = performance.now();
  const fidelity = await measureImportFidelity(imported.tfjs, imported.onnx, { samples, sampleCount: samples.length, seed: 1, dynamicDims: { first: 1, other: 1 } }, 0.9999);
  const fidelityMs = performance.now() - t;

  t = performance.now();
  const result = await convertModel(imported.onnx, {
    ...DEFAULT_PIPELINE_OPTIONS,
    mode: 'int8-static',
    evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, samples: images(16, 2), intraOpNumThreads: 1 },
  });
  const int8Ms = performance.now() - t;
  const probs = fidelity.outputs.probs!;
  const q = result.evaluation.outputs.probs;
  console.log('\n## keras: a MobileNetV2-sized TF.js layers model (224x224x3, seeded weights) uploaded as a zip\n');
  console.log('| upload MiB | ONNX MiB | import ms | peak RSS growth / upload: import, + fidelity, + int8 (the whole job) | fidelity cosine | max abs error | fidelity ms (4 samples, TF.js CPU) | int8-static outcome | int8 cosine | size ratio | speedup | int8 pipeline ms |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${(zip.byteLength / 2 ** 20).toFixed(1)} | ${(imported.onnx.byteLength / 2 ** 20).toFixed(1)} | ${importMs.toFixed(0)} | ${(peakGrowth / zip.byteLength).toFixed(2)}x, ${(afterFidelity / zip.byteLength).toFixed(2)}x, ${(afterInt8 / zip.byteLength).toFixed(2)}x | ${probs.cosine.toFixed(6)} | ${probs.maxAbsError.toExponential(2)} | ${fidelityMs.toFixed(0)} | ${result.outcome} | ${q?.cosine.toFixed(4)} | ${(result.evaluation.bytes.converted / result.evaluation.bytes.original).toFixed(3)} | ${result.evaluation.latencyMs.speedup.toFixed(2)}x | ${int8Ms.toFixed(0)} |`,
  );
}

/** The job's steps on an upload: import, fidelity against TF.js, int8-static; `after` is called after each. */
async function jobSteps(zip: Uint8Array, after: (step: string) => void): Promise<void> {
  const imported = importTfjsZip(zip);
  after('import');
  await measureImportFidelity(imported.tfjs, imported.onnx, { samples: images(4, 1), sampleCount: 4, seed: 1, dynamicDims: { first: 1, other: 1 } }, 0.9999);
  after('fidelity');
  await convertModel(imported.onnx, { ...DEFAULT_PIPELINE_OPTIONS, mode: 'int8-static', evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, samples: images(16, 2), intraOpNumThreads: 1 } });
  after('int8');
}

/**
 * In a child process: the job's steps on the zip at `path`, printing the peak RSS growth after
 * each as JSON. The kernel's high-water mark only rises, so each figure is the peak up to and
 * including that step. The same steps run first on a tiny model, so the runtimes' own start-up
 * (onnxruntime's library and arena, TF.js's kernels) is in the baseline, not charged to the model.
 */
async function importChild(path: string): Promise<void> {
  await useCpuBackend();
  const tiny = tfl.sequential({ layers: [tfl.layers.inputLayer({ inputShape: [224, 224, 3], name: 'image' }), tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 8 }), tfl.layers.globalAveragePooling2d({}), tfl.layers.dense({ units: 2 })] });
  seedWeights(tiny, 2);
  await jobSteps(await zipped(tiny), () => undefined);
  const zip = new Uint8Array(readFileSync(path));
  global.gc?.();
  const base = process.memoryUsage().rss;
  const peaks: Record<string, number> = {};
  const started = performance.now();
  let importMs = 0;
  await jobSteps(zip, (step) => {
    if (step === 'import') importMs = performance.now() - started;
    peaks[step] = Math.max(0, process.resourceUsage().maxRSS * 1024 - base);
  });
  console.log(JSON.stringify({ importMs, peakGrowth: peaks.import, afterFidelity: peaks.fidelity, afterInt8: peaks.int8 }));
}

if (process.argv[2] === 'import-child') void importChild(process.argv[3]!);
else void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
