import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { gzipSync } from 'node:zlib';
import { buildConvertHandler } from '../../handlers/s3/convert-handler';
import type { JobReport } from '../../lib/convert/job';
import { writeZip } from '../../lib/convert/import/zip';
import { keys } from '../../lib/registry/keys';
import { ObjectStore } from '../../lib/storage/object-store';
import { lambdaContext, s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { prng } from '../helpers/models';
import { saveTfjs, seedWeights, tfl, useCpuBackend, writeH5, writeKerasH5 } from '../helpers/tfjs';
import { FULL_RUN, recordReliability } from './record';

/*
 * Mutated Keras and TF.js uploads (zipped TF.js layers folders, gzipped ones, Keras 2 .h5)
 * through the real convert handler, the real local S3, TF.js and onnxruntime. Case i is built
 * from prng(SEED + i) alone; kinds are drawn round-robin, bases in turn.
 *
 * What must hold for every upload: the handler returns, one report is stored, a failed report
 * has a reason the importer wrote (a ConversionError, never "conversion failed: <internal
 * error>"), a mutant broken by construction fails with the reason its kind expects, and nothing
 * is published for a failure. Bombs (zip entries, gzipped shards, HDF5 datasets) must be refused
 * before they expand: the process's peak RSS stays far below what any of them would expand to.
 */

const SEED = 0x1a9f_0000;
const MAX_MODEL_BYTES = 50 * 1024 * 1024;

type Expect = 'fail' | 'either';
interface Mutant {
  kind: string;
  bytes: Uint8Array;
  expect: Expect;
  /** The reason a failure must give, when one reason is right. */
  reason?: RegExp;
  detail: string;
}

interface TfjsBase {
  form: 'zip' | 'zip-gz';
  model: string;
  modelJson: Record<string, any>;
  shards: Map<string, Uint8Array>;
}
interface H5Base {
  form: 'h5';
  model: string;
  bytes: Uint8Array;
}
type Base = TfjsBase | H5Base;

let bases: Base[] = [];

/** A small functional CNN with two branches, BatchNormalization and a Dense head. */
function cnn(): tfl.LayersModel {
  const image = tfl.input({ shape: [8, 8, 3], name: 'image' });
  const a = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv_a' }).apply(image) as tfl.SymbolicTensor;
  const b = tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', name: 'dw_b' }).apply(image) as tfl.SymbolicTensor;
  let x = tfl.layers.concatenate({ name: 'cat' }).apply([a, b]) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'bn' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 3, activation: 'softmax', name: 'probs' }).apply(x) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: image, outputs: out });
  seedWeights(model, 5);
  return model;
}

function mlp(): tfl.LayersModel {
  const model = tfl.sequential({
    layers: [tfl.layers.inputLayer({ inputShape: [6], name: 'features' }), tfl.layers.dense({ units: 8, activation: 'relu', name: 'hidden' }), tfl.layers.dense({ units: 2, name: 'scores' })],
  });
  seedWeights(model, 6);
  return model;
}

const utf8 = (v: unknown): Uint8Array => new Uint8Array(Buffer.from(JSON.stringify(v)));

/** The base's files zipped as a user would (model.json gzipped too for the zip-gz form). */
function zipOf(base: TfjsBase, modelJson: unknown = base.modelJson, shards: Map<string, Uint8Array> = base.shards, extra: { name: string; data: Uint8Array }[] = []): Uint8Array {
  const gz = base.form === 'zip-gz';
  const json = gz ? new Uint8Array(gzipSync(utf8(modelJson))) : utf8(modelJson);
  const files = [{ name: 'model/model.json', data: json }, ...[...shards].map(([name, data]) => ({ name: `model/${name}`, data: gz ? new Uint8Array(gzipSync(data)) : data })), ...extra];
  return writeZip(files);
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** Every [parent, key] in a JSON tree, in document order. */
function jsonSlots(root: unknown): [Record<string, unknown> | unknown[], string | number][] {
  const out: [Record<string, unknown> | unknown[], string | number][] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        out.push([v, i]);
        walk(x);
      });
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        out.push([v as Record<string, unknown>, k]);
        walk(x);
      }
    }
  };
  walk(root);
  return out;
}

/** A gzip stream of `members` concatenated gzip members of 64 MiB of zeros each (gunzip reads them all). */
function gzipBomb(members: number): Uint8Array {
  const one = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
  return new Uint8Array(Buffer.concat(Array.from({ length: members }, () => one)));
}

