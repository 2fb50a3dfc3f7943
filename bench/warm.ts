/**
 * Section 1: warm overhead. The whole Lambda handler (API Gateway v2 event in, response out)
 * against a bare `session.run` on the same feeds, with a session created with the service's own
 * options (`sessionOptions`, one intra-op thread for both), interleaved in one process.
 * Timing is reported, never asserted.
 */
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { buildInferHandler } from '../handlers/http/infer-handler';
import { createObservability } from '../handlers/shared/observability';
import { decodeOipRequest, encodeOipResponse } from '../lib/protocol/oip';
import { Registry } from '../lib/registry/registry';
import { ModelSession, servingLevel, sessionOptions } from '../lib/runtime/model-session';
import { SessionCache } from '../lib/runtime/session-cache';
import { createInferenceApp, type InferenceApp } from '../lib/service/app';
import { publishModel, testConfig } from '../test/helpers/app';
import { httpEvent, lambdaContext } from '../test/helpers/events';
import { startLocalS3, type LocalS3 } from '../test/helpers/local-s3';
import { bertEncoderModel, convStackModel, denseStackModel, mlpModel, prng, scaleModel } from '../test/helpers/models';
import { mib, ms, pct, ratio, summarize, table, verdict, type Summary } from './lib/stats';

const MIB = 1024 * 1024;
/** Width and depth of the 5-20 ms model: batch-1 matmuls are memory-bound, so depth sets the time. */
const DENSE_WIDTH = Number(process.env.BENCH_DENSE_WIDTH ?? 1024);
const DENSE_LAYERS = Number(process.env.BENCH_DENSE_LAYERS ?? 40);
// 128 channels x 6 layers of 3x3 conv on 32x32: about 8 ms a run here, weights 3.5 MiB.
const CONV_CHANNELS = Number(process.env.BENCH_CONV_CHANNELS ?? 128);
const CONV_LAYERS = Number(process.env.BENCH_CONV_LAYERS ?? 6);
const LARGE_N = 1_048_576;
/** The large-input app's body limit: a 1M-float JSON body is over the default 6 MiB. */
const LARGE_MAX_BODY = 64 * MIB;

interface HandlerResult {
  statusCode: number;
  body: string;
}

/** Values a client would send: uniform in [-1, 1), six decimals. */
function inputValues(n: number, seed: number): number[] {
  const rand = prng(seed);
  return Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 1e6) / 1e6);
}

async function timeBudget<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const out = await fn();
  process.stderr.write(`  [warm] ${label}: ${ms(performance.now() - started)} ms\n`);
  return out;
}

/**
 * Runs the measurements in turn, the order rotated every iteration so none always runs right
 * after the same other one, after `warmup` unrecorded rounds. Stops at `iterations` or
 * `maxSeconds`.
 */
async function interleave(fns: (() => Promise<number>)[], warmup: number, iterations: number, maxSeconds: number): Promise<number[][]> {
  for (let i = 0; i < warmup; i++) for (const fn of fns) await fn();
  const out = fns.map(() => [] as number[]);
  const deadline = performance.now() + maxSeconds * 1000;
  for (let i = 0; i < iterations && (i < 10 || performance.now() < deadline); i++) {
    for (let k = 0; k < fns.length; k++) {
      const j = (i + k) % fns.length;
      (out[j] as number[]).push(await (fns[j] as () => Promise<number>)());
    }
  }
  return out;
}

/**
 * The test app (createTestApp's wiring: testConfig, createObservability, createInferenceApp,
 * buildInferHandler), with the service's own `inferred` telemetry (its timer around
 * session.run) also recorded, so the handler's time splits into run and everything else at no
 * extra cost.
 */
function benchApp(s3: LocalS3, overrides: Record<string, string> = {}): BenchApp {
  const config = testConfig(s3, overrides);
  const obs = createObservability('bench');
  const runs: number[] = [];
  const inferred = obs.telemetry.inferred.bind(obs.telemetry);
  obs.telemetry.inferred = (event) => {
    runs.push(event.inferenceMs);
    inferred(event);
  };
  const app = createInferenceApp(config, s3.client(), obs.telemetry);
  return {
    app,
    handler: buildInferHandler(app, obs),
    runs,
    dispose: async () => {
      await app.sessions.clear();
      rmSync(config.cacheDir, { recursive: true, force: true });
    },
  };
}

