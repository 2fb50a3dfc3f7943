/**
 * Section 4: conversion (upload -> evaluated model). For each test model: `validateModel` and
 * `convertModel` with DEFAULT_PIPELINE_OPTIONS (int8-dynamic; Silero VAD in fp16 with sample
 * inputs, as test/integration/convert.test.ts does), then figures measured here rather than
 * taken from the pipeline's own quick evaluation:
 *
 *   - bytes: fp32 upload vs published artifact;
 *   - latency: medians of interleaved runs of both models, session options as served
 *     (`sessionOptions`, spinning off, each at its serving level as below), 1 and 2 intra-op threads;
 *   - session create: raw upload vs published artifact, both from bytes, each at the level the
 *     service serves it at (raw: all; published: the level its conversion recorded), medians;
 *   - accuracy per output: from the pipeline's evaluation (the figures the gates saw);
 *   - conversion wall time: validateModel + convertModel.
 *
 * Then diagnostics for the BERT-shaped encoder (where the bytes and the time go, op types of
 * the artifact and of onnxruntime's runtime graph, `extended` vs `all` offline optimization),
 * and ~100 MB / ~200 MB models converted in fresh child processes (this same bundle with
 * BENCH_CONVERT_CHILD set) for wall time and peak memory (VmHWM).
 *
 * Timing is printed, never asserted: PASS/MISS is information only.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { GraphOptimizationLevel } from '../lib/config';
import { generateSamples } from '../lib/convert/evaluate';
import { convertModel, DEFAULT_PIPELINE_OPTIONS, validateModel, type PipelineOptions, type PipelineResult } from '../lib/convert/pipeline';
import { quantizeModel } from '../lib/convert/quantize';
import { DATA_TYPE, OnnxModel } from '../lib/onnx/model';
import { sessionOptions } from '../lib/runtime/model-session';
import { bertEncoderModel, convNetModel, convStackModel, denseStackModel, geluModel, mlpModel, sileroVadModel } from '../test/helpers/models';
import { mib, ms, ratio, summarize, table, verdict, type Summary } from './lib/stats';

const MB = 1_000_000;
const MIB = 1024 * 1024;
/** Interleaved timed runs per model and thread count: at least MIN, then until MAX or the time budget. */
const MIN_RUNS = Number(process.env.BENCH_CONVERT_MIN_RUNS ?? 30);
const MAX_RUNS = Number(process.env.BENCH_CONVERT_MAX_RUNS ?? 300);
const RUN_SECONDS = Number(process.env.BENCH_CONVERT_RUN_SECONDS ?? 4);
/** Session-create repetitions per model (each side), after one discarded round. */
const CREATE_REPS = Number(process.env.BENCH_CONVERT_CREATE_REPS ?? 7);
/** Set to 0 to skip the ~200 MB child. */
const WITH_200 = process.env.BENCH_CONVERT_200 !== '0';
const CHILD = process.env.BENCH_CONVERT_CHILD;
const RESULT_PREFIX = 'CONVERT_RESULT ';
/** Lambda's 3,008 MB function size (Lambda's MB are MiB). */
const LAMBDA_3008 = 3008 * MIB;

type Feeds = Record<string, Tensor>;

function progress(line: string): void {
  process.stderr.write(`  [convert] ${line}\n`);
}

