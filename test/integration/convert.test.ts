import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { S3Event } from 'aws-lambda';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { Logger } from '@aws-lambda-powertools/logger';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import { keys } from '../../lib/registry/keys';
import { makeNode, OnnxModel } from '../../lib/onnx/model';
import { ObjectStore } from '../../lib/storage/object-store';
import { createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { bertEncoderModel, convNetModel, denseStackModel, mlpModel, ONNX, prng, sileroVadModel, uncarriableOutputModel } from '../helpers/models';

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

const s3Event = (key: string, etag: string, encode = true): S3Event => s3PutEvent(s3.bucket, key, etag, { encode });

async function upload(key: string, body: Uint8Array | string, sidecar?: unknown): Promise<string> {
  if (sidecar !== undefined) {
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key.replace(/\.onnx$/, '.json'), Body: JSON.stringify(sidecar) }));
  }
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  return (out.ETag ?? '').replace(/"/g, '');
}

async function runConvert(key: string, body: Uint8Array | string, sidecar?: unknown, encode = true): Promise<JobReport> {
  const etag = await upload(key, body, sidecar);
  const result = await convert(s3Event(key, etag, encode), lambdaContext('convert'));
  expect(result.reports).toHaveLength(1);
  return result.reports[0]!;
}

async function keysUnder(prefix: string): Promise<string[]> {
  return store.listKeys(prefix);
}

