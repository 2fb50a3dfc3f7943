/**
 * S3 fault injection. A proxy between the functions' S3 client and the local S3 breaks requests
 * the way S3 and the network do (throttling, internal errors, resets before, during and after an
 * answer, stalls, short and spoilt bodies), per operation, on seeded schedules: a transient fault
 * (the first one or two matching requests) or a persistent one (every matching request).
 *
 * Inference: every answer is 200 with exactly the clean model's output or 503 with Retry-After,
 * a single fault is absorbed by a retry, the /tmp cache never holds a file whose SHA-256 differs
 * from its name, and once S3 recovers the same container serves again (nothing poisoned).
 *
 * Conversion: a fault makes the handler throw (Lambda retries) or the job completes; S3 never
 * holds a manifest without its whole artifact or a label pointing at a version that is not
 * whole; delivering the event again once the faults stop completes the job with one version.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import type { S3Event } from 'aws-lambda';
import { InferenceSession } from 'onnxruntime-node';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildInferHandler } from '../../handlers/http/infer-handler';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import { createObservability } from '../../handlers/shared/observability';
import { createS3Client } from '../../handlers/shared/s3-client';
import { loadConvertConfig } from '../../lib/config';
import { jobIdFor, type JobReport } from '../../lib/convert/job';
import { ServiceUnavailableError } from '../../lib/errors';
import { keys } from '../../lib/registry/keys';
import type { Alias, Manifest } from '../../lib/registry/manifest';
import { createInferenceApp, type InferenceApp } from '../../lib/service/app';
import { sha256Hex } from '../../lib/storage/hash';
import { ObjectStore } from '../../lib/storage/object-store';
import { createTestApp, publishModel, testConfig } from '../helpers/app';
import { httpEvent, lambdaContext, s3PutEvent } from '../helpers/events';
import { faultSchedule, startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from '../helpers/fault-proxy';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { denseStackModel, prng } from '../helpers/models';
import { FULL_RUN, recordReliability } from './record';

/**
 * The client's socket inactivity timeout here: short, so a stalled S3 costs the test little, and
 * long enough for the local S3 on a busy machine. A stall is detected by this timeout only.
 */
const CLIENT_TIMEOUTS = { socketTimeoutMs: 600, connectionTimeoutMs: 600 };

// ---------------------------------------------------------------------------------------------
// Fault catalogue and schedules

type FaultName =
  | 'delay'
  | 'stall'
  | 'stall mid-body'
  | 'reset'
  | 'reset mid-body'
  | 'reset mid-upload'
  | 'reset after S3 acted'
  | '500 InternalError'
  | '503 SlowDown'
  | 'short body, full Content-Length'
  | 'short body, honest Content-Length'
  | 'corrupt body';

function faultOf(name: FaultName, rand: () => number): Fault {
  switch (name) {
    case 'delay':
      return { kind: 'delay', ms: 20 + Math.floor(rand() * 100) };
    case 'stall':
      return { kind: 'stall' };
    case 'stall mid-body':
      return { kind: 'stall-mid-body' };
    case 'reset':
      return { kind: 'reset' };
    case 'reset mid-body':
      return { kind: 'reset-mid-body' };
    case 'reset mid-upload':
      return { kind: 'reset-mid-upload' };
    case 'reset after S3 acted':
      return { kind: 'reset-after-forward' };
    case '500 InternalError':
      return { kind: 'error', status: 500 };
    case '503 SlowDown':
      return { kind: 'error', status: 503 };
    case 'short body, full Content-Length':
      return { kind: 'truncate', contentLength: 'full' };
    case 'short body, honest Content-Length':
      return { kind: 'truncate', contentLength: 'honest' };
    case 'corrupt body':
      return { kind: 'corrupt' };
  }
}

/** Faults on reads. A flipped byte is only for artifacts: their SHA-256 is the guard (S3 over TLS does not flip bytes). */
const READ_FAULTS: FaultName[] = [
  'delay',
  'stall',
  'stall mid-body',
  'reset',
  'reset mid-body',
  '500 InternalError',
  '503 SlowDown',
  'short body, full Content-Length',
  'short body, honest Content-Length',
];
const ARTIFACT_FAULTS: FaultName[] = [...READ_FAULTS, 'corrupt body'];
/** Faults on writes: their answers have no body to spoil, but S3 may act and the answer be lost. */
const WRITE_FAULTS: FaultName[] = ['delay', 'stall', 'reset', 'reset mid-upload', 'reset after S3 acted', '500 InternalError', '503 SlowDown'];

