/**
 * Cold-start floor, in a fresh process: S3 GET of the artifact bytes, then
 * InferenceSession.create from those bytes with the service's session options. Nothing else:
 * no registry, no hash, no disk cache, no request. Times count from this file's first line.
 */
import { T0 } from './lib/t0';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { InferenceSession } from 'onnxruntime-node';
import { sessionOptions } from '../lib/runtime/model-session';
import { fail, finish, noteRss, sinceT0 } from './lib/child';

void T0;
const imported = sinceT0();
noteRss('imported');

async function main(): Promise<void> {
  const s3 = new S3Client({
    region: 'us-east-1',
    endpoint: process.env.S3_ENDPOINT,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const out = await s3.send(new GetObjectCommand({ Bucket: process.env.MODELS_BUCKET, Key: process.env.BENCH_ARTIFACT_KEY }));
  const bytes = await out.Body!.transformToByteArray();
  const fetched = sinceT0();
  noteRss('fetched');
  if (bytes.byteLength !== Number(process.env.BENCH_ARTIFACT_BYTES)) throw new Error(`got ${bytes.byteLength} bytes`);
  const session = await InferenceSession.create(bytes, sessionOptions({ intraOpNumThreads: 1, graphOptimizationLevel: 'all' }));
  const created = sinceT0();
  noteRss('created');
  void session;
  finish('floor', { imported, fetched, created, done: created });
}

main().catch(fail);
