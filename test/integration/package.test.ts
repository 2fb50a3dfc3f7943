import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { hashApiKey } from '../../lib/auth/api-key';
import sharp from 'sharp';
import { publishVersion } from '../../lib/registry/registry';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertUpload, describeModel, publishModel } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { colourClassifierModel, mlpModel } from '../helpers/models';
import { bertUncasedTokenizerJson, bertUncasedVocab, sentimentModel } from '../helpers/text';

// `npm run package` offline: build the layer, run `serverless package`, and check what would be
// deployed: the CloudFormation template and the zips. Then run the packaged handler the way
// Lambda does: its zip unpacked outside the project, the layer as the only node_modules.

const ROOT = resolve(__dirname, '..', '..');
const SLS = join(ROOT, 'node_modules', 'serverless', 'bin', 'serverless.js');
const LAYER = join(ROOT, 'layers', 'onnxruntime');
const SHARP_LAYER = join(ROOT, 'layers', 'sharp');
const MB = 1024 * 1024;
const run = promisify(execFile);

type Resource = { Type: string; Properties: Record<string, any>; Condition?: string };
let template: { Resources: Record<string, Resource> };
let existingTemplate: { Resources: Record<string, Resource> };
let temp: string;
let pkgDir: string;

function dirBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce(
    (sum, e) => sum + (e.isDirectory() ? dirBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size),
    0,
  );
}

