import sharp from 'sharp';
import type { JobReport } from '../../lib/convert/job';
import { writeZip } from '../../lib/convert/import/zip';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertAt, createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { tf, useCpuBackend, type SavedTfjs } from '../helpers/tfjs';
import { attr, GraphModelBuilder, loadTfjsGraph, nsfwMobileNetV2Graph } from '../helpers/tfjs-graph';

let s3: LocalS3;
let store: ObjectStore;
let serving: TestApp;

beforeAll(async () => {
  tf.enableProdMode();
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

function zipped(saved: SavedTfjs, folder = ''): Uint8Array {
  return writeZip([{ name: `${folder}model.json`, data: saved.modelJson }, ...[...saved.shards].map(([name, data]) => ({ name: `${folder}${name}`, data }))]);
}

/** A 224x224 picture drawn by sharp (librsvg) from SVG: sky, sun, hills, as RGB floats in [0, 1]. */
async function drawnImage(): Promise<Float32Array> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="224" height="224">
    <rect width="224" height="224" fill="#7ec0ee"/>
    <circle cx="160" cy="60" r="30" fill="#ffd700"/>
    <path d="M0 170 Q 60 110 120 170 T 224 160 V 224 H 0 Z" fill="#3b7d23"/>
    <rect x="40" y="120" width="50" height="50" fill="#8b4513"/><path d="M35 120 L65 95 L95 120 Z" fill="#b22222"/></svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([224, 224, 3]);
  return Float32Array.from(data, (v) => v / 255);
}

describe('a TF.js graph model uploaded as a zip goes through the conversion job', () => {
  test('a real pretrained graph model from npm (nsfwjs MobileNetV2, tensorflowjs_converter 1.7, uint8 weights in two shards): converted, gated, served like TF.js', async () => {
    const saved = nsfwMobileNetV2Graph();
    const zip = zipped(saved, 'mobilenet_v2_mid/');
    const report = await runConvert('uploads/nsfw-graph/mobilenet_v2_mid.zip', zip);
    expect(report).toMatchObject({ status: 'succeeded', model: 'nsfw-graph', version: 1, import: { format: 'tfjs-graph', fidelity: { passed: true, minCosine: 0.9999 } } });
    const fidelity = report.import!.fidelity!;
    expect(fidelity.samples).toBeGreaterThan(0);
    expect(fidelity.outputs['Identity:0']!.cosine).toBeGreaterThanOrEqual(0.9999);
    expect(fidelity.outputs['Identity:0']!.maxAbsError).toBeLessThanOrEqual(1e-4);
    // The signature's names, shapes and NHWC layout are the served model's interface.
    const manifest = (await store.getJson(keys.manifest('nsfw-graph', 1))) as Record<string, any>;
    expect(manifest).toMatchObject({
      inputs: [{ name: 'input:0', datatype: 'FP32', shape: [-1, 224, 224, 3] }],
      outputs: [{ name: 'Identity:0', datatype: 'FP32', shape: [-1, 5] }],
      import: { format: 'tfjs-graph', fidelity: { passed: true } },
      source: { key: 'uploads/nsfw-graph/mobilenet_v2_mid.zip', bytes: zip.byteLength },
    });

    // A real picture: TF.js runs the original, the endpoint the converted (int8) model.
    const image = await drawnImage();
    const model = await loadTfjsGraph(saved);
    const input = tf.tensor(image, [1, 224, 224, 3]);
    const out = model.execute({ 'input:0': input }, ['Identity:0']) as tf.Tensor;
    const want = out.dataSync();
    tf.dispose([input, out]);
    model.dispose();
    const res = (await serving.handler(
      httpEvent('POST', '/v2/models/nsfw-graph/infer', { body: { inputs: [{ name: 'input:0', shape: [1, 224, 224, 3], datatype: 'FP32', data: Array.from(image) }] } }),
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const got = (JSON.parse(res.body) as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === 'Identity:0')!.data;
    expect(got).toHaveLength(5);
    const argmax = (a: ArrayLike<number>) => Array.from(a).indexOf(Math.max(...Array.from(a)));
    expect(argmax(got)).toBe(argmax(want));
    for (let i = 0; i < 5; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(0.05);
  }, 180_000);

  test('a FusedBatchNorm fused into a conv converts, but TF.js cannot run it: the gate fails with its reason, nothing is published', async () => {
    const b = new GraphModelBuilder(5);
    const x = b.input('x', [-1, 6, 6, 2]);
    const bn = [b.const('gamma', [3]), b.const('beta', [3]), b.const('mean', [3]), b.const('var', [3], undefined, { lo: 0.5 })];
    const conv = b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 2, 3]), ...bn], {
      data_format: attr.str('NHWC'),
      strides: attr.ints([1, 1, 1, 1]),
      dilations: attr.ints([1, 1, 1, 1]),
      padding: attr.str('SAME'),
      fused_ops: attr.strs(['FusedBatchNorm', 'Relu']),
      num_args: attr.int(4),
      epsilon: attr.float(0.001),
    });
    const report = await runConvert('uploads/graph-bn/m.zip', zipped(b.build([conv])));
    expect(report).toMatchObject({ status: 'failed', import: { format: 'tfjs-graph' } });
    expect(report.reason).toMatch(/^import fidelity: TF\.js cannot run the original model: .*FusedBatchNorm is not supported/);
    expect(await store.listKeys('models/graph-bn/')).toEqual([]);
  });

  test('an unsupported op fails the job, the report names the node, its op and the supported ops; nothing is published', async () => {
    const b = new GraphModelBuilder(3);
    const x = b.input('x', [-1, 8]);
    const h = b.op('dense', '_FusedMatMul', [x, b.const('w', [8, 4]), b.const('b', [4])], { fused_ops: attr.strs(['BiasAdd', 'Relu']), num_args: attr.int(1), transpose_a: attr.bool(false), transpose_b: attr.bool(false) });
    b.op('cumsum', 'Cumsum', [h, b.ints('axis', [], [1])]);
    const report = await runConvert('uploads/graph-bad/m.zip', zipped(b.build(['cumsum'])));
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(/^node "cumsum" \(Cumsum\): op Cumsum is not supported; supported ops: .*FusedDepthwiseConv2dNative.*_FusedConv2D, _FusedMatMul$/);
    expect(await store.listKeys('models/graph-bad/')).toEqual([]);
  });
});
