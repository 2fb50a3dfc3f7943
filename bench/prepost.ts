/**
 * Section: declared pre- and post-processing (lib/prepost), three figures in one run.
 *
 *   image     a 12 MP photo-like JPEG (made here) to a 224x224 ImageNet-normalized float32 NCHW
 *             tensor through imagesToTensor, against sharp's own decode + resize of the same file
 *             to raw 8-bit pixels (the floor any sharp-based path pays). Target <= 1.3x.
 *   e2e       image in, labels out through the infer handler (a plain image/jpeg POST of a noisy
 *             640x480 JPEG, ~90 KB, decode, resize, normalize, run, softmax, top-5), against a bare
 *             session.run of the same model on a ready tensor: the added time, in ms.
 *   cold      a tensor-only model's cold start (fresh process, first answer, cold-app.ts) built
 *             from this tree against the same file built from the commit before lib/prepost first
 *             appeared (or BENCH_PREPOST_BASE; BENCH_PREPOST_AFTER builds a commit instead of
 *             this tree, to find which change moved it). Target <= 1.05x.
 *
 * Medians of BENCH_PREPOST_REPS (default 15; 7 for cold) after a discarded warm-up.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { build } from 'esbuild';
import { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import { hashApiKey } from '../lib/auth/api-key';
import { checkDeclarations, imageDeclaration, parseDeclarations } from '../lib/prepost/declarations';
import { imagesToTensor, loadSharp } from '../lib/prepost/image';
import { publishVersion } from '../lib/registry/registry';
import { ObjectStore } from '../lib/storage/object-store';
import { createTestApp, describeModel, publishModel } from '../test/helpers/app';
import { httpEvent, lambdaContext, TEST_API_KEY } from '../test/helpers/events';
import { startLocalS3 } from '../test/helpers/local-s3';
import { colourClassifierModel, denseStackModel } from '../test/helpers/models';
import { RESULT_PREFIX, type ChildReport } from './lib/child';
import { median, ms, table } from './lib/stats';

const REPS = Number(process.env.BENCH_PREPOST_REPS ?? 15);
const COLD_REPS = Number(process.env.BENCH_PREPOST_COLD_REPS ?? 7);
const root = resolve(__dirname, '..');

/** A photo-like RGB picture: gradients and noise, so JPEG has real detail to code. */
async function photoJpeg(width: number, height: number, quality: number): Promise<Buffer> {
  const px = Buffer.alloc(width * height * 3);
  let s = 12345;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const n = (s >>> 26) - 32;
      const i = (y * width + x) * 3;
      px[i] = Math.max(0, Math.min(255, ((x * 255) / width + n) | 0));
      px[i + 1] = Math.max(0, Math.min(255, ((y * 255) / height + n) | 0));
      px[i + 2] = Math.max(0, Math.min(255, (((x ^ y) & 255) + n) | 0));
    }
  }
  return sharp(px, { raw: { width, height, channels: 3 } }).jpeg({ quality }).toBuffer();
}