interface BenchApp {
  app: InferenceApp;
  handler: ReturnType<typeof buildInferHandler>;
  /** inferenceMs of every run the service timed. */
  runs: number[];
  dispose: () => Promise<void>;
}

interface Case {
  key: string;
  title: string;
  app: BenchApp;
  model: string;
  bytes: Uint8Array;
  feeds: Record<string, Tensor>;
  body: string;
  /** Outputs the request asks for (all when absent); the bare runs fetch the same. */
  fetches?: string[];
  warmup: number;
  iterations: number;
  maxSeconds: number;
}

interface CaseResult {
  key: string;
  title: string;
  bare: Summary;
  handler: Summary;
  /** The service's own timer around session.run, inside the handler calls measured. */
  runInHandler: Summary;
  /** A bare run on the service's own session (held as a request holds it). */
  serviceSession: Summary;
  session: InferenceSession;
  bodyBytes: number;
  responseBytes: number;
}

async function runCase(c: Case): Promise<CaseResult> {
  const { config } = c.app.app;
  const session = await InferenceSession.create(
    c.bytes,
    // As the service serves these models (published without a conversion record).
    sessionOptions({ intraOpNumThreads: config.intraOpNumThreads, graphOptimizationLevel: servingLevel({}, config.graphOptimizationLevel) }),
  );
  const path = `/v2/models/${c.model}/infer`;

  // One checked call first: the model loads (not timed) and the answer matches the bare run.
  const first = (await c.app.handler(httpEvent('POST', path, { body: c.body }), lambdaContext())) as HandlerResult;
  if (first.statusCode !== 200) throw new Error(`${c.model}: handler answered ${first.statusCode}: ${first.body.slice(0, 300)}`);
  const answer = JSON.parse(first.body) as { outputs: { name: string; data: number[] }[] };
  const bare = c.fetches ? await session.run(c.feeds, c.fetches) : await session.run(c.feeds);
  for (const out of answer.outputs) {
    const expected = bare[out.name]?.data as Float32Array | undefined;
    if (!expected || expected.length !== out.data.length) throw new Error(`${c.model}: output ${out.name} has the wrong size`);
    for (let i = 0; i < expected.length; i += Math.max(1, Math.floor(expected.length / 1000))) {
      if (Math.abs((expected[i] as number) - (out.data[i] as number)) > 1e-5) throw new Error(`${c.model}: output ${out.name}[${i}] differs`);
    }
  }

  const handlerOnce = async (): Promise<number> => {
    const event = httpEvent('POST', path, { body: c.body });
    const context = lambdaContext();
    const started = performance.now();
    const res = (await c.app.handler(event, context)) as HandlerResult;
    const elapsed = performance.now() - started;
    if (res.statusCode !== 200) throw new Error(`${c.model}: handler answered ${res.statusCode}`);
    return elapsed;
  };
  const bareOnce = async (): Promise<number> => {
    const started = performance.now();
    if (c.fetches) await session.run(c.feeds, c.fetches);
    else await session.run(c.feeds);
    return performance.now() - started;
  };
  const manifest = await c.app.app.registry.resolve({ model: c.model });
  const own = await c.app.app.sessions.get(manifest);
  const outputNames = c.fetches ?? own.outputs.map((o) => o.name);
  const ownOnce = async (): Promise<number> => {
    if (!own.retain()) throw new Error('service session released');
    try {
      const started = performance.now();
      await own.run(c.feeds, outputNames);
      return performance.now() - started;
    } finally {
      await own.unretain();
    }
  };
  c.app.runs.length = 0;
  let recording = false;
  const handlerRuns: number[] = [];
  const handlerOnceRecorded = async (): Promise<number> => {
    const before = c.app.runs.length;
    const elapsed = await handlerOnce();
    if (recording) handlerRuns.push(...c.app.runs.slice(before));
    return elapsed;
  };
  const [handler, bareRuns, ownRuns] = await timeBudget(c.key, async () => {
    await interleave([handlerOnceRecorded, bareOnce, ownOnce], c.warmup, 0, 0);
    recording = true;
    return interleave([handlerOnceRecorded, bareOnce, ownOnce], 0, c.iterations, c.maxSeconds);
  }) as [number[], number[], number[]];
  return {
    key: c.key,
    title: c.title,
    bare: summarize(bareRuns),
    handler: summarize(handler),
    runInHandler: summarize(handlerRuns),
    serviceSession: summarize(ownRuns),
    session,
    bodyBytes: Buffer.byteLength(c.body),
    responseBytes: Buffer.byteLength(first.body),
  };
}

