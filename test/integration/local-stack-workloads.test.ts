import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { jobIdFor, type JobReport } from '../../lib/convert/job';
import { keys } from '../../lib/registry/keys';
import type { PoolStatus } from '../../tools/stack/convert-pool';
import { freeStackPorts, ROOT, runToEnd, startStack, stackEnv, stackRunning, stopStack, withLogTail, type StackPorts, type StartedStack } from '../helpers/local-stack';
import { denseStackModel, mlpModel, scaleModel } from '../helpers/models';
import { binaryBody, decodeElements, encodeElements, parseBinaryResponse, type BinaryOutput } from '../helpers/binary-wire';

/**
 * The local stack (`npm start`, on free ports) under what real clients do.
 * - It runs conversions as Lambda does, apart from serving: while a large model converts,
 *   another model's readiness, metadata and inference and the local S3 all answer; uploads
 *   queue at the stack's concurrency (the CLI shows it); a job over the convert function's
 *   memory size, or whose process dies, leaves a failed report and a stack that goes on.
 * - Binary tensors, compressed bodies and staged tensors travel through serverless offline as
 *   through API Gateway, sent as Triton's Python client sends them (no content type).
 */
jest.setTimeout(600_000);

const BUCKET = 'onnx-lambda-local';
/** Small enough that a ~200 MB model's conversion passes it; large enough for a ~50 MB one (about 280 MB measured). */
const MEMORY_MB = 400;