const IMAGENET = { type: 'image', scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

async function imageFigure(): Promise<void> {
  const jpeg = await photoJpeg(4000, 3000, 90);
  const spec = { name: 'image', datatype: 'FP32' as const, shape: [1, 3, 224, 224] };
  const decl = imageDeclaration(checkDeclarations(parseDeclarations({ image: IMAGENET }, undefined), { inputs: [spec], outputs: [] }), 'image')!;
  await loadSharp();
  // Alternate the two so drift from neighbours' load hits both alike.
  const ours: number[] = [];
  const floor: number[] = [];
  await imagesToTensor('image', [jpeg], decl, spec);
  await sharp(jpeg).resize(224, 224, { fit: 'fill' }).raw().toBuffer();
  for (let i = 0; i < REPS; i++) {
    floor.push(await once(() => sharp(jpeg).resize(224, 224, { fit: 'fill' }).raw().toBuffer()));
    ours.push(await once(() => imagesToTensor('image', [jpeg], decl, spec)));
  }
  const r = median(ours) / median(floor);
  console.log(`\n### Image pre-processing: ${(jpeg.length / 1024 / 1024).toFixed(1)} MB 4000x3000 JPEG -> 224x224 normalized FP32 NCHW\n`);
  console.log(table(['path', 'median ms', 'min', 'max'], [
    ['sharp decode + resize to raw pixels (floor)', ms(median(floor)), ms(Math.min(...floor)), ms(Math.max(...floor))],
    ['imagesToTensor (orient, flatten, resize, normalize, layout)', ms(median(ours)), ms(Math.min(...ours)), ms(Math.max(...ours))],
  ]));
  console.log(`\nratio ${r.toFixed(2)}x (target <= 1.3x): ${r <= 1.3 ? 'met' : 'NOT met'}`);
}

async function once(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function e2eFigure(): Promise<void> {
  const s3 = await startLocalS3();
  const app = createTestApp(s3, { MANIFEST_TTL_MS: '60000' });
  try {
    const model = colourClassifierModel({ size: 224 });
    await publishVersion(
      new ObjectStore(s3.client(), s3.bucket),
      {
        model: 'colours', version: 1, ...(await describeModel(model)), evaluation: { passed: true }, conversion: { classLabels: ['red', 'green', 'blue'] },
        preprocess: { image: IMAGENET }, postprocess: { logits: { type: 'classification', topK: 3 } },
      },
      model,
      'stable',
    );
    const jpeg = await photoJpeg(640, 480, 75);
    const event = () => ({ ...httpEvent('POST', '/v2/models/colours/infer', { headers: { 'content-type': 'image/jpeg' } }), body: jpeg.toString('base64'), isBase64Encoded: true });
    const session = await InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    const spec = { name: 'image', datatype: 'FP32' as const, shape: [-1, 3, 224, 224] };
    const decl = imageDeclaration(checkDeclarations(parseDeclarations({ image: IMAGENET }, undefined), { inputs: [spec], outputs: [] }), 'image')!;
    const { tensor } = await imagesToTensor('image', [jpeg], decl, spec);
    const handler: number[] = [];
    const bare: number[] = [];
    await app.handler(event(), lambdaContext('infer'));
    await session.run({ image: tensor });
    for (let i = 0; i < REPS; i++) {
      bare.push(await once(() => session.run({ image: tensor })));
      handler.push(
        await once(async () => {
          const res = (await app.handler(event(), lambdaContext('infer'))) as { statusCode: number };
          if (res.statusCode !== 200) throw new Error(`image request answered ${res.statusCode}`);
        }),
      );
    }
    await session.release();
    console.log(`\n### Image in, labels out: a ${(jpeg.length / 1024).toFixed(0)} KB 640x480 JPEG through the infer handler vs a bare session.run\n`);
    console.log(table(['path', 'median ms', 'min', 'max'], [
      ['session.run on a ready 1x3x224x224 tensor', ms(median(bare)), ms(Math.min(...bare)), ms(Math.max(...bare))],
      ['handler: image/jpeg POST -> top-3 labels', ms(median(handler)), ms(Math.min(...handler)), ms(Math.max(...handler))],
    ]));
    console.log(`\nadded time ${ms(median(handler) - median(bare))} ms (median - median)`);
  } finally {
    await app.dispose();
    await s3.stop();
  }
}

/** Runs a cold-start child; under callgrind (`counted`) it also answers the instructions it executed. */
function child(script: string, env: Record<string, string>, counted = false): Promise<ChildReport & { instructions?: number }> {
  return new Promise((res, rej) => {
    const [command, args] = counted
      ? ['valgrind', ['--tool=callgrind', '--callgrind-out-file=/dev/null', process.execPath, script]]
      : [process.execPath, [script]];
    const p = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    p.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    p.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code !== 0 || !line) return rej(new Error(`${script} exited with ${code}\n${err}`));
      const collected = /Collected : (\d+)/.exec(err)?.[1];
      res({ ...(JSON.parse(line.slice(RESULT_PREFIX.length)) as ChildReport), ...(collected ? { instructions: Number(collected) } : {}) });
    });
  });
}

