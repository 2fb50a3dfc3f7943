/**
 * Security properties of the inference function, checked against the real handler (middy,
 * Powertools), a real s3rver and real onnxruntime-node sessions:
 *
 * - auth: where a key may travel (headers only, never the query string), what a missing, empty
 *   or wrong key gets (401 / 403 with a message), header-name and scheme case as documented;
 * - the key check is constant-time by construction: the presented key is hashed and compared
 *   with every configured digest through crypto.timingSafeEqual (structural, no timing);
 * - CORS stays closed: no Access-Control-* header on any answer, a preflight is not honoured,
 *   and serverless.yml says `cors: false`;
 * - logs: with the logger at DEBUG and metrics on, no log line of a served, refused or failed
 *   request holds the key, its digest, the tensor payload or the body's request id;
 * - IAM in serverless.yml: no wildcard action or resource, the infer role reads models/* and
 *   reads and writes staging/* only.
 *   (test/integration/package.test.ts checks the same on the CloudFormation that
 *   `serverless package` generates; this reads the source, without the slow packaging step.)
 */
import crypto, { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { hashApiKey } from '../../lib/auth/api-key';
import { keys } from '../../lib/registry/keys';
import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext, TEST_API_KEY } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { mlpModel } from '../helpers/models';
import { expectTensorClose } from '../helpers/tensors';
import { recordReliability } from './record';
import type { HttpResponse } from '../../lib/http/handle';

const ROOT = resolve(__dirname, '..', '..');
/** A second accepted key, so every check has two digests to compare against. */
const OTHER_KEY = 'other-accepted-key-42';
/** A wrong key distinctive enough to find in a log line. */
const WRONG_KEY = 'wrong-key-ZQXJ-7781-distinctive';
/** Tensor values nobody else would log: 12345.678 is 12345.677734375 as float32. */
const PAYLOAD = [12345.678, -23456.789, 34567.891, -45678.912];
const PAYLOAD_MARKERS = ['12345.67', '23456.78', '34567.89', '45678.91'];
const BODY_ID = 'request-id-SECRET-5150';

type Response = HttpResponse;

let s3: LocalS3;
let t: TestApp;
let reference: InferenceSession;
let lines: string[] = [];
/** Every line since the app was built, across tests (the auth tests present keys and digests too). */
const allLines: string[] = [];
const restores: (() => void)[] = [];
/** Each named check that ran, and whether it held; the reliability row counts them. */
const checks = new Map<string, boolean>();

const LOG_CHECK = 'logs: no log line of a served, refused or failed request holds the key, its digest, the payload or the body id';

/** Marks the running test as held; called as its last statement, so a failed test stays false. */
function held(): void {
  checks.set(expect.getState().currentTestName ?? '?', true);
}

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishModel(s3, 'mlp', 1, mlpModel(), { label: 'stable' });
  await publishModel(s3, 'gone', 1, mlpModel({ seed: 2 }), { label: 'stable' });
  await s3.client().send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: keys.artifact('gone', 1) }));

  // The logger and metrics read their environment when built: DEBUG and metrics on, so that
  // everything the function could ever write is captured.
  const saved = { level: process.env.POWERTOOLS_LOG_LEVEL, metrics: process.env.POWERTOOLS_METRICS_DISABLED };
  process.env.POWERTOOLS_LOG_LEVEL = 'DEBUG';
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  try {
    t = createTestApp(s3, { API_KEY_HASHES: `${hashApiKey(TEST_API_KEY)},${hashApiKey(OTHER_KEY)}`, POWERTOOLS_SERVICE_NAME: 'security' });
  } finally {
    process.env.POWERTOOLS_LOG_LEVEL = saved.level;
    process.env.POWERTOOLS_METRICS_DISABLED = saved.metrics;
  }
  reference = await InferenceSession.create(mlpModel());

  const capture = (chunk: unknown) => {
    const got = String(chunk).split('\n').filter((l) => l.trim() !== '');
    lines.push(...got);
    allLines.push(...got);
  };
  for (const stream of [process.stdout, process.stderr]) {
    const spy = jest.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      capture(chunk);
      return true;
    });
    restores.push(() => spy.mockRestore());
  }
  for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => capture(args.map(String).join(' ')));
    restores.push(() => spy.mockRestore());
  }
}, 60_000);

