import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { StackState } from '../../tools/stack/local';
import { freeStackPorts, groupAlive, portIsFree, ROOT, runToEnd, START, startStack, stackEnv, stopStack, withLogTail, type StackPorts } from '../helpers/local-stack';
import { denseStackModel } from '../helpers/models';
import { bertUncasedTokenizerJson, bertUncasedVocab, sentimentModel } from '../helpers/text';
import { nsfwMobileNetV2, tf, tfl, useCpuBackend } from '../helpers/tfjs';

/**
 * The local stack exactly as `npm start` runs it (package.json's start script, in a subprocess,
 * on free ports with a temporary data directory): the default model converts on its S3 event,
 * a generated model uploaded through the S3 API is converted and served over HTTP, the CLI
 * reads the registry, and Ctrl-C leaves no process and no port behind.
 */
const MODEL = 'stack-dense';

jest.setTimeout(600_000);

/** Every HTTP call gets an answer within 30 s or fails the test saying so. */
const timeout = (): AbortSignal => AbortSignal.timeout(30_000);

let dataDir: string;
let env: NodeJS.ProcessEnv;
let ports: StackPorts;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'local-stack-'));
  ports = await freeStackPorts();
  env = stackEnv(ports, dataDir, `.esbuild-stack-${process.pid}`, { POWERTOOLS_LOG_LEVEL: 'INFO', API_KEY: undefined });
});

afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(ROOT, `.esbuild-stack-${process.pid}`), { recursive: true, force: true });
});

test('npm start: default model, an upload through S3 served over HTTP, the CLI, Ctrl-C, restart', async () => {
  await withLogTail(dataDir, stackLifecycle);
});

