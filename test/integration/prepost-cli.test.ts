import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { HttpResponse } from '../../lib/http/handle';
import { convertUpload, createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext, TEST_API_KEY } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { colourClassifierModel, redMaskModel } from '../helpers/models';
import { bertUncasedTokenizerJson, bertUncasedVocab, sentimentModel } from '../helpers/text';

const VOCAB = bertUncasedVocab();

// `npm run model -- infer <m> --image <file> [--out mask.png]` against the service: the CLI runs
// in its own process (as a user runs it), the API is the infer handler behind a plain HTTP server
// that hands it API Gateway v2 events (binary bodies base64-encoded, as API Gateway does).

const ROOT = resolve(__dirname, '..', '..');
const run = promisify(execFile);
let s3: LocalS3;
let serving: TestApp;
let server: Server;
let api: string;
let temp: string;

beforeAll(async () => {
  temp = mkdtempSync(join(tmpdir(), 'prepost-cli-'));
  s3 = await startLocalS3();
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0' });
  const pre = { image: { type: 'image', scale: 1 / 255 } };
  expect(await convertUpload(s3, 'colours', colourClassifierModel(), { mode: 'none', classLabels: ['red', 'green', 'blue'], preprocess: pre, postprocess: { logits: { type: 'classification', topK: 2 } } })).toMatchObject({ status: 'succeeded' });
  expect(await convertUpload(s3, 'redmask', redMaskModel(), { mode: 'none', preprocess: pre, postprocess: { mask: { type: 'mask', activation: 'sigmoid', resizeToInput: true } } })).toMatchObject({ status: 'succeeded' });
  const votes = new Map<number, [number, number]>([[VOCAB.indexOf('love'), [0, 3]], [VOCAB.indexOf('awful'), [3, 0]]]);
  const text = { mode: 'none', classLabels: ['negative', 'positive'], preprocess: { review: { type: 'text' } }, postprocess: { logits: { type: 'classification', topK: 1 } } };
  expect(await convertUpload(s3, 'reviews', sentimentModel(VOCAB.length, votes), text, { 'tokenizer.json': bertUncasedTokenizerJson() })).toMatchObject({ status: 'succeeded' });
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const event = { ...httpEvent(req.method ?? 'GET', req.url ?? '/', { headers, apiKey: null }), body: Buffer.concat(chunks).toString('base64'), isBase64Encoded: true };
      void (serving.handler(event, lambdaContext('infer')) as Promise<HttpResponse>).then((out) => {
        res.writeHead(out.statusCode, out.headers);
        res.end(out.body);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await serving?.dispose();
  await s3?.stop();
  rmSync(temp, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, S3_ENDPOINT: s3.endpoint, API_KEY: TEST_API_KEY, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, 'tools', 'run-ts.mjs'), 'tools/cli/model.ts', ...args, '--api', api, '--bucket', s3.bucket], { cwd: ROOT, env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('infer --text (twice: a batch) sends the texts to the declared text input and prints a label per text', async () => {
  const { code, stdout } = await cli('infer', 'reviews', '--text', 'I love it', '--text', 'An awful film');
  expect(code).toBe(0);
  expect(stdout).toMatch(/^reviews version 1\n {2}logits:\n {4}0\.9\d{3} {2}positive\n {4}0\.9\d{3} {2}negative\n {2}tokens FP32\[2\]: \[5,5\]\n {2}type_sum FP32\[2\]: \[0,0\]\n$/);
}, 60_000);

test('infer --text to a model without a text input says so', async () => {
  const { code, stderr } = await cli('infer', 'colours', '--text', 'hello');
  expect(code).toBe(1);
  expect(stderr).toMatch(/model colours declares no text input; use --input <request\.json>/);
}, 60_000);

test('infer --image prints labels and scores', async () => {
  const photo = join(temp, 'red.jpg');
  writeFileSync(photo, await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 220, g: 30, b: 20 } } }).jpeg().toBuffer());
  const { code, stdout } = await cli('infer', 'colours', '--image', photo);
  expect(code).toBe(0);
  expect(stdout).toMatch(/^colours version 1\n {2}logits:\n {4}0\.\d{4} {2}red\n {4}0\.\d{4} {2}(green|blue)\n$/);
}, 60_000);

test('infer --image --out writes the mask PNG at the photo\'s size', async () => {
  const photo = join(temp, 'half.png');
  const px = Buffer.alloc(40 * 20 * 3);
  for (let i = 0; i < 40 * 20; i++) px.set(i % 40 < 20 ? [230, 10, 10] : [10, 10, 230], i * 3);
  writeFileSync(photo, await sharp(px, { raw: { width: 40, height: 20, channels: 3 } }).png().toBuffer());
  const out = join(temp, 'mask.png');
  const { code, stdout } = await cli('infer', 'redmask', '--image', photo, '--out', out);
  expect(code).toBe(0);
  expect(stdout).toContain(`mask: PNG mask written to ${out}`);
  const { data, info } = await sharp(readFileSync(out)).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height]).toEqual([40, 20]);
  expect([data[0], data[39]]).toEqual([255, 0]);
}, 60_000);

test('infer --image refuses what it cannot send, and prints the service\'s 400', async () => {
  const gif = join(temp, 'x.gif');
  writeFileSync(gif, 'GIF89a');
  expect(await cli('infer', 'colours', '--image', gif)).toMatchObject({ code: 1, stderr: expect.stringContaining('error: --image ' + gif + ': use a .jpg, .jpeg, .png or .webp file') });
  const fake = join(temp, 'fake.jpg');
  writeFileSync(fake, 'not a photo');
  expect(await cli('infer', 'colours', '--image', fake)).toMatchObject({ code: 1, stderr: expect.stringContaining('error: 400: input "image": not an image (JPEG, PNG or WebP expected)') });
}, 60_000);
