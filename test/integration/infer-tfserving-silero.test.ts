import { InferenceSession, Tensor } from 'onnxruntime-node';
import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { allTypesModel, mlpModel, prng, sileroVadModel } from '../helpers/models';
import { expectTensorClose } from '../helpers/tensors';

let s3: LocalS3;
let t: TestApp;

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishModel(s3, 'mlp', 1, mlpModel({ batch: 'N' }), { label: 'stable' });
  await publishModel(s3, 'mlp', 2, mlpModel({ batch: 'N', seed: 2 }), { label: 'canary' });
  await publishModel(s3, 'types', 1, allTypesModel(), { label: 'stable' });
  await publishModel(s3, 'silero', 1, sileroVadModel(), { label: 'stable' });
  t = createTestApp(s3);
});

afterAll(async () => {
  await t?.dispose();
  await s3?.stop();
});

async function call(method: string, path: string, body?: unknown) {
  const res = (await t.handler(httpEvent(method, path, { body }), lambdaContext())) as { statusCode: number; body: string };
  return { status: res.statusCode, raw: res.body, json: JSON.parse(res.body) as Record<string, unknown> };
}

async function direct(bytes: Uint8Array, feeds: Record<string, Tensor>) {
  const session = await InferenceSession.create(bytes);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/** 36 ms of a 16 kHz tone with noise: 64 samples of context + a 512-sample window, as Silero expects. */
function audioChunk(): number[] {
  const rand = prng(21);
  return Array.from({ length: 576 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 220 * i) / 16000) + 0.05 * (rand() - 0.5));
}

describe('Silero VAD (real pre-trained model from npm): dynamic shapes, state, an int64 scalar', () => {
  test('OIP v2: outputs match a direct session.run, state included', async () => {
    const audio = audioChunk();
    const state = new Array(2 * 128).fill(0);
    const res = await call('POST', '/v2/models/silero/infer', {
      inputs: [
        { name: 'input', shape: [1, 576], datatype: 'FP32', data: audio },
        { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: state },
        { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
      ],
    });
    expect(res.status).toBe(200);
    const expected = await direct(sileroVadModel(), {
      input: new Tensor('float32', Float32Array.from(audio), [1, 576]),
      state: new Tensor('float32', new Float32Array(256), [2, 1, 128]),
      sr: new Tensor('int64', BigInt64Array.from([16000n]), []),
    });
    const outputs = res.json.outputs as { name: string; datatype: string; shape: number[]; data: number[] }[];
    const byName = new Map(outputs.map((o) => [o.name, o]));
    expectTensorClose(byName.get('output')!, expected.output!, 'FP32', { atol: 1e-5 });
    expectTensorClose(byName.get('stateN')!, expected.stateN!, 'FP32', { atol: 1e-5 });
    const probability = byName.get('output')!.data[0]!;
    expect(probability).toBeGreaterThanOrEqual(0);
    expect(probability).toBeLessThanOrEqual(1);
  });

  test('a missing state input and a wrong sr datatype are named', async () => {
    const audio = { name: 'input', shape: [1, 576], datatype: 'FP32', data: audioChunk() };
    const noState = await call('POST', '/v2/models/silero/infer', { inputs: [audio, { name: 'sr', shape: [], datatype: 'INT64', data: [16000] }] });
    expect(noState).toMatchObject({ status: 400, json: { error: 'missing input "state"; the model\'s inputs are: input, state, sr' } });
    const badSr = await call('POST', '/v2/models/silero/infer', {
      inputs: [audio, { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) }, { name: 'sr', shape: [], datatype: 'FP32', data: [16000] }],
    });
    expect(badSr).toMatchObject({ status: 400, json: { error: 'input "sr": datatype is FP32 but the model expects INT64' } });
  });

  test('TF Serving columnar format: named inputs, a scalar, named outputs', async () => {
    const audio = audioChunk();
    const res = await call('POST', '/v1/models/silero:predict', {
      inputs: { input: [audio], state: [[new Array(128).fill(0)], [new Array(128).fill(0)]], sr: 16000 },
    });
    expect(res.status).toBe(200);
    const outputs = res.json.outputs as { output: number[][]; stateN: number[][][] };
    const expected = await direct(sileroVadModel(), {
      input: new Tensor('float32', Float32Array.from(audio), [1, 576]),
      state: new Tensor('float32', new Float32Array(256), [2, 1, 128]),
      sr: new Tensor('int64', BigInt64Array.from([16000n]), []),
    });
    expect(outputs.output).toHaveLength(1);
    expect(outputs.output[0]![0]).toBeCloseTo((expected.output!.data as Float32Array)[0]!, 5);
    expect(outputs.stateN).toHaveLength(2);
    expect(outputs.stateN[0]![0]).toHaveLength(128);
  });
});