function resourcesOf(type: string): [string, Resource][] {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

beforeAll(async () => {
  temp = mkdtempSync(join(tmpdir(), 'package-'));
  pkgDir = join(temp, 'pkg');
  await run(process.execPath, [join(ROOT, 'layers', 'build-layer.mjs')], { cwd: ROOT });
  await run(process.execPath, [join(ROOT, 'layers', 'build-sharp-layer.mjs')], { cwd: ROOT });
  const env: NodeJS.ProcessEnv = { ...process.env, ESBUILD_WORK_FOLDER: `.esbuild-package-${process.pid}`, SLS_TELEMETRY_DISABLED: '1' };
  for (const name of ['AWS_PROFILE', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'MODELS_BUCKET', 'API_KEY_HASHES', 'S3_ENDPOINT']) {
    delete env[name];
  }
  try {
    await run(process.execPath, [SLS, 'package', '--stage', 'test', '--package', pkgDir], { cwd: ROOT, env, maxBuffer: 16 * MB });
    // The same stack on an existing bucket (a parameter): no bucket of its own.
    await run(process.execPath, [SLS, 'package', '--stage', 'test', '--package', join(temp, 'pkg-existing')], {
      cwd: ROOT,
      env: { ...env, EXISTING_MODELS_BUCKET: 'true' },
      maxBuffer: 16 * MB,
    });
  } finally {
    rmSync(join(ROOT, env.ESBUILD_WORK_FOLDER!), { recursive: true, force: true });
  }
  template = JSON.parse(readFileSync(join(pkgDir, 'cloudformation-template-update-stack.json'), 'utf8'));
  existingTemplate = JSON.parse(readFileSync(join(temp, 'pkg-existing', 'cloudformation-template-update-stack.json'), 'utf8'));
}, 300_000);

afterAll(() => {
  if (temp) rmSync(temp, { recursive: true, force: true });
});

describe('serverless package', () => {
  test('the infer function: runtime, architecture, layer, sizes, environment', () => {
    const [, fn] = resourcesOf('AWS::Lambda::Function').find(([name]) => name === 'InferLambdaFunction')!;
    expect(fn.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['x86_64'],
      MemorySize: 1769,
      Timeout: 29,
      EphemeralStorage: { Size: 2048 },
      Layers: [{ Ref: 'OnnxruntimeLambdaLayer' }, { Ref: 'SharpLambdaLayer' }],
      Role: { 'Fn::GetAtt': ['InferRole', 'Arn'] },
    });
    expect(fn.Properties.Environment.Variables).toMatchObject({
      MODELS_BUCKET: 'onnx-lambda-test-models',
      API_KEY_HASHES: '',
      S3_ENDPOINT: '',
      POWERTOOLS_SERVICE_NAME: 'onnx-lambda',
    });
    const zip = statSync(join(pkgDir, 'infer.zip')).size;
    expect(zip).toBeLessThanOrEqual(5 * MB);
  });

  test('the layer: declared for nodejs22.x x86_64, at most 60 MB unzipped, linux x64 only, no AWS SDK', () => {
    const [, layer] = resourcesOf('AWS::Lambda::LayerVersion').find(([name]) => name === 'OnnxruntimeLambdaLayer')!;
    expect(layer.Properties).toMatchObject({ CompatibleRuntimes: ['nodejs22.x'], CompatibleArchitectures: ['x86_64'] });
    expect(dirBytes(LAYER)).toBeLessThanOrEqual(60 * MB);
    const modules = readdirSync(join(LAYER, 'nodejs', 'node_modules')).sort();
    expect(modules).toEqual(['onnxruntime-common', 'onnxruntime-node']);
    expect(readdirSync(join(LAYER, 'nodejs', 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6'))).toEqual(['linux']);
    expect(readdirSync(join(LAYER, 'nodejs', 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux'))).toEqual(['x64']);
  });

  test('the sharp layer: nodejs22.x x86_64, at most 30 MB unzipped, sharp and its linux x64 binaries only; the infer zip does not carry sharp', async () => {
    const [, layer] = resourcesOf('AWS::Lambda::LayerVersion').find(([name]) => name === 'SharpLambdaLayer')!;
    expect(layer.Properties).toMatchObject({ CompatibleRuntimes: ['nodejs22.x'], CompatibleArchitectures: ['x86_64'] });
    expect(dirBytes(SHARP_LAYER)).toBeLessThanOrEqual(30 * MB);
    const modules = join(SHARP_LAYER, 'nodejs', 'node_modules');
    expect(readdirSync(modules).sort()).toEqual(['@img', 'detect-libc', 'semver', 'sharp']);
    expect(readdirSync(join(modules, '@img')).sort()).toEqual(['colour', 'sharp-libvips-linux-x64', 'sharp-linux-x64']);
    const { stdout } = await run('python3', ['-m', 'zipfile', '-l', join(pkgDir, 'infer.zip')]);
    expect(stdout).not.toMatch(/sharp|@img|libvips/);
  });

  test('the convert function: layer, memory, S3 trigger on uploads/*.onnx, bounded retries, failure queue', () => {
    const fn = template.Resources.ConvertLambdaFunction!;
    expect(fn.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Handler: 'handlers/convert.handler',
      MemorySize: 3008,
      Timeout: 900,
      Layers: [{ Ref: 'OnnxruntimeLambdaLayer' }, { Ref: 'SharpLambdaLayer' }],
      Role: { 'Fn::GetAtt': ['ConvertRole', 'Arn'] },
    });
    expect(fn.Properties.Environment.Variables).toMatchObject({ MODELS_BUCKET: 'onnx-lambda-test-models', MAX_MODEL_MB: '500' });
    expect(fn.Properties.Environment.Variables.API_KEY_HASHES).toBeUndefined();
    expect(statSync(join(pkgDir, 'convert.zip')).size).toBeLessThanOrEqual(5 * MB);
    const bucket = template.Resources.S3BucketOnnxlambdatestmodels!;
    expect(bucket.Properties.BucketName).toBe('onnx-lambda-test-models');
    // Staged tensors expire by themselves.
    expect(bucket.Properties.LifecycleConfiguration).toEqual({
      Rules: [{ Id: 'expire-staged-tensors', Status: 'Enabled', Prefix: 'staging/', ExpirationInDays: 1, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }],
    });
    expect(bucket.Properties.NotificationConfiguration.LambdaConfigurations).toEqual([
      {
        Event: 's3:ObjectCreated:*',
        Function: { 'Fn::GetAtt': ['ConvertLambdaFunction', 'Arn'] },
        Filter: { S3Key: { Rules: [{ Name: 'prefix', Value: 'uploads/' }, { Name: 'suffix', Value: '.onnx' }] } },
      },
      {
        Event: 's3:ObjectCreated:*',
        Function: { 'Fn::GetAtt': ['ConvertLambdaFunction', 'Arn'] },
        Filter: { S3Key: { Rules: [{ Name: 'prefix', Value: 'uploads/' }, { Name: 'suffix', Value: '.zip' }] } },
      },
      {
        Event: 's3:ObjectCreated:*',
        Function: { 'Fn::GetAtt': ['ConvertLambdaFunction', 'Arn'] },
        Filter: { S3Key: { Rules: [{ Name: 'prefix', Value: 'uploads/' }, { Name: 'suffix', Value: '.h5' }] } },
      },
      {
        Event: 's3:ObjectCreated:*',
        Function: { 'Fn::GetAtt': ['ConvertLambdaFunction', 'Arn'] },
        Filter: { S3Key: { Rules: [{ Name: 'prefix', Value: 'uploads/' }, { Name: 'suffix', Value: '.keras' }] } },
      },
    ]);
    const [, invokeConfig] = resourcesOf('AWS::Lambda::EventInvokeConfig')[0]!;
    expect(invokeConfig.Properties).toMatchObject({
      FunctionName: { Ref: 'ConvertLambdaFunction' },
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': ['ConvertFailureQueue', 'Arn'] } } },
    });
  });

  test('on an existing bucket: no bucket resource, the trigger attached to it with the same filter', () => {
    const buckets = Object.entries(existingTemplate.Resources).filter(([, r]) => r.Type === 'AWS::S3::Bucket').map(([name]) => name);
    expect(buckets).toEqual(['ServerlessDeploymentBucket']);
    const [, trigger] = Object.entries(existingTemplate.Resources).find(([, r]) => r.Type === 'Custom::S3')!;
    expect(trigger.Properties).toMatchObject({
      FunctionName: 'onnx-lambda-test-convert',
      BucketName: 'onnx-lambda-test-models',
      BucketConfigs: [
        { Event: 's3:ObjectCreated:*', Rules: [{ Prefix: 'uploads/' }, { Suffix: '.onnx' }] },
        { Event: 's3:ObjectCreated:*', Rules: [{ Prefix: 'uploads/' }, { Suffix: '.zip' }] },
        { Event: 's3:ObjectCreated:*', Rules: [{ Prefix: 'uploads/' }, { Suffix: '.h5' }] },
        { Event: 's3:ObjectCreated:*', Rules: [{ Prefix: 'uploads/' }, { Suffix: '.keras' }] },
      ],
    });
  });

  test('IAM: one role per function, each with only what it uses; no wildcard action or resource anywhere', () => {
    const roles = resourcesOf('AWS::IAM::Role');
    expect(roles.map(([name]) => name).sort()).toEqual(['ConvertRole', 'InferRole']);
    const statementsOf = (role: string) =>
      template.Resources[role]!.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
    const bucket = 'arn:aws:s3:::onnx-lambda-test-models';
    const logs = (fn: string) => ({
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      Resource: { 'Fn::Sub': `arn:aws:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/onnx-lambda-test-${fn}:*` },
    });
    expect(statementsOf('InferRole')).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: `${bucket}/models/*` },
      // Staged tensors: the only prefix it may write, and it reads back only that.
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: `${bucket}/staging/*` },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucket, Condition: { StringLike: { 's3:prefix': ['models/*', 'staging/*'] } } },
      logs('infer'),
    ]);
    expect(statementsOf('ConvertRole')).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: [`${bucket}/uploads/*`, `${bucket}/models/*`, `${bucket}/jobs/*`] },
      { Effect: 'Allow', Action: 's3:PutObject', Resource: [`${bucket}/models/*`, `${bucket}/jobs/*`] },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucket, Condition: { StringLike: { 's3:prefix': ['uploads/*', 'models/*', 'jobs/*'] } } },
      { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': ['ConvertFailureQueue', 'Arn'] } },
      logs('convert'),
    ]);
    // Nothing broader anywhere in the template: no Allow statement has a "*" action, resource
    // or principal. The one wildcard serverless itself writes is a Deny: its deployment
    // bucket refuses every s3:* request from any principal that does not use TLS.
    const all: { Effect: string; Action: unknown; Resource: unknown; Principal?: unknown }[] = [];
    const collect = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(collect);
      else if (node && typeof node === 'object') {
        const o = node as Record<string, unknown>;
        if (typeof o.Effect === 'string' && 'Action' in o) all.push(o as (typeof all)[number]);
        Object.values(o).forEach(collect);
      }
    };
    collect(template);
    const wild = (v: unknown) => [v].flat().some((x) => x === '*' || (typeof x === 'string' && /^[a-z0-9-]+:\*$/.test(x)));
    const allows = all.filter((s) => s.Effect === 'Allow');
    expect(allows.length).toBeGreaterThanOrEqual(8);
    for (const s of allows) {
      expect(wild(s.Action)).toBe(false);
      expect(wild(s.Resource)).toBe(false);
    }
    const denies = all.filter((s) => s.Effect !== 'Allow');
    expect(denies).toEqual([
      expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Principal: '*', Condition: { Bool: { 'aws:SecureTransport': false } } }),
    ]);
  });

  test('HTTP API: every route, throttling set, CORS closed; log retention set', () => {
    const routes = resourcesOf('AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties.RouteKey as string).sort();
    expect(routes).toEqual([
      'GET /v1/models/{proxy+}',
      'GET /v2',
      'GET /v2/health/live',
      'GET /v2/health/ready',
      'GET /v2/models/{proxy+}',
      'POST /v1/models/{proxy+}',
      'POST /v2/models/{proxy+}',
      'POST /v2/staging',
    ]);
    const [, api] = resourcesOf('AWS::ApiGatewayV2::Api')[0]!;
    expect(api.Properties.CorsConfiguration).toBeUndefined();
    const [, stage] = resourcesOf('AWS::ApiGatewayV2::Stage')[0]!;
    expect(stage.Properties.DefaultRouteSettings).toEqual({ ThrottlingBurstLimit: 200, ThrottlingRateLimit: 100 });
    for (const [, group] of resourcesOf('AWS::Logs::LogGroup')) expect(group.Properties.RetentionInDays).toBe(30);
  });
});

