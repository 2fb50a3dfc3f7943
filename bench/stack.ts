/**
 * Section "stack": serving latency of the local stack while a conversion runs. The stack is
 * started as `npm start` starts it (free ports, a temporary data directory), twice: with
 * conversions in serverless offline's own process (LOCAL_CONVERT_IN_PROCESS=true, as before the
 * conversion pool) and in the pool's worker processes (the default). In each, the default
 * model's inference over HTTP is timed idle, then while a ~100 MB model converts.
 * Target: p99 during the conversion <= 3x idle, with the pool. Timing is reported, never asserted.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { jobIdFor } from '../lib/convert/upload-job';
import { keys } from '../lib/registry/keys';
import { freePort, ROOT } from '../test/helpers/local-stack';
import { denseStackModel } from '../test/helpers/models';
import { quantile, ms, ratio, table, verdict } from './lib/stats';

const IDLE_REQUESTS = Number(process.env.BENCH_STACK_IDLE ?? 400);

interface Run {
  mode: string;
  idle: number[];
  during: number[];
  conversionSeconds: number;
  failures: number;
}

async function measure(mode: string, settings: Record<string, string>, model: Uint8Array): Promise<Run> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-stack-'));
  const [http, s3Port, lambda] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(http), S3_PORT: String(s3Port), LAMBDA_PORT: String(lambda), DATA_DIR: dataDir, ESBUILD_WORK_FOLDER: `.esbuild-bench-${process.pid}`, POWERTOOLS_LOG_LEVEL: 'WARN', ...settings };
  delete env.NODE_OPTIONS;
  delete env.API_KEY;
  const child = spawn(process.execPath, [join(ROOT, 'tools', 'run-ts.mjs'), 'tools/stack/start.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((done, fail) => {
    const on = (c: Buffer): void => {
      out += c.toString('utf8');
      if (out.includes('Stop: Ctrl-C')) done();
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (code) => fail(new Error(`the stack exited (${code}):\n${out}`)));
  });
  const apiKey = readFileSync(join(dataDir, 'api-key'), 'utf8').trim();
  const body = readFileSync(join(dataDir, 'silero-speech.json'));
  const url = `http://127.0.0.1:${http}/v2/models/silero-vad/infer`;
  let failures = 0;
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(url, { method: 'POST', headers: { 'x-api-key': apiKey, 'content-type': 'application/json' }, body });
    await res.arrayBuffer();
    if (res.status !== 200) failures++;
    return performance.now() - t0;
  };
  for (let i = 0; i < 30; i++) await once();
  const idle: number[] = [];
  for (let i = 0; i < IDLE_REQUESTS; i++) idle.push(await once());

  const s3 = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${s3Port}`, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, requestChecksumCalculation: 'WHEN_REQUIRED' });
  const key = 'uploads/big-dense/big-dense.onnx';
  const put = await s3.send(new PutObjectCommand({ Bucket: 'onnx-lambda-local', Key: key, Body: model }));
  const reportKey = keys.job('big-dense', jobIdFor({ key, etag: (put.ETag ?? '').replace(/"/g, '') }));
  const started = performance.now();
  const during: number[] = [];
  let done = false;
  const watcher = (async () => {
    while (!done) {
      try {
        await s3.send(new HeadObjectCommand({ Bucket: 'onnx-lambda-local', Key: reportKey }));
        done = true;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  })();
  while (!done && performance.now() - started < 600_000) during.push(await once());
  await watcher;
  const conversionSeconds = (performance.now() - started) / 1000;
  s3.destroy();
  child.kill('SIGINT');
  await new Promise((r) => child.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(ROOT, `.esbuild-bench-${process.pid}`), { recursive: true, force: true });
  return { mode, idle, during, conversionSeconds, failures };
}

async function main(): Promise<void> {
  const model = denseStackModel(1024, 24);
  const runs = [
    await measure('in serverless offline\'s process (LOCAL_CONVERT_IN_PROCESS=true, before)', { LOCAL_CONVERT_IN_PROCESS: 'true' }, model),
    await measure('in the conversion pool (default)', {}, model),
  ];
  console.log('\n## Local stack: serving while a conversion runs\n');
  console.log(`Silero VAD inference over HTTP (36 ms of speech), sequential requests: ${IDLE_REQUESTS} idle, then as many as fit while denseStackModel(1024, 24) (${(model.byteLength / 1e6).toFixed(0)} MB) converts.\n`);
  const rows = runs.map((r) => {
    const idle = [...r.idle].sort((a, b) => a - b);
    const during = [...r.during].sort((a, b) => a - b);
    const p99 = quantile(during, 0.99) / quantile(idle, 0.99);
    return [
      r.mode, ms(quantile(idle, 0.5)), ms(quantile(idle, 0.99)), String(during.length), ms(quantile(during, 0.5)), ms(quantile(during, 0.99)), ms(during[during.length - 1] ?? NaN),
      ratio(p99), `${r.conversionSeconds.toFixed(1)} s`, String(r.failures), r.mode.includes('pool') ? verdict(p99 <= 3) : 'baseline',
    ];
  });
  console.log(table(['conversions run', 'idle p50 ms', 'idle p99 ms', 'requests during', 'during p50 ms', 'during p99 ms', 'during max ms', 'p99 during / idle', 'conversion', 'non-200', 'target <= 3x'], rows));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