function status(): { rss: number; hwm: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

function serving(threads: number): InferenceSession.SessionOptions {
  return sessionOptions({ intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
}

function opCounts(bytes: Uint8Array): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of OnnxModel.decode(bytes).graph().nodes()) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Child: one conversion (or only the modules) in a fresh process, peak memory from VmHWM.
// ---------------------------------------------------------------------------------------------

interface ChildEvent {
  what: string;
  at: number;
  rss: number;
  hwm: number;
  arrayBuffers: number;
}

interface ChildResult {
  mode: string;
  modelBytes: number;
  start: { rss: number; hwm: number };
  afterRead?: { rss: number; hwm: number };
  validateMs?: number;
  convertMs?: number;
  timingsMs?: Record<string, number>;
  outcome?: string;
  reason?: string;
  /** Cosine per output, from the pipeline's evaluation of what it published. */
  cosines?: Record<string, number>;
  artifactBytes?: number;
  events: ChildEvent[];
  end: { rss: number; hwm: number };
}

async function child(mode: string): Promise<void> {
  const start = status();
  const result: ChildResult = { mode, modelBytes: 0, start, events: [], end: start };
  if (mode === 'session') {
    // onnxruntime alone: the upload read, one session as served (level all, 1 thread).
    const source = readFileSync(process.env.BENCH_CONVERT_FILE as string);
    result.modelBytes = source.byteLength;
    result.afterRead = status();
    const noPrepack = process.env.BENCH_CONVERT_NO_PREPACK === '1';
    const options = serving(1);
    if (noPrepack) options.extra = { ...(options.extra as Record<string, string>), 'session.disable_prepacking': '1' };
    const session = await InferenceSession.create(source, options);
    result.end = status();
    await session.release();
  }
  if (mode === 'convert') {
    const gcFirst = process.env.BENCH_CONVERT_GC === '1';
    const gc = (globalThis as { gc?: () => void }).gc;
    const t0 = performance.now();
    const note = (what: string) => {
      const s = status();
      result.events.push({ what, at: performance.now() - t0, rss: s.rss, hwm: s.hwm, arrayBuffers: process.memoryUsage().arrayBuffers });
    };
    // Every InferenceSession the pipeline makes, and its release: where the peak is reached.
    const factory = InferenceSession as unknown as { create: (...args: unknown[]) => Promise<InferenceSession> };
    const create = factory.create.bind(InferenceSession);
    let serial = 0;
    factory.create = async (...args: unknown[]) => {
      const bytes = args[0] as Uint8Array;
      const options = (args[1] ?? {}) as InferenceSession.SessionOptions;
      const label = `#${++serial} ${mib(bytes.byteLength)} level ${options.graphOptimizationLevel ?? 'default'}${options.optimizedModelFilePath ? ' +save' : ''}`;
      if (gcFirst) gc?.();
      note(`create ${label}: start`);
      const session = await create(...args);
      note(`create ${label}: done`);
      const release = session.release.bind(session);
      session.release = async () => {
        note(`release ${label}`);
        await release();
      };
      return session;
    };
    // One copy of the upload in memory, as the job holds it (ObjectStore.getBytes with its size).
    const source = readFileSync(process.env.BENCH_CONVERT_FILE as string);
    result.modelBytes = source.byteLength;
    result.afterRead = status();
    note('read');
    let started = performance.now();
    validateModel(source, 4 * 1024 * MIB);
    result.validateMs = performance.now() - started;
    note('validated');
    started = performance.now();
    const minTop1 = process.env.BENCH_CONVERT_MIN_TOP1;
    const options = minTop1 === undefined ? DEFAULT_PIPELINE_OPTIONS : { ...DEFAULT_PIPELINE_OPTIONS, gates: { ...DEFAULT_PIPELINE_OPTIONS.gates, minTop1: Number(minTop1) } };
    const out = await convertModel(source, options);
    result.convertMs = performance.now() - started;
    note('converted');
    result.timingsMs = out.timingsMs;
    result.outcome = out.outcome;
    result.reason = out.reason;
    result.cosines = Object.fromEntries(Object.entries(out.evaluation.outputs).map(([k, o]) => [k, o.cosine]));
    result.artifactBytes = out.artifact.byteLength;
  }
  if (mode !== 'session') result.end = status();
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
  process.exit(0);
}

function spawnChild(mode: string, file?: string, extraEnv: Record<string, string> = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [__filename], {
      env: { ...process.env, BENCH_CONVERT_CHILD: mode, ...(file ? { BENCH_CONVERT_FILE: file } : {}), ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code !== 0 || !line) reject(new Error(`convert child (${mode}) exited with ${code}\n${stderr}\n${stdout}`));
      else resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as ChildResult);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Parent: measurements.
// ---------------------------------------------------------------------------------------------

/** Heavy processes of other people (jest, eslint, tsc, serverless) seen while the section ran. */
function watchNeighbours(): { stop: () => string[] } {
  const seen = new Set<string>();
  const own = new Set<number>([process.pid, process.ppid]);
  const sample = () => {
    for (const entry of readdirSync('/proc')) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || own.has(pid)) continue;
      try {
        const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
        const m = /\b(jest|eslint|tsc|serverless|sls)\b/.exec(cmd);
        if (m && !cmd.includes('bench/run.mjs')) seen.add(`${m[1]} (pid ${pid})`);
      } catch {
        // gone
      }
    }
  };
  sample();
  const timer = setInterval(sample, 2000);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return [...seen];
    },
  };
}

/** Session create from bytes, then release; ms of the create. */
async function createOnce(bytes: Uint8Array, options: InferenceSession.SessionOptions): Promise<number> {
  const started = performance.now();
  const s = await InferenceSession.create(bytes, options);
  const took = performance.now() - started;
  await s.release();
  return took;
}

/** Create times of several models, interleaved (order rotated each round), one discarded round. */
/** Create times of several models, interleaved; `options` is one set for all or one per model. */
async function createTimes(models: Uint8Array[], reps: number, options: InferenceSession.SessionOptions | InferenceSession.SessionOptions[]): Promise<Summary[]> {
  const optionsOf = (j: number): InferenceSession.SessionOptions => (Array.isArray(options) ? (options[j] as InferenceSession.SessionOptions) : options);
  for (const [j, m] of models.entries()) await createOnce(m, optionsOf(j));
  const out = models.map(() => [] as number[]);
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < models.length; k++) {
      const j = (i + k) % models.length;
      (out[j] as number[]).push(await createOnce(models[j] as Uint8Array, optionsOf(j)));
    }
  }
  return out.map(summarize);
}

/** Run latency of several sessions on the same feeds, interleaved, order rotated each round. */
async function latencies(sessions: InferenceSession[], feeds: Feeds): Promise<Summary[]> {
  for (let i = 0; i < 5; i++) for (const s of sessions) await s.run(feeds);
  const out = sessions.map(() => [] as number[]);
  const deadline = performance.now() + RUN_SECONDS * 1000;
  for (let i = 0; i < MAX_RUNS && (i < MIN_RUNS || performance.now() < deadline); i++) {
    for (let k = 0; k < sessions.length; k++) {
      const j = (i + k) % sessions.length;
      const started = performance.now();
      await (sessions[j] as InferenceSession).run(feeds);
      (out[j] as number[]).push(performance.now() - started);
    }
  }
  return out.map(summarize);
}

