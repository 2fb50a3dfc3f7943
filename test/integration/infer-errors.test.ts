import { httpEvent, lambdaContext, TEST_API_KEY } from '../helpers/events';
import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { allTypesModel, mlpModel, ONNX, uncarriableOutputModel } from '../helpers/models';

let s3: LocalS3;
let t: TestApp;

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishModel(s3, 'mlp', 1, mlpModel(), { label: 'stable' });
  await publishModel(s3, 'mlp-dyn', 1, mlpModel({ batch: 'N' }));
  await publishModel(s3, 'types', 1, allTypesModel());
  await publishModel(s3, 'unlabelled', 1, mlpModel(), { passed: false });
  await publishModel(s3, 'int4-out', 1, uncarriableOutputModel(ONNX.INT4), {
    specs: { inputs: [{ name: 'x', datatype: 'UINT8', shape: [4] }], outputs: [{ name: 'y', datatype: 'UINT8', shape: [4] }] },
  });
  await publishModel(s3, 'bf16-out', 1, uncarriableOutputModel(ONNX.BFLOAT16), {
    specs: { inputs: [{ name: 'x', datatype: 'UINT8', shape: [4] }], outputs: [{ name: 'y', datatype: 'UINT8', shape: [4] }] },
  });
  t = createTestApp(s3, { MAX_BODY_BYTES: '4096' });
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
  const json = JSON.parse(result.body) as { error?: string };
  return { status: result.statusCode, headers: result.headers, error: json.error };
}

const x = (overrides: Record<string, unknown> = {}) => ({ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4], ...overrides });
const infer = (body: unknown, path = '/v2/models/mlp/infer', options: Parameters<typeof httpEvent>[2] = {}) =>
  call('POST', path, { body, ...options });