describe('conversion: an upload becomes an evaluated, versioned model', () => {
  const original = denseStackModel(256, 4);

  test('int8-dynamic: published with its figures, label moved, served, and the answers agree', async () => {
    const report = await runConvert('uploads/dense/first model.onnx', original);
    expect(report).toMatchObject({ status: 'succeeded', model: 'dense', version: 1, label: 'stable', labelMoved: true, outcome: 'converted' });
    expect(report.figures!.compressionPercent).toBeGreaterThan(70);
    expect(report.figures!.outputs.y!.cosine).toBeGreaterThanOrEqual(0.99);
    expect(report.gates).toMatchObject({ passed: true, minCosine: 0.99, failures: [] });

    const manifest = (await store.getJson(keys.manifest('dense', 1))) as Record<string, any>;
    expect(manifest).toMatchObject({
      model: 'dense',
      version: 1,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 256] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 256] }],
      source: { key: 'uploads/dense/first model.onnx', bytes: original.byteLength },
      conversion: { mode: 'int8-dynamic', outcome: 'converted', quantization: { rewritten: { MatMul: 4 } } },
      evaluation: { passed: true, bytes: { original: original.byteLength } },
    });
    expect(await store.getJson(keys.alias('dense', 'stable'))).toMatchObject({ version: 1 });
    expect(await store.getJson(keys.job('dense', report.jobId))).toMatchObject({ status: 'succeeded', version: 1 });

    const rand = prng(77);
    const x = Array.from({ length: 256 }, () => rand() * 2 - 1);
    const res = (await serving.handler(
      httpEvent('POST', '/v2/models/dense/infer', { body: { inputs: [{ name: 'x', shape: [1, 256], datatype: 'FP32', data: x }] } }),
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const served = (JSON.parse(res.body) as { model_version: string; outputs: { data: number[] }[] });
    expect(served.model_version).toBe('1');
    const session = await InferenceSession.create(original);
    const expected = (await session.run({ x: new Tensor('float32', Float32Array.from(x), [1, 256]) })).y!.data as Float32Array;
    await session.release();
    const got = served.outputs[0]!.data;
    let dot = 0, na = 0, nb = 0;
    got.forEach((g, i) => { dot += g * expected[i]!; na += g * g; nb += expected[i]! * expected[i]!; });
    expect(dot / Math.sqrt(na * nb)).toBeGreaterThan(0.99);
  });

  test('the same event delivered again publishes nothing new', async () => {
    const etag = (await store.head('uploads/dense/first model.onnx'))!.etag;
    const again = await convert(s3Event('uploads/dense/first model.onnx', etag), lambdaContext('convert'));
    expect(again.reports[0]).toMatchObject({ status: 'succeeded', version: 1 });
    expect((await keysUnder('models/dense/')).filter((k) => k.endsWith('manifest.json'))).toEqual(['models/dense/1/manifest.json']);
  });

  test('a second upload gets the next version; raw (unencoded) keys from the local S3 work too', async () => {
    const report = await runConvert('uploads/dense/second model.onnx', denseStackModel(256, 4, 9), { mode: 'fp16' }, false);
    expect(report).toMatchObject({ status: 'succeeded', version: 2, labelMoved: true });
    expect(report.figures!.compressionPercent).toBeGreaterThan(45);
  });

  test('sidecar: no label move, and the gates are the upload\'s own', async () => {
    const report = await runConvert('uploads/dense/candidate.onnx', denseStackModel(256, 4, 10), { label: null, gates: { minCosine: 0.9 } });
    expect(report).toMatchObject({ status: 'succeeded', version: 3, label: null, labelMoved: false });
    expect(await store.getJson(keys.alias('dense', 'stable'))).toMatchObject({ version: 2 });
  });

  test('two different uploads racing publish two distinct versions', async () => {
    const [a, b] = [denseStackModel(128, 2, 21), denseStackModel(128, 2, 22)];
    const [etagA, etagB] = [await upload('uploads/race/a.onnx', a), await upload('uploads/race/b.onnx', b)];
    const results = await Promise.all([
      convert(s3Event('uploads/race/a.onnx', etagA), lambdaContext('convert')),
      convert(s3Event('uploads/race/b.onnx', etagB), lambdaContext('convert')),
    ]);
    const versions = results.map((r) => r.reports[0]!.version).sort();
    expect(versions).toEqual([1, 2]);
    const manifests = await Promise.all([1, 2].map((v) => store.getJson(keys.manifest('race', v)) as Promise<Record<string, any>>));
    expect(manifests.map((m) => m.source.key).sort()).toEqual(['uploads/race/a.onnx', 'uploads/race/b.onnx']);
  });

  test('a quantized model that fails its gates falls back to the optimized float model', async () => {
    const report = await runConvert('uploads/strict/model.onnx', denseStackModel(256, 4, 11), { gates: { minCosine: 0.9999999 } });
    expect(report).toMatchObject({ status: 'succeeded', version: 1, outcome: 'float-fallback', labelMoved: true });
    expect(report.reason).toMatch(/^int8-dynamic failed its gates \(output "y": cosine 0\.\d+ < 0\.9999999\); published the optimized float model instead$/);
    expect(report.figures!.outputs.y!.cosine).toBeGreaterThan(0.9999999);
    // Both passes keep their own timings: the int8 attempt's are not overwritten by the fallback's.
    expect(Object.keys(report.timingsMs)).toEqual(expect.arrayContaining(['quantize', 'optimize', 'evaluate', 'quantizeFallback', 'optimizeFallback', 'evaluateFallback']));
  });

  test('a BERT-shaped encoder (embeddings, 4 attention + FFN layers, int64 token ids) converts and serves', async () => {
    const bert = bertEncoderModel();
    const report = await runConvert('uploads/bert/encoder.onnx', bert);
    expect(report).toMatchObject({ status: 'succeeded', version: 1, labelMoved: true, outcome: 'converted' });
    const manifest = (await store.getJson(keys.manifest('bert', 1))) as Record<string, any>;
    // Four attention blocks fused and quantized (QAttention), 13 MatMuls (O, FF1, FF2 x 4, pooler).
    expect(manifest.conversion.quantization.rewritten).toEqual({ Gather: 1, Slice: 1, Attention: 4, MatMul: 13 });
    expect(manifest.conversion.optimization.attentionFused).toBe(4);
    expect(report.figures!.compressionPercent).toBeGreaterThan(70);
    expect(report.figures!.outputs.pooled!.cosine).toBeGreaterThanOrEqual(0.99);
    const ids = Array.from({ length: 16 }, (_, i) => (i * 37) % 8000);
    const res = (await serving.handler(
      httpEvent('POST', '/v2/models/bert/infer', {
        body: { inputs: [{ name: 'input_ids', shape: [1, 16], datatype: 'INT64', data: ids }], outputs: [{ name: 'pooled' }] },
      }),
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const pooled = (JSON.parse(res.body) as { outputs: { name: string; shape: number[]; data: number[] }[] }).outputs;
    expect(pooled.map((o) => [o.name, o.shape])).toEqual([['pooled', [1, 256]]]);
    // Optimized offline and convolution-free: served with no second optimization pass
    // (ORT_GRAPH_OPTIMIZATION_LEVEL=auto), and still close to the original model.
    expect(manifest.conversion.optimization).toMatchObject({ kept: true, servingLevel: 'disabled' });
    const original = await InferenceSession.create(bert);
    const want = (await original.run({ input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 16]) })).pooled!.data as Float32Array;
    await original.release();
    const got = pooled[0]!.data;
    const dot = got.reduce((acc, v, i) => acc + v * want[i]!, 0);
    const norm = Math.sqrt(got.reduce((acc, v) => acc + v * v, 0) * want.reduce((acc, v) => acc + v * v, 0));
    expect(dot / norm).toBeGreaterThan(0.99);
  });

  test('a model with convolutions is served at level all (its layout transforms are made at load)', async () => {
    await runConvert('uploads/convnet/net.onnx', convNetModel());
    const manifest = (await store.getJson(keys.manifest('convnet', 1))) as Record<string, any>;
    expect(manifest.conversion.optimization.servingLevel).toBe('all');
  });

  test('Silero VAD (Constant weights inside If branches) in fp16 with sample inputs from the sidecar', async () => {
    const audio = Array.from({ length: 576 }, (_, i) => Math.sin(i / 5) * 0.3);
    const report = await runConvert('uploads/vad/silero.onnx', sileroVadModel(), {
      mode: 'fp16',
      minElements: 1024,
      sampleInputs: [
        {
          input: { shape: [1, 576], datatype: 'FP32', data: audio },
          state: { shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
          sr: { shape: [], datatype: 'INT64', data: [16000] },
        },
      ],
    });
    expect(report).toMatchObject({ status: 'succeeded', version: 1, labelMoved: true });
    expect(report.figures!.compressionPercent).toBeGreaterThan(20);
    expect(report.figures!.outputs.output!.cosine).toBeGreaterThan(0.999);
  });

  test('a model with nothing to quantize is published as it was, and the report says so', async () => {
    const report = await runConvert('uploads/small/mlp.onnx', mlpModel());
    expect(report).toMatchObject({ status: 'succeeded', version: 1, outcome: 'converted' });
    expect(report.reason).toBe(
      'int8-dynamic found no weight to convert (none of at least 4096 elements in a supported op); published the optimized model as it was',
    );
  });
});