/** Run latency of several models at `threads`, each at its serving level (`all` unless given). */
async function latencyOf(models: Uint8Array[], feeds: Feeds, threads: number, levels: GraphOptimizationLevel[] = []): Promise<Summary[]> {
  const sessions: InferenceSession[] = [];
  try {
    for (const [j, m] of models.entries()) sessions.push(await InferenceSession.create(m, { ...serving(threads), graphOptimizationLevel: levels[j] ?? 'all' }));
    return await latencies(sessions, feeds);
  } finally {
    for (const s of sessions) await s.release();
  }
}

async function outputsOf(bytes: Uint8Array, feeds: Feeds): Promise<Record<string, Float32Array>> {
  const s = await InferenceSession.create(bytes, serving(1));
  try {
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await s.release();
  }
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += (a[i] as number) * (b[i] as number);
    na += (a[i] as number) ** 2;
    nb += (b[i] as number) ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

/** The graph onnxruntime runs: the model optimized with `options`, saved and read back. */
async function runtimeGraph(bytes: Uint8Array, options: InferenceSession.SessionOptions): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'convert-bench-'));
  try {
    const path = join(dir, 'optimized.onnx');
    const s = await InferenceSession.create(bytes, { ...options, optimizedModelFilePath: path });
    await s.release();
    return new Uint8Array(readFileSync(path));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface OpProfile {
  runs: number;
  runMs: number;
  byOp: Map<string, number>;
}

/** onnxruntime's own profiler: kernel time per op type, ms per run (runs at serving options). */
async function profile(bytes: Uint8Array, feeds: Feeds, runs: number): Promise<OpProfile> {
  const dir = mkdtempSync(join(tmpdir(), 'convert-prof-'));
  try {
    const s = await InferenceSession.create(bytes, { ...serving(1), enableProfiling: true, profileFilePrefix: join(dir, 'p') });
    for (let i = 0; i < runs; i++) await s.run(feeds);
    s.endProfiling();
    await s.release();
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('no profile written');
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
    const runEvents = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
    const byOp = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const op = e.args?.op_name ?? '?';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000 / runEvents.length);
    }
    const runMs = runEvents.reduce((a, e) => a + e.dur, 0) / 1000 / runEvents.length;
    return { runs: runEvents.length, runMs, byOp };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Case {
  key: string;
  title: string;
  source: Uint8Array;
  options: PipelineOptions;
  /** Feeds for the latency runs; generated as the evaluation does when absent. */
  feeds?: Feeds;
}

interface CaseResult {
  c: Case;
  result: PipelineResult;
  validateMs: number;
  convertMs: number;
  feeds: Feeds;
  create: [Summary, Summary];
  latency1: [Summary, Summary];
  latency2: [Summary, Summary];
}

async function runCase(c: Case): Promise<CaseResult> {
  let started = performance.now();
  validateModel(c.source, 4 * 1024 * MIB);
  const validateMs = performance.now() - started;
  started = performance.now();
  const result = await convertModel(c.source, c.options);
  const convertMs = performance.now() - started;
  const artifact = result.artifact;

  let feeds = c.feeds;
  if (!feeds) {
    const s = await InferenceSession.create(c.source, serving(1));
    const [generated] = generateSamples(s, OnnxModel.decode(c.source), { ...c.options.evaluate, sampleCount: 1 });
    if (!generated) throw new Error(`${c.key}: no sample generated`);
    feeds = generated;
    await s.release();
  }
  // Each as the service would serve it (ORT_GRAPH_OPTIMIZATION_LEVEL=auto): the raw upload at
  // level all, the published artifact at the level its conversion recorded.
  const levels: GraphOptimizationLevel[] = ['all', result.optimization.servingLevel];
  const create = (await createTimes([c.source, artifact], CREATE_REPS, levels.map((l) => ({ ...serving(1), graphOptimizationLevel: l })))) as [Summary, Summary];
  const latency1 = (await latencyOf([c.source, artifact], feeds, 1, levels)) as [Summary, Summary];
  const latency2 = (await latencyOf([c.source, artifact], feeds, 2, levels)) as [Summary, Summary];
  progress(
    `${c.key}: ${result.outcome}, ${mib(c.source.byteLength)} -> ${mib(artifact.byteLength)}, convert ${ms(convertMs)} ms, ` +
      `latency 1T ${ms(latency1[0].median)} -> ${ms(latency1[1].median)} ms (n=${latency1[0].n})`,
  );
  return { c, result, validateMs, convertMs, feeds, create, latency1, latency2 };
}

function withEvaluate(evaluate: Partial<PipelineOptions['evaluate']>, rest: Partial<PipelineOptions> = {}): PipelineOptions {
  return { ...DEFAULT_PIPELINE_OPTIONS, ...rest, evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, ...evaluate } };
}

function sileroFeeds(): Feeds {
  // As test/integration/convert.test.ts: 576 samples of a sine, zero state, 16 kHz.
  return {
    input: new Tensor('float32', Float32Array.from({ length: 576 }, (_, i) => Math.sin(i / 5) * 0.3), [1, 576]),
    state: new Tensor('float32', new Float32Array(256), [2, 1, 128]),
    sr: new Tensor('int64', BigInt64Array.from([16000n]), []),
  };
}

const DTYPE_NAMES: Record<number, string> = { 1: 'FLOAT', 2: 'UINT8', 3: 'INT8', 6: 'INT32', 7: 'INT64', 10: 'FLOAT16', 11: 'DOUBLE' };