function hasValgrind(): boolean {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function coldFigure(): Promise<void> {
  let base = process.env.BENCH_PREPOST_BASE;
  try {
    // The commit before lib/prepost first appeared: stable once this work is merged, unlike a merge-base.
    const added = execFileSync('git', ['log', '--diff-filter=A', '--format=%H', '--', 'lib/prepost/declarations.ts'], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop();
    if (!added) throw new Error('no commit adds lib/prepost/declarations.ts');
    base ??= execFileSync('git', ['rev-parse', `${added}^`], { cwd: root, encoding: 'utf8' }).trim();
  } catch (err) {
    console.log(`\n### Tensor-only cold start before vs after: skipped (${(err as Error).message.split('\n')[0]}); set BENCH_PREPOST_BASE to a commit without lib/prepost`);
    return;
  }
  const temp = mkdtempSync(join(tmpdir(), 'bench-prepost-'));
  const s3 = await startLocalS3();
  try {
    // A commit's tree, for the builds that are not the working tree.
    const tree = (commit: string, name: string): string => {
      const dir = join(temp, name);
      mkdirSync(dir);
      const archive = execFileSync('git', ['archive', commit, 'bench', 'handlers', 'lib', 'test/helpers', 'package.json', 'tsconfig.json'], { cwd: root, maxBuffer: 256 * 1024 * 1024 });
      execFileSync('tar', ['-x', '-C', dir], { input: archive });
      return dir;
    };
    const before = tree(base, 'before');
    // BENCH_PREPOST_AFTER compares another commit instead of the working tree (to find which change moved the figure).
    const afterCommit = process.env.BENCH_PREPOST_AFTER;
    const after = afterCommit ? tree(afterCommit, 'after') : root;
    const common = { bundle: true, platform: 'node' as const, format: 'cjs' as const, target: 'node20', logLevel: 'warning' as const, mainFields: ['module', 'main'], external: ['onnxruntime-node', 'sharp'], nodePaths: [join(root, 'node_modules')] };
    await build({ ...common, absWorkingDir: before, entryPoints: [join(before, 'bench', 'cold-app.ts')], outfile: join(temp, 'before.js') });
    await build({ ...common, absWorkingDir: after, entryPoints: [join(after, 'bench', 'cold-app.ts')], outfile: join(temp, 'after.js') });
    const width = 256;
    await publishModel(s3, 'dense', 1, denseStackModel(width, 4), { label: 'stable' });
    const env = (dir: string) => ({
      MODELS_BUCKET: s3.bucket, S3_ENDPOINT: s3.endpoint, API_KEY_HASHES: hashApiKey(TEST_API_KEY), ORT_INTRA_OP_THREADS: '1', AWS_REGION: 'us-east-1',
      BENCH_MODEL: 'dense', BENCH_INPUT_WIDTH: String(width), BENCH_MODE: 'answer', MODEL_CACHE_DIR: dir, NODE_PATH: join(root, 'node_modules'),
    });
    const results: Record<'before' | 'after', number[]> = { before: [], after: [] };
    for (let round = 0; round <= COLD_REPS; round++) {
      const order: ('before' | 'after')[] = round % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
      for (const which of order) {
        const dir = mkdtempSync(join(temp, 'cache-'));
        const report = await child(join(temp, `${which}.js`), env(dir));
        if (round > 0) results[which].push(report.marks.done as number);
      }
    }
    const r = median(results.after) / median(results.before);
    console.log(`\n### Tensor-only cold start (fresh process, first answer, empty cache): before (${base.slice(0, 10)}) vs after (${afterCommit?.slice(0, 10) ?? 'this tree'})\n`);
    console.log(table(['build', 'first line -> done ms (median)', 'min', 'max'], [
      ['before', ms(median(results.before)), ms(Math.min(...results.before)), ms(Math.max(...results.before))],
      ['after', ms(median(results.after)), ms(Math.min(...results.after)), ms(Math.max(...results.after))],
    ]));
    console.log(`\nratio ${r.toFixed(3)}x (target <= 1.05x): ${r <= 1.05 ? 'met' : 'NOT met'}`);
    // Wall time on a shared machine moves by more than the 5% asked about; instructions executed
    // (callgrind: every instruction of the process, its threads included) do not.
    if (process.env.BENCH_PREPOST_COUNT !== '0' && hasValgrind()) {
      const counts: Record<'before' | 'after', number[]> = { before: [], after: [] };
      for (let round = 0; round < 3; round++) {
        for (const which of ['before', 'after'] as const) {
          const report = await child(join(temp, `${which}.js`), env(mkdtempSync(join(temp, 'cache-'))), true);
          if (report.instructions !== undefined) counts[which].push(report.instructions);
        }
      }
      // The least of three: what the first answer needs, without what background timers added.
      const c = Math.min(...counts.after) / Math.min(...counts.before);
      console.log(`\ninstructions to the first answer (callgrind, 3 runs each): before ${counts.before.map((n) => (n / 1e9).toFixed(3)).join(' / ')} G, after ${counts.after.map((n) => (n / 1e9).toFixed(3)).join(' / ')} G`);
      console.log(`instruction ratio (least of each) ${c.toFixed(3)}x (target <= 1.05x): ${c <= 1.05 ? 'met' : 'NOT met'}`);
    }
  } finally {
    await s3.stop();
    rmSync(temp, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log('\n## Pre- and post-processing (lib/prepost)');
  await imageFigure();
  await e2eFigure();
  await coldFigure();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
