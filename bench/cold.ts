/**
 * Sections 2 and 3: cold start and memory, each figure from fresh node processes spawned one
 * at a time against a local s3rver run by this (parent) process.
 *
 *   floor     S3 GET of the artifact + InferenceSession.create (cold-floor.ts)
 *   cold      the service's first answer, empty cache dir (cold-app.ts, BENCH_MODE=answer)
 *   warm-tmp  the same, with the cache dir the cold run just filled (artifact from disk)
 *   create    read the cached artifact file + InferenceSession.create from the bytes (cold-create.ts):
 *             the warm /tmp target's reference, unchanged since the first figures
 *   create-path  InferenceSession.create(path of the cached file): ORT reads it, as the service
 *             now does (the diagnostic reference for warm /tmp)
 *   baseline  the service's modules and app, no model (cold-app.ts, BENCH_MODE=baseline)
 *
 * One discarded round first (page cache, lazy OS work), then BENCH_COLD_REPS rounds, the order
 * of floor/cold and create/warm-tmp alternating between rounds. Medians are reported.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { hashApiKey } from '../lib/auth/api-key';
import { keys } from '../lib/registry/keys';
import { sha256Hex } from '../lib/storage/hash';
import { publishModel } from '../test/helpers/app';
import { TEST_API_KEY } from '../test/helpers/events';
import { startLocalS3 } from '../test/helpers/local-s3';
import { denseStackModel } from '../test/helpers/models';
import { RESULT_PREFIX, type ChildReport, type Phase } from './lib/child';
import { median, mib, ms, ratio, table, verdict } from './lib/stats';

const REPS = Number(process.env.BENCH_COLD_REPS ?? 5);
const WIDTH = Number(process.env.BENCH_COLD_WIDTH ?? 1024);
const LAYERS = Number(process.env.BENCH_COLD_LAYERS ?? 10);
const MODEL = 'big';
/** Extra node flags for the children, e.g. BENCH_CHILD_NODE_FLAGS="--cpu-prof --cpu-prof-dir=.bench-out/prof". */
const CHILD_FLAGS = (process.env.BENCH_CHILD_NODE_FLAGS ?? '').split(' ').filter(Boolean);

type Kind = 'floor' | 'cold' | 'warm-tmp' | 'create' | 'create-path' | 'baseline';

interface Run {
  kind: Kind;
  report: ChildReport;
  /** Parent's view: spawn to exit, ms. */
  wallMs: number;
}

const runs: Run[] = [];

function spawnChild(kind: Kind, script: string, env: Record<string, string>, record: boolean): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [...CHILD_FLAGS, join(__dirname, script)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      const wallMs = performance.now() - started;
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code !== 0 || !line) {
        reject(new Error(`${kind} child (${script}) exited with ${code}\n${stderr}\n${stdout}`));
        return;
      }
      const run = { kind, report: JSON.parse(line.slice(RESULT_PREFIX.length)) as ChildReport, wallMs };
      if (record) runs.push(run);
      process.stderr.write(`  [cold] ${kind}: first line +${ms(run.report.marks.done as number)} ms, wall ${ms(wallMs)} ms\n`);
      resolve(run);
    });
  });
}

function of(kind: Kind): Run[] {
  return runs.filter((r) => r.kind === kind);
}

function med(kind: Kind, pick: (r: Run) => number | undefined): number {
  return median(of(kind).map(pick).filter((x): x is number => x !== undefined));
}

/** Sum of a child's recorded phases of one name (and key, for S3 GETs). */
function phaseMs(run: Run, name: string, match?: (p: Phase) => boolean): number | undefined {
  const found = run.report.phases.filter((p) => p.name === name && (!match || match(p)));
  return found.length === 0 ? undefined : found.reduce((s, p) => s + p.ms, 0);
}

