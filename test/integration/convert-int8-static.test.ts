import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import { OnnxModel } from '../../lib/onnx/model';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { convStackModel, prng } from '../helpers/models';

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

async function runConvert(key: string, body: Uint8Array, sidecar: unknown): Promise<JobReport> {
  await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key.replace(/\.onnx$/, '.json'), Body: JSON.stringify(sidecar) }));
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  const result = await convert(s3PutEvent(s3.bucket, key, (out.ETag ?? '').replace(/"/g, '')), lambdaContext('convert'));
  expect(result.reports).toHaveLength(1);
  return result.reports[0]!;
}

const SIZE = 16;

/** Image-like samples in OIP JSON: smooth gradients plus texture, in [0, 1]. */
function imageSamples(count: number, seed: number) {
  const rand = prng(seed);
  return Array.from({ length: count }, () => {
    const [a, b, c] = [rand(), rand(), rand()];
    const data: number[] = [];
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) data.push(Math.min(1, Math.max(0, (0.5 * (a * x + b * y)) / SIZE + 0.3 * c * (ch / 2) + 0.2 * rand())));
    return { image: { shape: [1, 3, SIZE, SIZE], datatype: 'FP32', data } };
  });
}

describe('int8-static: a conv net calibrated on the upload\'s samples', () => {
  test('is published with its Convs in QDQ form, fused by onnxruntime, and agreeing with the original', async () => {
    const source = convStackModel(16, 3, SIZE);
    const report = await runConvert('uploads/cnn/net.onnx', source, { mode: 'int8-static', sampleInputs: imageSamples(8, 3) });
    expect(report).toMatchObject({ status: 'succeeded', version: 1, outcome: 'converted' });
    expect(report.figures!.outputs.scores!.cosine).toBeGreaterThan(0.99);
    const manifest = (await store.getJson(keys.manifest('cnn', 1))) as { conversion: { quantization: Record<string, unknown> } };
    expect(manifest.conversion.quantization).toMatchObject({ mode: 'int8-static', rewritten: { Conv: 3 }, static: { convs: 3, reluFolded: 3, keptFloat: {} } });

    const artifact = await store.getBytes(keys.artifact('cnn', 1));
    expect(artifact.byteLength).toBeLessThan(source.byteLength * 0.5);
    const session = await InferenceSession.create(artifact, { intraOpNumThreads: 1, logSeverityLevel: 3 });
    try {
      const x = imageSamples(1, 99)[0]!.image;
      const out = await session.run({ image: new Tensor('float32', Float32Array.from(x.data), x.shape) });
      expect(out.scores!.dims).toEqual([1, 10]);
    } finally {
      await session.release();
    }
    const ops = OnnxModel.decode(artifact).graph().nodes().map((n) => n.opType);
    expect(ops.some((o) => o === 'QuantizeLinear' || o === 'QLinearConv')).toBe(true);
  });

  test.each([
    ['no samples', 'none', undefined, 'options: int8-static calibrates on your data: give at least 8 samples in "sampleInputs" (generated noise is not used, its activation ranges are not those of real inputs)'],
    ['too few samples', 'three', imageSamples(3, 5), 'options: int8-static needs at least 8 calibration samples in "sampleInputs"; got 3'],
  ])('%s: a failed report naming the reason, nothing published', async (_name, file, sampleInputs, reason) => {
    const report = await runConvert(`uploads/nocal/${file}.onnx`, convStackModel(8, 1, SIZE), { mode: 'int8-static', ...(sampleInputs ? { sampleInputs } : {}) });
    expect(report).toMatchObject({ status: 'failed', reason });
    expect(await store.listKeys('models/nocal/')).toEqual([]);
  });

  test('calibration samples that do not fit the model: a failed report naming the input, nothing published', async () => {
    const wrong = imageSamples(8, 7).map((x) => ({ image: { ...x.image, shape: [1, 3, 8, 32] } }));
    const report = await runConvert('uploads/badcal/net.onnx', convStackModel(8, 1, SIZE), { mode: 'int8-static', sampleInputs: wrong });
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(/image/);
    expect(await store.listKeys('models/badcal/')).toEqual([]);
  });
});