/** The MLP with its Relu renamed to an op no runtime has: well-formed, servable types, unloadable. */
function unknownOpModel(): Uint8Array {
  const model = OnnxModel.decode(mlpModel());
  const graph = model.graph();
  graph.setNodes(graph.nodes().map((n) => (n.opType === 'Relu' ? makeNode('NoSuchOp', n.inputs, n.outputs, n.name) : n.proto)));
  return model.encode();
}

describe('broken uploads: a failure report, nothing published, no retry', () => {
  test.each([
    ['not protobuf', 'uploads/broken/text.onnx', 'this is not a model', /^model upload is not a readable ONNX file|is not a readable ONNX file/],
    ['truncated', 'uploads/broken/truncated.onnx', mlpModel().subarray(0, 100), /not a readable ONNX file: length \d+ runs past the end of its message|truncated/],
    ['an INT4 output', 'uploads/broken/int4.onnx', uncarriableOutputModel(ONNX.INT4), /output "y" has datatype INT4/],
    ['an empty file', 'uploads/broken/empty.onnx', new Uint8Array(0), /no graph in the model/],
    ['a graph onnxruntime refuses (an op it does not know)', 'uploads/broken/unknown-op.onnx', unknownOpModel(), /^onnxruntime cannot load the model: .*NoSuchOp/],
  ])('%s', async (_name, key, body, reason) => {
    const report = await runConvert(key, body);
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(reason);
    expect(await keysUnder('models/broken/')).toEqual([]);
    expect(await store.getJson(keys.job('broken', report.jobId))).toMatchObject({ status: 'failed', reason: report.reason });
  });

  test('unknown sidecar keys are an error in the report, not ignored', async () => {
    const report = await runConvert('uploads/opts/model.onnx', mlpModel(), { mode: 'int8-dynamic', gate: { minCosine: 0.5 } });
    expect(report).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^options: unknown key "gate"; known keys: mode, gates, /) });
    const bad = await runConvert('uploads/opts/other.onnx', mlpModel(), { mode: 'int3' });
    expect(bad.reason).toBe('options: "mode" must be one of int8-dynamic, int8-static, int8, fp16, none');
    expect(await keysUnder('models/opts/')).toEqual([]);
  });

  test('an invalid model name is reported outside any model\'s prefix', async () => {
    const report = await runConvert('uploads/Bad Name/model.onnx', mlpModel());
    expect(report).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^model name "Bad Name" must match/) });
    expect(await store.getJson(keys.job('_rejected', report.jobId))).toMatchObject({ status: 'failed' });
  });

  test('files outside uploads/<model>/<file>.onnx are ignored', async () => {
    const etag = await upload('models/dense/1/extra.onnx', 'x');
    expect(await convert(s3Event('models/dense/1/extra.onnx', etag), lambdaContext('convert'))).toEqual({ reports: [] });
  });
});
