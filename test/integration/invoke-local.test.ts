import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { S3Event } from 'aws-lambda';
import { hashApiKey } from '../../lib/auth/api-key';
import { jobIdFor, type JobReport } from '../../lib/convert/job';
import { ObjectStore } from '../../lib/storage/object-store';
import { sileroFile, sileroOptions } from '../../tools/stack/default-model';
import { publishModel } from '../helpers/app';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';

// `sls invoke local` end to end: serverless.yml, serverless-esbuild's bundle and the events in
// events/ against a real local S3. Each invoke bundles the function again (a few seconds).

const ROOT = resolve(__dirname, '..', '..');
const SLS = join(ROOT, 'node_modules', 'serverless', 'bin', 'serverless.js');
const LOCAL_DEV_KEY = 'local-dev-key';
const TIMEOUT_MS = 180_000;
/** The default model of `npm start`, as the package ships it. */
const SILERO_FILE = sileroFile();

interface InvokeResult {
  /** What the handler returned, as printed. */
  raw: Record<string, unknown>;
  statusCode: number;
  headers: Record<string, string>;
  /** The response body, parsed (sls invoke local sometimes parses JSON bodies itself). */
  json: Record<string, unknown>;
}

let s3: LocalS3;
let temp: string;

beforeAll(async () => {
  // The bucket and model the events name: the ones `npm start` serves.
  s3 = await startLocalS3('onnx-lambda-local');
  await publishModel(s3, 'silero-vad', 1, new Uint8Array(readFileSync(SILERO_FILE)), { label: 'stable' });
  temp = mkdtempSync(join(tmpdir(), 'invoke-local-'));
}, TIMEOUT_MS);

afterAll(async () => {
  await s3?.stop();
  if (temp) rmSync(temp, { recursive: true, force: true });
});

/** The last pretty-printed JSON object in the output: what `sls invoke local` prints as the result. */
function lastJsonObject(stdout: string): Record<string, unknown> {
  const lines = stdout.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i] !== '{') continue;
    try {
      return JSON.parse(lines.slice(i).join('\n').trim()) as Record<string, unknown>;
    } catch {
      // a '{' line that does not start the result; keep looking further up
    }
  }
  throw new Error('no JSON object in the output');
}

/** Runs `sls invoke local -f infer -p <event>` in a child process and returns its parsed result. */
function invokeLocal(eventPath: string, fn: 'infer' | 'convert' = 'infer'): Promise<InvokeResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MODELS_BUCKET: s3.bucket,
    S3_ENDPOINT: s3.endpoint,
    API_KEY_HASHES: hashApiKey(LOCAL_DEV_KEY),
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    MODEL_CACHE_DIR: mkdtempSync(join(temp, 'model-cache-')),
    ORT_INTRA_OP_THREADS: '1',
    NODE_OPTIONS: '--openssl-legacy-provider',
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
    POWERTOOLS_LOG_LEVEL: 'WARN',
    POWERTOOLS_METRICS_DISABLED: 'true',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  // No AWS profile may be picked up: everything goes to the local S3.
  delete env.AWS_PROFILE;
  delete env.AWS_SESSION_TOKEN;
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      [SLS, 'invoke', 'local', '-f', fn, '-p', eventPath],
      { cwd: ROOT, env, timeout: TIMEOUT_MS - 10_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          fail(new Error(`sls invoke local failed (${error.message})\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
          return;
        }
        try {
          const result = lastJsonObject(stdout);
          const body = result.body;
          done({
            raw: result,
            statusCode: result.statusCode as number,
            headers: (result.headers ?? {}) as Record<string, string>,
            // A binary answer (base64) is read by its own check from `raw`.
            json: (result.isBase64Encoded ? {} : typeof body === 'string' ? JSON.parse(body) : body ?? {}) as Record<string, unknown>,
          });
        } catch (e) {
          fail(new Error(`unexpected sls invoke local output (${(e as Error).message})\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
        }
      },
    );
  });
}

const event = (name: string) => join(ROOT, 'events', `${name}.json`);