function oipBody(name: string, shape: number[], data: number[]): string {
  return JSON.stringify({ inputs: [{ name, shape, datatype: 'FP32', data }] });
}

interface CodecResult {
  codec: Summary;
  bare: Summary;
  parts: { parse: Summary; decode: Summary; encode: Summary; bareParse: Summary; bareStringify: Summary };
  encodedBytes: number;
  stringifiedBytes: number;
}

/**
 * Codec alone: JSON.parse + decodeOipRequest + encodeOipResponse (what the service does
 * around the run) against JSON.parse + JSON.stringify of a response object holding a plain
 * number array (what any JSON service would do at least).
 */
async function codecCase(t: BenchApp, model: string, body: string, results: Record<string, Tensor>, iterations: number): Promise<CodecResult> {
  const outputName = Object.keys(results)[0] as string;
  const manifest = await t.app.registry.resolve({ model });
  const modelSession = await t.app.sessions.get(manifest);
  const y = results[outputName] as Tensor;
  const plain = {
    model_name: manifest.model,
    model_version: String(manifest.version),
    outputs: [{ name: outputName, datatype: 'FP32', shape: y.dims, data: Array.from(y.data as Float32Array) }],
  };
  const codec = { total: [] as number[], parse: [] as number[], decode: [] as number[], encode: [] as number[] };
  const bare = { total: [] as number[], parse: [] as number[], stringify: [] as number[] };
  let encodedBytes = 0;
  let stringifiedBytes = 0;
  const codecOnce = (): void => {
    const t0 = performance.now();
    const parsed = JSON.parse(body) as unknown;
    const t1 = performance.now();
    const decoded = decodeOipRequest(parsed, modelSession.inputs, modelSession.outputs);
    const t2 = performance.now();
    const encoded = encodeOipResponse(manifest.model, manifest.version, decoded, results).json;
    const t3 = performance.now();
    encodedBytes = encoded.length;
    codec.total.push(t3 - t0);
    codec.parse.push(t1 - t0);
    codec.decode.push(t2 - t1);
    codec.encode.push(t3 - t2);
  };
  const bareOnce = (): void => {
    const t0 = performance.now();
    JSON.parse(body);
    const t1 = performance.now();
    const text = JSON.stringify(plain);
    const t2 = performance.now();
    stringifiedBytes = text.length;
    bare.total.push(t2 - t0);
    bare.parse.push(t1 - t0);
    bare.stringify.push(t2 - t1);
  };
  for (let i = 0; i < 2; i++) {
    codecOnce();
    bareOnce();
  }
  for (const list of [...Object.values(codec), ...Object.values(bare)]) list.length = 0;
  await timeBudget(`codec ${model}`, async () => {
    for (let i = 0; i < iterations; i++) {
      if (i % 2 === 0) {
        codecOnce();
        bareOnce();
      } else {
        bareOnce();
        codecOnce();
      }
    }
  });
  return {
    codec: summarize(codec.total),
    bare: summarize(bare.total),
    parts: {
      parse: summarize(codec.parse),
      decode: summarize(codec.decode),
      encode: summarize(codec.encode),
      bareParse: summarize(bare.parse),
      bareStringify: summarize(bare.stringify),
    },
    encodedBytes,
    stringifiedBytes,
  };
}

const STEPS = [
  'event in -> registry.resolve (middy before, route, auth, JSON.parse)',
  'registry.resolve (cached)',
  'resolve -> run (session cache, decodeOipRequest)',
  'ModelSession.run (onnxruntime)',
  'run -> result (telemetry, encodeOipResponse, unretain)',
  'result -> response (logging, metrics, middy after)',
] as const;

/**
 * A separate pass, after the measured one, with timestamps taken by wrappers around
 * Registry.resolve, SessionCache.use and ModelSession.run (removed afterwards): where the
 * handler's time goes between the event and the response, as medians of each step.
 */