/** Stored bytes of a model's main-graph initializers by datatype, and the largest float ones. */
function initializerBreakdown(bytes: Uint8Array): { byType: [string, number, number][]; floats: [string, string, number][] } {
  const byType = new Map<string, [number, number]>();
  const floats: [string, string, number][] = [];
  for (const t of OnnxModel.decode(bytes).graph().initializers()) {
    const type = DTYPE_NAMES[t.dataType] ?? `#${t.dataType}`;
    const [n, b] = byType.get(type) ?? [0, 0];
    byType.set(type, [n + 1, b + t.storedBytes]);
    if (t.dataType === DATA_TYPE.FLOAT) floats.push([t.name, `[${t.dims.join(',')}]`, t.storedBytes]);
  }
  floats.sort((a, b) => b[2] - a[2]);
  return { byType: [...byType].map(([k, [n, b]]) => [k, n, b] as [string, number, number]).sort((a, b) => b[2] - a[2]), floats };
}

function pctOf(part: number, whole: number): string {
  return `${((part / whole) * 100).toFixed(1)}%`;
}

async function main(): Promise<void> {
  const sectionStarted = performance.now();
  const neighbours = watchNeighbours();
  const bert = bertEncoderModel();
  const silero = sileroVadModel();
  const cases: Case[] = [
    { key: 'bert', title: 'bertEncoderModel() (vocab 8000, hidden 256, 4 layers), seq 128 batch 1', source: bert, options: withEvaluate({ dynamicDims: { first: 1, other: 128 } }) },
    { key: 'dense', title: 'denseStackModel(1024, 8), x[1,1024]', source: denseStackModel(1024, 8), options: DEFAULT_PIPELINE_OPTIONS },
    { key: 'convnet', title: 'convNetModel(), image[1,1,8,8]', source: convNetModel(), options: DEFAULT_PIPELINE_OPTIONS },
    { key: 'convstack', title: 'convStackModel(128, 6), image[1,3,32,32]', source: convStackModel(128, 6), options: DEFAULT_PIPELINE_OPTIONS },
    { key: 'mlp', title: 'mlpModel(), x[1,4]', source: mlpModel(), options: DEFAULT_PIPELINE_OPTIONS },
    {
      key: 'silero',
      title: 'Silero VAD v5 (16k, op15), fp16, minElements 1024, sample inputs',
      source: silero,
      options: withEvaluate({ samples: [sileroFeeds()] }, { mode: 'fp16', minElements: 1024 }),
      feeds: sileroFeeds(),
    },
  ];

  const results: CaseResult[] = [];
  for (const c of cases) results.push(await runCase(c));
  const b = results[0] as CaseResult;

  // --- BERT diagnostics ---------------------------------------------------------------------
  progress('bert: diagnostics');
  const quantizedModel = OnnxModel.decode(bert);
  quantizeModel(quantizedModel, { ...DEFAULT_PIPELINE_OPTIONS, mode: 'int8-dynamic' });
  const quantized = quantizedModel.encode();
  const offline = async (level: 'extended' | 'all') => runtimeGraph(quantized, { graphOptimizationLevel: level, intraOpNumThreads: 1, logSeverityLevel: 3 });
  const extended = await offline('extended');
  const all = await offline('all');
  const levelModels = [quantized, extended, all];
  const levelNames = ['quantized, not optimized offline', 'offline `extended` (the pipeline\'s level)', 'offline `all`'];
  const levelCreate = await createTimes(levelModels, CREATE_REPS, serving(1));
  const levelLat1 = await latencyOf(levelModels, b.feeds, 1);
  const levelLat2 = await latencyOf(levelModels, b.feeds, 2);
  const reference = await outputsOf(bert, b.feeds);
  const levelCos: number[] = [];
  for (const m of levelModels) levelCos.push(cosine(reference.pooled as Float32Array, (await outputsOf(m, b.feeds)).pooled as Float32Array));

  const graphs: [string, Uint8Array][] = [
    ['fp32 upload, runtime graph (level all)', await runtimeGraph(bert, serving(1))],
    ['published artifact (file)', b.result.artifact],
    ['published artifact, runtime graph (level all)', await runtimeGraph(b.result.artifact, serving(1))],
    ['offline `all` artifact (file)', all],
  ];
  const counts = graphs.map(([, g]) => opCounts(g));
  const prof = [await profile(bert, b.feeds, 40), await profile(b.result.artifact, b.feeds, 40)] as const;
  const breakdown = initializerBreakdown(b.result.artifact);

  // The published artifact is already optimized offline: what each serving level costs and buys.
  const servedLevels = ['disabled', 'basic', 'extended', 'all'] as const;
  const servedOptions = servedLevels.map((level) => ({ ...serving(1), graphOptimizationLevel: level }));
  const servedCreate: Summary[] = [];
  for (let i = 0; i < servedLevels.length; i++) {
    const [raw, published] = await createTimes([bert, b.result.artifact], CREATE_REPS, servedOptions[i] as InferenceSession.SessionOptions);
    servedCreate.push(raw as Summary, published as Summary);
  }
  const servedLatency: Summary[] = [];
  {
    const sessions: InferenceSession[] = [];
    try {
      for (const o of servedOptions) sessions.push(await InferenceSession.create(b.result.artifact, o));
      servedLatency.push(...(await latencies(sessions, b.feeds)));
    } finally {
      for (const s of sessions) await s.release();
    }
  }

  // Width: the same encoder with BERT-base's hidden size (768, 12 heads), 2 layers, seq 128.
  progress('bert: hidden 768 variant');
  const wide = bertEncoderModel({ hidden: 768, heads: 12, layers: 2 });
  const wideResult = await convertModel(wide, b.c.options);
  const wideLat1 = await latencyOf([wide, wideResult.artifact], b.feeds, 1);
  const wideLat2 = await latencyOf([wide, wideResult.artifact], b.feeds, 2);

  // GELU as the generator writes it (x * 1/sqrt2) and as PyTorch exports it (x / sqrt2).
  const geluOps = async (form: 'Mul' | 'Div') => {
    const g = geluModel(form, form === 'Div' ? Math.SQRT2 : Math.SQRT1_2, [1, 128, 1024]);
    return [...opCounts(await runtimeGraph(g, serving(1)))].map(([op, n]) => `${op} ${n}`).join(', ');
  };
  const gelu = { mul: await geluOps('Mul'), div: await geluOps('Div') };

  // --- Large models in fresh children --------------------------------------------------------
  const dir = mkdtempSync(join(tmpdir(), 'convert-large-'));
  const large: { key: string; title: string; bytes: number; run: ChildResult; session?: ChildResult; noPrepack?: ChildResult; gcRun?: ChildResult; int8?: ChildResult }[] = [];
  let baseline: ChildResult[] = [];
  try {
    baseline = [await spawnChild('baseline'), await spawnChild('baseline')];
    const specs: { key: string; title: string; make: () => Uint8Array }[] = [
      {
        key: 'bert-100',
        title: 'bertEncoderModel({vocab 30522, hidden 384, 8 layers, 12 heads, ffn 1536})',
        make: () => bertEncoderModel({ vocab: 30522, hidden: 384, layers: 8, heads: 12, ffn: 1536 }),
      },
      { key: 'dense-100', title: 'denseStackModel(1024, 24)', make: () => denseStackModel(1024, 24) },
    ];
    if (WITH_200) {
      specs.push({
        key: 'bert-200',
        title: 'bertEncoderModel({vocab 30522, hidden 384, 22 layers, 12 heads, ffn 1536})',
        make: () => bertEncoderModel({ vocab: 30522, hidden: 384, layers: 22, heads: 12, ffn: 1536 }),
      });
    }
    for (const spec of specs) {
      const file = join(dir, `${spec.key}.onnx`);
      let bytes = 0;
      {
        const model = spec.make();
        bytes = model.byteLength;
        writeFileSync(file, model);
      }
      (globalThis as { gc?: () => void }).gc?.();
      const run = await spawnChild('convert', file);
      progress(`${spec.key}: ${mib(bytes)}, validate + convert ${ms((run.validateMs ?? 0) + (run.convertMs ?? 0))} ms, peak ${mib(run.end.hwm)}`);
      const entry: (typeof large)[number] = { key: spec.key, title: spec.title, bytes, run };
      if (spec.key === 'bert-100') {
        // What-ifs: onnxruntime alone (one serving session), and the conversion with a GC before every create.
        entry.session = await spawnChild('session', file);
        entry.noPrepack = await spawnChild('session', file, { BENCH_CONVERT_NO_PREPACK: '1' });
        entry.gcRun = await spawnChild('convert', file, { BENCH_CONVERT_GC: '1' });
      }
      if (run.outcome === 'float-fallback') {
        // What-if: the int8 path carried through (top-1 gate off), for its time and memory.
        entry.int8 = await spawnChild('convert', file, { BENCH_CONVERT_MIN_TOP1: '0' });
        progress(`${spec.key} int8 forced: ${entry.int8.outcome}, validate + convert ${ms((entry.int8.validateMs ?? 0) + (entry.int8.convertMs ?? 0))} ms, peak ${mib(entry.int8.end.hwm)}`);
      }
      rmSync(file, { force: true });
      large.push(entry);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  // --- Report --------------------------------------------------------------------------------
  console.log('## 4. Conversion: convertModel per test model (DEFAULT_PIPELINE_OPTIONS, int8-dynamic unless said)');
  console.log('');
  console.log(
    `Latency: medians of interleaved runs (at least ${MIN_RUNS}, up to ${MAX_RUNS} or ${RUN_SECONDS} s each), sessions as served ` +
      `(\`sessionOptions\`, level all, spinning off), same feeds for both. Session create: from bytes, 1 thread, ` +
      `${CREATE_REPS} interleaved repetitions after one discarded round, median. Conversion: validateModel + convertModel wall time.`,
  );
  console.log('');
  console.log(table(
    ['model', 'outcome', 'fp32 bytes', 'converted bytes', 'converted / fp32', 'compression', 'rewritten'],
    results.map((r) => [
      `${r.c.key}: ${r.c.title}`,
      r.result.outcome,
      r.c.source.byteLength,
      r.result.artifact.byteLength,
      pctOf(r.result.artifact.byteLength, r.c.source.byteLength),
      `${(((r.c.source.byteLength - r.result.artifact.byteLength) / r.c.source.byteLength) * 100).toFixed(1)}%`,
      `${r.result.quantization.mode} ${JSON.stringify(r.result.quantization.rewritten)}${r.result.optimization.kept ? ', optimized graph kept' : ', optimized graph NOT kept'}`,
    ]),
  ));
  console.log('');
  console.log(table(
    ['model', '1T fp32 ms', '1T conv ms', '1T speedup', '1T conv/fp32', '2T fp32 ms', '2T conv ms', '2T speedup', 'runs', 'create raw ms', 'create published ms', 'create ratio', 'validate ms', 'convert ms', 'validate+convert ms'],
    results.map((r) => [
      r.c.key,
      ms(r.latency1[0].median),
      ms(r.latency1[1].median),
      ratio(r.latency1[0].median / r.latency1[1].median),
      ratio(r.latency1[1].median / r.latency1[0].median),
      ms(r.latency2[0].median),
      ms(r.latency2[1].median),
      ratio(r.latency2[0].median / r.latency2[1].median),
      `${r.latency1[0].n}/${r.latency2[0].n}`,
      ms(r.create[0].median),
      ms(r.create[1].median),
      ratio(r.create[1].median / r.create[0].median),
      ms(r.validateMs),
      ms(r.convertMs),
      ms(r.validateMs + r.convertMs),
    ]),
  ));
  console.log('');
  console.log('Accuracy per output, from the pipeline\'s evaluation (what the gates saw):');
  console.log('');
  console.log(table(
    ['model', 'output', 'cosine', 'top-1', 'max abs err', 'mean abs err', 'gates'],
    results.flatMap((r) =>
      Object.entries(r.result.evaluation.outputs).map(([name, o]) => [
        r.c.key,
        name,
        o.cosine.toFixed(6),
        o.top1Agreement === undefined ? '-' : `${(o.top1Agreement * 100).toFixed(1)}%`,
        o.maxAbsError.toExponential(2),
        o.meanAbsError.toExponential(2),
        r.result.gates.passed ? 'pass' : `fail: ${r.result.gates.failures.join('; ')}`,
      ]),
    ),
  ));
  console.log('');
  console.log('Pipeline step timings (ms, `timingsMs`), and the pipeline\'s own quick figures (15 runs, one create each):');
  console.log('');
  console.log(table(
    ['model', 'quantize', 'optimize', 'evaluate', 'eval latency fp32 / conv ms', 'eval create fp32 / conv ms'],
    results.map((r) => [
      r.c.key,
      ms(r.result.timingsMs.quantize ?? NaN),
      ms(r.result.timingsMs.optimize ?? NaN),
      ms(r.result.timingsMs.evaluate ?? NaN),
      `${ms(r.result.evaluation.latencyMs.original)} / ${ms(r.result.evaluation.latencyMs.converted)}`,
      `${ms(r.result.evaluation.sessionCreateMs.original)} / ${ms(r.result.evaluation.sessionCreateMs.converted)}`,
    ]),
  ));
  console.log('');

  console.log('### 4b. Large models: validate + convert in a fresh child process (model read from a file, as the job holds the upload in memory)');
  console.log('');
  const base = summarize(baseline.map((r) => r.end.hwm)).median;
  console.log(`Baseline child (the bundle's modules loaded, nothing else): peak RSS ${mib(base)} (median of ${baseline.length}).`);
  console.log('');
  console.log(table(
    ['model', 'fp32 bytes', 'artifact bytes', 'outcome', 'validate ms', 'convert ms', 'validate+convert s', 'quantize / optimize / evaluate ms', 'peak RSS', 'peak - baseline', '(peak - baseline) / model bytes'],
    large.map((l) => [
      `${l.key}: ${l.title}`,
      l.bytes,
      l.run.artifactBytes ?? '-',
      l.run.outcome ?? '-',
      ms(l.run.validateMs ?? NaN),
      ms(l.run.convertMs ?? NaN),
      (((l.run.validateMs ?? 0) + (l.run.convertMs ?? 0)) / 1000).toFixed(2),
      ['quantize', 'optimize', 'evaluate'].map((k) => ms(l.run.timingsMs?.[k] ?? NaN)).join(' / '),
      mib(l.run.end.hwm),
      mib(l.run.end.hwm - base),
      ratio((l.run.end.hwm - base) / l.bytes),
    ]),
  ));
  console.log('');
  for (const l of large) if (l.run.reason) console.log(`${l.key}: ${l.run.reason}.`);
  console.log('');
  const what = large.filter((l) => l.session || l.int8);
  if (what.length) {
    const row = (label: string, r: ChildResult, bytes: number, hwm = r.end.hwm) => [label, mib(hwm), mib(hwm - base), ratio((hwm - base) / bytes)];
    console.log(table(
      ['what-if (fresh child each)', 'peak RSS', 'peak - baseline', '/ model bytes'],
      what.flatMap((l) => l.int8 ? [
        row(`${l.key}: conversion as is (above, ${l.run.outcome})`, l.run, l.bytes),
        row(
          `${l.key}: int8 path carried through (top-1 gate off: ${l.int8.outcome}, ${l.int8.artifactBytes} bytes, ` +
            `validate + convert ${(((l.int8.validateMs ?? 0) + (l.int8.convertMs ?? 0)) / 1000).toFixed(2)} s, ` +
            `cosine ${Object.entries(l.int8.cosines ?? {}).map(([k, c]) => `${k} ${c.toFixed(6)}`).join(', ')})`,
          l.int8,
          l.bytes,
        ),
      ] : [
        [`${l.key}: conversion as is (above)`, mib(l.run.end.hwm), mib(l.run.end.hwm - base), ratio((l.run.end.hwm - base) / l.bytes)],
        [`${l.key}: conversion with a forced GC before every InferenceSession.create`, mib((l.gcRun as ChildResult).end.hwm), mib((l.gcRun as ChildResult).end.hwm - base), ratio(((l.gcRun as ChildResult).end.hwm - base) / l.bytes)],
        [`${l.key}: onnxruntime alone (read the file, one session at serving options, no conversion)`, mib((l.session as ChildResult).end.hwm), mib((l.session as ChildResult).end.hwm - base), ratio(((l.session as ChildResult).end.hwm - base) / l.bytes)],
        row(`${l.key}: the same with session.disable_prepacking`, l.noPrepack as ChildResult, l.bytes),
        [`${l.key}: the file read alone`, mib((l.session as ChildResult).afterRead?.hwm ?? NaN), mib(((l.session as ChildResult).afterRead?.hwm ?? NaN) - base), ratio((((l.session as ChildResult).afterRead?.hwm ?? NaN) - base) / l.bytes)],
      ]),
    ));
    console.log('');
  }
  const first = large[0];
  if (first) {
    console.log(`Where ${first.key}'s peak is reached: InferenceSession.create/release calls of the pipeline (those where the peak rose, and milestones), RSS and peak RSS (VmHWM) at that moment, minus the baseline, as multiples of the model's ${mib(first.bytes)}:`);
    console.log('');
    console.log(table(
      ['ms', 'event', 'RSS - baseline', 'x model', 'peak - baseline', 'x model', 'JS ArrayBuffers'],
      first.run.events.filter((e, i, all) => !e.what.startsWith('create') && !e.what.startsWith('release') ? true : e.hwm - (all[i - 1]?.hwm ?? 0) >= 2 * MIB || (all[i + 1]?.hwm ?? 0) - e.hwm >= 2 * MIB).map((e) => [
        ms(e.at),
        e.what,
        mib(e.rss - base),
        ratio((e.rss - base) / first.bytes),
        mib(e.hwm - base),
        ratio((e.hwm - base) / first.bytes),
        mib(e.arrayBuffers),
      ]),
    ));
    console.log('');
  }

  console.log('### 4c. BERT-shaped encoder: where the bytes and the time go');
  console.log('');
  console.log(`Published artifact, ${b.result.artifact.byteLength} bytes; main-graph initializers by datatype:`);
  console.log('');
  console.log(table(
    ['datatype', 'tensors', 'bytes', 'share of artifact'],
    breakdown.byType.map(([t, n, bytes]) => [t, n, bytes, pctOf(bytes, b.result.artifact.byteLength)]),
  ));
  console.log('');
  console.log('Largest float initializers left in the artifact:');
  console.log('');
  console.log(table(['name', 'dims', 'bytes', 'share of artifact'], breakdown.floats.slice(0, 6).map(([n, d, bytes]) => [n, d, bytes, pctOf(bytes, b.result.artifact.byteLength)])));
  console.log('');
  console.log(`Kernel time per op type, onnxruntime profiler, 1 thread, level all, seq 128 (ms per run, mean of ${prof[0].runs} runs):`);
  console.log('');
  const ops = [...new Set([...prof[0].byOp.keys(), ...prof[1].byOp.keys()])].sort((x, y) => (prof[0].byOp.get(y) ?? 0) + (prof[1].byOp.get(y) ?? 0) - (prof[0].byOp.get(x) ?? 0) - (prof[1].byOp.get(x) ?? 0));
  const kernelSum = (p: OpProfile) => [...p.byOp.values()].reduce((a, v) => a + v, 0);
  console.log(table(
    ['op type', 'fp32 ms', 'fp32 share', 'converted ms', 'converted share'],
    [
      ...ops.map((op) => [op, ms(prof[0].byOp.get(op) ?? 0), pctOf(prof[0].byOp.get(op) ?? 0, prof[0].runMs), ms(prof[1].byOp.get(op) ?? 0), pctOf(prof[1].byOp.get(op) ?? 0, prof[1].runMs)]),
      ['(kernels, total)', ms(kernelSum(prof[0])), pctOf(kernelSum(prof[0]), prof[0].runMs), ms(kernelSum(prof[1])), pctOf(kernelSum(prof[1]), prof[1].runMs)],
      ['(model_run)', ms(prof[0].runMs), '100%', ms(prof[1].runMs), '100%'],
    ],
  ));
  console.log('');
  console.log('Op types: of the files, and of the graphs onnxruntime actually runs (saved with optimizedModelFilePath at the serving options):');
  console.log('');
  const allOps = [...new Set(counts.flatMap((c) => [...c.keys()]))].sort();
  console.log(table(['op type', ...graphs.map(([n]) => n)], allOps.map((op) => [op, ...counts.map((c) => c.get(op) ?? 0)])));
  console.log('');
  console.log('Published artifact (already optimized offline at `extended`) served at each graph optimization level, against the raw upload at the same level (1 thread; create medians, interleaved latency medians):');
  console.log('');
  console.log(table(
    ['serving level', 'raw upload create ms', 'published create ms', 'create ratio', 'published 1T latency ms'],
    servedLevels.map((level, i) => {
      const raw = servedCreate[2 * i] as Summary;
      const pub = servedCreate[2 * i + 1] as Summary;
      return [level, ms(raw.median), ms(pub.median), ratio(pub.median / raw.median), ms((servedLatency[i] as Summary).median)];
    }),
  ));
  console.log('');
  console.log(`Width: the same encoder at hidden 768 (12 heads, 2 layers, vocab 8000), seq 128: ${wide.byteLength} -> ${wideResult.artifact.byteLength} bytes ` +
    `(${pctOf(wideResult.artifact.byteLength, wide.byteLength)}), latency 1T ${ms((wideLat1[0] as Summary).median)} -> ${ms((wideLat1[1] as Summary).median)} ms ` +
    `(${ratio((wideLat1[1] as Summary).median / (wideLat1[0] as Summary).median)}), 2T ${ms((wideLat2[0] as Summary).median)} -> ${ms((wideLat2[1] as Summary).median)} ms ` +
    `(${ratio((wideLat2[1] as Summary).median / (wideLat2[0] as Summary).median)}), pooled cosine ${(wideResult.evaluation.outputs.pooled?.cosine ?? NaN).toFixed(6)}.`);
  console.log('');
  console.log(`GELU fusion (onnxruntime runtime graph, level all): as the generator writes it, x * (1/sqrt2): ${gelu.mul}; as PyTorch exports it, x / sqrt2: ${gelu.div}.`);
  console.log('');
  console.log('### 4d. BERT-shaped encoder: offline optimization level of the quantized model (seq 128)');
  console.log('');
  console.log(table(
    ['artifact', 'bytes', 'create median ms', '1T median ms', '2T median ms', 'pooled cosine vs fp32', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'MatMulInteger', 'DynamicQuantizeLinear'],
    levelModels.map((m, i) => {
      const c = opCounts(m);
      return [
        levelNames[i] as string,
        m.byteLength,
        ms((levelCreate[i] as Summary).median),
        ms((levelLat1[i] as Summary).median),
        ms((levelLat2[i] as Summary).median),
        (levelCos[i] as number).toFixed(6),
        c.get('DynamicQuantizeMatMul') ?? 0,
        c.get('MatMulIntegerToFloat') ?? 0,
        c.get('MatMulInteger') ?? 0,
        c.get('DynamicQuantizeLinear') ?? 0,
      ];
    }),
  ));
  console.log('');

  // --- Targets -------------------------------------------------------------------------------
  const sizeRatio = b.result.artifact.byteLength / b.c.source.byteLength;
  const lat1 = b.latency1[1].median / b.latency1[0].median;
  const lat2 = b.latency2[1].median / b.latency2[0].median;
  const pooled = b.result.evaluation.outputs.pooled?.cosine ?? NaN;
  const createRatio = b.create[1].median / b.create[0].median;
  const rows: (string | number)[][] = [
    ['BERT size <= 27% of fp32', pctOf(b.result.artifact.byteLength, b.c.source.byteLength), verdict(sizeRatio <= 0.27)],
    ['BERT latency <= 0.4x fp32 (1 thread)', `${ratio(lat1)} (${ms(b.latency1[1].median)} / ${ms(b.latency1[0].median)} ms)`, verdict(lat1 <= 0.4)],
    ['BERT latency <= 0.4x fp32 (2 threads)', `${ratio(lat2)} (${ms(b.latency2[1].median)} / ${ms(b.latency2[0].median)} ms)`, verdict(lat2 <= 0.4)],
    ['BERT cosine >= 0.999 on pooled', pooled.toFixed(6), verdict(pooled >= 0.999)],
    ['BERT published create <= 0.4x raw upload', `${ratio(createRatio)} (${ms(b.create[1].median)} / ${ms(b.create[0].median)} ms)`, verdict(createRatio <= 0.4)],
  ];
  for (const l of large) {
    if (l.int8) rows.push([`${l.key}, int8 path forced (top-1 gate off): peak RSS within a 3,008 MB function`, `${mib(l.int8.end.hwm)} (${ratio((l.int8.end.hwm - base) / l.bytes)} above baseline)`, verdict(l.int8.end.hwm <= LAMBDA_3008)]);
    const seconds = ((l.run.validateMs ?? 0) + (l.run.convertMs ?? 0)) / 1000;
    const over = l.run.end.hwm - base;
    if (l.bytes < 150 * MB) rows.push([`${l.key} (${mib(l.bytes)}): validate + convert <= 60 s`, `${seconds.toFixed(2)} s`, verdict(seconds <= 60)]);
    else rows.push([`${l.key} (${mib(l.bytes)}): validate + convert (the 60 s target is for 100 MB)`, `${seconds.toFixed(2)} s (${l.run.outcome})`, 'info']);
    rows.push([`${l.key}: conversion holds <= 3x the model's bytes (peak - baseline)`, `${ratio(over / l.bytes)} (${mib(over)})`, verdict(over <= 3 * l.bytes)]);
    if (l.bytes >= 150 * MB) rows.push([`${l.key} (${mib(l.bytes)}): peak RSS within a 3,008 MB function`, `${mib(l.run.end.hwm)}`, verdict(l.run.end.hwm <= LAMBDA_3008)]);
  }
  console.log('### 4e. Targets (information only)');
  console.log('');
  console.log(table(['target', 'measured', 'verdict'], rows));
  console.log('');
  const others = neighbours.stop();
  console.log(`Section wall time ${((performance.now() - sectionStarted) / 1000).toFixed(1)} s. Other heavy processes seen while it ran: ${others.length ? others.join(', ') : 'none'}.`);
  console.log('');
}

if (CHILD) {
  child(CHILD).catch((err: unknown) => {
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