describe('every user mistake is a 4xx that names what is wrong', () => {
  test.each([
    ['a missing input', { inputs: [] }, /"inputs" must be a non-empty array; the model's inputs are: x/],
    ['an unknown input', { inputs: [x(), x({ name: 'y' })] }, /unknown input "y"; the model's inputs are: x/],
    ['a misnamed input', { inputs: [x({ name: 'X' })] }, /unknown input "X"/],
    ['a repeated input', { inputs: [x(), x()] }, /input "x" is given more than once/],
    ['the wrong datatype', { inputs: [x({ datatype: 'FP64' })] }, /input "x": datatype is FP64 but the model expects FP32/],
    ['an unknown datatype', { inputs: [x({ datatype: 'FLOAT' })] }, /input "x": datatype "FLOAT" is not one of BOOL/],
    ['a missing shape', { inputs: [x({ shape: undefined })] }, /input "x": shape is missing/],
    ['the wrong rank', { inputs: [x({ shape: [4] })] }, /input "x": shape \[4\] has rank 1 but the model expects rank 2/],
    ['a wrong fixed dim', { inputs: [x({ shape: [1, 5], data: [1, 2, 3, 4, 5] })] }, /input "x": dimension 1 is 5 but the model expects 4/],
    ['a negative dim', { inputs: [x({ shape: [1, -4] })] }, /input "x": shape \[1,-4\] must hold non-negative integers/],
    ['a fractional dim', { inputs: [x({ shape: [1, 2.5] })] }, /must hold non-negative integers, found 2.5/],
    ['shape x data mismatch', { inputs: [x({ data: [1, 2, 3] })] }, /input "x": shape \[1,4\] holds 4 elements but data has 3/],
    ['a string in FP32 data', { inputs: [x({ data: [1, 'two', 3, 4] })] }, /input "x": element 1 is "two", expected a number for FP32/],
    ['non-array data', { inputs: [x({ data: 'abcd' })] }, /input "x": data must be an array/],
    ['missing data', { inputs: [x({ data: undefined })] }, /input "x": data is missing/],
    ['ragged nested data', { inputs: [x({ data: [[1, 2], [3]] })] }, /input "x": (nested data does not match shape|shape \[1,4\] holds 4 elements)/],
    ['an unknown requested output', { inputs: [x()], outputs: [{ name: 'logits' }] }, /unknown output "logits"; the model's outputs are: probs/],
    ['a non-string id', { id: 7, inputs: [x()] }, /"id" must be a string/],
    ['a body that is an array', [1, 2, 3], /request body must be a JSON object/],
  ])('%s -> 400', async (_case, body, message) => {
    const res = await infer(body);
    expect(res.status).toBe(400);
    expect(res.error).toMatch(message);
  });

  test('a huge shape is refused before any allocation', async () => {
    const res = await infer({ inputs: [x({ shape: [1e9, 4] })] }, '/v2/models/mlp-dyn/infer');
    expect(res.status).toBe(400);
    expect(res.error).toBe('input "x": shape [1000000000, 4] holds too many elements');
    const fixed = await infer({ inputs: [x({ shape: [1e9, 1e9] })] }, '/v2/models/mlp-dyn/infer');
    expect(fixed).toMatchObject({ status: 400, error: 'input "x": dimension 1 is 1000000000 but the model expects 4 (model shape [-1, 4], -1 = any)' });
  });

  test('integers out of range and non-integers are refused per datatype', async () => {
    const types = await call('GET', '/v2/models/types');
    expect(types.status).toBe(200);
    const base = (dt: string, data: unknown[]) => ({ name: `in_${dt.toLowerCase()}`, shape: [data.length], datatype: dt, data });
    const cases: [string, unknown[], RegExp][] = [
      ['UINT8', [256], /input "in_uint8": element 0 is 256, out of range for UINT8 \[0, 255\]/],
      ['INT8', [1.5], /input "in_int8": element 0 is 1.5, expected an integer for INT8/],
      ['INT64', ['12x'], /input "in_int64": element 0 is "12x", expected an integer in/],
      ['UINT64', [-1], /input "in_uint64": element 0 is -1, expected an integer in \[0, 18446744073709551615\]/],
      ['BOOL', [1], /input "in_bool": element 0 is 1, expected true or false for BOOL/],
      ['BYTES', [3], /input "in_bytes": element 0 is 3, expected a string for BYTES/],
      ['FP32', ['nan'], /input "in_fp32": element 0 is "nan", expected a number for FP32/],
    ];
    for (const [dt, data, message] of cases) {
      const res = await infer({ inputs: [base(dt, data)] }, '/v2/models/types/infer');
      expect(res.status).toBe(400);
      expect(res.error).toMatch(message);
    }
    const missing = await infer({ inputs: [base('BOOL', [true])] }, '/v2/models/types/infer');
    expect(missing.status).toBe(400);
    expect(missing.error).toMatch(/^missing inputs "in_uint8", "in_uint16"/);
  });

  test('invalid JSON, an empty body and a body that is not UTF-8 are 400', async () => {
    expect(await infer('{"inputs": [')).toMatchObject({ status: 400, error: expect.stringMatching(/^request body is not valid JSON/) });
    expect(await infer('')).toMatchObject({ status: 400, error: 'request body is empty; send a JSON object' });
    const res = (await t.handler(
      { ...httpEvent('POST', '/v2/models/mlp/infer', { body: 'x' }), body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('base64'), isBase64Encoded: true },
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toBe('request body is not valid UTF-8');
  });

  test('a body over the limit is 413', async () => {
    const res = await infer({ inputs: [x({ data: new Array(2000).fill(0.5) })] });
    expect(res.status).toBe(413);
    expect(res.error).toBe('request body is larger than the 4096-byte limit');
  });

  test('a content type other than JSON is 415', async () => {
    const res = await infer('a=1', '/v2/models/mlp/infer', { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(415);
    expect(res.error).toMatch(/content-type "application\/x-www-form-urlencoded" is not supported; send application\/json/);
    const charset = await infer({ inputs: [x()] }, '/v2/models/mlp/infer', { headers: { 'content-type': 'application/json; charset=utf-8' } });
    expect(charset.status).toBe(200);
  });

  test('unknown model, version, label and route are 404 with their names', async () => {
    expect(await infer({ inputs: [x()] }, '/v2/models/nope/infer')).toMatchObject({ status: 404, error: 'model "nope" not found' });
    expect(await infer({ inputs: [x()] }, '/v2/models/mlp/versions/9/infer')).toMatchObject({
      status: 404,
      error: 'model "mlp" has no version 9',
    });
    expect(await infer({ inputs: [x()] }, '/v2/models/mlp/labels/beta/infer')).toMatchObject({
      status: 404,
      error: 'model "mlp" has no label "beta"',
    });
    expect(await call('GET', '/v2/modelz')).toMatchObject({ status: 404, error: 'no route for GET /v2/modelz' });
    expect(await call('GET', '/v2/models/unlabelled')).toMatchObject({
      status: 404,
      error: expect.stringMatching(/model "unlabelled" has no "stable" label and no version that passed evaluation/),
    });
    expect((await call('GET', '/v2/models/unlabelled/versions/1')).status).toBe(200);
  });

  test('bad names and versions in the path are 400, never a path to S3', async () => {
    expect(await call('GET', '/v2/models/..%2F..%2Fetc')).toMatchObject({ status: 400, error: expect.stringMatching(/^invalid model name/) });
    expect(await call('GET', '/v2/models/%2e%2e')).toMatchObject({ status: 400, error: expect.stringMatching(/^invalid model name "\.\."/) });
    expect(await call('GET', '/v2/models/mlp%00')).toMatchObject({ status: 400, error: expect.stringMatching(/^invalid model name "mlp\\u0000"/) });
    expect(await call('GET', '/v2/models/mlр')).toMatchObject({ status: 400, error: expect.stringMatching(/^invalid model name/) });
    expect(await call('GET', '/v2/models/mlp/versions/0')).toMatchObject({ status: 400, error: expect.stringMatching(/^invalid model version "0"/) });
    expect(await call('GET', '/v2/models/mlp/versions/1e3')).toMatchObject({ status: 400 });
    expect(await call('GET', '/v2/models/%E0%A4%A')).toMatchObject({ status: 400, error: expect.stringMatching(/malformed percent-encoding/) });
  });

  test('the wrong method is 405', async () => {
    expect(await call('GET', '/v2/models/mlp/infer')).toMatchObject({ status: 405, error: expect.stringMatching(/GET is not allowed .*; use POST/) });
  });
});

describe('auth', () => {
  const body = { inputs: [x()] };
  test('no key is 401, a wrong key 403, Bearer works, a key in the query string does not count', async () => {
    const none = await infer(body, '/v2/models/mlp/infer', { apiKey: null });
    expect(none).toMatchObject({ status: 401, error: expect.stringMatching(/^missing API key/) });
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expect(await infer(body, '/v2/models/mlp/infer', { apiKey: 'wrong' })).toMatchObject({ status: 403, error: 'API key not accepted' });
    const bearer = await infer(body, '/v2/models/mlp/infer', { apiKey: null, headers: { authorization: `Bearer ${TEST_API_KEY}` } });
    expect(bearer.status).toBe(200);
    expect((await infer(body, '/v2/models/mlp/infer', { apiKey: null, headers: { authorization: 'Bearer ' } })).status).toBe(401);
    expect((await infer(body, `/v2/models/mlp/infer?x-api-key=${TEST_API_KEY}`, { apiKey: null })).status).toBe(401);
    expect((await call('GET', '/v2/models/mlp', { apiKey: null })).status).toBe(401);
    expect((await call('GET', '/v1/models/mlp', { apiKey: 'nope' })).status).toBe(403);
  });
});

describe('models onnxruntime-node cannot carry never reach it', () => {
  test.each([
    ['int4-out', 'INT4'],
    ['bf16-out', 'BFLOAT16'],
  ])('%s is refused with a clear reason, and the process lives on', async (name, datatype) => {
    const res = await infer({ inputs: [{ name: 'x', shape: [4], datatype: 'UINT8', data: [1, 2, 3, 4] }] }, `/v2/models/${name}/infer`);
    expect(res.status).toBe(422);
    expect(res.error).toBe(
      `model ${name}@1 cannot be served: output "y" has datatype ${datatype} (onnxruntime-node carries BOOL, (U)INT8-64, FP16, FP32, FP64 and BYTES)`,
    );
    expect(t.app.sessions.has({ model: name, version: 1 })).toBe(false);
    // Still serving afterwards.
    expect((await infer({ inputs: [x()] })).status).toBe(200);
  });
});