async function stackLifecycle(): Promise<void> {
  const first = await startStack(env);
  const apiUrl = `http://127.0.0.1:${ports.http}`;
  const key = readFileSync(join(dataDir, 'api-key'), 'utf8').trim();
  const state = JSON.parse(readFileSync(join(dataDir, 'stack.json'), 'utf8')) as StackState;
  try {
    // The printed curl works and says the speech sample is speech.
    expect(first.output()).toContain(`curl -s -H 'x-api-key: ${key}'`);
    const speech = await fetch(`${apiUrl}/v2/models/silero-vad/infer`, {
      method: 'POST',
      signal: timeout(),
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: readFileSync(join(dataDir, 'silero-speech.json')),
    });
    expect(speech.status).toBe(200);
    const speechAnswer = (await speech.json()) as { outputs: { name: string; data: number[] }[] };
    expect(speechAnswer.outputs[0]?.data[0]).toBeGreaterThan(0.5);

    // A second start on the same data directory refuses, naming the running one.
    const second = await runToEnd(START, env);
    expect(second.code).toBe(1);
    expect(second.output).toContain(`a local stack is already running (pid ${state.pid}`);

    // An upload through the S3 API converts on its S3 event and becomes servable.
    const original = denseStackModel(64, 3, 11);
    const s3 = new S3Client({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${ports.s3}`,
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    await s3.send(new PutObjectCommand({ Bucket: 'onnx-lambda-local', Key: `uploads/${MODEL}/dense.onnx`, Body: original }));
    s3.destroy();
    let ready = 0;
    for (let i = 0; i < 240 && ready !== 200; i++) {
      ready = (await fetch(`${apiUrl}/v2/models/${MODEL}/ready`, { headers: { 'x-api-key': key }, signal: timeout() })).status;
      if (ready !== 200) await new Promise((done) => setTimeout(done, 500));
    }
    expect(ready).toBe(200);

    const x = Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i * 0.37));
    const res = await fetch(`${apiUrl}/v2/models/${MODEL}/infer`, {
      method: 'POST',
      signal: timeout(),
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: x }] }),
    });
    expect(res.status).toBe(200);
    const served = ((await res.json()) as { outputs: { name: string; shape: number[]; data: number[] }[] }).outputs[0]!;
    const session = await InferenceSession.create(original);
    const expected = Array.from((await session.run({ x: new Tensor('float32', Float32Array.from(x), [2, 64]) })).y!.data as Float32Array);
    await session.release();
    expect(served.shape).toEqual([2, 64]);
    // The served model is the int8 conversion: close to the original, not bit-identical.
    const scale = Math.max(...expected.map(Math.abs));
    const worst = Math.max(...expected.map((v, i) => Math.abs(v - (served.data[i] as number))));
    expect(worst).toBeLessThan(0.05 * scale);

    // The CLI finds the running stack by itself.
    const listed = await runToEnd('npm run -s model -- list', env);
    expect(listed.code).toBe(0);
    expect(listed.output).toMatch(new RegExp(`${MODEL}\\s+1\\s+stable->1`));
    expect(listed.output).toMatch(/silero-vad\s+1\s+stable->1/);

    // A text model through the CLI: the tokenizer.json its options declare goes up first, from
    // beside the options file; then --text reaches the declared text input.
    const files = join(dataDir, 'text-upload');
    mkdirSync(files);
    const vocab = bertUncasedVocab();
    writeFileSync(join(files, 'reviews.onnx'), sentimentModel(vocab.length, new Map([[vocab.indexOf('love'), [0, 3]]])));
    writeFileSync(join(files, 'tokenizer.json'), bertUncasedTokenizerJson());
    writeFileSync(join(files, 'options.json'), JSON.stringify({ mode: 'none', classLabels: ['negative', 'positive'], preprocess: { review: { type: 'text' } }, postprocess: { logits: { type: 'classification', topK: 1 } } }));
    const uploaded = await runToEnd(`npm run -s model -- upload ${join(files, 'reviews.onnx')} --options ${join(files, 'options.json')}`, env);
    expect(uploaded.output).toContain('as s3://onnx-lambda-local/uploads/reviews/tokenizer.json');
    expect(uploaded.code).toBe(0);
    const answered = await runToEnd('npm run -s model -- infer reviews --text "I love it"', env);
    expect(answered.code).toBe(0);
    expect(answered.output).toMatch(/logits:\n {4}0\.9\d{3} {2}positive\n/);

    // A real pretrained TF.js layers model from npm, uploaded by its model.json (the CLI zips the
    // folder): imported, checked against TF.js, quantized, served, and answering like TF.js.
    const nsfw = nsfwMobileNetV2();
    const folder = join(dataDir, 'tfjs-upload');
    mkdirSync(folder);
    writeFileSync(join(folder, 'model.json'), nsfw.modelJson);
    for (const [name, bytes] of nsfw.shards) writeFileSync(join(folder, name), bytes);
    const imported = await runToEnd(`npm run -s model -- upload ${join(folder, 'model.json')} --name nsfw`, env);
    expect(imported.output).toContain('published nsfw version 1');
    expect(imported.output).toMatch(/import {6}tfjs-layers -> ONNX [\d.]+ MB, against TF\.js: \S+ cosine (1\.000000|0\.99999\d)/);
    expect(imported.code).toBe(0);
    await useCpuBackend();
    const json = JSON.parse(Buffer.from(nsfw.modelJson).toString()) as { modelTopology: object; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[] };
    const inTfjs = await tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0]!.weights, weightData: [...nsfw.shards.values()][0]!.slice().buffer }));
    const pixels = Float32Array.from({ length: 224 * 224 * 3 }, (_, i) => Math.cos(i / 997) * 0.8);
    const want = Array.from((inTfjs.predict(tf.tensor(pixels, [1, 224, 224, 3])) as tf.Tensor).dataSync());
    const nsfwRes = await fetch(`${apiUrl}/v2/models/nsfw/infer`, {
      method: 'POST',
      signal: timeout(),
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'input_1', shape: [1, 224, 224, 3], datatype: 'FP32', data: Array.from(pixels) }] }),
    });
    expect(nsfwRes.status).toBe(200);
    const got = ((await nsfwRes.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data;
    expect(got).toHaveLength(want.length);
    expect(got.indexOf(Math.max(...got))).toBe(want.indexOf(Math.max(...want)));
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(0.05);
  } finally {
    expect(await stopStack(first)).toBe(130);
  }

  // Nothing it started is left, and every port is free again.
  expect(groupAlive(state.groupPid)).toBe(false);
  for (const port of Object.values(ports)) expect(await portIsFree(port)).toBe(true);

  // A restart keeps what was published: no new conversion of the default model.
  const again = await startStack(env);
  try {
    expect(again.output()).toContain('silero-vad is already published');
    const still = await fetch(`${apiUrl}/v2/models/${MODEL}/ready`, { headers: { 'x-api-key': key }, signal: timeout() });
    expect(still.status).toBe(200);
  } finally {
    expect(await stopStack(again)).toBe(130);
  }
}