afterAll(async () => {
  for (const restore of restores) restore();
  const held = [...checks.values()].filter(Boolean).length;
  if (checks.size > 0) {
    recordReliability({
      part: 'security',
      cases: checks.size,
      endedWell: held,
      dataLost: checks.get(LOG_CHECK) === false ? 1 : 0,
      detail:
        'checks: auth (401/403 with messages, query-string keys ignored, empty Bearer, header and scheme case), ' +
        'constant-time by construction (sha256 of the presented key, timingSafeEqual against every digest), ' +
        'CORS closed (no Access-Control-* on any answer, preflight refused, cors: false), logs at DEBUG with metrics on ' +
        'free of key, digest, payload and body id, IAM in serverless.yml without wildcards; failed: ' +
        ([...checks.entries()].filter(([, ok]) => !ok).map(([name]) => name).join('; ') || 'none'),
    });
  }
  await reference?.release();
  await t?.dispose();
  await s3?.stop();
});

beforeEach(() => {
  lines = [];
  checks.set(expect.getState().currentTestName ?? '?', false);
});

async function send(event: APIGatewayProxyEventV2): Promise<Response> {
  return (await t.handler(event, lambdaContext())) as Response;
}

const inferBody = { id: BODY_ID, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: PAYLOAD }] };

function infer(options: { apiKey?: string | null; headers?: Record<string, string>; query?: string; body?: unknown } = {}) {
  const path = `/v2/models/mlp/infer${options.query ? `?${options.query}` : ''}`;
  const event = httpEvent('POST', path, { body: options.body ?? inferBody, apiKey: options.apiKey, headers: options.headers });
  if (options.query) event.queryStringParameters = Object.fromEntries(new URLSearchParams(options.query));
  return send(event);
}

function errorOf(res: Response): string {
  return (JSON.parse(res.body) as { error: string }).error;
}

async function expectServed(res: Response): Promise<void> {
  expect({ status: res.statusCode, body: res.statusCode === 200 ? '' : res.body }).toEqual({ status: 200, body: '' });
  const out = (JSON.parse(res.body) as { outputs: { datatype: string; shape: number[]; data: number[] }[] }).outputs[0]!;
  const want = await reference.run({ x: new Tensor('float32', Float32Array.from(PAYLOAD), [1, 4]) });
  expectTensorClose(out, want.probs as Tensor, 'FP32');
}

const MISSING = /^missing API key: send it in the x-api-key header or as Authorization: Bearer <key>$/;

