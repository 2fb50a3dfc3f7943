import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { buildInferHandler } from '../../handlers/http/infer-handler';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import { createObservability } from '../../handlers/shared/observability';
import { hashApiKey } from '../../lib/auth/api-key';
import { loadConfig, type Config } from '../../lib/config';
import type { JobReport } from '../../lib/convert/job';
import type { TensorSpec } from '../../lib/registry/manifest';
import { toSpecs } from '../../lib/runtime/model-session';
import { publishVersion } from '../../lib/registry/registry';
import { createInferenceApp, type InferenceApp } from '../../lib/service/app';
import { ObjectStore } from '../../lib/storage/object-store';
import { lambdaContext, s3PutEvent, TEST_API_KEY } from './events';
import type { LocalS3 } from './local-s3';

/** A config as the handler would read it, pointing at the local S3 and a fresh cache dir. */
export function testConfig(s3: LocalS3, overrides: Record<string, string> = {}): Config {
  return loadConfig({
    MODELS_BUCKET: s3.bucket,
    S3_ENDPOINT: s3.endpoint,
    API_KEY_HASHES: hashApiKey(TEST_API_KEY),
    MODEL_CACHE_DIR: mkdtempSync(join(tmpdir(), 'model-cache-')),
    MANIFEST_TTL_MS: '60000',
    ORT_INTRA_OP_THREADS: '1',
    ...overrides,
  });
}

export interface TestApp {
  app: InferenceApp;
  handler: ReturnType<typeof buildInferHandler>;
  dispose: () => Promise<void>;
}

/** The inference app and its middy handler, wired exactly as handlers/infer.ts wires them. */
export function createTestApp(s3: LocalS3, overrides: Record<string, string> = {}): TestApp {
  const config = testConfig(s3, overrides);
  const obs = createObservability('test');
  const app = createInferenceApp(config, s3.client(), obs.telemetry);
  return {
    app,
    handler: buildInferHandler(app, obs),
    dispose: async () => {
      await app.sessions.clear();
      rmSync(config.cacheDir, { recursive: true, force: true });
    },
  };
}

/** The interface of a model as ORT reports it, in manifest terms (what a conversion writes). */
export async function describeModel(bytes: Uint8Array): Promise<{ inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  const session = await InferenceSession.create(bytes);
  try {
    return { inputs: toSpecs(session.inputMetadata), outputs: toSpecs(session.outputMetadata) };
  } finally {
    await session.release();
  }
}

/** Publishes a model into the local S3 the way a conversion does: artifact, manifest, then label. */
export async function publishModel(
  s3: LocalS3,
  model: string,
  version: number,
  bytes: Uint8Array,
  options: { label?: string; passed?: boolean; specs?: { inputs: TensorSpec[]; outputs: TensorSpec[] } } = {},
): Promise<void> {
  const store = new ObjectStore(s3.client(), s3.bucket);
  const specs = options.specs ?? (await describeModel(bytes));
  await publishVersion(
    store,
    { model, version, ...specs, evaluation: { passed: options.passed ?? true } },
    bytes,
    options.label,
  );
}

/**
 * Uploads a model the way a user does (its files first, e.g. a tokenizer.json, then the
 * options sidecar, then the model) and runs the real convert handler on the upload's S3 event.
 * Answers the job report.
 */
export async function convertUpload(
  s3: LocalS3,
  model: string,
  bytes: Uint8Array,
  options: unknown,
  files: Readonly<Record<string, string | Uint8Array>> = {},
): Promise<JobReport> {
  const put = async (key: string, body: string | Uint8Array) =>
    ((await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }))).ETag ?? '').replace(/"/g, '');
  for (const [name, body] of Object.entries(files)) await put(`uploads/${model}/${name}`, body);
  if (options !== undefined) await put(`uploads/${model}/model.json`, JSON.stringify(options));
  const key = `uploads/${model}/model.onnx`;
  const etag = await put(key, bytes);
  const store = new ObjectStore(s3.client(), s3.bucket);
  const convert = buildConvertHandler({ store, maxModelBytes: 50 * 1024 * 1024, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
  const { reports } = await convert(s3PutEvent(s3.bucket, key, etag), lambdaContext('convert'));
  const report = reports[0];
  if (!report) throw new Error(`no report for ${key}`);
  return report;
}

/**
 * Puts `body` at `key` in the local S3 and runs the real convert handler on its S3 event, with the
 * convert function's timeout (900 s in serverless.yml) as the time left. Answers the job report.
 */
export async function convertAt(s3: LocalS3, key: string, body: Uint8Array): Promise<JobReport> {
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  const convert = buildConvertHandler({ store: new ObjectStore(s3.client(), s3.bucket), maxModelBytes: 50 * 1024 * 1024, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
  const context = { ...lambdaContext('convert'), getRemainingTimeInMillis: () => 900_000 };
  const { reports } = await convert(s3PutEvent(s3.bucket, key, (out.ETag ?? '').replace(/"/g, '')), context);
  if (reports.length !== 1) throw new Error(`${reports.length} reports for ${key}`);
  return reports[0]!;
}