let dataDir: string;
let env: NodeJS.ProcessEnv;
let ports: StackPorts;
let stack: StartedStack;
let s3: S3Client;
let apiKey: string;
let apiUrl: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'local-stack-conv-'));
  ports = await freeStackPorts();
  env = stackEnv(ports, dataDir, `.esbuild-stackconv-${process.pid}`, {
    POWERTOOLS_LOG_LEVEL: 'INFO',
    API_KEY: undefined,
    CONVERT_CONCURRENCY: '1',
    CONVERT_MEMORY_MB: String(MEMORY_MB),
  });
  await withLogTail(dataDir, async () => {
    stack = await startStack(env);
  });
  apiKey = readFileSync(join(dataDir, 'api-key'), 'utf8').trim();
  apiUrl = `http://127.0.0.1:${ports.http}`;
  s3 = new S3Client({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${ports.s3}`,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    // A GET the local S3 cannot answer within 10 s fails the test rather than hanging it.
    requestHandler: { requestTimeout: 10_000 },
  });
});

afterAll(async () => {
  s3?.destroy();
  if (stack) expect(await stopStack(stack)).toBe(130);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(ROOT, `.esbuild-stackconv-${process.pid}`), { recursive: true, force: true });
});

/** Puts an upload as a user does; returns its job id and report key. */
async function upload(model: string, bytes: Uint8Array): Promise<{ jobId: string; reportKey: string }> {
  const key = `uploads/${model}/${model}.onnx`;
  const out = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
  const jobId = jobIdFor({ key, etag: (out.ETag ?? '').replace(/"/g, '') });
  return { jobId, reportKey: keys.job(model, jobId) };
}

async function readReport(reportKey: string): Promise<JobReport | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: reportKey }));
    return JSON.parse(await out.Body!.transformToString()) as JobReport;
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

async function waitReport(reportKey: string): Promise<JobReport> {
  for (let i = 0; i < 1200; i++) {
    const report = await readReport(reportKey);
    if (report) return report;
    await new Promise((done) => setTimeout(done, 250));
  }
  throw new Error(`no report at ${reportKey}`);
}

function queue(): PoolStatus {
  return JSON.parse(readFileSync(join(dataDir, 'convert-queue.json'), 'utf8')) as PoolStatus;
}

async function waitConverting(jobId: string): Promise<number> {
  for (let i = 0; i < 2400; i++) {
    const job = queue().jobs.find((j) => j.jobId === jobId);
    if (job?.state === 'converting' && job.pid) return job.pid;
    await new Promise((done) => setTimeout(done, 25));
  }
  throw new Error(`job ${jobId} never started converting`);
}

const headers = (): Record<string, string> => ({ 'x-api-key': apiKey, 'content-type': 'application/json' });
const speech = (): string => readFileSync(join(dataDir, 'silero-speech.json'), 'utf8');

/** One round of what a client of another model does: readiness, metadata, inference, an S3 read. */
async function clientRound(): Promise<string[]> {
  const signal = AbortSignal.timeout(10_000);
  const answers = await Promise.all([
    fetch(`${apiUrl}/v2/models/silero-vad/ready`, { headers: headers(), signal }).then((r) => `ready ${r.status}`),
    fetch(`${apiUrl}/v2/models/silero-vad`, { headers: headers(), signal }).then((r) => `metadata ${r.status}`),
    fetch(`${apiUrl}/v2/models/silero-vad/infer`, { method: 'POST', headers: headers(), body: speech(), signal }).then((r) => `infer ${r.status}`),
    s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: keys.alias('silero-vad', 'stable') })).then(
      async (o) => `s3 ${(await o.Body!.transformToString()).includes('"version"') ? 200 : 'bad body'}`,
      (err: Error) => `s3 ${err.name}`,
    ),
  ]);
  return answers;
}

test('while a large model converts, another model and the local S3 answer every request; uploads queue', async () => {
  await withLogTail(dataDir, async () => {
    // Made before any upload, so nothing slows the test down once conversions run.
    const first = denseStackModel(1024, 12);
    const second = denseStackModel(1024, 12, 2);
    const third = denseStackModel(1024, 12, 3);
    const more = [denseStackModel(1024, 12, 4), denseStackModel(1024, 12, 6)];
    const cliFile = join(dataDir, 'queued-dense.onnx');
    writeFileSync(cliFile, denseStackModel(1024, 12, 7));

    const large = await upload('large-dense', first);
    const behind = await upload('large-dense-2', second);
    const last = await upload('large-dense-3', third);
    // Two more behind them, so the CLI's upload has five conversions ahead of it: many seconds
    // more than the CLI takes to start and upload, on a loaded machine too.
    const tail = [await upload('large-dense-4', more[0]!), await upload('large-dense-5', more[1]!)];
    // One more meanwhile, through the CLI: it waits in the queue, then converts.
    const cli = runToEnd(`npm run -s model -- upload ${cliFile} --name queued-dense`, env);

    // Rounds of client calls until the second upload is published; those sent while the queue
    // shows a conversion running must all be answered.
    const during: string[] = [];
    while ((await readReport(behind.reportKey)) === undefined) {
      const converting = queue().jobs.some((j) => j.state === 'converting');
      const round = await clientRound();
      if (converting) during.push(...round);
    }
    expect(during.length).toBeGreaterThanOrEqual(8);
    expect(during.filter((a) => !/ 200$/.test(a))).toEqual([]);

    expect(await waitReport(large.reportKey)).toMatchObject({ status: 'succeeded', version: 1 });
    expect(await waitReport(behind.reportKey)).toMatchObject({ status: 'succeeded', version: 1 });
    expect(await waitReport(last.reportKey)).toMatchObject({ status: 'succeeded', version: 1 });
    for (const t of tail) expect(await waitReport(t.reportKey)).toMatchObject({ status: 'succeeded', version: 1 });
    const queued = await cli;
    expect(queued.code).toBe(0);
    expect(queued.output).toMatch(/queued \(\d+ ahead\)/);
    expect(queued.output).toContain('converting');
    expect(queued.output).toContain('published queued-dense version 1');
  });
});

test('a job over the memory size, and a job whose process dies, leave failed reports and a live stack', async () => {
  await withLogTail(dataDir, async () => {
    const big = await upload('too-big', denseStackModel(1024, 48));
    const oom = await waitReport(big.reportKey);
    expect(oom.status).toBe('failed');
    expect(oom.reason).toMatch(new RegExp(`the convert function ran out of memory: it used \\d+ MB, over the function's ${MEMORY_MB} MB memory size`));

    // A warm sandbox (the one above was killed), so the kill below lands mid-conversion.
    const warm = await upload('warm-up', mlpModel({ seed: 4 }));
    expect(await waitReport(warm.reportKey)).toMatchObject({ status: 'succeeded' });
    const doomed = await upload('crashing', denseStackModel(1024, 12, 5));
    const pid = await waitConverting(doomed.jobId);
    process.kill(pid, 'SIGKILL');
    const crashed = await waitReport(doomed.reportKey);
    expect(crashed.status).toBe('failed');
    expect(crashed.reason).toBe('the convert function crashed: its process exited (SIGKILL) before the handler returned');

    // Nothing of either was published, and the stack goes on: serving, and converting.
    for (const model of ['too-big', 'crashing']) {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: keys.modelPrefix(model) }));
      expect(listed.KeyCount ?? 0).toBe(0);
    }
    expect(stackRunning(stack)).toBe(true);
    expect(await clientRound()).toEqual(['ready 200', 'metadata 200', 'infer 200', 's3 200']);
    const after = await upload('after-crash', mlpModel({ seed: 9 }));
    expect(await waitReport(after.reportKey)).toMatchObject({ status: 'succeeded', version: 1 });
  });
});