describe('auth: where a key may travel and what a bad one gets', () => {
  test('no key: 401 with www-authenticate, naming where the key goes', async () => {
    const res = await infer({ apiKey: null });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(errorOf(res)).toMatch(MISSING);
    held();
  });

  test.each([
    ['a wrong key', WRONG_KEY],
    ['the key in the wrong case', TEST_API_KEY.toUpperCase()],
    ['the key with a character more', `${TEST_API_KEY}x`],
    ['the digest of the key instead of the key', hashApiKey(TEST_API_KEY)],
    ['two keys joined as a repeated header would be', `${TEST_API_KEY}, ${TEST_API_KEY}`],
  ])('%s: 403 "API key not accepted"', async (_what, key) => {
    const res = await infer({ apiKey: key });
    expect({ status: res.statusCode, error: errorOf(res) }).toEqual({ status: 403, error: 'API key not accepted' });
    held();
  });

  test.each([
    ['api_key', `api_key=${TEST_API_KEY}`],
    ['x-api-key', `x-api-key=${TEST_API_KEY}`],
    ['apiKey', `apiKey=${TEST_API_KEY}`],
    ['access_token', `access_token=${TEST_API_KEY}`],
    ['authorization', `authorization=${encodeURIComponent(`Bearer ${TEST_API_KEY}`)}`],
  ])('the key in the query string (?%s=...) is not accepted: 401', async (_name, query) => {
    const res = await infer({ apiKey: null, query });
    expect({ status: res.statusCode, error: errorOf(res) }).toEqual({ status: 401, error: expect.stringMatching(MISSING) });
    held();
  });

  test.each([
    ['Authorization: Bearer', { authorization: 'Bearer' }],
    ['Authorization: "Bearer "', { authorization: 'Bearer ' }],
    ['Authorization: "Bearer" and spaces', { authorization: 'Bearer      ' }],
    ['Authorization: "Bearer" and a tab', { authorization: 'Bearer\t' }],
    ['Authorization: empty', { authorization: '' }],
    ['Authorization: Basic with the key', { authorization: `Basic ${Buffer.from(`u:${TEST_API_KEY}`).toString('base64')}` }],
    ['Authorization: the bare key, no scheme', { authorization: TEST_API_KEY }],
    ['x-api-key: empty', { 'x-api-key': '' }],
    ['x-api-key: spaces', { 'x-api-key': '    ' }],
  ])('%s: 401', async (_what, headers) => {
    const res = await infer({ apiKey: null, headers });
    expect({ status: res.statusCode, error: errorOf(res) }).toEqual({ status: 401, error: expect.stringMatching(MISSING) });
    held();
  });

  // API Gateway HTTP APIs lower-case header names; the handler lower-cases them again for any
  // other caller. The Bearer scheme is case-insensitive (RFC 7235); the key itself is not.
  test.each([
    ['x-api-key', { 'x-api-key': TEST_API_KEY }],
    ['X-API-Key', { 'X-API-Key': TEST_API_KEY }],
    ['X-API-KEY', { 'X-API-KEY': TEST_API_KEY }],
    ['x-api-key with surrounding spaces', { 'x-api-key': `  ${TEST_API_KEY}  ` }],
    ['Authorization: Bearer', { Authorization: `Bearer ${TEST_API_KEY}` }],
    ['authorization: bearer', { authorization: `bearer ${TEST_API_KEY}` }],
    ['AUTHORIZATION: BEARER', { AUTHORIZATION: `BEARER ${TEST_API_KEY}` }],
    ['Authorization: Bearer, several spaces', { authorization: `Bearer    ${TEST_API_KEY}` }],
    ['the second accepted key', { 'x-api-key': OTHER_KEY }],
  ])('%s: served', async (_what, headers) => {
    const res = await infer({ apiKey: null, headers });
    await expectServed(res);
    held();
  });

  test('x-api-key wins over Authorization, as documented: a wrong x-api-key is a 403 even with a good Bearer', async () => {
    const res = await infer({ apiKey: WRONG_KEY, headers: { authorization: `Bearer ${TEST_API_KEY}` } });
    expect({ status: res.statusCode, error: errorOf(res) }).toEqual({ status: 403, error: 'API key not accepted' });
    held();
  });

  test('every keyed route refuses a missing key; the health routes need none', async () => {
    const keyed: [string, string][] = [
      ['GET', '/v2'],
      ['GET', '/v2/models/mlp'],
      ['GET', '/v2/models/mlp/versions/1'],
      ['GET', '/v2/models/mlp/ready'],
      ['POST', '/v2/models/mlp/versions/1/infer'],
      ['GET', '/v1/models/mlp'],
      ['POST', '/v1/models/mlp:predict'],
      ['POST', '/v1/models/mlp/labels/stable:predict'],
      ['GET', '/v2/models/no-such-model'],
    ];
    const statuses = await Promise.all(keyed.map(async ([m, p]) => [m, p, (await send(httpEvent(m, p, { apiKey: null, body: m === 'POST' ? {} : undefined }))).statusCode]));
    expect(statuses).toEqual(keyed.map(([m, p]) => [m, p, 401]));
    for (const p of ['/v2/health/live', '/v2/health/ready']) expect((await send(httpEvent('GET', p, { apiKey: null }))).statusCode).toBe(200);
    held();
  });
});

