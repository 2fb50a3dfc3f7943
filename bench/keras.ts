// Bench section `keras`: a MobileNetV2-sized TF.js layers model (224x224x3, width 1.0, seeded
// weights, not trained) and the pretrained MobileNetV2 TF.js graph model the nsfwjs package ships,
// each zipped as an upload and taken through the import: conversion time, RSS growth against the
// upload's size, export fidelity against TF.js, then the usual int8-static conversion of the
// export. Figures are printed, nothing is asserted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Tensor } from 'onnxruntime-node';
import { measureImportFidelity } from '../lib/convert/import/fidelity';
import { importTfjsZip } from '../lib/convert/import/import-upload';
import { writeZip } from '../lib/convert/import/zip';
import { convertModel, DEFAULT_PIPELINE_OPTIONS } from '../lib/convert/pipeline';
import { saveTfjs, seedWeights, tfl, useCpuBackend, type SavedTfjs } from '../test/helpers/tfjs';
import { nsfwMobileNetV2Graph } from '../test/helpers/tfjs-graph';
import { images, mobileNetV2 } from './lib/mobilenet';

function zipped(saved: SavedTfjs): Uint8Array {
  return writeZip([{ name: 'model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name, data }))]);
}

/** The job's steps on an upload: import, fidelity against TF.js, int8-static; `after` is called after each. */
async function jobSteps(zip: Uint8Array, sample: Sampler, after: (step: string) => void): Promise<void> {
  const imported = importTfjsZip(zip);
  after('import');
  await measureImportFidelity(imported.tfjs, imported.onnx, { samples: sample(4, 1), sampleCount: 4, seed: 1, dynamicDims: { first: 1, other: 1 } }, 0.9999);
  after('fidelity');
  await convertModel(imported.onnx, { ...DEFAULT_PIPELINE_OPTIONS, mode: 'int8-static', evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, samples: sample(16, 2), intraOpNumThreads: 1 } });
  after('int8');
}

type Sampler = (count: number, seed: number) => Record<string, Tensor>[];
const samplerFor = (input: string, unit: boolean): Sampler => (n, seed) => images(n, seed, input, unit);

/** One table row: the job's peak memory by step in a fresh process, then its fidelity against TF.js and its int8-static conversion. */
async function figures(label: string, zip: Uint8Array, output: string, input: string, unit: boolean): Promise<string> {
  // In a fresh process, so the peak RSS is the job's own, not the model building's.
  const dir = mkdtempSync(join(tmpdir(), 'bench-keras-'));
  const zipPath = join(dir, 'model.zip');
  writeFileSync(zipPath, zip);
  const out = execFileSync(process.execPath, ['--expose-gc', process.argv[1]!, 'import-child', zipPath, input, String(unit)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  const child = JSON.parse(out.trim().split('\n').pop()!) as { importMs: number; peaks: Record<string, number> };
  rmSync(dir, { recursive: true, force: true });
  const { importMs, peaks } = child;
  const imported = importTfjsZip(zip);
  const sample = samplerFor(input, unit);

  const samples = sample(4, 1);
  let t = performance.now();
  const fidelity = await measureImportFidelity(imported.tfjs, imported.onnx, { samples, sampleCount: samples.length, seed: 1, dynamicDims: { first: 1, other: 1 } }, 0.9999);
  const fidelityMs = performance.now() - t;

  t = performance.now();
  const result = await convertModel(imported.onnx, {
    ...DEFAULT_PIPELINE_OPTIONS,
    mode: 'int8-static',
    evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, samples: sample(16, 2), intraOpNumThreads: 1 },
  });
  const int8Ms = performance.now() - t;
  const f = fidelity.outputs[output]!;
  const q = result.evaluation.outputs[output];
  const x = (step: string): string => `${((peaks[step] ?? 0) / zip.byteLength).toFixed(2)}x`;
  return `| ${label} | ${imported.format} | ${(zip.byteLength / 2 ** 20).toFixed(1)} | ${(imported.onnx.byteLength / 2 ** 20).toFixed(1)} | ${importMs.toFixed(0)} | ${x('import')}, ${x('fidelity')}, ${x('int8')} | ${f.cosine.toFixed(6)} | ${f.maxAbsError.toExponential(2)} | ${fidelityMs.toFixed(0)} | ${result.outcome} | ${q?.cosine.toFixed(4)} | ${(result.evaluation.bytes.converted / result.evaluation.bytes.original).toFixed(3)} | ${result.evaluation.latencyMs.speedup.toFixed(2)}x | ${int8Ms.toFixed(0)} |`;
}

async function main(): Promise<void> {
  await useCpuBackend();
  const model = mobileNetV2();
  seedWeights(model, 1);
  // Seeded weights at the scale of trained ones keep activations in range through 50+ layers.
  const layers = await figures('MobileNetV2-sized, seeded', zipped(await saveTfjs(model)), 'probs', 'image', false);
  // The pretrained graph model reads pictures in [0, 1] (it scales them to [-1, 1] itself).
  const graph = await figures('nsfwjs mobilenet_v2_mid, pretrained', zipped(nsfwMobileNetV2Graph()), 'Identity:0', 'input:0', true);
  console.log('\n## keras: MobileNetV2 as a TF.js layers model (224x224x3, seeded weights) and as a pretrained TF.js graph model, uploaded as zips\n');
  console.log('| model | format | upload MiB | ONNX MiB | import ms | peak RSS growth / upload: import, + fidelity, + int8 (the whole job) | fidelity cosine | max abs error | fidelity ms (4 samples, TF.js CPU) | int8-static outcome | int8 cosine | size ratio | speedup | int8 pipeline ms |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  console.log(layers);
  console.log(graph);
}

/**
 * In a child process: the job's steps on the zip at `path`, printing the peak RSS growth after
 * each as JSON. The kernel's high-water mark only rises, so each figure is the peak up to and
 * including that step. The same steps run first on a tiny model, so the runtimes' own start-up
 * (onnxruntime's library and arena, TF.js's kernels) is in the baseline, not charged to the model.
 */
async function importChild(path: string, input: string, unit: boolean): Promise<void> {
  await useCpuBackend();
  const sample = samplerFor(input, unit);
  const tiny = tfl.sequential({ layers: [tfl.layers.inputLayer({ inputShape: [224, 224, 3], name: input.replace(/:\d+$/, '') }), tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 8 }), tfl.layers.globalAveragePooling2d({}), tfl.layers.dense({ units: 2 })] });
  seedWeights(tiny, 2);
  await jobSteps(zipped(await saveTfjs(tiny)), samplerFor(input.replace(/:\d+$/, ''), unit), () => undefined);
  const zip = new Uint8Array(readFileSync(path));
  global.gc?.();
  const base = process.memoryUsage().rss;
  const peaks: Record<string, number> = {};
  const started = performance.now();
  let importMs = 0;
  await jobSteps(zip, sample, (step) => {
    if (step === 'import') importMs = performance.now() - started;
    peaks[step] = Math.max(0, process.resourceUsage().maxRSS * 1024 - base);
  });
  console.log(JSON.stringify({ importMs, peaks }));
}

if (process.argv[2] === 'import-child') void importChild(process.argv[3]!, process.argv[4]!, process.argv[5] === 'true');
else void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
