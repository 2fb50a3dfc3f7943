import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import type { HttpResponse } from '../../lib/http/handle';
import { masksToPng } from '../../lib/prepost/mask';
import { checkDeclarations, imageDeclaration, parseDeclarations } from '../../lib/prepost/declarations';
import { imagesToTensor } from '../../lib/prepost/image';
import { toHalfBits } from '../../lib/protocol/half';
import { keys } from '../../lib/registry/keys';
import type { TensorSpec } from '../../lib/registry/manifest';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertUpload, createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { redMaskModel } from '../helpers/models';

let s3: LocalS3;
let store: ObjectStore;
let serving: TestApp;

/** Left half red, right half blue, lossless. */
function halves(width: number, height: number): Promise<Buffer> {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px.set(x < width / 2 ? [230, 10, 10] : [10, 10, 230], (y * width + x) * 3);
  return sharp(px, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

async function call(event: APIGatewayProxyEventV2): Promise<{ status: number; json: Record<string, any> }> {
  const res = (await serving.handler(event, lambdaContext('infer'))) as HttpResponse;
  return { status: res.statusCode, json: JSON.parse(res.body) as Record<string, any> };
}

function imagePost(model: string, bytes: Buffer): APIGatewayProxyEventV2 {
  return { ...httpEvent('POST', `/v2/models/${model}/infer`, { headers: { 'content-type': 'image/png' } }), body: bytes.toString('base64'), isBase64Encoded: true };
}

async function pngPixels(b64: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const bytes = Buffer.from(b64, 'base64');
  const meta = await sharp(bytes).metadata();
  expect(meta.format).toBe('png');
  const { data, info } = await sharp(bytes).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: meta.channels };
}

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0' });
  const pre = { image: { type: 'image', scale: 1 / 255 } };
  expect(await convertUpload(s3, 'hard', redMaskModel(), { mode: 'none', preprocess: pre, postprocess: { mask: { type: 'mask', activation: 'sigmoid', resizeToInput: true } } })).toMatchObject({ status: 'succeeded' });
  expect(await convertUpload(s3, 'soft', redMaskModel(), { mode: 'none', preprocess: pre, postprocess: { mask: { type: 'mask', activation: 'sigmoid', threshold: null } } })).toMatchObject({ status: 'succeeded' });
}, 120_000);

afterAll(async () => {
  await serving?.dispose();
  await s3?.stop();
});