describe('the key check is constant-time by construction', () => {
  test('the presented key is hashed and compared with every configured digest through crypto.timingSafeEqual', async () => {
    const spy = jest.spyOn(crypto, 'timingSafeEqual');
    const configured = [hashApiKey(TEST_API_KEY), hashApiKey(OTHER_KEY)];
    try {
      const presented = ['x', 'short', 'a'.repeat(TEST_API_KEY.length), TEST_API_KEY.slice(0, -1), 'k'.repeat(64), 'long'.repeat(1000), TEST_API_KEY, OTHER_KEY];
      for (const key of presented) {
        spy.mockClear();
        const res = await infer({ apiKey: key });
        const accepted = key === TEST_API_KEY || key === OTHER_KEY;
        expect({ key: key.slice(0, 20), status: res.statusCode }).toEqual({ key: key.slice(0, 20), status: accepted ? 200 : 403 });
        // One comparison per configured digest, match or not (no early exit), always between
        // two 32-byte digests: the first is the SHA-256 of what was presented, so neither the
        // key's length nor its content decides how much is compared.
        const calls = spy.mock.calls as unknown as [Buffer, Buffer][];
        expect(calls).toHaveLength(configured.length);
        const digest = createHash('sha256').update(key, 'utf8').digest('hex');
        for (const [a, b] of calls) {
          expect([a.byteLength, b.byteLength]).toEqual([32, 32]);
          expect(Buffer.from(a).toString('hex')).toBe(digest);
        }
        expect(calls.map(([, b]) => Buffer.from(b).toString('hex')).sort()).toEqual([...configured].sort());
      }
    } finally {
      spy.mockRestore();
    }
    held();
  });

  test('no early-exit comparison of key material: Buffer.equals / Buffer.compare are not used for a wrong key', async () => {
    const equals = jest.spyOn(Buffer.prototype, 'equals');
    const compare = jest.spyOn(Buffer, 'compare');
    try {
      const res = await infer({ apiKey: WRONG_KEY });
      expect(res.statusCode).toBe(403);
      expect(equals).not.toHaveBeenCalled();
      expect(compare).not.toHaveBeenCalled();
    } finally {
      equals.mockRestore();
      compare.mockRestore();
    }
    held();
  });
});

describe('CORS stays closed', () => {
  const ORIGIN = 'https://attacker.example';
  const corsHeaders = (res: Response) => Object.keys(res.headers ?? {}).filter((h) => h.toLowerCase().startsWith('access-control-'));

  test('no answer carries Access-Control-* headers, whatever the origin and outcome', async () => {
    const answers = await Promise.all([
      infer({ headers: { origin: ORIGIN } }),
      infer({ apiKey: null, headers: { origin: ORIGIN } }),
      infer({ apiKey: WRONG_KEY, headers: { origin: ORIGIN } }),
      send(httpEvent('GET', '/v2/health/ready', { apiKey: null, headers: { origin: ORIGIN } })),
      send(httpEvent('GET', '/v2/models/mlp', { headers: { origin: ORIGIN } })),
      send(httpEvent('GET', '/v2/models/nope', { headers: { origin: ORIGIN } })),
      send(httpEvent('POST', '/v1/models/mlp:predict', { body: { instances: [[1, 2, 3, 4]] }, headers: { origin: ORIGIN } })),
    ]);
    expect(answers.map((r) => r.statusCode)).toEqual([200, 401, 403, 200, 200, 404, 200]);
    expect(answers.flatMap(corsHeaders)).toEqual([]);
    held();
  });

  test('an OPTIONS preflight is refused like any other wrong method, without CORS headers', async () => {
    const preflight = (path: string, apiKey: string | null) =>
      send(
        httpEvent('OPTIONS', path, {
          apiKey,
          headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-api-key' },
        }),
      );
    // Browsers send preflights without credentials; with or without a key, no route allows OPTIONS.
    const answers = await Promise.all([
      preflight('/v2/models/mlp/infer', null),
      preflight('/v2/models/mlp/infer', TEST_API_KEY),
      preflight('/v2/health/live', null),
      preflight('/v1/models/mlp:predict', TEST_API_KEY),
    ]);
    expect(answers.map((r) => [r.statusCode, errorOf(r)])).toEqual([
      [405, 'OPTIONS is not allowed on /v2/models/mlp/infer; use POST'],
      [405, 'OPTIONS is not allowed on /v2/models/mlp/infer; use POST'],
      [405, 'OPTIONS is not allowed on /v2/health/live; use GET'],
      [405, 'OPTIONS is not allowed on /v1/models/mlp:predict; use POST'],
    ]);
    expect(answers.flatMap(corsHeaders)).toEqual([]);
    held();
  });

  test('serverless.yml: httpApi cors is false and no route opens it', () => {
    const sls = serverlessYml();
    expect(sls.provider.httpApi.cors).toBe(false);
    const events = Object.values(sls.functions).flatMap((f: any) => (f.events ?? []) as any[]);
    const httpEvents = events.filter((e) => e.httpApi !== undefined || e.http !== undefined);
    expect(httpEvents.length).toBeGreaterThan(0);
    for (const e of httpEvents) expect({ cors: (e.httpApi ?? e.http).cors }).toEqual({ cors: undefined });
    const cfResources = Object.values<{ Properties?: Record<string, unknown> }>(sls.resources?.Resources ?? {});
    expect(cfResources.filter((r) => r.Properties?.CorsConfiguration !== undefined)).toEqual([]);
    held();
  });
});

