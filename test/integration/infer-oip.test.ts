import { InferenceSession, Tensor } from 'onnxruntime-node';
import { httpEvent, lambdaContext } from '../helpers/events';
import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { allTypesModel, convNetModel, mlpModel, prng } from '../helpers/models';
import { expectTensorClose } from '../helpers/tensors';

interface OipOutput {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
}

let s3: LocalS3;
let t: TestApp;

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishModel(s3, 'mlp', 1, mlpModel({ seed: 1 }), { label: 'stable' });
  await publishModel(s3, 'mlp', 2, mlpModel({ seed: 2 }), { label: 'canary' });
  await publishModel(s3, 'mlp-dyn', 1, mlpModel({ batch: 'N' }));
  await publishModel(s3, 'convnet', 1, convNetModel());
  await publishModel(s3, 'types', 1, allTypesModel());
  t = createTestApp(s3);
});

afterAll(async () => {
  await t?.dispose();
  await s3?.stop();
});

async function call(method: string, path: string, options: Parameters<typeof httpEvent>[2] = {}) {
  const result = (await t.handler(httpEvent(method, path, options), lambdaContext())) as {
    statusCode: number;
    headers: Record<string, string>;
    body: string;
  };
  return {
    status: result.statusCode,
    headers: result.headers,
    raw: result.body,
    json: JSON.parse(result.body) as Record<string, unknown>,
  };
}