async function handlerSteps(t: BenchApp, model: string, body: string, iterations: number): Promise<Summary[]> {
  const marks: Record<string, number> = {};
  const patched: [object, string, unknown][] = [];
  const mark = (target: object, method: string, name: string): void => {
    const holder = target as Record<string, (...args: unknown[]) => unknown>;
    const original = holder[method] as (...args: unknown[]) => unknown;
    patched.push([target, method, original]);
    holder[method] = function (this: unknown, ...args: unknown[]): unknown {
      marks[`${name}.start`] = performance.now();
      const out = original.apply(this, args);
      const end = () => (marks[`${name}.end`] = performance.now());
      if (out instanceof Promise) return out.finally(end);
      end();
      return out;
    };
  };
  mark(Registry.prototype, 'resolve', 'resolve');
  mark(SessionCache.prototype, 'use', 'use');
  mark(ModelSession.prototype, 'run', 'run');
  const steps = STEPS.map(() => [] as number[]);
  try {
    const path = `/v2/models/${model}/infer`;
    for (let i = 0; i < iterations; i++) {
      const event = httpEvent('POST', path, { body });
      const context = lambdaContext();
      const started = performance.now();
      const res = (await t.handler(event, context)) as HandlerResult;
      const ended = performance.now();
      if (res.statusCode !== 200) throw new Error(`${model}: handler answered ${res.statusCode}`);
      const m = (k: string) => marks[k] as number;
      const values = [
        m('resolve.start') - started,
        m('resolve.end') - m('resolve.start'),
        m('run.start') - m('resolve.end'),
        m('run.end') - m('run.start'),
        m('use.end') - m('run.end'),
        ended - m('use.end'),
      ];
      values.forEach((v, k) => (steps[k] as number[]).push(v));
    }
  } finally {
    for (const [target, method, original] of patched) (target as Record<string, unknown>)[method] = original;
  }
  return steps.map(summarize);
}