test('binary, compressed and staged tensors through serverless offline, as Triton\'s client sends them', async () => {
  await withLogTail(dataDir, async () => {
    const scale = await upload('scale4d', scaleModel(['n', 'c', 'h', 'w']));
    expect(await waitReport(scale.reportKey)).toMatchObject({ status: 'succeeded' });
    const url = `${apiUrl}/v2/models/scale4d/infer`;
    const key = { 'x-api-key': apiKey };
    const x = Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => Math.cos(i) * 3);
    const header = { inputs: [{ name: 'x', shape: [2, 3, 4, 5], datatype: 'FP32', parameters: { binary_data_size: x.length * 4 } }], parameters: { binary_data_output: true } };
    const { body, headerLength } = binaryBody(header, [encodeElements('FP32', x)]);
    const expected = x.map((v) => Math.fround(Math.fround(v) * 2));

    // The client's default: binary in and out, no content type.
    const plain = await fetch(url, { method: 'POST', headers: { ...key, 'inference-header-content-length': String(headerLength) }, body });
    expect(plain.status).toBe(200);
    expect(plain.headers.get('content-type')).toBe('application/octet-stream');
    const answer = parseBinaryResponse(Buffer.from(await plain.arrayBuffer()), Number(plain.headers.get('inference-header-content-length')));
    expect(decodeElements('FP32', answer.outputs[0]!.bytes!)).toEqual(expected);

    // The same, gzip both ways (the client's request_compression_algorithm and response one).
    const zipped = await fetch(url, {
      method: 'POST',
      headers: { ...key, 'inference-header-content-length': String(headerLength), 'content-encoding': 'gzip', 'accept-encoding': 'gzip' },
      body: gzipSync(body),
    });
    expect(zipped.status).toBe(200);
    // (fetch undoes a gzip response by itself; dense floats rarely gain from it anyway.)
    const unzipped = parseBinaryResponse(Buffer.from(await zipped.arrayBuffer()), Number(zipped.headers.get('inference-header-content-length')));
    expect(decodeElements('FP32', unzipped.outputs[0]!.bytes!)).toEqual(expected);

    // A JSON request compressed, with no content type; the answer as JSON.
    const json = JSON.stringify({ inputs: [{ name: 'x', shape: [2, 3, 4, 5], datatype: 'FP32', data: x }] });
    const viaJson = await fetch(url, { method: 'POST', headers: { ...key, 'content-encoding': 'gzip', 'accept-encoding': 'gzip' }, body: gzipSync(json) });
    expect(viaJson.status).toBe(200);
    expect(viaJson.headers.get('content-encoding')).toBe('gzip');
    expect(((await viaJson.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data).toEqual(expected);

    // The CLI sends a large input as a binary tensor, and prints the same values.
    const cliInput = Array.from({ length: 3 * 32 * 32 }, (_, i) => (i % 17) - 8);
    const requestFile = join(dataDir, 'scale-request.json');
    writeFileSync(requestFile, JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 32, 32], datatype: 'FP32', data: cliInput }] }));
    const cli = await runToEnd(`npm run -s model -- infer scale4d --input ${requestFile}`, env);
    expect(cli.code).toBe(0);
    expect(cli.output).toContain('scale4d version 1 (1 input sent as binary tensors)');
    expect(cli.output).toContain(`y FP32[1,3,32,32]: ${JSON.stringify(cliInput.slice(0, 8).map((v) => v * 2))} ... (3072 values`);

    // A 1x3x1024x1024 float32 tensor (12 MiB, past one Lambda payload) in through a staged
    // upload; its same-sized output comes back staged by itself, too large for a response.
    const n = 3 * 1024 * 1024;
    const big = new Float32Array(n);
    for (let i = 0; i < n; i++) big[i] = (i % 1000) / 7 - 50;
    const ticket = await fetch(`${apiUrl}/v2/staging`, { method: 'POST', headers: key });
    expect(ticket.status).toBe(200);
    const { id, upload_url: uploadUrl } = (await ticket.json()) as { id: string; upload_url: string };
    expect((await fetch(uploadUrl, { method: 'PUT', body: Buffer.from(big.buffer) })).status).toBe(200);
    const staged = await fetch(url, {
      method: 'POST',
      headers: { ...key, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 1024, 1024], datatype: 'FP32', parameters: { staged_id: id } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }),
    });
    expect(staged.status).toBe(200);
    const out = ((await staged.json()) as { outputs: BinaryOutput[] }).outputs[0]!;
    expect(out).toMatchObject({ name: 'y', datatype: 'FP32', shape: [1, 3, 1024, 1024], parameters: { staged_size: n * 4 } });
    const y = new Float32Array(await (await fetch(out.parameters!.staged_url as string)).arrayBuffer());
    expect(y.length).toBe(n);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs((y[i] as number) - (big[i] as number) * 2));
    expect(worst).toBe(0);
  });
});
