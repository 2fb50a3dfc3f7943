import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ROOT } from '../../tools/stack/local';

/** The repository root: where `npm start` runs (found from serverless.yml, so bundles work too). */
export { ROOT };
/** package.json's start script: the command `npm start` runs. */
export const START = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start as string;

/** The stack's three endpoints: the HTTP API, S3 and the Lambda invoke API. */
export interface StackPorts {
  http: number;
  s3: number;
  lambda: number;
}

/** A started stack: its process, all it has printed so far, and its exit code once it exits. */
export interface StartedStack {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** A port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** A free port for each of the stack's endpoints. */
export async function freeStackPorts(): Promise<StackPorts> {
  return { http: await freePort(), s3: await freePort(), lambda: await freePort() };
}

/** Whether `port` on 127.0.0.1 can be listened on, i.e. nothing holds it any more. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

/** Whether any process of the process group `pgid` is still alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** This process's environment with the stack on `ports`, `dataDir` and `esbuildFolder`, then `settings` (undefined removes), without jest's NODE_OPTIONS and metrics switch. */
export function stackEnv(ports: StackPorts, dataDir: string, esbuildFolder: string, settings: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(ports.http),
    S3_PORT: String(ports.s3),
    LAMBDA_PORT: String(ports.lambda),
    DATA_DIR: dataDir,
    ESBUILD_WORK_FOLDER: esbuildFolder,
  };
  for (const [name, value] of Object.entries(settings)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  delete env.NODE_OPTIONS;
  delete env.POWERTOOLS_METRICS_DISABLED;
  return env;
}

/**
 * Runs the start script and resolves once it has printed all it prints when ready (its last
 * line, "Stop: Ctrl-C"; the ready banner can arrive in more than one chunk).
 */
export function startStack(env: NodeJS.ProcessEnv): Promise<StartedStack> {
  const child = spawn('sh', ['-c', `exec ${START}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return new Promise((done, fail) => {
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (text.includes('The local stack is ready.') && text.includes('Stop: Ctrl-C')) done({ child, output: () => text, exited });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => fail(new Error(`the stack exited (${code}) before it was ready:\n${text}`)));
  });
}

/** Whether the stack's process has neither exited nor been ended by a signal. */
export const stackRunning = (stack: StartedStack): boolean => stack.child.exitCode === null && stack.child.signalCode === null;

/** Runs a command of the start script's kind (npm start, the CLI) to its end. */
export function runToEnd(command: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    const child = spawn('sh', ['-c', `exec ${command}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.once('exit', (code) => done({ code, output }));
  });
}

/** Stops the stack as Ctrl-C does (SIGINT) and resolves with its exit code. */
export async function stopStack(stack: StartedStack): Promise<number | null> {
  stack.child.kill('SIGINT');
  return stack.exited;
}

/** The last 40 lines of the stack's function logs in `dataDir`, for a failure message. */
function logTail(dataDir: string): string {
  try {
    return readFileSync(join(dataDir, 'stack.log'), 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no stack.log)';
  }
}

/** Runs `body`; an error it throws leaves with the stack's log tail appended to its message. */
export async function withLogTail(dataDir: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    (err as Error).message += `\n--- last lines of stack.log\n${logTail(dataDir)}`;
    throw err;
  }
}