let bomb: Uint8Array | undefined;

const FLIP: Expect = 'either';
const KINDS: { kind: string; forms: Base['form'][]; make: (base: Base, rand: () => number) => Mutant }[] = [
  {
    kind: 'flip',
    forms: ['zip', 'zip-gz', 'h5'],
    make: (base, rand) => {
      const bytes = (base.form === 'h5' ? base.bytes : zipOf(base)).slice();
      const n = 1 + Math.floor(rand() * 8);
      const at: number[] = [];
      for (let i = 0; i < n; i++) {
        const p = Math.floor(rand() * bytes.length);
        bytes[p] = bytes[p]! ^ (1 + Math.floor(rand() * 255));
        at.push(p);
      }
      return { kind: 'flip', bytes, expect: FLIP, detail: `bytes ${at.join(',')} of ${bytes.length}` };
    },
  },
  {
    kind: 'truncate',
    forms: ['zip', 'zip-gz', 'h5'],
    make: (base, rand) => {
      const whole = base.form === 'h5' ? base.bytes : zipOf(base);
      const cut = Math.floor(rand() * (whole.length - 1));
      // A zip cut anywhere loses its central directory's end record. An HDF5 file may end in
      // space nothing points into, so a cut there can leave a whole model.
      if (base.form === 'h5') return { kind: 'truncate', bytes: whole.slice(0, cut), expect: 'either', detail: `at ${cut} of ${whole.length}` };
      return { kind: 'truncate', bytes: whole.slice(0, cut), expect: 'fail', reason: /^zip: no end-of-central-directory record/, detail: `at ${cut} of ${whole.length}` };
    },
  },
  {
    kind: 'json-value',
    forms: ['zip', 'zip-gz'],
    make: (base, rand) => {
      const b = base as TfjsBase;
      const json = clone(b.modelJson);
      const slots = jsonSlots(json);
      const [parent, key] = slots[Math.floor(rand() * slots.length)]!;
      const replacements: unknown[] = [undefined, null, 'x', -1, 0, 1.5, 1e9, [], {}, [[-3, 2]], true];
      const value = replacements[Math.floor(rand() * replacements.length)];
      if (value === undefined) {
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
      } else (parent as Record<string | number, unknown>)[key] = value;
      return { kind: 'json-value', bytes: zipOf(b, json), expect: 'either', detail: `${String(key)} := ${JSON.stringify(value) ?? 'deleted'}` };
    },
  },
  {
    kind: 'weight-shape',
    forms: ['zip', 'zip-gz'],
    make: (base, rand) => {
      const b = base as TfjsBase;
      const json = clone(b.modelJson);
      const weights = (json.weightsManifest as { weights: { name: string; shape: unknown }[] }[])[0]!.weights;
      const w = weights[Math.floor(rand() * weights.length)]!;
      const shapes: unknown[] = [[1 << 20, 1 << 20], [-4], [0], [2.5], ['3'], null, [Number.MAX_SAFE_INTEGER]];
      const shape = shapes[Math.floor(rand() * shapes.length)];
      w.shape = shape;
      return { kind: 'weight-shape', bytes: zipOf(b, json), expect: 'fail', detail: `${w.name} shape ${JSON.stringify(shape)}` };
    },
  },
  {
    kind: 'shard',
    forms: ['zip', 'zip-gz'],
    make: (base, rand) => {
      const b = base as TfjsBase;
      const [name, data] = [...b.shards][0]!;
      const how = Math.floor(rand() * 3);
      if (how === 0) return { kind: 'shard', bytes: zipOf(b, b.modelJson, new Map()), expect: 'fail', reason: /^model\.json names the weight file ".*", which the zip does not hold$/, detail: 'missing' };
      if (how === 1) {
        const cut = Math.floor(rand() * data.length);
        return { kind: 'shard', bytes: zipOf(b, b.modelJson, new Map([[name, data.slice(0, cut)]])), expect: 'fail', reason: /past the \d+ bytes of its shards/, detail: `cut to ${cut}` };
      }
      const json = clone(b.modelJson);
      (json.weightsManifest as { paths: string[] }[])[0]!.paths = ['../../etc/passwd'];
      return { kind: 'shard', bytes: zipOf(b, json), expect: 'fail', reason: /does not hold|climbs out/, detail: 'path climbs out' };
    },
  },
  {
    kind: 'gzip-bomb',
    forms: ['zip', 'zip-gz'],
    make: (base) => {
      const b = base as TfjsBase;
      // 40 x 64 MiB of zeros behind 2.6 MB of gzip, as the shard and then as model.json.
      bomb ??= gzipBomb(40);
      const [name] = [...b.shards][0]!;
      const files = [{ name: 'model/model.json', data: utf8(b.modelJson) }, { name: `model/${name}`, data: bomb }];
      return { kind: 'gzip-bomb', bytes: writeZip(files, true), expect: 'fail', reason: /^weight file ".*" is gzipped and expands past \d+ bytes in all \(a gzip bomb\?\)$/, detail: '2.5 GiB in 2.6 MB' };
    },
  },
  {
    kind: 'topology',
    forms: ['zip', 'zip-gz'],
    make: (base, rand) => {
      const b = base as TfjsBase;
      const json = clone(b.modelJson);
      const layers = (json.modelTopology.model_config ?? json.modelTopology).config.layers as { name: string; class_name: string; inbound_nodes: unknown[][][] }[];
      const how = Math.floor(rand() * 4);
      let detail: string;
      if (how === 0) {
        // A cycle: the first conv reads the head's output.
        layers.find((l) => l.name === 'conv_a')!.inbound_nodes = [[['probs', 0, 0, {}]]];
        detail = 'cycle conv_a <- probs';
      } else if (how === 1) {
        layers.find((l) => l.name === 'bn')!.inbound_nodes = [[['nowhere', 0, 0, {}]]];
        detail = 'input from a missing layer';
      } else if (how === 2) {
        layers.find((l) => l.name === 'gap')!.class_name = 'Lambda';
        detail = 'a Lambda layer';
      } else {
        layers.find((l) => l.name === 'cat')!.inbound_nodes = [[['conv_a', 7, 3, {}]]];
        detail = 'node index out of range';
      }
      return { kind: 'topology', bytes: zipOf(b, json), expect: 'fail', detail };
    },
  },
  {
    kind: 'h5-bomb',
    forms: ['h5'],
    make: () => {
      // A dataset of 32 M float32 zeros (128 MiB) that gzip keeps to about 130 KB.
      const bytes = writeH5({
        attrs: { model_config: JSON.stringify({ class_name: 'Sequential', config: { name: 's', layers: [{ class_name: 'Dense', config: { name: 'd', units: 8192, batch_input_shape: [null, 4096] } }] } }), keras_version: '2.15.0' },
        groups: { model_weights: { attrs: { layer_names: ['d'] } }, 'model_weights/d': { attrs: { weight_names: ['d/kernel:0', 'd/bias:0'] } } },
        datasets: [
          { path: 'model_weights/d/d/kernel:0', shape: [4096, 8192], zeros: true, compression: 9 },
          { path: 'model_weights/d/d/bias:0', shape: [8192], zeros: true },
        ],
      });
      return { kind: 'h5-bomb', bytes, expect: 'fail', reason: /^the \.h5 upload: weight "d\/d\/kernel:0" declares 134217728 bytes of weights, past the \d+ bytes left of the upload's limit \(an HDF5 bomb\?\)$/, detail: `${bytes.length} bytes declaring 128 MiB` };
    },
  },
];

const CYCLE = KINDS.reduce((n, k) => n + k.forms.length, 0);
const CASES = (FULL_RUN ? 20 : 2) * CYCLE;

interface Case {
  index: number;
  base: Base;
  key: string;
  mutant: Mutant;
}

/** Case i: its kind and base in turn, its randomness from SEED + i. */
function buildCase(i: number): Case {
  const pairs = KINDS.flatMap((k) => k.forms.map((form) => [k, form] as const));
  const [kind, form] = pairs[i % pairs.length]!;
  const base = bases.find((b) => b.form === form)!;
  const mutant = kind.make(base, prng(SEED + i));
  const key = `uploads/${base.model}/case${i}.${form === 'h5' ? 'h5' : 'zip'}`;
  return { index: i, base, key, mutant };
}

let s3: LocalS3;
let store: ObjectStore;
let convert: ReturnType<typeof buildConvertHandler>;

beforeAll(async () => {
  await useCpuBackend();
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  convert = buildConvertHandler({ store, maxModelBytes: MAX_MODEL_BYTES, intraOpNumThreads: 1 }, new Logger({ logLevel: 'SILENT' }));
  const saved = await saveTfjs(cnn());
  const modelJson = JSON.parse(Buffer.from(saved.modelJson).toString('utf8')) as Record<string, any>;
  bases = [
    { form: 'zip', model: 'fz-tfjs', modelJson, shards: saved.shards },
    { form: 'zip-gz', model: 'fz-tfjs-gz', modelJson, shards: saved.shards },
    { form: 'h5', model: 'fz-h5', bytes: writeKerasH5(mlp()) },
  ];
}, 120_000);

afterAll(async () => {
  await s3?.stop();
});

interface Outcome {
  c: Case;
  status: string;
  reason: string;
  problems: string[];
}

async function runCase(c: Case): Promise<Outcome> {
  const problems: string[] = [];
  const out = await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: c.key, Body: c.mutant.bytes }));
  const context = { ...lambdaContext('convert'), getRemainingTimeInMillis: () => 900_000 };
  let result: { reports: JobReport[] };
  try {
    result = await convert(s3PutEvent(s3.bucket, c.key, (out.ETag ?? '').replace(/"/g, ''), { size: c.mutant.bytes.byteLength }), context);
  } catch (err) {
    return { c, status: 'threw', reason: String(err), problems: [`handler threw: ${String(err)}`] };
  }
  const report = result.reports[0];
  if (result.reports.length !== 1 || !report) return { c, status: 'threw', reason: '', problems: [`${result.reports.length} reports returned`] };
  const stored = (await store.getJson(keys.job(c.base.model, report.jobId))) as JobReport | undefined;
  if (!stored) problems.push('no job report stored');
  const reason = report.reason ?? '';
  if (report.status === 'failed') {
    if (!reason.trim()) problems.push('failed without a reason');
    if (/^conversion failed: /.test(reason)) problems.push(`an internal error, not a named reason: ${reason.slice(0, 200)}`);
    if (c.mutant.reason && !c.mutant.reason.test(reason)) problems.push(`reason "${reason.slice(0, 200)}" does not match ${String(c.mutant.reason)}`);
    if (report.version !== undefined) problems.push(`failed report names version ${report.version}`);
  } else if (c.mutant.expect === 'fail') {
    problems.push(`a mutant broken by construction was published as version ${report.version}`);
  } else if (typeof report.version !== 'number' || !(await store.getJson(keys.manifest(c.base.model, report.version)))) {
    problems.push('succeeded without a published manifest');
  }
  return { c, status: report.status, reason, problems };
}

describe(`Keras and TF.js uploads: ${CASES} mutated zips, gzipped folders and .h5 files through the real convert handler`, () => {
  const outcomes: Outcome[] = [];

  test(
    'every upload ends in a stored report; failures name what is wrong; bombs are refused before they expand',
    async () => {
      let peakRss = process.memoryUsage().rss;
      for (let i = 0; i < CASES; i++) {
        outcomes.push(await runCase(buildCase(i)));
        peakRss = Math.max(peakRss, process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
      }
      const bad = outcomes.filter((o) => o.problems.length > 0).map((o) => `#${o.c.index} ${o.c.mutant.kind} on ${o.c.base.form} (${o.c.mutant.detail}): ${o.problems.join('; ')}`);
      expect(bad).toEqual([]);
      // The gzip bomb alone would expand to 2.5 GiB and the HDF5 one to 128 MiB per dataset read.
      expect(peakRss).toBeLessThan(1.5 * 1024 ** 3);
      const failed = outcomes.filter((o) => o.status === 'failed').length;
      recordReliability({
        part: 'imports (Keras/TF.js uploads)',
        cases: outcomes.length,
        endedWell: outcomes.filter((o) => o.problems.length === 0).length,
        dataLost: outcomes.filter((o) => o.problems.some((p) => /no job report|without a published/.test(p))).length,
        detail: `${failed} refused with a named reason, ${outcomes.length - failed} still models and published; peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`,
      });
    },
    FULL_RUN ? 40 * 60_000 : 10 * 60_000,
  );

  test('nothing is published for a failed upload', async () => {
    for (const base of bases) {
      const versions = new Set((await store.listKeys(`models/${base.model}/`)).map((k) => k.split('/')[2]).filter((v) => /^\d+$/.test(v ?? '')));
      const succeeded = outcomes.filter((o) => o.c.base.model === base.model && o.status === 'succeeded').length;
      expect(versions.size).toBe(succeeded);
    }
  });
});
