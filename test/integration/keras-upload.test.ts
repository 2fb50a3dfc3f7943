import { PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import type { JobReport } from '../../lib/convert/job';
import { writeZip } from '../../lib/convert/import/zip';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertAt, createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { nsfwMobileNetV2, saveTfjs, seedWeights, seededInputs, tf, tfl, useCpuBackend, writeKerasH5 } from '../helpers/tfjs';

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

/** A small CNN classifier as TF.js builds and saves it, zipped in a folder the way a user would. */
async function zippedClassifier(): Promise<{ model: tfl.LayersModel; zip: Uint8Array }> {
  const model = tfl.sequential({
    layers: [
      tfl.layers.inputLayer({ inputShape: [16, 16, 3], name: 'image' }),
      tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }),
      tfl.layers.batchNormalization(),
      tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu6' }),
      tfl.layers.conv2d({ filters: 16, kernelSize: 1, activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 10, activation: 'softmax', name: 'probs' }),
    ],
  });
  seedWeights(model, 11);
  const saved = await saveTfjs(model);
  const files = [{ name: 'my_model/model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name: `my_model/${name}`, data }))];
  return { model, zip: writeZip(files) };
}

/** The zip with its (first) entry's uncompressed size rewritten in both headers. */
function declareSize(zip: Uint8Array, size: number): Uint8Array {
  const b = Buffer.from(zip);
  b.writeUInt32LE(size, 22);
  const central = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  b.writeUInt32LE(size, central + 24);
  return new Uint8Array(b);
}

describe('a TF.js layers model uploaded as a zip goes through the conversion job', () => {
  test('converted, published, served; answers match TF.js predict', async () => {
    const { model, zip } = await zippedClassifier();
    const report = await runConvert('uploads/tfjs-cnn/classifier.zip', zip);
    expect(report).toMatchObject({ status: 'succeeded', model: 'tfjs-cnn', version: 1, import: { format: 'tfjs-layers' } });
    expect(report.timingsMs.import).toBeGreaterThan(0);
    // Export fidelity, measured against TF.js before quantization, next to the quantization's own figures.
    const fidelity = report.import!.fidelity!;
    expect(fidelity).toMatchObject({ passed: true, minCosine: 0.9999 });
    expect(fidelity.samples).toBeGreaterThan(0);
    expect(fidelity.outputs.probs!.cosine).toBeGreaterThanOrEqual(0.9999);
    expect(fidelity.outputs.probs!.maxAbsError).toBeLessThanOrEqual(1e-4);
    expect(report.figures!.outputs.probs!.cosine).toBeGreaterThan(0.9);
    const manifest = (await store.getJson(keys.manifest('tfjs-cnn', 1))) as Record<string, any>;
    expect(manifest).toMatchObject({
      inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 16, 16, 3] }],
      outputs: [{ name: 'probs', datatype: 'FP32', shape: [-1, 10] }],
      import: { format: 'tfjs-layers', fidelity: { passed: true } },
      source: { key: 'uploads/tfjs-cnn/classifier.zip', bytes: zip.byteLength },
    });

    const [x] = seededInputs(model, 1, 3);
    const want = (model.predict(tf.tensor(x!.data, x!.shape)) as tf.Tensor).dataSync();
    const res = (await serving.handler(
      httpEvent('POST', '/v2/models/tfjs-cnn/versions/1/infer', { body: { inputs: [{ name: 'image', shape: x!.shape, datatype: 'FP32', data: Array.from(x!.data) }] } }),
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const got = (JSON.parse(res.body) as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === 'probs')!.data;
    expect(got).toHaveLength(10);
    // The served model is quantized (int8): compare its class and probabilities loosely.
    const argmax = (a: ArrayLike<number>) => Array.from(a).indexOf(Math.max(...Array.from(a)));
    expect(argmax(got)).toBe(argmax(want));
    for (let i = 0; i < 10; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(0.05);
  });

  test('a Keras classifier with declared image pre-processing: fidelity runs on the image samples, and a JPEG gets labels', async () => {
    const { model, zip } = await zippedClassifier();
    const solid = async (r: number, g: number, b: number): Promise<Buffer> => sharp({ create: { width: 40, height: 30, channels: 3, background: { r, g, b } } }).jpeg().toBuffer();
    const photos = [await solid(220, 20, 20), await solid(20, 20, 220), await solid(20, 220, 20)];
    const options = {
      classLabels: Array.from({ length: 10 }, (_, i) => `class${i}`),
      preprocess: { image: { type: 'image', layout: 'NHWC', scale: 1 / 255 } },
      postprocess: { probs: { type: 'classification', activation: 'none', topK: 2 } },
      sampleInputs: [{ image: { b64: photos[0]!.toString('base64') } }, { image: photos.slice(1).map((p) => ({ b64: p.toString('base64') })) }],
    };
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'uploads/tfjs-photo/classifier.json', Body: JSON.stringify(options) }));
    const report = await runConvert('uploads/tfjs-photo/classifier.zip', zip);
    expect(report).toMatchObject({ status: 'succeeded', version: 1, import: { format: 'tfjs-layers', fidelity: { passed: true } } });
    // The two image samples (three photos), decoded and resized by the declaration, fed both TF.js and the export.
    expect(report.import!.fidelity!.samples).toBe(2);

    // The same photo through the HTTP API and through TF.js on the same pixels (sharp, 16x16, /255).
    const res = (await serving.handler(
      { ...httpEvent('POST', '/v2/models/tfjs-photo/infer', { headers: { 'content-type': 'image/jpeg' } }), body: photos[0]!.toString('base64'), isBase64Encoded: true },
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const top = (JSON.parse(res.body) as { outputs: { name: string; data: string[] }[] }).outputs[0]!.data;
    expect(top).toHaveLength(2);
    const pixels = await sharp(photos[0]).resize(16, 16, { fit: 'fill' }).removeAlpha().raw().toBuffer();
    const want = (model.predict(tf.tensor(Float32Array.from(pixels, (v) => v / 255), [1, 16, 16, 3])) as tf.Tensor).dataSync();
    const best = Array.from(want).indexOf(Math.max(...Array.from(want)));
    expect(top[0]).toMatch(new RegExp(`^[\\d.]+:${best}:class${best}$`));
  });

  test('a real pretrained model from npm (nsfwjs MobileNetV2, Keras 2.2.4, uint8 weights): converted, gated, served like TF.js', async () => {
    const saved = nsfwMobileNetV2();
    const zip = writeZip([{ name: 'model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name, data }))]);
    const report = await runConvert('uploads/nsfw-mobilenet/mobilenet_v2.zip', zip);
    expect(report).toMatchObject({ status: 'succeeded', version: 1, import: { format: 'tfjs-layers', fidelity: { passed: true } } });
    const [outputName, fidelity] = Object.entries(report.import!.fidelity!.outputs)[0]!;
    expect(fidelity.cosine).toBeGreaterThanOrEqual(0.9999);
    expect(fidelity.maxAbsError).toBeLessThanOrEqual(1e-4);

    // The same answers over HTTP as TF.js gives for an image-like input (the served model is int8).
    const json = JSON.parse(Buffer.from(saved.modelJson).toString()) as { modelTopology: object; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[] };
    const shard = [...saved.shards.values()][0]!;
    const model = await tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0]!.weights, weightData: shard.slice().buffer }));
    const x = Float32Array.from({ length: 224 * 224 * 3 }, (_, i) => ((i % 672) / 672) * 2 - 1);
    const want = (model.predict(tf.tensor(x, [1, 224, 224, 3])) as tf.Tensor).dataSync();
    const res = (await serving.handler(
      httpEvent('POST', '/v2/models/nsfw-mobilenet/infer', { body: { inputs: [{ name: 'input_1', shape: [1, 224, 224, 3], datatype: 'FP32', data: Array.from(x) }] } }),
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const got = (JSON.parse(res.body) as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === outputName)!.data;
    expect(got).toHaveLength(want.length);
    const argmax = (a: ArrayLike<number>) => Array.from(a).indexOf(Math.max(...Array.from(a)));
    expect(argmax(got)).toBe(argmax(want));
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(0.05);
  }, 180_000);

  test('an export that does not answer like TF.js fails the fidelity gate: the report names the output and figures, nothing is published', async () => {
    // tfjs-backend-cpu normalizes a non-last BatchNormalization axis by the last axis; the export
    // follows Keras's definition, so the two disagree and the gate must stop the job.
    const model = tfl.sequential({ layers: [tfl.layers.inputLayer({ inputShape: [5, 4], name: 'x' }), tfl.layers.batchNormalization({ axis: 1, name: 'bn' })] });
    seedWeights(model, 4);
    const saved = await saveTfjs(model);
    const zip = writeZip([{ name: 'model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name, data }))]);
    const report = await runConvert('uploads/tfjs-drift/m.zip', zip);
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(/^import fidelity: the ONNX export does not answer like the original in TF\.js: output "bn": cosine 0\.\d+ < 0\.9999 \(max abs error [\d.e+-]+, mean [\d.e+-]+\); nothing was published$/);
    expect(report.import!.fidelity).toMatchObject({ passed: false, minCosine: 0.9999 });
    expect(await store.listKeys('models/tfjs-drift/')).toEqual([]);
  });

  test('importMinCosine is an upload option, checked like the others', async () => {
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'uploads/tfjs-opt/m.json', Body: JSON.stringify({ importMinCosine: 2 }) }));
    const report = await runConvert('uploads/tfjs-opt/m.zip', writeZip([{ name: 'model.json', data: new Uint8Array(Buffer.from('{}')) }]));
    expect(report).toMatchObject({ status: 'failed', reason: 'options: "importMinCosine" must be a number in [-1, 1]' });
  });

  test('a Keras 2 .h5 upload converts through the same job, with its export fidelity', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: [12], name: 'features' }),
        tfl.layers.dense({ units: 16, activation: 'relu', name: 'hidden' }),
        tfl.layers.dense({ units: 3, activation: 'softmax', name: 'scores' }),
      ],
    });
    seedWeights(model, 8);
    const h5 = writeKerasH5(model);
    const report = await runConvert('uploads/keras-h5/mlp.h5', h5);
    expect(report).toMatchObject({ status: 'succeeded', version: 1, import: { format: 'keras-h5', fidelity: { passed: true } } });
    expect(report.import!.fidelity!.outputs.scores!.maxAbsError).toBeLessThanOrEqual(1e-4);
    const manifest = (await store.getJson(keys.manifest('keras-h5', 1))) as Record<string, any>;
    expect(manifest).toMatchObject({ inputs: [{ name: 'features', shape: [-1, 12] }], outputs: [{ name: 'scores', shape: [-1, 3] }], import: { format: 'keras-h5' } });
  });

  test('an unsupported layer fails the job, names the layer and class, publishes nothing', async () => {
    const model = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [4], units: 3, name: 'd' }), tfl.layers.repeatVector({ n: 2, name: 'repeat' })] });
    const saved = await saveTfjs(model);
    const zip = writeZip([{ name: 'model.json', data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name, data }))]);
    const report = await runConvert('uploads/tfjs-bad/m.zip', zip);
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(/^layer "repeat" \(RepeatVector\) is not supported; supported layers: .*Dense/);
    expect(await store.listKeys('models/tfjs-bad/')).toEqual([]);
  });

  test('zip bombs are refused from their declared sizes before anything is expanded; a lying entry stops at its declared size', async () => {
    const zeros = writeZip([{ name: 'model.json', data: new Uint8Array(64 * 1024) }]);
    const ratio = await runConvert('uploads/tfjs-bomb/ratio.zip', declareSize(zeros, 3_000_000_000));
    expect(ratio.status).toBe('failed');
    expect(ratio.reason).toMatch(/^zip: entry "model.json" declares 3000000000 bytes from \d+: a ratio over 1100 \(zip bomb\?\)$/);
    // Many entries, each within the ratio, adding up past the job's limit (50 MB here).
    const many = writeZip(Array.from({ length: 60 }, (_, i) => ({ name: `shard${i}.bin`, data: new Uint8Array(1024 * 1024) })));
    const total = await runConvert('uploads/tfjs-bomb/total.zip', many);
    expect(total).toMatchObject({ status: 'failed', reason: `zip: entries declare more than ${50 * 1024 * 1024} bytes in all` });
    // An entry that declares less than it inflates to is cut off at its declared size.
    const lying = await runConvert('uploads/tfjs-bomb/lying.zip', declareSize(zeros, 1000));
    expect(lying.status).toBe('failed');
    expect(lying.reason).toMatch(/^zip: entry "model.json" does not inflate to its declared 1000 bytes/);
    expect(await store.listKeys('models/tfjs-bomb/')).toEqual([]);
  });

  test('entries that climb out of the folder, and zips without model.json, are refused', async () => {
    const climbing = await runConvert('uploads/tfjs-climb/m.zip', writeZip([{ name: '../model.json', data: new Uint8Array(Buffer.from('{}')) }]));
    expect(climbing).toMatchObject({ status: 'failed', reason: 'zip: entry "../model.json" climbs out of the archive with ".."' });
    const absolute = await runConvert('uploads/tfjs-climb/a.zip', writeZip([{ name: '/etc/model.json', data: new Uint8Array(Buffer.from('{}')) }]));
    expect(absolute).toMatchObject({ status: 'failed', reason: 'zip: entry "/etc/model.json" has an absolute path' });
    const empty = await runConvert('uploads/tfjs-climb/e.zip', writeZip([{ name: 'readme.txt', data: new Uint8Array(Buffer.from('hi')) }]));
    expect(empty).toMatchObject({ status: 'failed', reason: 'the zip holds no model.json (it holds readme.txt)' });
    const notZip = await runConvert('uploads/tfjs-climb/n.zip', new Uint8Array(Buffer.from('not a zip at all')));
    expect(notZip).toMatchObject({ status: 'failed', reason: 'zip: no end-of-central-directory record: not a zip file' });
  });
});
