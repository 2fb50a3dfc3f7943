import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import { writeZip } from '../../lib/convert/import/zip';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertAt, createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext, s3PutEvent, TEST_API_KEY } from '../helpers/events';
import { DTYPE_POLICY, keras3FromTfjs, keras3Layer, writeKeras3 } from '../helpers/keras3';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { seedWeights, seededInputs, tf, tfl, useCpuBackend } from '../helpers/tfjs';

let s3: LocalS3;
let store: ObjectStore;
let serving: TestApp;

beforeAll(async () => {
  await useCpuBackend();
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0' });
});

afterAll(async () => {
  await serving?.dispose();
  await s3?.stop();
});

const runConvert = (key: string, body: Uint8Array): Promise<JobReport> => convertAt(s3, key, body);

/** A Sequential of one Dense layer, hand-written in Keras 3 form, with `vars` as its weights. */
function denseConfig(extra: object[] = []): Record<string, unknown> {
  return {
    module: 'keras',
    class_name: 'Sequential',
    config: {
      name: 'm',
      trainable: true,
      dtype: DTYPE_POLICY,
      layers: [
        keras3Layer('InputLayer', { batch_shape: [null, 2], dtype: 'float32', sparse: false, name: 'x' }),
        keras3Layer('Dense', { name: 'd', units: 3, activation: 'linear', use_bias: true }),
        ...extra,
      ],
    },
    registered_name: null,
  };
}

function denseModel(vars: { shape: number[]; data: number[]; attrs?: Record<string, unknown> }[], extra: object[] = []): Uint8Array {
  return writeKeras3(denseConfig(extra), { vars: { 'layers/dense': vars } });
}

const KERNEL = { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] };
const BIAS = { shape: [3], data: [0, 0, 1] };

