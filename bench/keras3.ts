// Bench section `keras3`: the MobileNetV2-sized model of the keras section written as Keras 3
// saves it (a .keras zip: config.json + model.weights.h5) and imported as the job imports it:
// import time, peak RSS growth against the upload's size (in a fresh process), export fidelity
// against TF.js. Figures are printed, nothing is asserted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { measureImportFidelity } from '../lib/convert/import/fidelity';
import { importUpload } from '../lib/convert/import/import-upload';
import { images, mobileNetV2 } from './lib/mobilenet';
import { keras3FromTfjs } from '../test/helpers/keras3';
import { seedWeights, useCpuBackend } from '../test/helpers/tfjs';

async function main(): Promise<void> {
  await useCpuBackend();
  const model = mobileNetV2();
  seedWeights(model, 1);
  const file = keras3FromTfjs(model);

  const dir = mkdtempSync(join(tmpdir(), 'bench-keras3-'));
  const path = join(dir, 'model.keras');
  writeFileSync(path, file);
  const child = JSON.parse(execFileSync(process.execPath, ['--expose-gc', process.argv[1]!, 'import-child', path], { encoding: 'utf8', maxBuffer: 1 << 20 }).trim().split('\n').pop()!) as { importMs: number; peakGrowth: number };
  rmSync(dir, { recursive: true, force: true });
  const imported = importUpload('keras', file);

  const samples = images(4, 1);
  const t = performance.now();
  const fidelity = await measureImportFidelity(imported.tfjs, imported.onnx, { samples, sampleCount: samples.length, seed: 1, dynamicDims: { first: 1, other: 1 } }, 0.9999);
  const fidelityMs = performance.now() - t;
  const probs = fidelity.outputs.probs!;
  console.log('\n## keras3: the same MobileNetV2-sized model uploaded as a Keras 3 .keras file\n');
  console.log('| upload MiB | ONNX MiB | import ms | peak RSS growth / upload | fidelity cosine | max abs error | fidelity ms (4 samples, TF.js CPU) |');
  console.log('|---|---|---|---|---|---|---|');
  console.log(
    `| ${(file.byteLength / 2 ** 20).toFixed(1)} | ${(imported.onnx.byteLength / 2 ** 20).toFixed(1)} | ${child.importMs.toFixed(0)} | ${(child.peakGrowth / file.byteLength).toFixed(2)}x | ${probs.cosine.toFixed(6)} | ${probs.maxAbsError.toExponential(2)} | ${fidelityMs.toFixed(0)} |`,
  );
}

/** In a child process: one import of the .keras file at `path`, printing its time and peak RSS growth as JSON. */
function importChild(path: string): void {
  const bytes = new Uint8Array(readFileSync(path));
  global.gc?.();
  const base = process.memoryUsage().rss;
  const started = performance.now();
  importUpload('keras', bytes);
  const importMs = performance.now() - started;
  console.log(JSON.stringify({ importMs, peakGrowth: Math.max(0, process.resourceUsage().maxRSS * 1024 - base) }));
}

if (process.argv[2] === 'import-child') importChild(process.argv[3]!);
else void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