describe('sls invoke local with the events in events/', () => {
  test(
    'infer-v2: Silero VAD in the local S3 finds speech in the recorded sample',
    async () => {
      const res = await invokeLocal(event('infer-v2'));
      expect(res.statusCode).toBe(200);
      expect(res.json.model_name).toBe('silero-vad');
      expect(res.json.model_version).toBe('1');
      const outputs = res.json.outputs as { name: string; datatype: string; shape: number[]; data: number[] }[];
      expect(outputs.map((o) => o.name)).toEqual(['output']);
      expect(outputs[0]?.datatype).toBe('FP32');
      expect(outputs[0]?.shape).toEqual([1, 1]);
      expect(outputs[0]?.data[0]).toBeGreaterThan(0.5);
    },
    TIMEOUT_MS,
  );

  test(
    'health-live: 200 without a key',
    async () => {
      const res = await invokeLocal(event('health-live'));
      expect(res.statusCode).toBe(200);
      expect(res.json).toEqual({ live: true });
    },
    TIMEOUT_MS,
  );

  test(
    'infer-v2 without the x-api-key header: 401',
    async () => {
      const withKey = JSON.parse(readFileSync(event('infer-v2'), 'utf8')) as { headers: Record<string, string> };
      delete withKey.headers['x-api-key'];
      const path = join(temp, 'infer-v2-no-key.json');
      writeFileSync(path, JSON.stringify(withKey));
      const res = await invokeLocal(path);
      expect(res.statusCode).toBe(401);
      expect(typeof res.json.error).toBe('string');
    },
    TIMEOUT_MS,
  );

  test(
    'every other event in events/ gets its answer',
    async () => {
      const expectations: Record<string, (res: InvokeResult) => void> = {
        'health-ready': (res) => expect(res.statusCode).toBe(200),
        'server-metadata': (res) => {
          expect(res.statusCode).toBe(200);
          expect(typeof res.json.name).toBe('string');
        },
        'model-metadata': (res) => {
          expect(res.statusCode).toBe(200);
          expect(res.json.name).toBe('silero-vad');
          expect(res.json.platform).toBe('onnx');
        },
        'model-ready': (res) => expect(res.statusCode).toBe(200),
        'infer-v2-binary': (res) => {
          // The binary tensor extension both ways: the answer is base64 of the JSON header and
          // the outputs' bytes; the first output is the speech probability.
          const raw = res.raw as unknown as { statusCode: number; headers: Record<string, string>; body: string; isBase64Encoded: boolean };
          expect(raw.statusCode).toBe(200);
          expect(raw.isBase64Encoded).toBe(true);
          const body = Buffer.from(raw.body, 'base64');
          const headerLength = Number(raw.headers['inference-header-content-length']);
          const header = JSON.parse(body.subarray(0, headerLength).toString('utf8')) as { outputs: { name: string; parameters: { binary_data_size: number } }[] };
          expect(header.outputs[0]).toMatchObject({ name: 'output', parameters: { binary_data_size: 4 } });
          expect(body.readFloatLE(headerLength)).toBeGreaterThan(0.5);
        },
        'tf-predict': (res) => {
          expect(res.statusCode).toBe(200);
          // Columnar request, columnar answer: the one output asked for, speech probability.
          const outputs = res.json.outputs as number[][];
          expect(outputs).toHaveLength(1);
          expect(outputs[0]?.[0]).toBeGreaterThan(0.5);
        },
        'tf-status': (res) => {
          expect(res.statusCode).toBe(200);
          expect(res.json.model_version_status).toBeDefined();
        },
        warmup: (res) => expect(res.raw).toEqual({ warmed: [] }),
      };
      // One after another: every invoke bundles into the same .esbuild/ folder.
      for (const [name, check] of Object.entries(expectations)) {
        const res = await invokeLocal(event(name));
        try {
          check(res);
        } catch (e) {
          throw new Error(`events/${name}.json: ${(e as Error).message}\n${JSON.stringify(res.raw)}`);
        }
      }
    },
    TIMEOUT_MS * 2,
  );

  test(
    'convert-s3-put: the upload npm start makes converts once; the same event again changes nothing',
    async () => {
      const put = JSON.parse(readFileSync(event('convert-s3-put'), 'utf8')) as S3Event;
      const object = put.Records[0]!.s3.object;
      const store = new ObjectStore(s3.client(), s3.bucket);
      await store.put(object.key.replace(/\.onnx$/, '.json'), JSON.stringify(sileroOptions()), 'application/json');
      await store.put(object.key, readFileSync(SILERO_FILE), 'application/octet-stream');
      // The event carries the ETag the local S3 gives this file (its MD5), as npm start uploads it.
      expect((await store.head(object.key))?.etag).toBe(object.eTag);

      const first = await invokeLocal(event('convert-s3-put'), 'convert');
      const [report] = (first.raw as unknown as { reports: JobReport[] }).reports;
      expect(report).toMatchObject({ status: 'succeeded', model: 'silero-vad', version: 2, jobId: jobIdFor({ key: object.key, etag: object.eTag }) });
      const again = await invokeLocal(event('convert-s3-put'), 'convert');
      expect((again.raw as unknown as { reports: JobReport[] }).reports).toEqual([report]);
      expect((await store.listKeys('models/silero-vad/')).filter((k) => k.endsWith('manifest.json'))).toHaveLength(2);
    },
    TIMEOUT_MS * 2,
  );
});