describe('logs', () => {
  test('no log line of a served, refused or failed request holds the key, its digest, the payload or the body id', async () => {
    const oversized = { id: BODY_ID, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: PAYLOAD }], pad: `${PAYLOAD.join(',')},`.repeat(200_000) };
    const answers = await Promise.all([
      infer(), // 200, OIP
      infer({ headers: { authorization: `Bearer ${TEST_API_KEY}` }, apiKey: null }), // 200 via Bearer
      send(httpEvent('POST', '/v1/models/mlp:predict', { body: { instances: [PAYLOAD] } })), // 200, TF Serving
      infer({ apiKey: null }), // 401
      infer({ apiKey: WRONG_KEY }), // 403
      infer({ headers: { authorization: `Bearer ${WRONG_KEY}` }, apiKey: null }), // 403 via Bearer
      infer({ body: { id: BODY_ID, inputs: [{ name: 'x', shape: [1, 5], datatype: 'FP32', data: [...PAYLOAD, 1] }] } }), // 400 shape
      infer({ body: { id: BODY_ID, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [...PAYLOAD.slice(0, 3), `${PAYLOAD[3]}`] }] } }), // 400 element
      infer({ body: `{"id":"${BODY_ID}","inputs":[{"data":[${PAYLOAD.join(',')}` }), // 400 bad JSON
      infer({ body: oversized }), // 413
      send(httpEvent('POST', '/v2/models/gone/infer', { body: inferBody })), // 503, artifact missing: logged as an error
      send(httpEvent('POST', '/v2/models/nope/infer', { body: inferBody })), // 404
    ]);
    expect(answers.map((r) => r.statusCode)).toEqual([200, 200, 200, 401, 403, 403, 400, 400, 400, 413, 503, 404]);

    // The capture is not empty: every request was logged, the 503 as an error with its cause.
    const parsed = lines.filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const byMessage = (m: string) => parsed.filter((l) => l.message === m);
    expect(byMessage('request served')).toHaveLength(3);
    expect(byMessage('request refused').map((l) => l.status).sort()).toEqual([400, 400, 400, 401, 403, 403, 404, 413]);
    expect(byMessage('request failed')).toEqual([expect.objectContaining({ status: 503, errorCode: 'service_unavailable', error: expect.anything() })]);

    const forbidden = [
      TEST_API_KEY,
      OTHER_KEY,
      WRONG_KEY,
      ...[TEST_API_KEY, WRONG_KEY, OTHER_KEY].flatMap((k) => {
        const digest = createHash('sha256').update(k, 'utf8').digest();
        return [digest.toString('hex'), digest.toString('base64'), digest.toString('base64url')];
      }),
      ...PAYLOAD_MARKERS,
      BODY_ID,
    ];
    // Every line this file made the function write so far: this test's requests, and the auth
    // tests' wrong keys, digests presented as keys and keys in query strings.
    expect(allLines.length).toBeGreaterThan(lines.length);
    const leaks = forbidden.flatMap((secret) => allLines.filter((l) => l.includes(secret)).map((l) => `${secret} in ${l.slice(0, 300)}`));
    expect(leaks).toEqual([]);
    held();
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// serverless.yml, read with its CloudFormation short forms (!Ref, !GetAtt, !Sub).

interface YamlModule {
  Type: new (tag: string, options: { kind: 'scalar' | 'sequence' | 'mapping'; construct: (data: unknown) => unknown }) => unknown;
  Schema: { create?: (types: unknown[]) => unknown };
  DEFAULT_SCHEMA?: { extend?: (types: unknown[]) => unknown };
  load: (text: string, options: { schema: unknown }) => unknown;
}

