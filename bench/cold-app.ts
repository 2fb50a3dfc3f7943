/**
 * A cold start of the service, in a fresh process, wired as handlers/infer.ts wires it:
 * require the app and handler modules, loadConfig(env), createObservability, createS3Client,
 * createInferenceApp, buildInferHandler; then one OIP infer event through the middy handler.
 * Times count from this file's first line.
 *
 *   BENCH_MODE=answer    answer one request (the cold start; with a warm MODEL_CACHE_DIR, the
 *                        artifact comes from disk)
 *   BENCH_MODE=baseline  the same modules and app, no model loaded (memory baseline)
 *
 * Library methods are wrapped with timers (a few performance.now() calls each) so the
 * report says where the time went: the registry and its S3 GETs, the artifact fetch and its
 * parts (DiskCache.verify re-hashes a cached file on a disk hit; on a miss DiskCache.reserve,
 * ObjectStore.downloadToFile streams the S3 body to a temp file with an incremental sha256,
 * DiskCache.commit renames it into place; ObjectStore.getBytes of the artifact only on the
 * in-memory fallback), ModelSession.create and the InferenceSession.create inside it, and the
 * run. Each phase also records RSS and array-buffer bytes at its start and end.
 */
import { T0 } from './lib/t0';
import { InferenceSession } from 'onnxruntime-node';
import { buildInferHandler } from '../handlers/http/infer-handler';
import { createObservability } from '../handlers/shared/observability';
import { createS3Client } from '../handlers/shared/s3-client';
import { loadConfig } from '../lib/config';
import { Registry } from '../lib/registry/registry';
import { ModelSession } from '../lib/runtime/model-session';
import { createInferenceApp } from '../lib/service/app';
import { ArtifactFetcher, type ArtifactLocation, type FetchedArtifact } from '../lib/storage/artifact-fetcher';
import { DiskCache } from '../lib/storage/disk-cache';
import { ObjectStore } from '../lib/storage/object-store';
import { httpEvent, lambdaContext } from '../test/helpers/events';
import { fail, finish, noteRss, sinceT0, type Phase } from './lib/child';

void T0;
const imported = sinceT0();
noteRss('imported');
const phases: Phase[] = [];

type AnyFn = (...args: unknown[]) => unknown;

/**
 * Replaces `target[method]` with a timed wrapper recording a {@link Phase}. `detail` describes
 * the call from its arguments; `outcome` describes its (resolved) result.
 */
function timed(
  target: object,
  method: string,
  name: string,
  detail?: (args: unknown[]) => string,
  outcome?: (result: unknown) => string,
): void {
  const holder = target as Record<string, AnyFn>;
  const original = holder[method];
  if (typeof original !== 'function') throw new Error(`bench instrumentation: ${name} (${method}) is not a method any more`);
  holder[method] = function (this: unknown, ...args: unknown[]): unknown {
    const before = process.memoryUsage();
    const at = sinceT0();
    const record = (described: string | undefined) => {
      const elapsed = sinceT0() - at;
      const mem = process.memoryUsage();
      phases.push({
        name,
        at,
        ms: elapsed,
        detail: detail?.(args),
        outcome: described,
        rss: mem.rss,
        arrayBuffers: mem.arrayBuffers,
        rssStart: before.rss,
        arrayBuffersStart: before.arrayBuffers,
      });
    };
    const out = original.apply(this, args);
    if (out instanceof Promise) {
      return out.then(
        (result: unknown) => {
          record(outcome?.(result));
          return result;
        },
        (err: unknown) => {
          record(`threw ${(err as Error)?.name ?? 'error'}`);
          throw err;
        },
      );
    }
    record(outcome?.(out));
    return out;
  };
}

/** "path (s3)", "bytes (s3)", "path (disk)": where the fetched artifact is and where it came from. */
function fetchedOutcome(result: unknown): string {
  const fetched = result as FetchedArtifact;
  return `${'path' in fetched.location ? 'path' : 'bytes'} (${fetched.source})`;
}

timed(Registry.prototype, 'resolve', 'registry.resolve');
timed(ObjectStore.prototype, 'getBytes', 'ObjectStore.getBytes', (args) => String(args[0]));
timed(ObjectStore.prototype, 'downloadToFile', 'ObjectStore.downloadToFile', (args) => String(args[0]));
timed(ArtifactFetcher.prototype, 'fetch', 'artifact.fetch', undefined, fetchedOutcome);
timed(DiskCache.prototype, 'verify', 'DiskCache.verify', undefined, (r) => (r === undefined ? 'miss' : 'hit'));
timed(DiskCache.prototype, 'reserve', 'DiskCache.reserve');
timed(DiskCache.prototype, 'commit', 'DiskCache.commit');
timed(DiskCache.prototype, 'abandon', 'DiskCache.abandon');
timed(ModelSession, 'create', 'ModelSession.create', (args) => ('path' in (args[0] as ArtifactLocation) ? 'path' : 'bytes'));
// What-if knob (not used by `npm run bench`): BENCH_GC_BEFORE_CREATE=1 with
// BENCH_CHILD_NODE_FLAGS=--expose-gc runs a full GC right before ORT creates the session, to
// show how much of the peak is garbage (download chunks) that V8 has not collected yet.
if (process.env.BENCH_GC_BEFORE_CREATE === '1') {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('BENCH_GC_BEFORE_CREATE needs BENCH_CHILD_NODE_FLAGS=--expose-gc');
  const create = InferenceSession.create.bind(InferenceSession) as (...args: unknown[]) => unknown;
  (InferenceSession as unknown as { create: (...args: unknown[]) => unknown }).create = (...args: unknown[]) => {
    gc();
    return create(...args);
  };
}
timed(InferenceSession, 'create', 'InferenceSession.create', (args) => (typeof args[0] === 'string' ? 'path' : 'bytes'));
timed(ModelSession.prototype, 'run', 'session.run');

async function main(): Promise<void> {
  const mode = process.env.BENCH_MODE ?? 'answer';
  const config = loadConfig(process.env);
  const obs = createObservability(config.serviceName);
  const app = createInferenceApp(config, createS3Client(config), obs.telemetry);
  const handler = buildInferHandler(app, obs);
  const built = sinceT0();
  noteRss('built');
  if (mode === 'baseline') finish(mode, { imported, built, done: built });

  const width = Number(process.env.BENCH_INPUT_WIDTH);
  const data = Array.from({ length: width }, (_, i) => Math.round(Math.sin(i) * 1e6) / 1e6);
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, width], datatype: 'FP32', data }] });
  const event = httpEvent('POST', `/v2/models/${process.env.BENCH_MODEL}/infer`, { body });
  const handlerStart = sinceT0();
  const res = (await handler(event, lambdaContext())) as { statusCode: number; body: string };
  const answered = sinceT0();
  noteRss('answered');
  if (res.statusCode !== 200) throw new Error(`handler answered ${res.statusCode}: ${res.body.slice(0, 500)}`);
  finish(mode, { imported, built, handlerStart, answered, done: answered }, phases, res.statusCode);
}

main().catch(fail);
