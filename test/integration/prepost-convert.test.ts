import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import type { HttpResponse } from '../../lib/http/handle';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import sharp from 'sharp';
import { colourClassifierModel, convNetModel } from '../helpers/models';

let s3: LocalS3;
let store: ObjectStore;
let serving: TestApp;
let convert: ReturnType<typeof buildConvertHandler>;

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  convert = buildConvertHandler({ store, maxModelBytes: 50 * 1024 * 1024, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0' });
});

afterAll(async () => {
  await serving?.dispose();
  await s3?.stop();
});

async function runConvert(key: string, body: Uint8Array, sidecar: unknown): Promise<JobReport> {
  await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key.replace(/\.onnx$/, '.json'), Body: JSON.stringify(sidecar) }));
  const etag = ((await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }))).ETag ?? '').replace(/"/g, '');
  const result = await convert(s3PutEvent(s3.bucket, key, etag), lambdaContext('convert'));
  expect(result.reports).toHaveLength(1);
  return result.reports[0]!;
}

const LABELS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

describe('declared pre- and post-processing through the conversion job', () => {
  test('declarations are checked, completed from the model, stored in the manifest and shown in metadata', async () => {
    const report = await runConvert('uploads/digits/model.onnx', convNetModel({ batch: 'N', size: 28 }), {
      mode: 'none',
      classLabels: LABELS,
      preprocess: { image: { type: 'image', channels: 'gray', resize: 'contain', background: [255, 255, 255], scale: 1 / 255, mean: 0.1307, std: 0.3081 } },
      postprocess: { scores: { type: 'classification', topK: 3 } },
    });
    expect(report).toMatchObject({ status: 'succeeded', version: 1 });
    const manifest = (await store.getJson(keys.manifest('digits', 1))) as Record<string, unknown>;
    const image = {
      type: 'image', width: 28, height: 28, resize: 'contain', background: [255, 255, 255], channels: 'gray', layout: 'NCHW', dtype: 'float32',
      scale: 1 / 255, mean: [0.1307], std: [0.3081], maxPixels: 100_000_000,
    };
    const classification = { type: 'classification', activation: 'softmax', topK: 3 };
    expect(manifest.preprocess).toEqual({ image });
    expect(manifest.postprocess).toEqual({ scores: classification });

    const res = (await serving.handler(httpEvent('GET', '/v2/models/digits'), lambdaContext('infer'))) as HttpResponse;
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ name: 'digits', preprocess: { image }, postprocess: { scores: classification } });
  });

  test('a model without declarations has none in its manifest or metadata', async () => {
    const report = await runConvert('uploads/plain/model.onnx', convNetModel(), { mode: 'none' });
    expect(report).toMatchObject({ status: 'succeeded', version: 1 });
    const manifest = (await store.getJson(keys.manifest('plain', 1))) as Record<string, unknown>;
    expect(manifest).not.toHaveProperty('preprocess');
    expect(manifest).not.toHaveProperty('postprocess');
    const res = (await serving.handler(httpEvent('GET', '/v2/models/plain'), lambdaContext('infer'))) as HttpResponse;
    expect(Object.keys(JSON.parse(res.body))).toEqual(['name', 'versions', 'platform', 'inputs', 'outputs']);
  });

  test('sample inputs given as images go through the declared pre-processing into the evaluation', async () => {
    const solid = async (r: number, g: number, b: number): Promise<string> =>
      (await sharp({ create: { width: 40, height: 30, channels: 3, background: { r, g, b } } }).jpeg().toBuffer()).toString('base64');
    const report = await runConvert('uploads/colours/model.onnx', colourClassifierModel(), {
      mode: 'none',
      classLabels: ['red', 'green', 'blue'],
      preprocess: { image: { type: 'image', scale: 1 / 255 } },
      postprocess: { logits: { type: 'classification' } },
      sampleInputs: [{ image: { b64: await solid(220, 20, 20) } }, { image: [{ b64: await solid(20, 20, 220) }, { b64: await solid(20, 220, 20) }] }],
    });
    expect(report).toMatchObject({ status: 'succeeded', version: 1 });
    // Two samples, three images: a red one, then a batch of blue and green.
    const manifest = (await store.getJson(keys.manifest('colours', 1))) as { evaluation: { samples: number } };
    expect(manifest.evaluation.samples).toBe(2);
    expect(report.figures!.outputs.logits).toMatchObject({ top1Agreement: 1, decisiveRows: 3 });
    expect(report.figures!.outputs.logits!.cosine).toBeGreaterThan(0.999);
  });

  test.each([
    [
      'an image sample that is not an image',
      { preprocess: { image: { type: 'image', channels: 'gray' , layout: 'NCHW' } }, sampleInputs: [{ image: { b64: Buffer.from('text').toString('base64') } }] },
      'options: sampleInputs[0].image: input "image": not an image (JPEG, PNG or WebP expected)',
    ],
    [
      'an image sample for an input not declared as an image',
      { sampleInputs: [{ image: { b64: 'AAAA' } }] },
      'options: sampleInputs[0].image: images are accepted only for an input declared in preprocess as an image',
    ],
    [
      'a declaration that does not fit the model',
      { preprocess: { image: { type: 'image', channels: 'rgb' } } },
      'options: preprocess.image.layout is required: the shape [1, 1, 8, 8] of input "image" does not say whether channels come first or last',
    ],
    [
      'an input the model does not have',
      { preprocess: { pixels: { type: 'image' } } },
      'options: preprocess.pixels: the model has no input "pixels"; its inputs are "image"',
    ],
    [
      'class labels that do not match the classes',
      { classLabels: ['cat', 'dog'], postprocess: { scores: { type: 'classification' } } },
      'options: postprocess.scores: classLabels has 2 names but output "scores" has 10 classes',
    ],
    [
      'an unknown key inside a declaration',
      { postprocess: { scores: { type: 'classification', top_k: 3 } } },
      'options: postprocess.scores: unknown key "top_k"; known keys: type, activation, topK',
    ],
  ])('%s fails the job with its reason and publishes nothing', async (_, sidecar, reason) => {
    const model = `bad-${Math.random().toString(36).slice(2, 8)}`;
    const report = await runConvert(`uploads/${model}/model.onnx`, convNetModel(), { mode: 'none', ...sidecar });
    expect(report).toMatchObject({ status: 'failed', reason });
    expect(await store.listKeys(keys.modelPrefix(model))).toEqual([]);
  });
});
