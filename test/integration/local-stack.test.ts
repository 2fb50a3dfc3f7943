import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { StackState } from '../../tools/stack/local';
import { denseStackModel } from '../helpers/models';

/**
 * The local stack exactly as `npm start` runs it (package.json's start script, in a subprocess,
 * on free ports with a temporary data directory): the default model converts on its S3 event,
 * a generated model uploaded through the S3 API is converted and served over HTTP, the CLI
 * reads the registry, and Ctrl-C leaves no process and no port behind.
 */
const ROOT = resolve(__dirname, '../..');
const START = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start as string;
const MODEL = 'stack-dense';

jest.setTimeout(600_000);

/** Every HTTP call gets an answer within 30 s or fails the test saying so. */
const timeout = (): AbortSignal => AbortSignal.timeout(30_000);

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Runs the start script and resolves once it prints that the stack is ready. */
function startStack(env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn('sh', ['-c', `exec ${START}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return new Promise((done, fail) => {
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (text.includes('The local stack is ready.')) done({ child, output: () => text, exited });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => fail(new Error(`the stack exited (${code}) before it was ready:\n${text}`)));
  });
}

/** Runs a command of the start script's kind (npm start, the CLI) to its end. */
function runToEnd(command: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    const child = spawn('sh', ['-c', `exec ${command}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.once('exit', (code) => done({ code, output }));
  });
}

async function stopStack(started: Started): Promise<number | null> {
  started.child.kill('SIGINT');
  return started.exited;
}

let dataDir: string;
let env: NodeJS.ProcessEnv;
let ports: { http: number; s3: number; lambda: number };

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'local-stack-'));
  ports = { http: await freePort(), s3: await freePort(), lambda: await freePort() };
  env = {
    ...process.env,
    PORT: String(ports.http),
    S3_PORT: String(ports.s3),
    LAMBDA_PORT: String(ports.lambda),
    DATA_DIR: dataDir,
    ESBUILD_WORK_FOLDER: `.esbuild-stack-${process.pid}`,
    POWERTOOLS_LOG_LEVEL: 'INFO',
  };
  delete env.API_KEY;
  delete env.NODE_OPTIONS;
  delete env.POWERTOOLS_METRICS_DISABLED;
});

afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(ROOT, `.esbuild-stack-${process.pid}`), { recursive: true, force: true });
});

/** The stack's function logs, for a failure message. */
function logTail(): string {
  try {
    return readFileSync(join(dataDir, 'stack.log'), 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no stack.log)';
  }
}

test('npm start: default model, an upload through S3 served over HTTP, the CLI, Ctrl-C, restart', async () => {
  try {
    await stackLifecycle();
  } catch (err) {
    (err as Error).message += `\n--- last lines of stack.log\n${logTail()}`;
    throw err;
  }
});

async function stackLifecycle(): Promise<void> {
  const first = await startStack(env);
  const apiUrl = `http://127.0.0.1:${ports.http}`;
  const key = readFileSync(join(dataDir, 'api-key'), 'utf8').trim();
  const state = JSON.parse(readFileSync(join(dataDir, 'stack.json'), 'utf8')) as StackState;
  try {
    // The printed curl works and says the speech sample is speech.
    expect(first.output()).toContain(`curl -s -H 'x-api-key: ${key}'`);
    const speech = await fetch(`${apiUrl}/v2/models/silero-vad/infer`, {
      method: 'POST',
      signal: timeout(),
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: readFileSync(join(dataDir, 'silero-speech.json')),
    });
    expect(speech.status).toBe(200);
    const speechAnswer = (await speech.json()) as { outputs: { name: string; data: number[] }[] };
    expect(speechAnswer.outputs[0]?.data[0]).toBeGreaterThan(0.5);

    // A second start on the same data directory refuses, naming the running one.
    const second = await runToEnd(START, env);
    expect(second.code).toBe(1);
    expect(second.output).toContain(`a local stack is already running (pid ${state.pid}`);

    // An upload through the S3 API converts on its S3 event and becomes servable.
    const original = denseStackModel(64, 3, 11);
    const s3 = new S3Client({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${ports.s3}`,
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    await s3.send(new PutObjectCommand({ Bucket: 'onnx-lambda-local', Key: `uploads/${MODEL}/dense.onnx`, Body: original }));
    s3.destroy();
    let ready = 0;
    for (let i = 0; i < 240 && ready !== 200; i++) {
      ready = (await fetch(`${apiUrl}/v2/models/${MODEL}/ready`, { headers: { 'x-api-key': key }, signal: timeout() })).status;
      if (ready !== 200) await new Promise((done) => setTimeout(done, 500));
    }
    expect(ready).toBe(200);

    const x = Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i * 0.37));
    const res = await fetch(`${apiUrl}/v2/models/${MODEL}/infer`, {
      method: 'POST',
      signal: timeout(),
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: x }] }),
    });
    expect(res.status).toBe(200);
    const served = ((await res.json()) as { outputs: { name: string; shape: number[]; data: number[] }[] }).outputs[0]!;
    const session = await InferenceSession.create(original);
    const expected = Array.from((await session.run({ x: new Tensor('float32', Float32Array.from(x), [2, 64]) })).y!.data as Float32Array);
    await session.release();
    expect(served.shape).toEqual([2, 64]);
    // The served model is the int8 conversion: close to the original, not bit-identical.
    const scale = Math.max(...expected.map(Math.abs));
    const worst = Math.max(...expected.map((v, i) => Math.abs(v - (served.data[i] as number))));
    expect(worst).toBeLessThan(0.05 * scale);

    // The CLI finds the running stack by itself.
    const listed = await runToEnd('npm run -s model -- list', env);
    expect(listed.code).toBe(0);
    expect(listed.output).toMatch(new RegExp(`${MODEL}\\s+1\\s+stable->1`));
    expect(listed.output).toMatch(/silero-vad\s+1\s+stable->1/);
  } finally {
    expect(await stopStack(first)).toBe(130);
  }

  // Nothing it started is left, and every port is free again.
  expect(groupAlive(state.groupPid)).toBe(false);
  for (const port of Object.values(ports)) expect(await portIsFree(port)).toBe(true);

  // A restart keeps what was published: no new conversion of the default model.
  const again = await startStack(env);
  try {
    expect(again.output()).toContain('silero-vad is already published');
    const still = await fetch(`${apiUrl}/v2/models/${MODEL}/ready`, { headers: { 'x-api-key': key }, signal: timeout() });
    expect(still.status).toBe(200);
  } finally {
    expect(await stopStack(again)).toBe(130);
  }
}
