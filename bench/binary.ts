/**
 * Section "binary": Triton's binary tensor data extension on a 1M-float32 input and output
 * (y = 2x), against the JSON path and the transport's own floor, in one process, interleaved.
 *
 * - codec: binary decode + encode (framing split, input tensor, output bytes, body assembly)
 *   vs the JSON codec (JSON.parse, decode, encode) on the same tensor. Target <= 0.1x.
 * - handler: the whole Lambda handler on the binary request (API Gateway v2 event, base64 body
 *   in, base64 body out) minus a bare session.run on the same feeds, vs the transport floor:
 *   base64-decoding the request body plus base64-encoding the response body. Target <= 2x.
 * - memory: peak RSS while the handler serves one 4 MiB binary request, above the warm
 *   baseline just before it (Linux: peak reset through /proc/self/clear_refs). Target <= 3x.
 * Timing is reported, never asserted.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { decodeOipRequest, encodeOipResponse } from '../lib/protocol/oip';
import { sessionOptions } from '../lib/runtime/model-session';
import { createTestApp, publishModel } from '../test/helpers/app';
import { httpEvent, lambdaContext } from '../test/helpers/events';
import { startLocalS3 } from '../test/helpers/local-s3';
import { prng, scaleModel } from '../test/helpers/models';
import { mib, ms, ratio, summarize, table, verdict } from './lib/stats';

const N = 1_048_576;
const MIB = 1024 * 1024;
const ITERATIONS = Number(process.env.BENCH_BINARY_ITERATIONS ?? 40);

/** Resident memory now and its peak since the last reset, in bytes (Linux). */
function memory(): { rss: number; peak: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  const s3 = await startLocalS3();
  const model = scaleModel();
  await publishModel(s3, 'scale', 1, model);
  // The JSON request of 1M floats is about 10 MB: this app takes it, for the codec comparison.
  const t = createTestApp(s3, { MAX_BODY_BYTES: String(64 * MIB), MAX_RESPONSE_BYTES: String(64 * MIB) });

  const rand = prng(7);
  const x = new Float32Array(N);
  for (let i = 0; i < N; i++) x[i] = Math.round((rand() * 2 - 1) * 1e6) / 1e6;
  const xBytes = Buffer.from(x.buffer);
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [N], datatype: 'FP32', parameters: { binary_data_size: xBytes.byteLength } }], parameters: { binary_data_output: true } }));
  const binaryBody = Buffer.concat([header, xBytes]);
  const jsonBody = JSON.stringify({ inputs: [{ name: 'x', shape: [N], datatype: 'FP32', data: Array.from(x) }] });
  const binaryEvent = () => {
    const e = httpEvent('POST', '/v2/models/scale/infer', { headers: { 'inference-header-content-length': String(header.byteLength) } });
    e.body = binaryBody.toString('base64');
    e.isBase64Encoded = true;
    return e;
  };
  const template = binaryEvent();

  const session = await InferenceSession.create(model, sessionOptions({ intraOpNumThreads: t.app.config.intraOpNumThreads, graphOptimizationLevel: 'all' }));
  const feeds = { x: new Tensor('float32', x, [N]) };
  const results = await session.run(feeds);
  // The response body the handler sends for this request, for the transport floor.
  const y = results.y!.data as Float32Array;
  const responseBytes = Buffer.concat([Buffer.alloc(200), Buffer.from(y.buffer, y.byteOffset, y.byteLength)]);
  const spec = [{ name: 'x', datatype: 'FP32' as const, shape: [-1] }];
  const outSpec = [{ name: 'y', datatype: 'FP32' as const, shape: [-1] }];

  // Warm: the session loaded and the code paths run, with small requests only, so the first
  // 4 MiB request's memory is measured above a baseline no large request has inflated.
  const small = Buffer.concat([Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [16], datatype: 'FP32', parameters: { binary_data_size: 64 } }], parameters: { binary_data_output: true } })), Buffer.alloc(64)]);
  for (let i = 0; i < 20; i++) {
    const e = httpEvent('POST', '/v2/models/scale/infer', { headers: { 'inference-header-content-length': String(small.byteLength - 64) } });
    e.body = small.toString('base64');
    e.isBase64Encoded = true;
    await t.handler(e, lambdaContext());
  }
  // Peak memory of one 4 MiB binary request above the warm baseline (the event, its base64
  // body, exists before: it is the transport's).
  const first = binaryEvent();
  gc();
  writeFileSync('/proc/self/clear_refs', '5');
  const before = memory();
  const served = (await t.handler(first, lambdaContext())) as { statusCode: number };
  const after = memory();
  if (served.statusCode !== 200) throw new Error('the memory request failed');
  const peakAbove = after.peak - before.rss;

  const codecJson: number[] = [];
  const codecBinary: number[] = [];
  const handler: number[] = [];
  const bare: number[] = [];
  const floor: number[] = [];
  let responseChars = 0;
  // Two interleaved loops: the codecs (the JSON one leaves hundreds of MB of garbage behind, whose
  // collection would land in whatever runs next), then the handler against its baselines.
  const codecSteps: (() => Promise<void>)[] = [
    async () => {
      const t0 = performance.now();
      const decoded = decodeOipRequest(JSON.parse(jsonBody) as unknown, spec, outSpec);
      void encodeOipResponse('scale', 1, decoded, results).json.length;
      codecJson.push(performance.now() - t0);
    },
    async () => {
      // The framing split, the input tensor, the output's bytes and the body they make: all but
      // the base64 the transport adds (the floor below).
      const t0 = performance.now();
      const json = JSON.parse(binaryBody.subarray(0, header.byteLength).toString('utf8')) as unknown;
      const decoded = decodeOipRequest(json, spec, outSpec, binaryBody.subarray(header.byteLength));
      const answer = encodeOipResponse('scale', 1, decoded, results);
      Buffer.concat([Buffer.from(answer.json), ...answer.binary]);
      codecBinary.push(performance.now() - t0);
    },
  ];
  const handlerSteps: (() => Promise<void>)[] = [
    async () => {
      const e = binaryEvent();
      const t0 = performance.now();
      const out = (await t.handler(e, lambdaContext())) as { statusCode: number; body: string };
      handler.push(performance.now() - t0);
      if (out.statusCode !== 200) throw new Error(`handler answered ${out.statusCode}: ${out.body.slice(0, 200)}`);
      responseChars = out.body.length;
    },
    async () => {
      const t0 = performance.now();
      await session.run(feeds);
      bare.push(performance.now() - t0);
    },
    async () => {
      const t0 = performance.now();
      Buffer.from(template.body as string, 'base64');
      responseBytes.toString('base64');
      floor.push(performance.now() - t0);
    },
  ];
  for (const steps of [codecSteps, handlerSteps]) {
    gc();
    for (let i = 0; i < ITERATIONS; i++) {
      for (let k = 0; k < steps.length; k++) await (steps[(i + k) % steps.length] as () => Promise<void>)();
    }
  }

  const h = summarize(handler);
  const b = summarize(bare);
  const f = summarize(floor);
  const cj = summarize(codecJson);
  const cb = summarize(codecBinary);
  const added = h.median - b.median;
  console.log('\n## Binary tensors: 1M float32 in and out (y = 2x)\n');
  console.log(`Request: ${mib(binaryBody.byteLength)} binary (${mib(Buffer.byteLength(jsonBody))} as JSON); response ${mib(responseChars)} base64. ${ITERATIONS} interleaved rounds, medians.\n`);
  console.log(
    table(
      ['measure', 'median ms', 'p90 ms', 'baseline', 'baseline median ms', 'ratio', 'target', 'verdict'],
      [
        ['binary decode + encode', ms(cb.median), ms(cb.p90), 'JSON codec (parse, decode, encode)', ms(cj.median), ratio(cb.median / cj.median), '<= 0.10x', verdict(cb.median / cj.median <= 0.1)],
        ['handler added time (handler - bare run)', ms(added), '', 'transport floor (base64 in + out)', ms(f.median), ratio(added / f.median), '<= 2.00x', verdict(added / f.median <= 2)],
        ['handler, whole', ms(h.median), ms(h.p90), 'bare session.run', ms(b.median), ratio(h.median / b.median), 'info', ''],
        ['peak RSS above warm baseline, one request', mib(peakAbove), '', 'request size', mib(xBytes.byteLength), ratio(peakAbove / xBytes.byteLength), '<= 3.00x', verdict(peakAbove / xBytes.byteLength <= 3)],
      ],
    ),
  );
  await session.release();
  await t.dispose();
  await s3.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
