/**
 * InferenceSession.create alone, in a fresh process: read the artifact from the (warm) disk
 * cache file, create the session with the service's options. The floor for a cold start with
 * a warm /tmp. Times count from this file's first line.
 *
 * BENCH_CREATE_FROM=path instead hands ORT the file path (ORT reads the file itself, no JS
 * buffer), as ModelSession.create now does with a cached file: the diagnostic reference. The
 * target's reference stays read + create from bytes, so figures compare with the first ones.
 */
import { T0 } from './lib/t0';
import { readFileSync } from 'node:fs';
import { InferenceSession } from 'onnxruntime-node';
import { sessionOptions } from '../lib/runtime/model-session';
import { fail, finish, noteRss, sinceT0 } from './lib/child';

void T0;
const imported = sinceT0();
noteRss('imported');

async function main(): Promise<void> {
  const file = process.env.BENCH_ARTIFACT_FILE as string;
  const fromPath = process.env.BENCH_CREATE_FROM === 'path';
  const bytes = fromPath ? undefined : readFileSync(file);
  const read = sinceT0();
  noteRss('read');
  const options = sessionOptions({ intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const session = bytes ? await InferenceSession.create(bytes, options) : await InferenceSession.create(file, options);
  const created = sinceT0();
  noteRss('created');
  void session;
  finish(fromPath ? 'create-path' : 'create', { imported, read, created, done: created });
}

main().catch(fail);
