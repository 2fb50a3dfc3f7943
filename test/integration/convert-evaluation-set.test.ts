import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { AccuracyReport } from '../../lib/convert/accuracy';
import type { JobReport } from '../../lib/convert/job';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { colourClassifierModel, convStackModel, prng, redMaskModel } from '../helpers/models';

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
  const key = `uploads/${model}/net.onnx`;
  await put(`uploads/${model}/net.json`, JSON.stringify(sidecar));
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  const result = await convert(s3PutEvent(s3.bucket, key, (out.ETag ?? '').replace(/"/g, '')), lambdaContext('convert'));
  expect(result.reports).toHaveLength(1);
  return result.reports[0]!;
}

function solid(r: number, g: number, b: number): Promise<Buffer> {
  return sharp({ create: { width: 20, height: 20, channels: 3, background: { r, g, b } } }).png().toBuffer();
}

async function manifestAccuracy(model: string): Promise<AccuracyReport> {
  const manifest = (await store.getJson(keys.manifest(model, 1))) as { evaluation: { accuracy: AccuracyReport } };
  return manifest.evaluation.accuracy;
}

describe('evaluationSet: accuracy on the upload\'s labelled data', () => {
  test('images in class folders (by name in classLabels): accuracy, drop and accuracy-speed balance of both models', async () => {
    const colours: Record<string, [number, number, number]> = { red: [220, 20, 30], green: [20, 200, 40], blue: [30, 20, 210] };
    for (const [name, rgb] of Object.entries(colours)) for (let i = 0; i < 3; i++) await put(`uploads/acc/eval/${name}/${i}.png`, await solid(rgb[0] - i * 10, rgb[1], rgb[2]));
    // One mislabelled picture: a red one filed as green. 9 of 10 right = 90%.
    await put('uploads/acc/eval/green/wrong.png', await solid(230, 10, 10));
    const report = await runConvert('acc', colourClassifierModel({ size: 16 }), {
      mode: 'fp16',
      classLabels: ['red', 'green', 'blue'],
      preprocess: { image: { type: 'image', scale: 1 / 255 } },
      evaluationSet: { files: 'eval/' },
    });
    expect(report).toMatchObject({ status: 'succeeded', outcome: 'converted', gates: { passed: true, maxAccuracyDrop: 1 } });
    const accuracy = report.figures!.accuracy!;
    expect(accuracy).toMatchObject({
      output: 'logits',
      kind: 'classification',
      examples: 10,
      original: { correct: 9, total: 10, percent: 90 },
      converted: { correct: 9, total: 10, percent: 90 },
      drop: 0,
    });
    expect(accuracy.original.balance).toBeCloseTo(90 / report.figures!.latencyMs.original, 9);
    expect(accuracy.converted.balance).toBeCloseTo(90 / report.figures!.latencyMs.converted, 9);
    expect(await manifestAccuracy('acc')).toEqual(accuracy);
  });

  test('a conversion that loses more accuracy than maxAccuracyDrop publishes the optimized float model, saying why', async () => {
    // Expected tensors are the original's own answers, judged at a tolerance no int8 model meets.
    const source = convStackModel(16, 2, 16);
    const rand = prng(21);
    const session = await InferenceSession.create(source, { intraOpNumThreads: 1, logSeverityLevel: 3 });
    const examples = [];
    const samples = [];
    for (let i = 0; i < 8; i++) {
      const data = Array.from({ length: 3 * 16 * 16 }, () => rand());
      const scores = (await session.run({ image: new Tensor('float32', Float32Array.from(data), [1, 3, 16, 16]) })).scores!.data as Float32Array;
      const image = { shape: [1, 3, 16, 16], datatype: 'FP32', data };
      samples.push({ image });
      examples.push({ inputs: { image }, expected: { shape: [1, 10], datatype: 'FP32', data: [...scores] } });
    }
    await session.release();
    const report = await runConvert('accgate', source, {
      mode: 'int8-static',
      sampleInputs: samples,
      gates: { minCosine: 0, minTop1: 0 },
      evaluationSet: { examples, tolerance: { atol: 1e-5, rtol: 0 } },
    });
    expect(report).toMatchObject({ status: 'succeeded', outcome: 'float-fallback' });
    expect(report.reason).toMatch(/^int8-static failed its gates \(output "scores": accuracy on the evaluation set fell \d+\.\d\d points \(100\.00% -> \d+\.\d\d%\) > 1\); published the optimized float model instead$/);
    // The float model published keeps the original's accuracy.
    expect(report.figures!.accuracy).toMatchObject({ kind: 'tensor', examples: 8, original: { percent: 100 }, converted: { percent: 100 }, drop: 0 });
  });

  test('a segmenter declared with a mask: IoU of thresholded masks vs the original, and mask accuracy on expected masks', async () => {
    const size = 32;
    const rand = prng(5);
    /** A picture with a red blob on a blue-grey background, as an OIP tensor, and the red-ness logits it should give. */
    const picture = () => {
      const [cx, cy, r] = [8 + rand() * 16, 8 + rand() * 16, 4 + rand() * 6];
      const data = new Array<number>(3 * size * size);
      const logits = new Array<number>(size * size);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
          const [R, G, B] = inside ? [0.8 + 0.2 * rand(), 0.1, 0.2 * rand()] : [0.2 * rand(), 0.3, 0.5 + 0.4 * rand()];
          [data[y * size + x], data[size * size + y * size + x], data[2 * size * size + y * size + x]] = [R, G, B];
          logits[y * size + x] = 10 * (R - B);
        }
      return { image: { shape: [1, 3, size, size], datatype: 'FP32', data }, logits };
    };
    const calibration = Array.from({ length: 8 }, () => ({ image: picture().image }));
    const examples = Array.from({ length: 6 }, () => {
      const p = picture();
      return { inputs: { image: p.image }, expected: { shape: [1, 1, size, size], datatype: 'FP32', data: p.logits } };
    });
    const report = await runConvert('accmask', redMaskModel({ size }), {
      mode: 'int8-static',
      sampleInputs: calibration,
      postprocess: { mask: { type: 'mask', activation: 'sigmoid' } },
      evaluationSet: { examples },
    });
    expect(report).toMatchObject({ status: 'succeeded', outcome: 'converted' });
    expect(report.figures!.outputs.mask!.maskIoU).toBeGreaterThan(0.98);
    expect(report.figures!.outputs.mask!.maskIoU).toBeLessThanOrEqual(1);
    const accuracy = report.figures!.accuracy!;
    expect(accuracy).toMatchObject({ output: 'mask', kind: 'mask', examples: 6, original: { total: 6 * size * size, percent: 100, maskIoU: 1 } });
    expect(accuracy.converted.maskIoU).toBeGreaterThan(0.98);
    expect(accuracy.drop).toBeLessThan(1);
  });

  test.each([
    ['a raw tensor carries no answer', 'accbin', async () => put('uploads/accbin/eval/x.bin', new Uint8Array(new Float32Array(3 * 16 * 16).buffer)), { files: 'eval/' },
      'options: evaluationSet.files: uploads/accbin/eval/x.bin carries no expected answer (a JSON file gives "label" or "expected"; an image sits in a folder named by its class)'],
    ['a folder that names no class', 'accfolder', async () => put('uploads/accfolder/eval/purple/x.png', await solid(200, 0, 200)), { files: 'eval/' },
      'options: evaluationSet.files: uploads/accfolder/eval/purple/x.png: its folder "purple" is neither a class index nor one of "classLabels"'],
    ['an output the model lacks', 'accout', async () => put('uploads/accout/eval/0/x.png', await solid(200, 0, 0)), { files: 'eval/', output: 'probs' },
      'options: evaluationSet.output: the model has no output "probs"; its outputs are "logits"'],
    ['a label past the classes', 'acclabel', async () => put('uploads/acclabel/eval/7/x.png', await solid(200, 0, 0)), { files: 'eval/' },
      'evaluationSet: uploads/acclabel/eval/7/x.png: class 7 is not below output "logits"\'s 3 classes'],
    ['files outside the model\'s uploads', 'accescape', async () => undefined, { files: '../acc/eval/' },
      'options: "evaluationSet.files" must be a relative key or prefix under uploads/accescape/ (no "..", "." or empty segments, no leading "/", no "\\"); got "../acc/eval/"'],
  ])('%s: a failed report naming it, nothing published', async (_name, model, setup, evaluationSet, reason) => {
    await setup();
    const report = await runConvert(model, colourClassifierModel({ size: 16 }), {
      mode: 'fp16',
      classLabels: ['red', 'green', 'blue'],
      preprocess: { image: { type: 'image', scale: 1 / 255 } },
      evaluationSet,
    });
    expect(report).toMatchObject({ status: 'failed', reason });
    expect(await store.listKeys(`models/${model}/`)).toEqual([]);
  });
});