interface Schedule {
  name: string;
  /** How many matching requests get the fault, from the first; Infinity: all of them. */
  times: number;
}

const PERSISTENT: Schedule = { name: 'persistent', times: Infinity };

/**
 * The full run (`npm run test:reliability`) tries each operation and fault with a persistent
 * schedule and up to three transient ones (one or two faults, seeded). The `npm test` share
 * tries one of the two kinds, alternating over operations and faults, so each fault meets both
 * kinds and each operation both, in a third of the time.
 */
function schedulesFor(rand: () => number, persistent: boolean): Schedule[] {
  const transient = [...new Set(Array.from({ length: FULL_RUN ? 3 : 1 }, () => 1 + Math.floor(rand() * 2)))].map(
    (times): Schedule => ({ name: `transient x${times}`, times }),
  );
  if (FULL_RUN) return [...transient, PERSISTENT];
  return persistent ? [PERSISTENT] : transient;
}

interface Case<Op> {
  id: string;
  op: Op;
  faultName: FaultName;
  fault: Fault;
  schedule: Schedule;
}

function casesOf<Op extends { name: string }>(ops: readonly Op[], faultsOf: (op: Op) => FaultName[], seed: number): Case<Op>[] {
  const cases: Case<Op>[] = [];
  for (const [opIndex, op] of ops.entries()) {
    for (const [faultIndex, faultName] of faultsOf(op).entries()) {
      const rand = prng(seed + opIndex * 7919 + faultIndex * 104_729);
      const fault = faultOf(faultName, rand);
      for (const schedule of schedulesFor(rand, (opIndex + faultIndex) % 2 === 1)) {
        cases.push({ id: `${op.name} × ${faultName} × ${schedule.name}`, op, faultName, fault, schedule });
      }
    }
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Shared state and the tally that becomes the reliability row

let s3: LocalS3;
let proxy: FaultProxy;
let direct: ObjectStore;

interface CaseResult {
  part: 'inference' | 'conversion';
  ok: boolean;
  lost: boolean;
  /** What happened while the faults were on: '200', '503', 'completed', 'threw'. */
  during: string;
  transient: boolean;
  /** Served (inference) or completed (re-delivered conversion) once the faults stopped. */
  recovered: boolean;
  /** Inference: the /tmp cache held a file whose content does not hash to its name. */
  badCacheFile?: boolean;
  duplicate?: boolean;
  orphans?: number;
}
const results: CaseResult[] = [];
/** Conversion cases whose re-delivery published the upload again, by operation and fault. */
const duplicateCases: { op: string; fault: string; versions: number[] }[] = [];

function duplicatesByOperation(): string {
  if (duplicateCases.length === 0) return '';
  const byOp = new Map<string, string[]>();
  for (const d of duplicateCases) byOp.set(d.op, [...(byOp.get(d.op) ?? []), d.fault]);
  return ` (open defect in job.ts: ${[...byOp].map(([op, faults]) => `${op}: ${faults.join(', ')}`).join('; ')})`;
}
const startedAt = Date.now();

beforeAll(async () => {
  s3 = await startLocalS3();
  proxy = await startFaultProxy(s3.endpoint, s3.bucket);
  direct = new ObjectStore(s3.client(), s3.bucket);
});

afterAll(async () => {
  await proxy?.close();
  await s3?.stop();
  if (results.length !== INFER_CASES.length + CONVERT_CASES.length) return; // a filtered run: no row
  const inference = results.filter((r) => r.part === 'inference');
  const conversion = results.filter((r) => r.part === 'conversion');
  const count = (list: CaseResult[], test: (r: CaseResult) => boolean) => list.filter(test).length;
  recordReliability({
    part: 'S3 faults',
    cases: results.length,
    endedWell: count(results, (r) => r.ok),
    dataLost: count(results, (r) => r.lost),
    detail:
      `schedules: ${FULL_RUN ? 'persistent and up to 3 seeded transient ones' : 'persistent or seeded transient, alternating'}; ` +
      `inference ${inference.length} cases (6 reads x 9-10 faults): ` +
      `${count(inference, (r) => r.during === '200')} answered 200 with the clean output, ` +
      `${count(inference, (r) => r.during === '503')} 503 + Retry-After ` +
      `(${count(inference, (r) => r.transient && r.during === '200')} of ${count(inference, (r) => r.transient)} transient schedules absorbed), ` +
      `${count(inference, (r) => r.recovered)} served again once S3 recovered, ${count(inference, (r) => r.badCacheFile === true)} bad files in /tmp; ` +
      `conversion ${conversion.length} cases (7 operations x 7-9 faults): ` +
      `${count(conversion, (r) => r.during === 'completed')} completed, ${count(conversion, (r) => r.during === 'threw')} threw for a retry, ` +
      `${count(conversion, (r) => r.recovered)} completed on re-delivery, ` +
      `${duplicateCases.length} of them publishing a second version${duplicatesByOperation()}; ` +
      `${conversion.reduce((n, r) => n + (r.orphans ?? 0), 0)} orphan artifacts (no manifest, invisible); ` +
      `${proxy.requests.length} requests proxied in ${Math.round((Date.now() - startedAt) / 1000)} s`,
  });
});

// ---------------------------------------------------------------------------------------------
// Inference

const SMALL = 'small';
const LARGE = 'large';
const RANGED = { RANGED_GET_THRESHOLD_MB: '1', RANGED_GET_PART_MB: '1', RANGED_GET_CONCURRENCY: '2' };
const MEMORY_ONLY = { DISK_CACHE_MB: '1' }; // the large artifact (~3 MiB) cannot go to /tmp

const MODELS = {
  [SMALL]: { bytes: denseStackModel(128, 2, 41), width: 128 }, // ~130 kB: one GET
  [LARGE]: { bytes: denseStackModel(512, 3, 42), width: 512 }, // ~3 MiB: four 1 MiB ranges when ranged
};
type ModelName = keyof typeof MODELS;

function requestBody(model: ModelName) {
  const rand = prng(model === SMALL ? 5 : 6);
  const width = MODELS[model].width;
  return { inputs: [{ name: 'x', shape: [1, width], datatype: 'FP32', data: Array.from({ length: width }, () => rand() * 2 - 1) }] };
}

const getOf =
  (key: string) =>
  (r: ProxiedRequest): boolean =>
    r.operation === 'GetObject' && r.key === key;

interface InferOp {
  name: string;
  model: ModelName;
  match: (r: ProxiedRequest) => boolean;
  overrides: Record<string, string>;
  artifact: boolean;
  /** The artifact lands in /tmp (else it is held in memory only). */
  disk: boolean;
}

const INFER_OPS: InferOp[] = [
  { name: 'alias read', model: SMALL, match: getOf(keys.alias(SMALL, 'stable')), overrides: {}, artifact: false, disk: true },
  { name: 'manifest read', model: SMALL, match: getOf(keys.manifest(SMALL, 1)), overrides: {}, artifact: false, disk: true },
  { name: 'artifact GET to /tmp', model: SMALL, match: getOf(keys.artifact(SMALL, 1)), overrides: {}, artifact: true, disk: true },
  { name: 'artifact ranged GETs to /tmp', model: LARGE, match: getOf(keys.artifact(LARGE, 1)), overrides: RANGED, artifact: true, disk: true },
  { name: 'artifact GET to memory', model: LARGE, match: getOf(keys.artifact(LARGE, 1)), overrides: MEMORY_ONLY, artifact: true, disk: false },
  {
    name: 'artifact ranged GETs to memory',
    model: LARGE,
    match: getOf(keys.artifact(LARGE, 1)),
    overrides: { ...RANGED, ...MEMORY_ONLY },
    artifact: true,
    disk: false,
  },
];
const INFER_CASES = casesOf(INFER_OPS, (op) => (op.artifact ? ARTIFACT_FAULTS : READ_FAULTS), 1000);

interface Answer {
  status: number;
  headers: Record<string, string>;
  json: { error?: string; outputs?: unknown };
}

const clean: Partial<Record<ModelName, unknown>> = {};

/** An inference container as handlers/infer.ts builds it, its S3 client aimed at the proxy. */
function inferContainer(overrides: Record<string, string>): { app: InferenceApp; infer: (model: ModelName) => Promise<Answer>; dispose: () => Promise<void> } {
  const config = testConfig({ ...s3, endpoint: proxy.endpoint }, overrides);
  const client = createS3Client(config, CLIENT_TIMEOUTS);
  const obs = createObservability('test');
  const app = createInferenceApp(config, client, obs.telemetry);
  const handler = buildInferHandler(app, obs);
  return {
    app,
    infer: async (model) => {
      const event = httpEvent('POST', `/v2/models/${model}/infer`, { body: requestBody(model) });
      const res = (await handler(event, lambdaContext())) as { statusCode: number; headers: Record<string, string>; body: string };
      return { status: res.statusCode, headers: res.headers, json: JSON.parse(res.body) as Answer['json'] };
    },
    dispose: async () => {
      await app.sessions.clear();
      client.destroy();
      rmSync(config.cacheDir, { recursive: true, force: true });
    },
  };
}

/** What is wrong with the /tmp cache: a file whose content does not hash to its name, or a leftover. */
function cacheFindings(dir: string): { bad: string[]; leftovers: string[]; files: string[] } {
  const found = { bad: [] as string[], leftovers: [] as string[], files: [] as string[] };
  for (const name of readdirSync(dir)) {
    if (!/^[0-9a-f]{64}$/.test(name)) {
      found.leftovers.push(name);
      continue;
    }
    found.files.push(name);
    const actual = sha256Hex(readFileSync(join(dir, name)));
    if (actual !== name) found.bad.push(`${name} holds content hashing to ${actual}`);
  }
  return found;
}

describe('inference with S3 faults', () => {
  beforeAll(async () => {
    for (const model of [SMALL, LARGE] as const) await publishModel(s3, model, 1, MODELS[model].bytes, { label: 'stable' });
    const reference = createTestApp(s3);
    try {
      for (const model of [SMALL, LARGE] as const) {
        const res = (await reference.handler(httpEvent('POST', `/v2/models/${model}/infer`, { body: requestBody(model) }), lambdaContext())) as {
          statusCode: number;
          body: string;
        };
        expect(res.statusCode).toBe(200);
        clean[model] = (JSON.parse(res.body) as { outputs: unknown }).outputs;
      }
    } finally {
      await reference.dispose();
    }
  });

  test.each(INFER_CASES.map((c) => [c.id, c] as const))('%s', async (_id, c) => {
    const container = inferContainer(c.op.overrides);
    const problems: string[] = [];
    let lost = false;
    let badCacheFile = false;
    let recovered = false;
    let during: Answer;
    const schedule = faultSchedule(c.op.match, c.fault, { times: c.schedule.times });
    try {
      proxy.setRule(schedule);
      try {
        during = await container.infer(c.op.model);
      } finally {
        proxy.setRule(undefined);
      }
      expect(schedule.matched()).toBeGreaterThan(0); // the fault was in the path

      const judge = (answer: Answer, when: string) => {
        if (answer.status === 200) {
          try {
            expect(answer.json.outputs).toEqual(clean[c.op.model]);
          } catch {
            problems.push(`${when}: 200 with outputs that differ from the clean model's`);
            lost = true;
          }
        } else if (answer.status === 503) {
          if (!/^[1-9][0-9]*$/.test(answer.headers['retry-after'] ?? '')) problems.push(`${when}: 503 without a Retry-After`);
          if (!answer.json.error) problems.push(`${when}: 503 without an error message`);
        } else {
          problems.push(`${when}: answered ${answer.status} (${answer.json.error ?? ''})`);
        }
      };
      judge(during, 'during the faults');
      if (c.faultName === 'delay' && during.status !== 200) problems.push(`a delay alone was answered ${during.status}`);
      if (c.schedule.times === 1 && during.status !== 200) problems.push(`a single fault was not absorbed: ${during.status} ${during.json.error ?? ''}`);
      if (c.schedule.times === Infinity && c.faultName !== 'delay' && during.status !== 503) {
        problems.push(`a persistent fault was answered ${during.status}, not 503`);
      }
      let tmp = cacheFindings(container.app.config.cacheDir);
      if (tmp.bad.length) badCacheFile = true;
      problems.push(...tmp.bad.map((b) => `during: /tmp ${b}`), ...tmp.leftovers.map((l) => `during: /tmp left ${l}`));

      const after = await container.infer(c.op.model);
      judge(after, 'after the faults');
      if (after.status !== 200) problems.push(`after the faults: still ${after.status} (${after.json.error ?? ''})`);
      recovered = after.status === 200;
      tmp = cacheFindings(container.app.config.cacheDir);
      if (tmp.bad.length) badCacheFile = true;
      problems.push(...tmp.bad.map((b) => `after: /tmp ${b}`), ...tmp.leftovers.map((l) => `after: /tmp left ${l}`));
      const expected = c.op.disk ? [sha256Hex(MODELS[c.op.model].bytes)] : [];
      if (JSON.stringify(tmp.files) !== JSON.stringify(expected)) problems.push(`after: /tmp holds [${tmp.files.join(', ')}], expected [${expected.join(', ')}]`);

      // A restarted runtime in the same container trusts /tmp only after re-hashing it: what the
      // faults left there must serve the clean model, without fetching the artifact again.
      const restarted = inferContainer({ ...c.op.overrides, MODEL_CACHE_DIR: container.app.config.cacheDir });
      try {
        const seen = proxy.requests.length === 0 ? 0 : proxy.requests[proxy.requests.length - 1]!.seq;
        const answer = await restarted.infer(c.op.model);
        judge(answer, 'after a restart');
        if (answer.status !== 200) problems.push(`after a restart: ${answer.status} (${answer.json.error ?? ''})`);
        recovered &&= answer.status === 200;
        const artifactGets = proxy.count((r) => r.seq > seen && r.operation === 'GetObject' && r.key === keys.artifact(c.op.model, 1));
        if (c.op.disk && artifactGets > 0) problems.push('after a restart: the artifact was fetched again although /tmp held it');
      } finally {
        await restarted.dispose();
      }
    } finally {
      await container.dispose();
    }
    results.push({
      part: 'inference',
      ok: problems.length === 0,
      lost: lost || badCacheFile,
      during: String(during.status),
      transient: c.schedule !== PERSISTENT,
      recovered,
      badCacheFile,
    });
    expect(problems).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Conversion

const SOURCE = denseStackModel(64, 2, 43); // converts (int8) in well under a second
const uploadKey = (model: string): string => `uploads/${model}/model.onnx`;

interface ConvertOp {
  name: string;
  write: boolean;
  match: (model: string) => (r: ProxiedRequest) => boolean;
}

const CONVERT_OPS: ConvertOp[] = [
  { name: 'upload GET', write: false, match: (m) => getOf(uploadKey(m)) },
  { name: 'report lookup (404)', write: false, match: (m) => (r) => r.operation === 'GetObject' && r.key.startsWith(`jobs/${m}/`) },
  { name: 'version LIST', write: false, match: (m) => (r) => r.operation === 'ListObjects' && r.prefix === keys.modelPrefix(m) },
  { name: 'artifact PUT', write: true, match: (m) => (r) => r.operation === 'PutObject' && new RegExp(`^models/${m}/\\d+/model\\.onnx$`).test(r.key) },
  { name: 'manifest PUT', write: true, match: (m) => (r) => r.operation === 'PutObject' && new RegExp(`^models/${m}/\\d+/manifest\\.json$`).test(r.key) },
  { name: 'alias PUT', write: true, match: (m) => (r) => r.operation === 'PutObject' && r.key.startsWith(`models/${m}/aliases/`) },
  { name: 'report PUT', write: true, match: (m) => (r) => r.operation === 'PutObject' && r.key.startsWith(`jobs/${m}/`) },
];
const CONVERT_CASES = casesOf(CONVERT_OPS, (op) => (op.write ? WRITE_FAULTS : READ_FAULTS), 2000);

/** An S3 ObjectCreated:Put event as AWS delivers it. */
const s3Event = (key: string, etag: string): S3Event => s3PutEvent(s3.bucket, key, etag, { size: SOURCE.byteLength });

interface ModelState {
  /** Versions whose manifest and artifact are both there and agree. */
  whole: number[];
  /** Versions published by this job (its id in the manifest). */
  ofJob: number[];
  orphans: string[];
  stable?: number;
  report?: JobReport;
  problems: string[];
}

/** Reads what a model's prefix holds, straight from the local S3, and what is wrong with it. */
async function inspect(model: string, jobId: string): Promise<ModelState> {
  const state: ModelState = { whole: [], ofJob: [], orphans: [], problems: [] };
  const all = await direct.listKeys(keys.modelPrefix(model));
  const artifacts = new Map<number, Buffer>();
  for (const key of all) {
    const match = new RegExp(`^models/${model}/(\\d+)/model\\.onnx$`).exec(key);
    if (match) artifacts.set(Number(match[1]), await direct.getBytes(key));
  }
  const manifested = new Set<number>();
  for (const key of all) {
    const match = new RegExp(`^models/${model}/(\\d+)/manifest\\.json$`).exec(key);
    if (!match) continue;
    const version = Number(match[1]);
    manifested.add(version);
    const manifest = (await direct.getJson(key)) as Manifest;
    const artifact = artifacts.get(version);
    if (manifest.version !== version) state.problems.push(`manifest ${key} says version ${manifest.version}`);
    else if (!artifact) state.problems.push(`version ${version} has a manifest and no artifact`);
    else if (artifact.byteLength !== manifest.artifact.bytes || sha256Hex(artifact) !== manifest.artifact.sha256) {
      state.problems.push(`version ${version}: the artifact (${artifact.byteLength} bytes) does not match its manifest`);
    } else state.whole.push(version);
    if ((manifest.conversion as { jobId?: string } | undefined)?.jobId === jobId) state.ofJob.push(version);
  }
  for (const [version, artifact] of artifacts) {
    if (manifested.has(version)) continue;
    state.orphans.push(keys.artifact(model, version));
    // An orphan is invisible, but it must still be a whole model, never a partial write. (Not
    // the same bytes as the published one: the pipeline keeps the optimized graph only when it
    // loads faster, a measurement.)
    try {
      const session = await InferenceSession.create(artifact);
      await session.release();
    } catch (err) {
      state.problems.push(`orphan artifact of version ${version} is not a model: ${(err as Error).message}`);
    }
  }
  for (const key of all.filter((k) => k.startsWith(`models/${model}/aliases/`))) {
    const alias = (await direct.getJson(key)) as Alias;
    if (!state.whole.includes(alias.version)) state.problems.push(`${key} points at version ${alias.version}, which is not whole`);
    if (alias.label === 'stable') state.stable = alias.version;
  }
  state.report = (await direct.getJson(keys.job(model, jobId))) as JobReport | undefined;
  if (state.report?.status === 'failed') state.problems.push(`the job was reported failed: ${state.report.reason ?? ''}`);
  if (state.report?.status === 'succeeded' && !state.whole.includes(state.report.version ?? -1)) {
    state.problems.push(`the report names version ${state.report.version}, which is not whole`);
  }
  return state;
}

describe('conversion with S3 faults', () => {
  const logger = new Logger({ logLevel: 'SILENT' });

  /** A convert container as handlers/convert.ts builds it, its S3 client aimed at the proxy. */
  function convertContainer() {
    const config = loadConvertConfig({ MODELS_BUCKET: s3.bucket, S3_ENDPOINT: proxy.endpoint, ORT_INTRA_OP_THREADS: '1' });
    const client = createS3Client(config, CLIENT_TIMEOUTS);
    const store = new ObjectStore(client, config.bucket);
    const handler = buildConvertHandler({ store, maxModelBytes: config.maxModelBytes, intraOpNumThreads: 1 }, logger);
    return { handler, dispose: () => client.destroy() };
  }

  async function upload(model: string): Promise<{ key: string; etag: string; jobId: string }> {
    const key = uploadKey(model);
    const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: SOURCE }));
    const etag = (out.ETag ?? '').replace(/"/g, '');
    return { key, etag, jobId: jobIdFor({ key, etag }) };
  }

  test('without faults: one version, labelled stable, reported', async () => {
    const { key, etag, jobId } = await upload('cv-clean');
    const container = convertContainer();
    try {
      const out = await container.handler(s3Event(key, etag), lambdaContext('convert'));
      expect(out.reports[0]).toMatchObject({ status: 'succeeded', version: 1, labelMoved: true });
    } finally {
      container.dispose();
    }
    expect(await inspect('cv-clean', jobId)).toMatchObject({ whole: [1], ofJob: [1], orphans: [], stable: 1, problems: [] });
  });

  test.each(CONVERT_CASES.map((c, i) => [c.id, c, i] as const))('%s', async (_id, c, index) => {
    const model = `cv${index}`;
    const { key, etag, jobId } = await upload(model);
    const container = convertContainer();
    const problems: string[] = [];
    let lost = false;
    let during = '';
    let duplicate = false;
    let recovered = false;
    let orphans = 0;
    const schedule = faultSchedule(c.op.match(model), c.fault, { times: c.schedule.times });
    try {
      proxy.setRule(schedule);
      try {
        const out = await container.handler(s3Event(key, etag), lambdaContext('convert'));
        const report = out.reports[0];
        during = report?.status === 'succeeded' ? 'completed' : `reported ${report?.status ?? 'nothing'}: ${report?.reason ?? ''}`;
      } catch (err) {
        during = err instanceof ServiceUnavailableError ? 'threw' : `threw ${(err as Error).name}: ${(err as Error).message}`;
      } finally {
        proxy.setRule(undefined);
      }
      expect(schedule.matched()).toBeGreaterThan(0); // the fault was in the path
      if (during !== 'completed' && during !== 'threw') {
        problems.push(`with the faults on: ${during} (a transient S3 fault must throw for a retry, or complete)`);
        lost = true; // a failed report ends the job: the upload is never converted
      }
      if (c.faultName === 'delay' && during !== 'completed') problems.push(`a delay alone ended in: ${during}`);

      const mid = await inspect(model, jobId);
      if (mid.problems.length) lost = true;
      problems.push(...mid.problems.map((p) => `after the faulted delivery: ${p}`));
      if (during === 'completed' && mid.report?.status !== 'succeeded') problems.push('completed without a report');

      // The same event again, faults over: Lambda's retry, or S3's at-least-once delivery.
      const again = await container.handler(s3Event(key, etag), lambdaContext('convert'));
      const fin = await inspect(model, jobId);
      if (fin.problems.length) lost = true;
      problems.push(...fin.problems.map((p) => `after re-delivery: ${p}`));
      const report = again.reports[0];
      recovered = report?.status === 'succeeded';
      if (!recovered) problems.push(`re-delivery ended ${report?.status ?? 'with no report'}`);
      if (fin.ofJob.length === 0) problems.push('re-delivery published nothing');
      const last = fin.ofJob[fin.ofJob.length - 1];
      if (report?.version !== last) problems.push(`the report names version ${report?.version}, the job's newest is ${last}`);
      if (fin.stable !== last) problems.push(`stable points at ${fin.stable}, not the job's version ${last}`);
      if (during === 'completed' && fin.ofJob.length !== mid.ofJob.length) problems.push('a completed job was converted again');
      duplicate = fin.ofJob.length > 1;
      if (duplicate) duplicateCases.push({ op: c.op.name, fault: `${c.faultName} ${c.schedule.name}`, versions: fin.ofJob });
      orphans = fin.orphans.length;
    } finally {
      container.dispose();
    }
    results.push({
      part: 'conversion',
      ok: problems.length === 0 && !duplicate,
      lost,
      during,
      transient: c.schedule !== PERSISTENT,
      recovered,
      duplicate,
      orphans,
    });
    expect(problems).toEqual([]);
  });

  // A fault after the manifest was written (alias PUT, report PUT, a manifest PUT whose answer
  // was lost) makes the job throw; the next delivery must find the version its job published
  // and finish it, never publish the upload a second time (lib/convert/job.ts, versionOfJob).
  test('re-delivery after a fault publishes the upload exactly once', () => {
    expect(duplicateCases).toEqual([]);
  });
});