describe('the packaged handler on the layer alone', () => {
  let s3: LocalS3;

  beforeAll(async () => {
    s3 = await startLocalS3();
    await publishModel(s3, 'mlp', 1, mlpModel(), { label: 'stable' });
    const colours = colourClassifierModel();
    await publishVersion(
      new ObjectStore(s3.client(), s3.bucket),
      {
        model: 'colours', version: 1, ...(await describeModel(colours)), evaluation: { passed: true }, conversion: { classLabels: ['red', 'green', 'blue'] },
        preprocess: { image: { type: 'image', scale: 1 / 255 } }, postprocess: { logits: { type: 'classification', topK: 1 } },
      },
      colours,
      'stable',
    );
  });

  afterAll(async () => {
    await s3?.stop();
  });

  test('loads onnxruntime-node from the layer (project node_modules out of reach) and serves a model', async () => {
    const task = join(temp, 'var', 'task');
    await run('python3', ['-m', 'zipfile', '-e', join(pkgDir, 'infer.zip'), task]);
    const event = httpEvent('POST', '/v2/models/mlp/infer', {
      body: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
      apiKey: 'layer-key',
    });
    const script = `
      const ort = require.resolve('onnxruntime-node');
      if (!ort.startsWith(process.env.NODE_PATH)) throw new Error('onnxruntime-node resolved outside the layer: ' + ort);
      const { handler } = require(${JSON.stringify(join(task, 'handlers', 'infer.js'))});
      handler(${JSON.stringify(event)}, ${JSON.stringify(lambdaContext())})
        .then((r) => process.stdout.write(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });`;
    const { stdout } = await run(process.execPath, ['-e', script], {
      cwd: task,
      env: {
        PATH: process.env.PATH,
        NODE_PATH: join(LAYER, 'nodejs', 'node_modules'),
        MODELS_BUCKET: s3.bucket,
        S3_ENDPOINT: s3.endpoint,
        API_KEY_HASHES: hashApiKey('layer-key'),
        AWS_REGION: 'us-east-1',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1769',
        MODEL_CACHE_DIR: join(temp, 'tmp-cache'),
        POWERTOOLS_LOG_LEVEL: 'SILENT',
        POWERTOOLS_METRICS_DISABLED: 'true',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
    });
    const result = JSON.parse(stdout) as { statusCode: number; body: string };
    expect(result.statusCode).toBe(200);
    const probs = (JSON.parse(result.body) as { outputs: { data: number[] }[] }).outputs[0]!.data;
    expect(probs).toHaveLength(3);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
  });

  /** Runs the packaged infer handler on one event, onnxruntime and sharp from their layers, the project's node_modules out of reach. */
  async function invokePackaged(task: string, event: unknown): Promise<{ statusCode: number; body: string }> {
    const dir = join(temp, 'var', task);
    await run('python3', ['-m', 'zipfile', '-e', join(pkgDir, 'infer.zip'), dir]);
    const script = `
      const { handler } = require(${JSON.stringify(join(dir, 'handlers', 'infer.js'))});
      handler(${JSON.stringify(event)}, ${JSON.stringify(lambdaContext())})
        .then((r) => {
          const where = require.resolve('sharp');
          if (!where.startsWith(${JSON.stringify(SHARP_LAYER)})) throw new Error('sharp resolved outside its layer: ' + where);
          process.stdout.write(JSON.stringify(r));
        })
        .catch((e) => { console.error(e); process.exit(1); });`;
    const { stdout } = await run(process.execPath, ['-e', script], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        NODE_PATH: [join(LAYER, 'nodejs', 'node_modules'), join(SHARP_LAYER, 'nodejs', 'node_modules')].join(':'),
        MODELS_BUCKET: s3.bucket,
        S3_ENDPOINT: s3.endpoint,
        API_KEY_HASHES: hashApiKey('layer-key'),
        AWS_REGION: 'us-east-1',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1769',
        MODEL_CACHE_DIR: join(temp, `tmp-cache-${task}`),
        POWERTOOLS_LOG_LEVEL: 'SILENT',
        POWERTOOLS_METRICS_DISABLED: 'true',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
    });
    return JSON.parse(stdout) as { statusCode: number; body: string };
  }

  test('loads sharp from its layer (project node_modules out of reach) and answers a label for a posted image', async () => {
    const red = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 230, g: 20, b: 10 } } }).png().toBuffer();
    const event = {
      ...httpEvent('POST', '/v2/models/colours/infer', { headers: { 'content-type': 'image/png' }, apiKey: 'layer-key' }),
      body: red.toString('base64'),
      isBase64Encoded: true,
    };
    const result = await invokePackaged('task-image', event);
    expect(result.statusCode).toBe(200);
    expect(JSON.parse(result.body)).toMatchObject({ model_name: 'colours', outputs: [{ name: 'logits', datatype: 'BYTES', shape: [1, 1], data: [expect.stringMatching(/^0\.\d+:0:red$/)] }] });
  });

  test('the bundle carries the tokenizer library: a text model converted with its tokenizer.json answers a label', async () => {
    const vocab = bertUncasedVocab();
    const options = { mode: 'none', classLabels: ['negative', 'positive'], preprocess: { text: { type: 'text' } }, postprocess: { logits: { type: 'classification', topK: 1 } } };
    expect(await convertUpload(s3, 'reviews', sentimentModel(vocab.length, new Map([[vocab.indexOf('hate'), [3, 0]]])), options, { 'tokenizer.json': bertUncasedTokenizerJson() })).toMatchObject({ status: 'succeeded' });
    const event = httpEvent('POST', '/v2/models/reviews/infer', { body: { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['I hate mondays'] }] }, apiKey: 'layer-key' });
    const result = await invokePackaged('task-text', event);
    expect(result.statusCode).toBe(200);
    const body = JSON.parse(result.body) as { model_name: string; outputs: unknown[] };
    expect(body.model_name).toBe('reviews');
    expect(body.outputs[0]).toEqual({ name: 'logits', datatype: 'BYTES', shape: [1, 1], data: [expect.stringMatching(/^0\.9\d+:0:negative$/)] });
  });
});