describe('a segmenter uploaded with a mask declaration answers PNG masks', () => {
  test('thresholded and resized back to the request image: red half 255, blue half 0', async () => {
    const { status, json } = await call(imagePost('hard', await halves(60, 40)));
    expect(status).toBe(200);
    expect(json.outputs[0]).toMatchObject({ name: 'mask', datatype: 'BYTES', shape: [1] });
    const png = await pngPixels(json.outputs[0].data[0]);
    expect(png).toMatchObject({ width: 60, height: 40, channels: 1 });
    for (let y = 0; y < 40; y++) {
      for (const x of [0, 10, 25]) expect(png.data[y * 60 + x]).toBe(255);
      for (const x of [35, 50, 59]) expect(png.data[y * 60 + x]).toBe(0);
    }
  });

  test('a soft mask at the model size equals round(sigmoid(logit) x 255) of a bare session.run', async () => {
    const image = await halves(50, 50);
    const { status, json } = await call(imagePost('soft', image));
    expect(status).toBe(200);
    const png = await pngPixels(json.outputs[0].data[0]);
    expect(png).toMatchObject({ width: 32, height: 32, channels: 1 });
    const manifest = (await store.getJson(keys.manifest('soft', 1))) as { inputs: TensorSpec[]; outputs: TensorSpec[]; preprocess: unknown };
    const d = checkDeclarations(parseDeclarations(manifest.preprocess, undefined), manifest);
    const session = await InferenceSession.create(await store.getBytes(keys.artifact('soft', 1)));
    const logits = (await session.run({ image: (await imagesToTensor('image', [image], imageDeclaration(d, 'image')!, manifest.inputs[0]!)).tensor })).mask!.data as Float32Array;
    await session.release();
    expect(Array.from(png.data)).toEqual(Array.from(logits, (x) => Math.round(255 / (1 + Math.exp(-x)))));
  });

  test('a batch answers one PNG per image; classification 0 answers the raw tensor', async () => {
    const images = [await halves(20, 20), await halves(40, 30)];
    const body = { inputs: [{ name: 'image', datatype: 'BYTES', shape: [2], data: images.map((b) => b.toString('base64')) }] };
    const pngs = await call(httpEvent('POST', '/v2/models/hard/infer', { body }));
    expect(pngs.json.outputs[0]).toMatchObject({ datatype: 'BYTES', shape: [2] });
    expect(await Promise.all((pngs.json.outputs[0].data as string[]).map(async (b) => (await pngPixels(b)).width))).toEqual([20, 40]);
    const raw = await call(httpEvent('POST', '/v2/models/hard/infer', { body: { ...body, outputs: [{ name: 'mask', parameters: { classification: 0 } }] } }));
    expect(raw.json.outputs[0]).toMatchObject({ name: 'mask', datatype: 'FP32', shape: [2, 1, 32, 32] });
  });

  test('accept: image/png answers the mask itself, as API Gateway takes binary bodies', async () => {
    const event = imagePost('hard', await halves(60, 40));
    const res = (await serving.handler({ ...event, headers: { ...event.headers, accept: 'image/png' } }, lambdaContext('infer'))) as HttpResponse;
    expect(res).toMatchObject({ statusCode: 200, headers: { 'content-type': 'image/png' }, isBase64Encoded: true });
    const png = await pngPixels(res.body);
    expect(png).toMatchObject({ width: 60, height: 40, channels: 1 });
    expect([png.data[0], png.data[59]]).toEqual([255, 0]);
  });

  test('accept: image/png for a model whose one output is not declared a mask is a 400 that says why', async () => {
    expect(await convertUpload(s3, 'nomask', redMaskModel(), { mode: 'none', preprocess: { image: { type: 'image', scale: 1 / 255 } } })).toMatchObject({ status: 'succeeded' });
    const event = imagePost('nomask', await halves(20, 20));
    const res = (await serving.handler({ ...event, headers: { ...event.headers, accept: 'image/png' } }, lambdaContext('infer'))) as HttpResponse;
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body)).toEqual({ error: 'accept: image/png answers the mask of a model with one output declared as a mask; this model\'s outputs are "mask": accept application/json' });
    expect(res.isBase64Encoded).toBeUndefined();
  });

  test('TF Serving answers the PNG in predictions', async () => {
    const { status, json } = await call(httpEvent('POST', '/v1/models/hard:predict', { body: { instances: [{ b64: (await halves(30, 30)).toString('base64') }] } }));
    expect(status).toBe(200);
    expect(json.predictions).toHaveLength(1);
    expect(await pngPixels(json.predictions[0])).toMatchObject({ width: 30, height: 30, channels: 1 });
  });
});

describe('masksToPng', () => {
  const decl = (over: Record<string, unknown> = {}) => parseDeclarations(undefined, { m: { type: 'mask', ...over } }).postprocess.m as Parameters<typeof masksToPng>[1];

  test('[H, W] float, threshold on the exact score; NaN is 0', async () => {
    const [png] = await masksToPng(new Tensor('float32', Float32Array.from([0.49, 0.5, NaN, 1]), [2, 2]), decl());
    expect(Array.from((await pngPixels(png!.toString('base64'))).data)).toEqual([0, 255, 0, 255]);
  });

  test('[N, H, W, 1] float16 soft, and UINT8 read as value / 255', async () => {
    const half = new Tensor('float16', Uint16Array.from([0, 0.25, 1, 2].map(toHalfBits)), [2, 1, 2, 1]);
    const pngs = await masksToPng(half, decl({ threshold: null }));
    expect(await Promise.all(pngs.map(async (p) => Array.from((await pngPixels(p.toString('base64'))).data)))).toEqual([[0, 64], [255, 255]]);
    const [u8] = await masksToPng(new Tensor('uint8', Uint8Array.from([0, 127, 128, 255]), [1, 2, 2]), decl());
    expect(Array.from((await pngPixels(u8!.toString('base64'))).data)).toEqual([0, 0, 255, 255]);
  });
});