describe('a Keras 3 .keras upload goes through the conversion job', () => {
  test('converted, gated on fidelity against TF.js with the sidecar options, published, served like TF.js', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: [10, 10, 3], name: 'image' }),
        tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tfl.layers.batchNormalization(),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 4, activation: 'softmax', name: 'probs' }),
      ],
    });
    seedWeights(model, 41);
    const file = keras3FromTfjs(model);
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'uploads/keras3-cnn/classifier.json', Body: JSON.stringify({ importMinCosine: 0.99999 }) }));
    const report = await runConvert('uploads/keras3-cnn/classifier.keras', file);
    expect(report).toMatchObject({ status: 'succeeded', model: 'keras3-cnn', version: 1, import: { format: 'keras3', fidelity: { passed: true, minCosine: 0.99999 } } });
    expect(report.import!.fidelity!.outputs.probs!.maxAbsError).toBeLessThanOrEqual(1e-4);
    expect(report.import!.fidelityNotMeasured).toBeUndefined();
    const manifest = (await store.getJson(keys.manifest('keras3-cnn', 1))) as Record<string, any>;
    expect(manifest).toMatchObject({
      inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 10, 10, 3] }],
      outputs: [{ name: 'probs', datatype: 'FP32', shape: [-1, 4] }],
      import: { format: 'keras3', fidelity: { passed: true } },
      source: { key: 'uploads/keras3-cnn/classifier.keras', bytes: file.byteLength },
    });

    const [x] = seededInputs(model, 1, 9);
    const want = (model.predict(tf.tensor(x!.data, x!.shape)) as tf.Tensor).dataSync();
    const res = (await serving.handler(
      httpEvent('POST', '/v2/models/keras3-cnn/versions/1/infer', { body: { inputs: [{ name: 'image', shape: x!.shape, datatype: 'FP32', data: Array.from(x!.data) }] } }),
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const got = (JSON.parse(res.body) as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === 'probs')!.data;
    expect(got).toHaveLength(4);
    // The served model is quantized: its class and probabilities, loosely.
    const argmax = (a: ArrayLike<number>) => Array.from(a).indexOf(Math.max(...Array.from(a)));
    expect(argmax(got)).toBe(argmax(want));
    for (let i = 0; i < 4; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(0.05);
  });

  test('a model TF.js cannot run as Keras defines it (GRU reset_after=true) is published with fidelity recorded as not measured, and why', async () => {
    const config = {
      module: 'keras',
      class_name: 'Sequential',
      config: {
        name: 'rnn',
        trainable: true,
        dtype: DTYPE_POLICY,
        layers: [
          keras3Layer('InputLayer', { batch_shape: [null, 4, 3], dtype: 'float32', sparse: false, name: 'steps' }),
          keras3Layer('GRU', { name: 'gru', units: 2, activation: 'tanh', recurrent_activation: 'sigmoid', use_bias: true, reset_after: true, return_sequences: false }),
        ],
      },
      registered_name: null,
    };
    const seq = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.sin(i * k) * 0.5);
    const file = writeKeras3(config, {
      vars: {
        'layers/gru/cell': [
          { shape: [3, 6], data: seq(18, 1) },
          { shape: [2, 6], data: seq(12, 2) },
          { shape: [2, 6], data: seq(12, 3) },
        ],
      },
    });
    const report = await runConvert('uploads/keras3-gru/rnn.keras', file);
    const reason = 'TF.js cannot build GRU "gru" with reset_after=true (the Keras 3 default)';
    expect(report).toMatchObject({ status: 'succeeded', version: 1, import: { format: 'keras3', fidelityNotMeasured: reason } });
    expect(report.import!.fidelity).toBeUndefined();
    const manifest = (await store.getJson(keys.manifest('keras3-gru', 1))) as Record<string, any>;
    expect(manifest.import).toMatchObject({ format: 'keras3', fidelityNotMeasured: reason });
  });

  test.each([
    ['not a zip', () => new Uint8Array(Buffer.from('not a keras file')), 'zip: no end-of-central-directory record: not a zip file'],
    [
      'no config.json',
      () => writeKeras3({}, { vars: {} }, { omit: 'config.json' }),
      'the .keras upload holds no config.json (it holds metadata.json, model.weights.h5)',
    ],
    ['no model.weights.h5', () => writeKeras3(denseConfig(), { vars: {} }, { omit: 'model.weights.h5' }), 'the .keras upload holds no model.weights.h5 (it holds metadata.json, config.json)'],
    [
      'weights that are not HDF5',
      () => writeZip([{ name: 'config.json', data: new Uint8Array(Buffer.from(JSON.stringify(denseConfig()))) }, { name: 'model.weights.h5', data: new Uint8Array(64) }], true),
      /^the \.keras model\.weights\.h5 is not an HDF5 file jsfive can read: /,
    ],
    ['a subclassed model', () => writeKeras3({ module: 'my_package', class_name: 'MyModel', config: {}, registered_name: 'my_package>MyModel' }, { vars: {} }), 'config.json holds a MyModel, not a Sequential or Functional model (a subclassed model cannot be rebuilt from its config)'],
    ['a layer missing a variable', () => denseModel([KERNEL]), 'model.weights.h5 holds 1 variables at layers/dense/vars; layer "d" (Dense) has 2 (kernel, bias)'],
    [
      'a variable of the wrong shape',
      () => denseModel([KERNEL, { shape: [4], data: [0, 0, 0, 0] }]),
      'model.weights.h5: layers/dense/vars/1 has shape [4]; layer "d" (Dense) expects its bias to be [3]',
    ],
    [
      'bfloat16 weights',
      () => denseModel([{ ...KERNEL, attrs: { dtype: 'bfloat16' } }, BIAS]),
      'model.weights.h5: layers/dense/vars/0 (layer "d" (Dense), kernel) holds bfloat16 values, which the importer does not read; save the model with float32 weights',
    ],
    [
      'a Lambda layer',
      () => denseModel([KERNEL, BIAS], [keras3Layer('Lambda', { name: 'lam', function: { class_name: '__lambda__', config: { code: 'ZGVm', defaults: null, closure: null } }, arguments: {} })]),
      /^layer "lam" \(Lambda\) is not supported; supported layers: .*Dense/,
    ],
    [
      'a custom layer',
      () => denseModel([KERNEL, BIAS], [{ module: 'my_package.layers', class_name: 'Gate', config: { name: 'gate' }, registered_name: 'my_package>Gate' }]),
      /^layer "gate" \(Gate\) is not supported; supported layers: /,
    ],
  ] as [string, () => Uint8Array, string | RegExp][])('refused, nothing published: %s', async (label, make, reason) => {
    const model = `keras3-bad-${label.replace(/[^a-z0-9]+/g, '-')}`;
    const report = await runConvert(`uploads/${model}/m.keras`, make());
    expect(report.status).toBe('failed');
    if (typeof reason === 'string') expect(report.reason).toBe(reason);
    else expect(report.reason).toMatch(reason);
    expect(await store.listKeys(`models/${model}/`)).toEqual([]);
  });

  test('a zip bomb is refused from its declared sizes before anything is expanded', async () => {
    const zip = Buffer.from(writeZip([{ name: 'config.json', data: new Uint8Array(64 * 1024) }]));
    zip.writeUInt32LE(3_000_000_000, 22);
    zip.writeUInt32LE(3_000_000_000, zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 24);
    const report = await runConvert('uploads/keras3-bomb/m.keras', new Uint8Array(zip));
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(/^zip: entry "config.json" declares 3000000000 bytes from \d+: a ratio over 1100 \(zip bomb\?\)$/);
    expect(await store.listKeys('models/keras3-bomb/')).toEqual([]);
  });
});