async function main(): Promise<void> {
  const s3 = await startLocalS3();
  const apps: BenchApp[] = [];
  const sessions: InferenceSession[] = [];
  try {
    const tiny = mlpModel();
    const dense = await timeBudget(`generate denseStackModel(${DENSE_WIDTH}, ${DENSE_LAYERS})`, async () =>
      denseStackModel(DENSE_WIDTH, DENSE_LAYERS),
    );
    const scale = scaleModel();
    const conv = convStackModel(CONV_CHANNELS, CONV_LAYERS);
    const text = bertEncoderModel();
    await timeBudget('publish', async () => {
      await publishModel(s3, 'text', 1, text, { label: 'stable' });
      await publishModel(s3, 'conv', 1, conv, { label: 'stable' });
      await publishModel(s3, 'tiny', 1, tiny, { label: 'stable' });
      await publishModel(s3, 'dense', 1, dense, { label: 'stable' });
      await publishModel(s3, 'scale', 1, scale, { label: 'stable' });
    });
    const std = benchApp(s3);
    const large = benchApp(s3, { MAX_BODY_BYTES: String(LARGE_MAX_BODY) });
    apps.push(std, large);

    const tinyX = inputValues(4, 11);
    const denseX = inputValues(DENSE_WIDTH, 12);
    const largeX = inputValues(LARGE_N, 13);
    const largeBody = oipBody('x', [LARGE_N], largeX);
    const denseFeeds = { x: new Tensor('float32', Float32Array.from(denseX), [1, DENSE_WIDTH]) };
    const denseBody = oipBody('x', [1, DENSE_WIDTH], denseX);
    const tinyBody = oipBody('x', [1, 4], tinyX);
    const convX = inputValues(3 * 32 * 32, 14);
    const convBody = oipBody('image', [1, 3, 32, 32], convX);

    const results: CaseResult[] = [];
    results.push(
      await runCase({
        key: '1a',
        title: 'tiny: mlpModel() x[1,4]',
        app: std,
        model: 'tiny',
        bytes: tiny,
        feeds: { x: new Tensor('float32', Float32Array.from(tinyX), [1, 4]) },
        body: tinyBody,
        warmup: 500,
        iterations: 5000,
        maxSeconds: 15,
      }),
    );
    results.push(
      await runCase({
        key: '1b',
        title: `5-20 ms, compute-bound: convStackModel(${CONV_CHANNELS}, ${CONV_LAYERS}) image[1,3,32,32], ${mib(conv.byteLength)}`,
        app: std,
        model: 'conv',
        bytes: conv,
        feeds: { image: new Tensor('float32', Float32Array.from(convX), [1, 3, 32, 32]) },
        body: convBody,
        warmup: 30,
        iterations: 600,
        maxSeconds: 15,
      }),
    );
    results.push(
      await runCase({
        key: '1b-mem',
        title: `5-20 ms, memory-bound: denseStackModel(${DENSE_WIDTH}, ${DENSE_LAYERS}) x[1,${DENSE_WIDTH}], ${mib(dense.byteLength)}`,
        app: std,
        model: 'dense',
        bytes: dense,
        feeds: denseFeeds,
        body: denseBody,
        warmup: 30,
        iterations: 600,
        maxSeconds: 15,
      }),
    );
    const largeFeeds = { x: new Tensor('float32', Float32Array.from(largeX), [LARGE_N]) };
    results.push(
      await runCase({
        key: '1c',
        title: `large input: scaleModel() x[${LARGE_N}] (MAX_BODY_BYTES raised to ${LARGE_MAX_BODY})`,
        app: large,
        model: 'scale',
        bytes: scale,
        feeds: largeFeeds,
        body: largeBody,
        warmup: 3,
        iterations: 15,
        maxSeconds: 40,
      }),
    );
    // A text model of the same speed: 128 token ids in, the pooled 256-float embedding out.
    const ids = Array.from({ length: 128 }, (_, i) => (i * 37) % 8000);
    results.push(
      await runCase({
        key: '1b-text',
        title: `5-20 ms, small request: bertEncoderModel() (fp32, ${mib(text.byteLength)}) input_ids[1,128] -> pooled[1,256]`,
        app: std,
        model: 'text',
        bytes: text,
        feeds: { input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 128]) },
        body: JSON.stringify({ inputs: [{ name: 'input_ids', shape: [1, 128], datatype: 'INT64', data: ids }], outputs: [{ name: 'pooled' }] }),
        fetches: ['pooled'],
        warmup: 30,
        iterations: 600,
        maxSeconds: 15,
      }),
    );
    for (const r of results) sessions.push(r.session);
    const largeResults = await (results[3] as CaseResult).session.run(largeFeeds);
    const codec = await codecCase(large, 'scale', largeBody, largeResults, 16);
    const denseResults = await (results[2] as CaseResult).session.run(denseFeeds);
    const denseCodec = await codecCase(std, 'dense', denseBody, denseResults, 500);
    const breakdown = await timeBudget('handler steps', async () => [
      await handlerSteps(std, 'tiny', tinyBody, 2000),
      await handlerSteps(std, 'conv', convBody, 200),
      await handlerSteps(std, 'dense', denseBody, 200),
      await handlerSteps(large, 'scale', largeBody, 6),
    ]);

    console.log('## 1. Warm overhead: whole handler vs bare session.run (same process, interleaved)');
    console.log('');
    console.log(table(
      ['case', 'model', 'n', 'bare median ms', 'bare p90 ms', 'handler median ms', 'handler p90 ms', 'added median ms', 'added median %', 'added p90 ms'],
      results.map((r) => [
        r.key,
        r.title,
        r.handler.n,
        ms(r.bare.median),
        ms(r.bare.p90),
        ms(r.handler.median),
        ms(r.handler.p90),
        ms(r.handler.median - r.bare.median),
        pct((r.handler.median - r.bare.median) / r.bare.median),
        ms(r.handler.p90 - r.bare.p90),
      ]),
    ));
    console.log('');
    console.log('Diagnostics, same iterations: the service\'s own timer around session.run inside those handler calls, the rest of ' +
      'the handler, and a bare run on the service\'s own session (the bare column above uses a second session made from the same bytes).');
    console.log('');
    console.log(table(
      ['case', 'run inside handler median ms', 'handler minus run inside (medians) ms', 'bare run, service session median ms', 'bare run, bench session median ms'],
      results.map((r) => [r.key, ms(r.runInHandler.median), ms(r.handler.median - r.runInHandler.median), ms(r.serviceSession.median), ms(r.bare.median)]),
    ));
    console.log('');
    const [a, b, bMem, c, bText] = results as [CaseResult, CaseResult, CaseResult, CaseResult, CaseResult];
    const addedA = a.handler.median - a.bare.median;
    const addedB = (b.handler.median - b.bare.median) / b.bare.median;
    const addedBOwn = (b.handler.median - b.serviceSession.median) / b.serviceSession.median;
    const addedBMem = (bMem.handler.median - bMem.serviceSession.median) / bMem.serviceSession.median;
    const addedBText = (bText.handler.median - bText.bare.median) / bText.bare.median;
    const codecRatio = codec.codec.median / codec.bare.median;
    console.log(table(
      ['target', 'measured', 'verdict (information only)'],
      [
        ['1a tiny model: added median <= 0.2 ms', `${ms(addedA)} ms`, verdict(addedA <= 0.2)],
        ['1b 5-20 ms model: added median <= 5%', `${pct(addedB)} (bare run ${ms(b.bare.median)} ms)`, verdict(addedB <= 0.05)],
        [
          '1b, diagnostic: same, bare run on the service\'s own session',
          `${pct(addedBOwn)} (bare run ${ms(b.serviceSession.median)} ms)`,
          verdict(addedBOwn <= 0.05),
        ],
        [
          '1b-mem, diagnostic: memory-bound 160 MiB model (its weights evict the caches the handler then runs in)',
          `${pct(addedBMem)} (bare run ${ms(bMem.serviceSession.median)} ms)`,
          verdict(addedBMem <= 0.05),
        ],
        [
          '1b-text, diagnostic: a 5-20 ms text encoder, 128 token ids in, 256 floats out (a 1.2 KiB request)',
          `${pct(addedBText)} (bare run ${ms(bText.bare.median)} ms)`,
          verdict(addedBText <= 0.05),
        ],
        ['1c large input: codec median <= 1.3x bare parse+stringify', ratio(codecRatio), verdict(codecRatio <= 1.3)],
      ],
    ));
    if (b.bare.median < 5 || b.bare.median > 20) {
      console.log('');
      console.log(`Note: the 1b bare run took ${ms(b.bare.median)} ms here, outside 5-20 ms; set BENCH_CONV_LAYERS to adjust.`);
    }
    console.log('');
    console.log(`1c request body ${mib(c.bodyBytes)} (${c.bodyBytes} bytes), response body ${mib(c.responseBytes)}; handler end to end ${ratio(c.handler.median / c.bare.median)} the bare run.`);
    console.log('');
    console.log('### 1c. Codec alone (same process, interleaved): 1M float32 (the 1c target), and the 1b-mem request (1,024 floats in, 1,024 out) for comparison');
    console.log('');
    const codecRow = (label: string, pick: (r: CodecResult) => Summary) => [
      label,
      ms(pick(codec).median),
      ms(pick(codec).p90),
      ms(pick(denseCodec).median),
      ms(pick(denseCodec).p90),
    ];
    console.log(table(
      ['step', '1c median ms', '1c p90 ms', '1b-mem median ms', '1b-mem p90 ms'],
      [
        codecRow('codec: JSON.parse(body)', (r) => r.parts.parse),
        codecRow('codec: decodeOipRequest', (r) => r.parts.decode),
        codecRow('codec: encodeOipResponse', (r) => r.parts.encode),
        codecRow('**codec total**', (r) => r.codec),
        codecRow('bare: JSON.parse(body)', (r) => r.parts.bareParse),
        codecRow('bare: JSON.stringify(plain response)', (r) => r.parts.bareStringify),
        codecRow('**bare total**', (r) => r.bare),
        ['**codec / bare**', ratio(codecRatio), ratio(codec.codec.p90 / codec.bare.p90), ratio(denseCodec.codec.median / denseCodec.bare.median), ratio(denseCodec.codec.p90 / denseCodec.bare.p90)],
        ['iterations', String(codec.codec.n), '', String(denseCodec.codec.n), ''],
      ],
    ));
    console.log('');
    console.log(`1c: encodeOipResponse wrote ${mib(codec.encodedBytes)}; JSON.stringify wrote ${mib(codec.stringifiedBytes)}.`);
    console.log('');
    console.log('### 1d. Where the handler time goes (separate pass with step timers, medians in ms)');
    console.log('');
    const columns = breakdown;
    console.log(table(
      ['step', '1a tiny', '1b conv', '1b-mem dense', '1c large'],
      [
        ...STEPS.map((label, k) => [label, ...columns.map((steps) => ms((steps[k] as Summary).median))]),
        ['iterations', ...columns.map((steps) => String(steps[0]?.n))],
      ],
    ));
    console.log('');
  } finally {
    for (const s of sessions) await s.release();
    for (const t of apps) await t.dispose();
    await s3.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