describe('TensorFlow Serving REST', () => {
  const rows = [
    [0.1, 0.2, 0.3, 0.4],
    [1, -1, 0.5, 2],
  ];

  test('row format: one prediction per instance, equal to the OIP answer', async () => {
    const tf = await call('POST', '/v1/models/mlp:predict', { instances: rows });
    expect(tf.status).toBe(200);
    const predictions = tf.json.predictions as number[][];
    expect(predictions).toHaveLength(2);
    const oip = await call('POST', '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: rows }] });
    const flat = (oip.json.outputs as { data: number[] }[])[0]!.data;
    expect(predictions.flat()).toEqual(flat);
  });

  test('columnar format with a single unnamed input, versions and labels in the path', async () => {
    const v1 = await call('POST', '/v1/models/mlp/versions/1:predict', { inputs: rows });
    const canary = await call('POST', '/v1/models/mlp/labels/canary:predict', { inputs: rows });
    const v2 = await call('POST', '/v1/models/mlp/versions/2:predict', { inputs: rows });
    expect(v1.status).toBe(200);
    expect((v1.json.outputs as number[][]).length).toBe(2);
    expect(canary.json).toEqual(v2.json);
    expect(canary.json).not.toEqual(v1.json);
  });

  test('named instances across every datatype, with {"b64": ...} for bytes', async () => {
    const instance = (i: number) => ({
      in_bool: i === 0,
      in_uint8: 200 + i,
      in_uint16: 60000 + i,
      in_uint32: 4000000000 + i,
      in_uint64: 5 + i,
      in_int8: -100 - i,
      in_int16: -30000 - i,
      in_int32: -2000000000 - i,
      in_int64: -7 - i,
      in_fp16: 1.5 + i,
      in_fp32: 0.25 + i,
      in_fp64: 1e-300 * (i + 1),
      in_bytes: { b64: Buffer.from(`héllo ${i}`).toString('base64') },
    });
    const res = await call('POST', '/v1/models/types:predict', { instances: [instance(0), instance(1)] });
    expect(res.status).toBe(200);
    const predictions = res.json.predictions as Record<string, unknown>[];
    expect(predictions).toHaveLength(2);
    predictions.forEach((p, i) => {
      const sent = instance(i);
      for (const [name, value] of Object.entries(sent)) {
        const out = p[name.replace(/^in_/, 'out_')];
        expect(out).toEqual(name === 'in_bytes' ? `héllo ${i}` : value);
      }
    });
  });

  test('bad requests name their problem', async () => {
    expect(await call('POST', '/v1/models/mlp:predict', { instances: rows, inputs: rows })).toMatchObject({
      status: 400,
      json: { error: 'request must have exactly one of "instances" (row format) or "inputs" (columnar format)' },
    });
    expect(await call('POST', '/v1/models/mlp:predict', { instances: [[1, 2, 3, 4], [1, 2]] })).toMatchObject({
      status: 400,
      json: { error: 'input "x": ragged nested arrays (not a tensor) at depth 1' },
    });
    expect(await call('POST', '/v1/models/mlp:predict', { instances: [[1, 2, 3]] })).toMatchObject({
      status: 400,
      json: { error: 'input "x": dimension 1 is 3 but the model expects 4 (model shape [-1, 4], -1 = any)' },
    });
    const full = (await call('GET', '/v2/models/types')).json.inputs as { name: string }[];
    const instance = Object.fromEntries(full.map(({ name }) => [name, name === 'in_bool' ? true : name === 'in_bytes' ? 'x' : 1]));
    expect(await call('POST', '/v1/models/types:predict', { instances: [{ ...instance, in_bytes: { b64: Buffer.from([0xff, 0xfe]).toString('base64') } }] })).toMatchObject({
      status: 400,
      json: { error: 'input "in_bytes": "b64" bytes are not valid UTF-8; onnxruntime-node carries BYTES tensors as UTF-8 strings' },
    });
    expect(await call('POST', '/v1/models/types:predict', { instances: [{ in_bool: true }] })).toMatchObject({
      status: 400,
      json: { error: 'instance 0 is missing input "in_uint8"' },
    });
    expect(await call('POST', '/v1/models/types:predict', { instances: [{ ...instance, in_nope: 1 }] })).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^unknown input "in_nope"; the model's inputs are: in_bool, in_uint8/) },
    });
    expect(await call('POST', '/v1/models/mlp:classify', { instances: rows })).toMatchObject({
      status: 404,
      json: { error: 'unsupported TensorFlow Serving verb ":classify"; this server offers :predict' },
    });
  });

  test('model status lists every version as TF Serving does', async () => {
    const status = await call('GET', '/v1/models/mlp');
    expect(status).toMatchObject({
      status: 200,
      json: {
        model_version_status: [
          { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
          { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
        ],
      },
    });
    expect((await call('GET', '/v1/models/mlp/versions/1')).json).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    });
    expect(await call('GET', '/v1/models/nothing')).toMatchObject({ status: 404, json: { error: 'model "nothing" not found' } });
  });
});