describe('npm run model -- upload x.keras', () => {
  test('the CLI checks and uploads the .keras file, the job converts it, the CLI prints the report with its import fidelity', async () => {
    const model = tfl.sequential({ layers: [tfl.layers.inputLayer({ inputShape: [6], name: 'features' }), tfl.layers.dense({ units: 3, activation: 'softmax', name: 'scores' })] });
    seedWeights(model, 43);
    const dir = mkdtempSync(join(tmpdir(), 'keras3-cli-'));
    try {
      const path = join(dir, 'Scorer.keras');
      writeFileSync(path, keras3FromTfjs(model));
      const env = { ...process.env, S3_ENDPOINT: s3.endpoint, API_KEY: TEST_API_KEY, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
      const root = resolve(__dirname, '..', '..');
      const args = [join(root, 'tools', 'run-ts.mjs'), 'tools/cli/model.ts', 'upload', path, '--api', 'http://127.0.0.1:9', '--bucket', s3.bucket];
      const cli = new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, args, { cwd: root, env }, (err, stdout, stderr) => done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
      });
      // No S3 notifications here: the test plays the convert function's trigger once the upload lands.
      const key = 'uploads/scorer/Scorer.keras';
      let head = await store.head(key);
      for (let i = 0; !head && i < 600; i++) {
        await new Promise((r) => setTimeout(r, 100));
        head = await store.head(key);
      }
      expect(head).toBeDefined();
      const context = { ...lambdaContext('convert'), getRemainingTimeInMillis: () => 900_000 };
      const convert = buildConvertHandler({ store, maxModelBytes: 50 * 1024 * 1024, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
      const result = await convert(s3PutEvent(s3.bucket, key, head!.etag.replace(/"/g, '')), context);
      expect(result.reports[0]).toMatchObject({ status: 'succeeded', import: { format: 'keras3' } });
      const { code, stdout } = await cli;
      expect(code).toBe(0);
      expect(stdout).toContain(`uploaded s3://${s3.bucket}/${key}`);
      expect(stdout).toContain('published scorer version 1');
      expect(stdout).toMatch(/ {2}import {6}keras3 -> ONNX \d+\.\d\d MB, against TF\.js: scores cosine 1\.000000, max abs error \d\.\d\de-\d+\n/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