/** js-yaml is not a dependency of ours but comes with jest (3.x) and serverless (4.x); either API works. */
function serverlessYml(): any {
  const yaml = createRequire(__filename)('js-yaml') as YamlModule;
  const tag = (name: string, kind: 'scalar' | 'sequence' | 'mapping', key: string) =>
    new yaml.Type(`!${name}`, { kind, construct: (data) => ({ [key]: data }) });
  const types = (['scalar', 'sequence', 'mapping'] as const).flatMap((kind) => [
    tag('Ref', kind, 'Ref'),
    tag('GetAtt', kind, 'Fn::GetAtt'),
    tag('Sub', kind, 'Fn::Sub'),
    tag('Join', kind, 'Fn::Join'),
    tag('If', kind, 'Fn::If'),
    tag('Equals', kind, 'Fn::Equals'),
    tag('Not', kind, 'Fn::Not'),
  ]);
  const schema = yaml.DEFAULT_SCHEMA?.extend ? yaml.DEFAULT_SCHEMA.extend(types) : yaml.Schema.create!(types);
  return yaml.load(readFileSync(join(ROOT, 'serverless.yml'), 'utf8'), { schema });
}

describe('IAM in serverless.yml', () => {
  interface Statement {
    Effect: string;
    Action: string | string[];
    Resource: unknown;
    Condition?: unknown;
    Principal?: unknown;
  }

  test('no wildcard action or resource in any Allow; the infer role reads models/*, writes only staging/*, lists only those', () => {
    const sls = serverlessYml();
    // No provider-wide role: each function names its own.
    expect(sls.provider.iam).toBeUndefined();
    expect(sls.provider.iamRoleStatements).toBeUndefined();
    expect(Object.fromEntries(Object.entries(sls.functions).map(([name, f]: [string, any]) => [name, f.role]))).toEqual({
      infer: 'InferRole',
      convert: 'ConvertRole',
    });

    const all: Statement[] = [];
    const collect = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(collect);
      else if (node && typeof node === 'object') {
        const o = node as Record<string, unknown>;
        if (typeof o.Effect === 'string' && 'Action' in o) all.push(o as unknown as Statement);
        Object.values(o).forEach(collect);
      }
    };
    collect(sls);
    const wild = (v: unknown) => [v].flat().some((x) => typeof x === 'string' && (x === '*' || /^[a-z0-9-]+:\*$/i.test(x) || /:::\*$/.test(x)));
    const allows = all.filter((s) => s.Effect === 'Allow');
    expect(allows.length).toBeGreaterThanOrEqual(10);
    expect(all.filter((s) => s.Effect !== 'Allow')).toEqual([]);
    expect(allows.filter((s) => wild(s.Action) || wild(s.Resource) || wild(s.Principal))).toEqual([]);

    const policies = (role: string) => sls.resources.Resources[role].Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[];
    const infer = policies('InferRole').flatMap((p) => p.PolicyDocument.Statement);
    const bucket = 'arn:aws:s3:::${param:modelsBucket}';
    expect(infer).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: `${bucket}/models/*` },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: `${bucket}/staging/*` },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucket, Condition: { StringLike: { 's3:prefix': ['models/*', 'staging/*'] } } },
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::Sub': 'arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/${self:service}-${sls:stage}-infer:*' },
      },
    ]);
    // The only S3 actions the infer role has, on the only resources.
    const s3Actions = infer.flatMap((s) => [s.Action].flat().filter((a) => a.startsWith('s3:')));
    expect(s3Actions.sort()).toEqual(['s3:GetObject', 's3:GetObject', 's3:ListBucket', 's3:PutObject']);
    // It writes nowhere but the staging prefix.
    expect(infer.filter((s) => [s.Action].flat().includes('s3:PutObject')).flatMap((s) => [s.Resource].flat())).toEqual([`${bucket}/staging/*`]);
    // The convert role never writes where uploads arrive (no trigger loop) and reads nothing outside its prefixes.
    const convert = policies('ConvertRole').flatMap((p) => p.PolicyDocument.Statement);
    const puts = convert.filter((s) => [s.Action].flat().includes('s3:PutObject')).flatMap((s) => [s.Resource].flat());
    expect(puts).toEqual([`${bucket}/models/*`, `${bucket}/jobs/*`]);
    held();
  });
});
