import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext, TEST_API_KEY } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { mlpModel } from '../helpers/models';

let s3: LocalS3;
let t: TestApp;
let lines: string[] = [];
let restore: () => void;

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishModel(s3, 'mlp', 1, mlpModel(), { label: 'stable' });
  // This suite reads the function's own log lines.
  const previous = process.env.POWERTOOLS_LOG_LEVEL;
  process.env.POWERTOOLS_LOG_LEVEL = 'INFO';
  t = createTestApp(s3, { WARM_MODELS: 'mlp,missing' });
  process.env.POWERTOOLS_LOG_LEVEL = previous;
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter((l) => l.trim().startsWith('{')));
    return true;
  });
  restore = () => spy.mockRestore();
});

afterAll(async () => {
  restore?.();
  await t?.dispose();
  await s3?.stop();
});

beforeEach(() => {
  lines = [];
});

test('a scheduled warm-up event loads the configured models and returns without serving a request', async () => {
  const result = await t.handler({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, lambdaContext());
  expect(result).toEqual({ warmed: [{ model: 'mlp', version: 1 }, { model: 'missing', error: 'model "missing" not found' }] });
  expect(t.app.sessions.has({ model: 'mlp', version: 1 })).toBe(true);
  expect(lines.some((l) => JSON.parse(l).message === 'request served')).toBe(false);
});

test('request logs carry request id, model, version, status and latency, never the payload or the key', async () => {
  const marker = 0.123456789;
  const event = httpEvent('POST', '/v2/models/mlp/infer', {
    body: { id: 'secret-request-id', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [marker, 2, 3, 4] }] },
  });
  const context = lambdaContext();
  const res = (await t.handler(event, context)) as { statusCode: number };
  expect(res.statusCode).toBe(200);
  const served = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.message === 'request served');
  expect(served).toMatchObject({
    level: 'INFO',
    function_request_id: context.awsRequestId,
    route: 'infer',
    model: 'mlp',
    version: 1,
    status: 200,
    latencyMs: expect.any(Number),
  });
  const all = lines.join('\n');
  expect(all).not.toContain(String(marker));
  expect(all).not.toContain(TEST_API_KEY);
  expect(all).not.toContain('secret-request-id');
});

test('a refused request is logged with its error code, without the body', async () => {
  const res = (await t.handler(
    httpEvent('POST', '/v2/models/mlp/infer', { body: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: ['leaky-value', 2, 3, 4] }] } }),
    lambdaContext(),
  )) as { statusCode: number };
  expect(res.statusCode).toBe(400);
  const refused = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.message === 'request refused');
  expect(refused).toMatchObject({ errorCode: 'invalid_request', status: 400, model: 'mlp' });
  expect(lines.join('\n')).not.toContain('leaky-value');
});
