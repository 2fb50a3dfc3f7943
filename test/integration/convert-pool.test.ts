import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import type { S3Event } from 'aws-lambda';
import { describeUpload, type JobReport } from '../../lib/convert/upload-job';
import { ObjectStore } from '../../lib/storage/object-store';
import { ConvertPool, type PoolFunction } from '../../tools/stack/convert-pool';
import { s3PutEvent } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';

/**
 * The local stack's conversion pool on its own, with small handlers written for the limits it
 * enforces (the real convert handler runs in it in the local stack tests): the function's
 * timeout, a handler that throws (retried as Lambda retries), the queue at concurrency 1, and
 * the Lambda-shaped context and environment a handler gets.
 */
const ROOT = resolve(__dirname, '..', '..');

let s3: LocalS3;
let store: ObjectStore;
let dir: string;
let workerFile: string;
const lines: string[] = [];

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  dir = mkdtempSync(join(tmpdir(), 'convert-pool-'));
  workerFile = join(dir, 'worker.js');
  buildSync({ absWorkingDir: ROOT, entryPoints: ['tools/stack/convert-worker.ts'], outfile: workerFile, bundle: true, platform: 'node', format: 'cjs', logLevel: 'warning' });
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await s3?.stop();
});

/** A handler module: `body` is the async function's body; it sees `event`, `context`. */
function handlerFile(name: string, body: string): string {
  const file = join(dir, `${name}.js`);
  writeFileSync(file, `exports.handler = async (event, context) => { ${body} };\n`);
  return file;
}

function pool(file: string, limits: Partial<PoolFunction> = {}): ConvertPool {
  return new ConvertPool({
    fn: { name: 'convert', handlerFile: file, handlerExport: 'handler', memoryMb: 1024, timeoutS: 30, maxRetries: 2, env: { ...(process.env as Record<string, string>), AWS_LAMBDA_FUNCTION_NAME: 'svc-dev-convert', AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1024', MARK: 'from the function' }, ...limits },
    concurrency: 1,
    workerFile,
    store,
    statusFile: join(dir, `status-${Math.random().toString(36).slice(2)}.json`),
    log: (line) => lines.push(line),
    retryDelayMs: 50,
  });
}

function event(model: string): { event: S3Event; reportKey: string } {
  const key = `uploads/${model}/m.onnx`;
  const e = s3PutEvent(s3.bucket, key, 'etag-1');
  return { event: e, reportKey: describeUpload({ key, etag: 'etag-1' })!.reportKey };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a job past the timeout is killed and leaves a failed report naming the limit', async () => {
  const p = pool(handlerFile('slow', 'await new Promise((r) => setTimeout(r, 60_000));'), { timeoutS: 1 });
  const { event: e, reportKey } = event('slow');
  p.submit(e);
  const report = (await waitFor('the report', () => store.getJson(reportKey))) as JobReport;
  expect(report).toMatchObject({ status: 'failed', model: 'slow', source: { key: 'uploads/slow/m.onnx', etag: 'etag-1' } });
  expect(report.reason).toBe("the convert function timed out: it ran past the function's 1 s timeout; Lambda stops a function at the same limit");
  p.close();
});

test('a handler that throws is retried twice, then dropped without a report, as Lambda does', async () => {
  const counter = join(dir, 'attempts.txt');
  const p = pool(handlerFile('throws', `require('fs').appendFileSync(${JSON.stringify(counter)}, 'x'); throw new Error('S3 is down');`));
  p.submit(event('throws').event);
  await waitFor('the drop', () => (lines.some((l) => l.includes('the handler threw on its last attempt')) ? true : undefined));
  expect(readFileSync(counter, 'utf8')).toBe('xxx');
  expect(lines.filter((l) => l.includes('retrying as Lambda retries'))).toHaveLength(2);
  expect(await store.getJson(event('throws').reportKey)).toBeUndefined();
  p.close();
});

test('jobs queue at the concurrency; each runs with a Lambda-shaped context and the function\'s environment', async () => {
  const out = join(dir, 'seen.jsonl');
  const file = handlerFile(
    'records',
    `await new Promise((r) => setTimeout(r, 300));
     require('fs').appendFileSync(${JSON.stringify(out)}, JSON.stringify({ key: event.Records[0].s3.object.key, name: context.functionName, memory: context.memoryLimitInMB, left: context.getRemainingTimeInMillis(), mark: process.env.MARK, pid: process.pid }) + '\\n');`,
  );
  const p = pool(file);
  for (const m of ['q1', 'q2', 'q3']) p.submit(event(m).event);
  const seen = await waitFor('three jobs', () => {
    try {
      const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      return rows.length === 3 ? rows : undefined;
    } catch {
      return undefined;
    }
  });
  // In arrival order, one after another, in one warm sandbox (not the test's process).
  expect(seen.map((r) => r.key)).toEqual(['uploads/q1/m.onnx', 'uploads/q2/m.onnx', 'uploads/q3/m.onnx']);
  expect(new Set(seen.map((r) => r.pid)).size).toBe(1);
  expect(seen[0]!.pid).not.toBe(process.pid);
  for (const r of seen) {
    expect(r).toMatchObject({ name: 'svc-dev-convert', memory: '1024', mark: 'from the function' });
    expect(r.left as number).toBeGreaterThan(25_000);
    expect(r.left as number).toBeLessThanOrEqual(30_000);
  }
  // The handler writes its row before it returns; the pool logs the REPORT line after, so the
  // last one may arrive a moment after the third row.
  const reportLine = /\[convert q\d [0-9a-f]{8}\] REPORT returned in \d+\.\d\d s, memory size 1024 MB, max memory used \d+ MB/;
  const reports = await waitFor('three REPORT lines', () => {
    const found = lines.filter((l) => reportLine.test(l));
    return found.length >= 3 ? found : undefined;
  });
  expect(reports).toHaveLength(3);
  p.close();
});