async function main(): Promise<void> {
  const s3 = await startLocalS3();
  const dirs: string[] = [];
  const freshDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-cache-'));
    dirs.push(dir);
    return dir;
  };
  try {
    const bytes = denseStackModel(WIDTH, LAYERS);
    await publishModel(s3, MODEL, 1, bytes, { label: 'stable' });
    const sha = sha256Hex(bytes);
    const artifactKey = keys.artifact(MODEL, 1);
    const base = {
      MODELS_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      API_KEY_HASHES: hashApiKey(TEST_API_KEY),
      ORT_INTRA_OP_THREADS: '1',
      AWS_REGION: 'us-east-1',
      BENCH_MODEL: MODEL,
      BENCH_INPUT_WIDTH: String(WIDTH),
      BENCH_ARTIFACT_KEY: artifactKey,
      BENCH_ARTIFACT_BYTES: String(bytes.byteLength),
    };

    for (let round = 0; round <= REPS; round++) {
      const record = round > 0;
      const dir = freshDir();
      const floor = () => spawnChild('floor', 'cold-floor.js', base, record);
      const cold = () => spawnChild('cold', 'cold-app.js', { ...base, BENCH_MODE: 'answer', MODEL_CACHE_DIR: dir }, record);
      const warmTmp = () => spawnChild('warm-tmp', 'cold-app.js', { ...base, BENCH_MODE: 'answer', MODEL_CACHE_DIR: dir }, record);
      const create = () => spawnChild('create', 'cold-create.js', { ...base, BENCH_ARTIFACT_FILE: join(dir, sha) }, record);
      const createPath = () =>
        spawnChild('create-path', 'cold-create.js', { ...base, BENCH_ARTIFACT_FILE: join(dir, sha), BENCH_CREATE_FROM: 'path' }, record);
      const baseline = () => spawnChild('baseline', 'cold-app.js', { ...base, BENCH_MODE: 'baseline', MODEL_CACHE_DIR: freshDir() }, record);
      if (round % 2 === 1) {
        await floor();
        await cold();
        await warmTmp();
        await create();
      } else {
        await cold();
        await floor();
        await create();
        await warmTmp();
      }
      await createPath();
      await baseline();
    }

    const first = (r: Run) => r.report.marks.done;
    const boot = (r: Run) => r.report.bootMs;
    const wall = (r: Run) => r.wallMs;
    const rows: [Kind, string][] = [
      ['floor', 'floor: S3 GET + InferenceSession.create'],
      ['cold', 'cold: service first answer, empty cache dir'],
      ['create', 'create alone: read cached file + InferenceSession.create'],
      ['create-path', 'for comparison: InferenceSession.create(file path)'],
      ['warm-tmp', 'warm /tmp: service first answer, artifact on disk'],
      ['baseline', 'baseline: service modules + app, no model'],
    ];
    console.log(`## 2. Cold start: fresh node processes (${REPS} rounds, medians; one discarded warm-up round)`);
    console.log('');
    console.log(`Model: denseStackModel(${WIDTH}, ${LAYERS}), artifact ${bytes.byteLength} bytes (${mib(bytes.byteLength)}), ` +
      `published with publishModel into a local s3rver (label stable); ORT_INTRA_OP_THREADS=1, graph optimization "all".`);
    console.log('');
    console.log(table(
      ['process', 'first line -> done ms (median)', 'min', 'max', 'node boot -> first line ms', 'spawn -> exit ms (parent)'],
      rows.map(([kind, label]) => {
        const values = of(kind).map((r) => first(r) as number);
        return [label, ms(med(kind, first)), ms(Math.min(...values)), ms(Math.max(...values)), ms(med(kind, boot)), ms(med(kind, wall))];
      }),
    ));
    console.log('');
    const coldRatio = med('cold', first) / med('floor', first);
    const coldWallRatio = med('cold', wall) / med('floor', wall);
    const warmRatio = med('warm-tmp', first) / med('create', first);
    const warmWallRatio = med('warm-tmp', wall) / med('create', wall);
    const warmPathRatio = med('warm-tmp', first) / med('create-path', first);
    const warmPathWallRatio = med('warm-tmp', wall) / med('create-path', wall);
    const createCall = med('create', (r) => (r.report.marks.created as number) - (r.report.marks.read as number));
    const createPathCall = med('create-path', (r) => (r.report.marks.created as number) - (r.report.marks.read as number));
    console.log(table(
      ['target', 'first line -> answer', 'spawn -> exit (parent)', 'verdict (information only, first-line figure)'],
      [
        ['cold <= 1.2x floor', ratio(coldRatio), ratio(coldWallRatio), verdict(coldRatio <= 1.2)],
        ['warm /tmp <= 1.1x create alone', ratio(warmRatio), ratio(warmWallRatio), verdict(warmRatio <= 1.1)],
        [
          'diagnostic: warm /tmp <= 1.1x create from path alone (what the service now does)',
          ratio(warmPathRatio),
          ratio(warmPathWallRatio),
          verdict(warmPathRatio <= 1.1),
        ],
      ],
    ));
    console.log('');
    console.log(`For reference: the InferenceSession.create() call alone (no module load, no file read) took ${ms(createCall)} ms ` +
      `from bytes and ${ms(createPathCall)} ms from the path (medians); warm /tmp first answer is ` +
      `${ratio(med('warm-tmp', first) / createCall)} and ${ratio(med('warm-tmp', first) / createPathCall)} those.`);
    const outcomes = (kind: Kind) => {
      const counts = new Map<string, number>();
      for (const r of of(kind)) {
        const fetches = r.report.phases.filter((p) => p.name === 'artifact.fetch').map((p) => p.outcome ?? '?');
        const creates = r.report.phases.filter((p) => p.name === 'InferenceSession.create').map((p) => `from ${p.detail ?? '?'}`);
        const key = `${fetches.join('+') || 'no fetch'}, ORT ${creates.join('+') || 'not created'}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return [...counts].map(([k, n]) => `${k} in ${n}/${of(kind).length} runs`).join('; ');
    };
    console.log('');
    console.log(`Artifact location (source) as ArtifactFetcher.fetch returned it: cold ${outcomes('cold')}; warm /tmp ${outcomes('warm-tmp')}.`);
    console.log('');

    console.log('### 2b. Where the time goes (medians, ms since the first line unless said otherwise)');
    console.log('');
    const mark = (kind: Kind, name: string) => med(kind, (r) => r.report.marks[name]);
    const isArtifact = (p: Phase) => p.detail === artifactKey;
    const isRegistry = (p: Phase) => p.detail !== artifactKey;
    const zero = (x: number | undefined) => x ?? 0;
    const handlerTotal = (r: Run) => (r.report.marks.answered as number) - (r.report.marks.handlerStart as number);
    const fetchParts = (r: Run) =>
      zero(phaseMs(r, 'DiskCache.verify')) +
      zero(phaseMs(r, 'DiskCache.reserve')) +
      zero(phaseMs(r, 'ObjectStore.downloadToFile')) +
      zero(phaseMs(r, 'DiskCache.commit')) +
      zero(phaseMs(r, 'DiskCache.abandon')) +
      zero(phaseMs(r, 'ObjectStore.getBytes', isArtifact));
    const appPhases = (kind: Kind): (string | number)[][] => [
      ['modules required (imports done)', ms(mark(kind, 'imported'))],
      ['config + observability + S3 client + app + handler built', ms(mark(kind, 'built') - mark(kind, 'imported'))],
      ['handler: registry.resolve (alias + manifest GETs)', ms(med(kind, (r) => phaseMs(r, 'registry.resolve')))],
      ['  of which ObjectStore.getBytes of alias/manifest (sequential)', ms(med(kind, (r) => phaseMs(r, 'ObjectStore.getBytes', isRegistry)))],
      ['handler: ArtifactFetcher.fetch total', ms(med(kind, (r) => phaseMs(r, 'artifact.fetch')))],
      ['  DiskCache.verify (disk hit: the rest of the hash started at start-up; miss: index lookup)', ms(med(kind, (r) => zero(phaseMs(r, 'DiskCache.verify'))))],
      ['  DiskCache.reserve', ms(med(kind, (r) => zero(phaseMs(r, 'DiskCache.reserve'))))],
      ['  ObjectStore.downloadToFile (S3 stream to temp file + incremental sha256)', ms(med(kind, (r) => zero(phaseMs(r, 'ObjectStore.downloadToFile'))))],
      ['  DiskCache.commit (rename into the cache)', ms(med(kind, (r) => zero(phaseMs(r, 'DiskCache.commit'))))],
      ['  memory fallback: ObjectStore.getBytes of the artifact + DiskCache.abandon', ms(med(kind, (r) => zero(phaseMs(r, 'ObjectStore.getBytes', isArtifact)) + zero(phaseMs(r, 'DiskCache.abandon'))))],
      ['  rest of fetch (pin, bookkeeping)', ms(med(kind, (r) => {
        const total = phaseMs(r, 'artifact.fetch');
        return total === undefined ? undefined : total - fetchParts(r);
      }))],
      ['handler: ModelSession.create total', ms(med(kind, (r) => phaseMs(r, 'ModelSession.create')))],
      ['  InferenceSession.create', ms(med(kind, (r) => phaseMs(r, 'InferenceSession.create')))],
      ['  checkServable (outline through the 64 KiB file window) + specs', ms(med(kind, (r) => {
        const a = phaseMs(r, 'ModelSession.create');
        const b = phaseMs(r, 'InferenceSession.create');
        return a === undefined || b === undefined ? undefined : a - b;
      }))],
      ['handler: session.run', ms(med(kind, (r) => phaseMs(r, 'session.run')))],
      ['handler: the rest (middy, route, auth, parse, session cache, encode, telemetry)', ms(med(kind, (r) => {
        const parts = ['registry.resolve', 'artifact.fetch', 'ModelSession.create', 'session.run'].map((n) => phaseMs(r, n));
        return parts.some((x) => x === undefined) ? undefined : handlerTotal(r) - parts.reduce((a: number, b) => a + (b as number), 0);
      }))],
      ['handler: total (event -> response)', ms(med(kind, handlerTotal))],
      ['**first answer (first line -> response)**', ms(mark(kind, 'answered'))],
    ];
    const coldRows = appPhases('cold');
    const warmRows = appPhases('warm-tmp');
    console.log(table(['step', 'cold (empty cache)', 'warm /tmp'], coldRows.map((row, i) => [row[0] as string, row[1] as string, (warmRows[i] as (string | number)[])[1] as string])));
    console.log('');
    console.log(table(
      ['step', 'floor', 'create alone', 'create from path'],
      [
        ['modules required (imports done)', ms(mark('floor', 'imported')), ms(mark('create', 'imported')), ms(mark('create-path', 'imported'))],
        ['artifact bytes in memory (S3 GET / file read)', ms(mark('floor', 'fetched') - mark('floor', 'imported')), ms(mark('create', 'read') - mark('create', 'imported')), '-'],
        ['InferenceSession.create', ms(mark('floor', 'created') - mark('floor', 'fetched')), ms(createCall), ms(createPathCall)],
        ['**done (first line -> session created)**', ms(mark('floor', 'done')), ms(mark('create', 'done')), ms(mark('create-path', 'done'))],
      ],
    ));
    console.log('');

    const rss = (r: Run) => r.report.hwmBytes;
    const maxRss = (r: Run) => r.report.maxRssBytes;
    const baselineRss = med('baseline', rss);
    const peakRss = med('cold', rss);
    const budget = baselineRss + 2.5 * bytes.byteLength;
    const perArtifact = (peakRss - baselineRss) / bytes.byteLength;
    console.log('## 3. Memory: peak RSS of the process image (VmHWM), medians');
    console.log('');
    console.log('Peak RSS is VmHWM from /proc/self/status, read by the child just before it exits. ' +
      'process.resourceUsage().maxRSS is printed too but is not used: Linux carries ru_maxrss across fork + exec, so a ' +
      'spawned child reports at least the RSS its parent (this bench process, with s3rver and the model in memory) had at the fork.');
    console.log('');
    const memRow = (label: string, kind: Kind, withRatio: boolean) => [
      label,
      String(Math.round(med(kind, rss))),
      mib(med(kind, rss)),
      withRatio ? ratio((med(kind, rss) - baselineRss) / bytes.byteLength) : '',
      mib(med(kind, maxRss)),
    ];
    console.log(table(
      ['process', 'peak RSS bytes', 'peak RSS', '(peak - baseline) / artifact', 'maxRSS (inherits parent, not used)'],
      [
        ['artifact', String(bytes.byteLength), mib(bytes.byteLength), '', ''],
        memRow('baseline: service modules + app, no model', 'baseline', false),
        memRow('cold: service first answer (empty cache)', 'cold', true),
        memRow('warm /tmp: service first answer (from disk)', 'warm-tmp', true),
        memRow('floor: S3 GET + create (fewer modules)', 'floor', false),
        memRow('create alone: file read + create (ORT only)', 'create', false),
        memRow('create from file path (ORT only)', 'create-path', false),
      ],
    ));
    console.log('');
    console.log(table(
      ['target', 'budget', 'measured', 'verdict (information only)'],
      [[
        'cold peak <= baseline + 2.5 x artifact',
        `${mib(budget)} (${Math.round(budget)} bytes)`,
        `${mib(peakRss)}: baseline + ${ratio(perArtifact)} artifact`,
        verdict(peakRss <= budget),
      ]],
    ));
    console.log('');

    console.log('### 3b. Where the memory goes (medians; RSS and Buffer/ArrayBuffer bytes at the end of each step)');
    console.log('');
    const phaseMem = (kind: Kind, name: string, field: 'rss' | 'arrayBuffers', match?: (p: Phase) => boolean) =>
      med(kind, (r) => {
        const found = r.report.phases.filter((p) => p.name === name && (!match || match(p)));
        return found[found.length - 1]?.[field];
      });
    const rssMark = (kind: Kind, name: string) => med(kind, (r) => r.report.rss[name]);
    const createdOf = (kind: Kind) => rssMark(kind, 'created');
    const overBase = (x: number) => `${mib(x)} (${x >= baselineRss ? '+' : ''}${((x - baselineRss) / bytes.byteLength).toFixed(2)} art.)`;
    const phaseMemStart = (kind: Kind, name: string, field: 'rssStart' | 'arrayBuffersStart') =>
      med(kind, (r) => r.report.phases.find((p) => p.name === name)?.[field]);
    const memRows: [string, (kind: Kind) => number, (kind: Kind) => number | undefined][] = [
      ['modules required', (k) => rssMark(k, 'imported'), () => undefined],
      ['app + handler built', (k) => rssMark(k, 'built'), () => undefined],
      ['after registry.resolve', (k) => phaseMem(k, 'registry.resolve', 'rss'), (k) => phaseMem(k, 'registry.resolve', 'arrayBuffers')],
      ['after DiskCache.verify (hit: hash checked)', (k) => phaseMem(k, 'DiskCache.verify', 'rss'), (k) => phaseMem(k, 'DiskCache.verify', 'arrayBuffers')],
      ['after ObjectStore.downloadToFile', (k) => phaseMem(k, 'ObjectStore.downloadToFile', 'rss'), (k) => phaseMem(k, 'ObjectStore.downloadToFile', 'arrayBuffers')],
      ['after DiskCache.commit', (k) => phaseMem(k, 'DiskCache.commit', 'rss'), (k) => phaseMem(k, 'DiskCache.commit', 'arrayBuffers')],
      [
        'before InferenceSession.create (after checkServable)',
        (k) => phaseMemStart(k, 'InferenceSession.create', 'rssStart'),
        (k) => phaseMemStart(k, 'InferenceSession.create', 'arrayBuffersStart'),
      ],
      ['after InferenceSession.create', (k) => phaseMem(k, 'InferenceSession.create', 'rss'), (k) => phaseMem(k, 'InferenceSession.create', 'arrayBuffers')],
      ['after session.run', (k) => phaseMem(k, 'session.run', 'rss'), (k) => phaseMem(k, 'session.run', 'arrayBuffers')],
      ['answered', (k) => rssMark(k, 'answered'), () => undefined],
      ['**peak (VmHWM)**', (k) => med(k, rss), () => undefined],
    ];
    const cell = (x: number | undefined, asRss: boolean) => (x === undefined || Number.isNaN(x) ? '-' : asRss ? overBase(x) : mib(x));
    console.log(`Baseline (modules + app, no model) peak ${mib(baselineRss)}; "art." = (RSS - baseline) / artifact bytes.`);
    console.log('');
    console.log(table(
      ['point', 'cold RSS', 'cold array buffers', 'warm /tmp RSS', 'warm /tmp array buffers'],
      memRows.map(([label, rssOf, abOf]) => [label, cell(rssOf('cold'), true), cell(abOf('cold'), false), cell(rssOf('warm-tmp'), true), cell(abOf('warm-tmp'), false)]),
    ));
    console.log('');
    console.log(table(
      ['point', 'floor RSS', 'create alone RSS', 'create from path RSS'],
      [
        ['modules required', mib(rssMark('floor', 'imported')), mib(rssMark('create', 'imported')), mib(rssMark('create-path', 'imported'))],
        ['artifact bytes in memory', mib(rssMark('floor', 'fetched')), mib(rssMark('create', 'read')), '-'],
        ['session created', mib(createdOf('floor')), mib(createdOf('create')), mib(createdOf('create-path'))],
        ['**peak (VmHWM)**', mib(med('floor', rss)), mib(med('create', rss)), mib(med('create-path', rss))],
      ],
    ));
    console.log('');
  } finally {
    await s3.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
