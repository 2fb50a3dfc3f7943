// Bench section `keras`: a MobileNetV2-sized TF.js layers model (224x224x3, width 1.0, seeded
// weights, not trained) zipped as an upload and taken through the import: conversion time, RSS
// growth against the upload's size, export fidelity against TF.js, then the usual int8-static
// conversion of the export. Figures are printed, nothing is asserted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { measureImportFidelity } from '../lib/convert/import/fidelity';
import { importTfjsZip } from '../lib/convert/import/import-upload';
import { writeZip } from '../lib/convert/import/zip';
import { convertModel, DEFAULT_PIPELINE_OPTIONS } from '../lib/convert/pipeline';
import { images, mobileNetV2 } from './lib/mobilenet';
import { saveTfjs, seedWeights, useCpuBackend } from '../test/helpers/tfjs';

async function main(): Promise<void> {
  await useCpuBackend();
  const model = mobileNetV2();
  seedWeights(model, 1);
  // Seeded weights at the scale of trained ones keep activations in range through 50+ layers.
  const saved = await saveTfjs(model);
  const zip = writeZip([{ name: 'model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name, data }))]);

  // The import runs in a fresh process, so its peak RSS is the import's own, not the model building's.
  const dir = mkdtempSync(join(tmpdir(), 'bench-keras-'));
  const zipPath = join(dir, 'model.zip');
  writeFileSync(zipPath, zip);
  const child = JSON.parse(execFileSync(process.execPath, ['--expose-gc', process.argv[1]!, 'import-child', zipPath], { encoding: 'utf8', maxBuffer: 1 << 20 }).trim().split('\n').pop()!) as { importMs: number; peakGrowth: number };
  rmSync(dir, { recursive: true, force: true });
  const { importMs, peakGrowth } = child;
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
  console.log('| upload MiB | ONNX MiB | import ms | peak RSS growth / upload | fidelity cosine | max abs error | fidelity ms (4 samples, TF.js CPU) | int8-static outcome | int8 cosine | size ratio | speedup | int8 pipeline ms |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${(zip.byteLength / 2 ** 20).toFixed(1)} | ${(imported.onnx.byteLength / 2 ** 20).toFixed(1)} | ${importMs.toFixed(0)} | ${(peakGrowth / zip.byteLength).toFixed(2)}x | ${probs.cosine.toFixed(6)} | ${probs.maxAbsError.toExponential(2)} | ${fidelityMs.toFixed(0)} | ${result.outcome} | ${q?.cosine.toFixed(4)} | ${(result.evaluation.bytes.converted / result.evaluation.bytes.original).toFixed(3)} | ${result.evaluation.latencyMs.speedup.toFixed(2)}x | ${int8Ms.toFixed(0)} |`,
  );
}

/** In a child process: one import of the zip at `path`, printing its time and peak RSS growth as JSON. */
function importChild(path: string): void {
  const zip = new Uint8Array(readFileSync(path));
  global.gc?.();
  const base = process.memoryUsage().rss;
  const started = performance.now();
  importTfjsZip(zip);
  const importMs = performance.now() - started;
  console.log(JSON.stringify({ importMs, peakGrowth: Math.max(0, process.resourceUsage().maxRSS * 1024 - base) }));
}

if (process.argv[2] === 'import-child') importChild(process.argv[3]!);
else void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