async function direct(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<InferenceSession.ReturnType> {
  const session = await InferenceSession.create(bytes);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

describe('OIP v2 inference against models published in a real local S3', () => {
  test('MLP: the handler answers what a direct session.run computes', async () => {
    const x = [0.5, -1.25, 2, 0.75];
    const res = await call('POST', '/v2/models/mlp/versions/1/infer', {
      body: { id: 'req-1', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: x }] },
    });
    expect(res.status).toBe(200);
    expect(res.json.model_name).toBe('mlp');
    expect(res.json.model_version).toBe('1');
    expect(res.json.id).toBe('req-1');
    const expected = await direct(mlpModel({ seed: 1 }), { x: new Tensor('float32', Float32Array.from(x), [1, 4]) });
    const [out] = res.json.outputs as OipOutput[];
    expect(out?.name).toBe('probs');
    expectTensorClose(out!, expected.probs!, 'FP32');
  });

  test('no version means the stable label; a label route and an explicit version pick theirs', async () => {
    const body = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    const byDefault = await call('POST', '/v2/models/mlp/infer', { body });
    const canary = await call('POST', '/v2/models/mlp/labels/canary/infer', { body });
    const v2 = await call('POST', '/v2/models/mlp/versions/2/infer', { body });
    expect(byDefault.json.model_version).toBe('1');
    expect(canary.json.model_version).toBe('2');
    expect(v2.json.outputs).toEqual(canary.json.outputs);
    expect(v2.json.outputs).not.toEqual(byDefault.json.outputs);
  });

  test('dynamic batch: nested data, batch of 3, requested output subset', async () => {
    const rand = prng(9);
    const rows = [0, 1, 2].map(() => [rand(), rand(), rand(), rand()]);
    const res = await call('POST', '/v2/models/mlp-dyn/infer', {
      body: { inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', data: rows }], outputs: [{ name: 'probs' }] },
    });
    expect(res.status).toBe(200);
    const expected = await direct(mlpModel({ batch: 'N' }), {
      x: new Tensor('float32', Float32Array.from(rows.flat()), [3, 4]),
    });
    expectTensorClose((res.json.outputs as OipOutput[])[0]!, expected.probs!, 'FP32');
  });

  test('conv net over an 8x8 image', async () => {
    const rand = prng(11);
    const image = Array.from({ length: 64 }, () => rand());
    const res = await call('POST', '/v2/models/convnet/infer', {
      body: { inputs: [{ name: 'image', shape: [1, 1, 8, 8], datatype: 'FP32', data: image }] },
    });
    expect(res.status).toBe(200);
    const expected = await direct(convNetModel(), { image: new Tensor('float32', Float32Array.from(image), [1, 1, 8, 8]) });
    expectTensorClose((res.json.outputs as OipOutput[])[0]!, expected.scores!, 'FP32', { atol: 1e-5 });
  });

  test('every datatype round-trips through JSON both ways', async () => {
    const values: Record<string, unknown[]> = {
      BOOL: [true, false, true],
      UINT8: [0, 17, 255],
      UINT16: [0, 300, 65535],
      UINT32: [0, 70000, 4294967295],
      UINT64: [0, 9007199254740993n.toString(), '18446744073709551615'],
      INT8: [-128, 0, 127],
      INT16: [-32768, 5, 32767],
      INT32: [-2147483648, 42, 2147483647],
      INT64: ['-9223372036854775808', 12, '9223372036854775807'],
      FP16: [0.5, -2, 65504],
      FP32: [1.5, 'NaN', '-Infinity'],
      FP64: [Math.PI, -0.25, 'Infinity'],
      BYTES: ['héllo', '', 'ünï ✓'],
    };
    const inputs = Object.entries(values).map(([dt, data]) => ({ name: `in_${dt.toLowerCase()}`, shape: [3], datatype: dt, data }));
    const res = await call('POST', '/v2/models/types/infer', { body: { inputs } });
    expect(res.status).toBe(200);
    const outputs = new Map((res.json.outputs as OipOutput[]).map((o) => [o.name, o]));
    expect(outputs.size).toBe(13);
    for (const [dt, data] of Object.entries(values)) {
      const out = outputs.get(`out_${dt.toLowerCase()}`);
      expect(out?.datatype).toBe(dt);
      expect(out?.shape).toEqual([3]);
      if (dt === 'INT64' || dt === 'UINT64') {
        // JSON.parse rounds beyond 2^53, so read the exact digits off the wire.
        const exact = `"name":"out_${dt.toLowerCase()}","datatype":"${dt}","shape":[3],"data":[${data.join(',')}]`;
        expect(res.raw).toContain(exact);
      } else {
        expect(out?.data).toEqual(data);
      }
    }
  });

  test('64-bit integers keep full precision on the wire', async () => {
    const inputs = Object.keys({ BOOL: 0, UINT8: 0, UINT16: 0, UINT32: 0, UINT64: 0, INT8: 0, INT16: 0, INT32: 0, INT64: 0, FP16: 0, FP32: 0, FP64: 0, BYTES: 0 }).map((dt) => ({
      name: `in_${dt.toLowerCase()}`,
      shape: [1],
      datatype: dt,
      data: [dt === 'BYTES' ? 'x' : dt === 'BOOL' ? true : dt === 'INT64' ? '9007199254740993' : 1],
    }));
    const event = httpEvent('POST', '/v2/models/types/infer', { body: { inputs } });
    const raw = (await t.handler(event, lambdaContext())) as { body: string };
    expect(raw.body).toContain('"name":"out_int64","datatype":"INT64","shape":[1],"data":[9007199254740993]');
  });

  test('model metadata comes from the manifest; ready loads the model', async () => {
    const meta = await call('GET', '/v2/models/mlp');
    expect(meta.status).toBe(200);
    expect(meta.json).toEqual({
      name: 'mlp',
      versions: ['1', '2'],
      platform: 'onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }],
      outputs: [{ name: 'probs', datatype: 'FP32', shape: [1, 3] }],
    });
    const dyn = await call('GET', '/v2/models/mlp-dyn/versions/1');
    expect((dyn.json.inputs as { shape: number[] }[])[0]?.shape).toEqual([-1, 4]);
    const ready = await call('GET', '/v2/models/convnet/versions/1/ready');
    expect(ready).toMatchObject({ status: 200, json: { name: 'convnet', ready: true } });
    expect(t.app.sessions.has({ model: 'convnet', version: 1 })).toBe(true);
  });

  test('health routes answer without a key; server metadata needs one', async () => {
    expect((await call('GET', '/v2/health/live', { apiKey: null })).status).toBe(200);
    expect((await call('GET', '/v2/health/ready', { apiKey: null })).status).toBe(200);
    const server = await call('GET', '/v2');
    expect(server.status).toBe(200);
    expect(server.json).toMatchObject({ name: expect.any(String), version: expect.any(String), extensions: ['binary_tensor_data', 'classification', 'staged_tensors'] });
    expect((await call('GET', '/v2', { apiKey: null })).status).toBe(401);
  });

  test('a warm request makes no S3 call', async () => {
    const body = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    expect((await call('POST', '/v2/models/mlp/versions/1/infer', { body })).status).toBe(200);
    const client = (t.app.store as unknown as { s3: { send: (...a: unknown[]) => unknown } }).s3;
    const send = jest.spyOn(client, 'send');
    try {
      expect((await call('POST', '/v2/models/mlp/versions/1/infer', { body })).status).toBe(200);
      expect((await call('POST', '/v2/models/mlp/infer', { body })).status).toBe(200);
      expect(send).not.toHaveBeenCalled();
    } finally {
      send.mockRestore();
    }
  });

  test('base64-encoded bodies (API Gateway binary passthrough) are decoded', async () => {
    const res = await call('POST', '/v2/models/mlp/infer', {
      body: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
      base64: true,
    });
    expect(res.status).toBe(200);
  });
});
