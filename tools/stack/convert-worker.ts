/**
 * One sandbox of the local stack's conversion pool (tools/stack/convert-pool.ts): a process that
 * loads the function's bundled handler once, as a Lambda container does, then runs the events
 * the pool sends it, one at a time, with a Lambda-shaped context. Started with
 * `<handler file> <export name>`; talks to the pool over IPC.
 */
import { resolve } from 'node:path';

/** pool -> worker */
export interface InvokeMessage {
  type: 'invoke';
  requestId: string;
  event: unknown;
  /** Epoch ms at which the pool ends the invocation (the function's timeout). */
  deadline: number;
}

/** worker -> pool */
export type WorkerMessage = { type: 'ready' } | { type: 'done'; requestId: string; error?: string };

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

function send(message: WorkerMessage): void {
  process.send?.(message);
}

function contextFor(message: InvokeMessage): Record<string, unknown> {
  const name = process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'convert';
  const region = process.env.AWS_REGION ?? 'us-east-1';
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${name}`,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '128',
    awsRequestId: message.requestId,
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: `local/${process.pid}`,
    getRemainingTimeInMillis: () => Math.max(0, message.deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

function main(): void {
  const [file, exportName = 'handler'] = process.argv.slice(2);
  if (!file || !process.send) throw new Error('usage: forked by the conversion pool with <handler file> <export name>');
  // Loading the module is the container's init: its composition root runs here, once.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the bundle is CommonJS, loaded at run time by path
  const handler = (require(resolve(file)) as Record<string, unknown>)[exportName];
  if (typeof handler !== 'function') throw new Error(`${file} exports no function "${exportName}"`);
  process.on('message', (message: InvokeMessage) => {
    if (message.type !== 'invoke') return;
    (handler as Handler)(message.event, contextFor(message)).then(
      () => send({ type: 'done', requestId: message.requestId }),
      (err: unknown) => send({ type: 'done', requestId: message.requestId, error: (err as Error)?.stack ?? String(err) }),
    );
  });
  // The pool going away ends the sandbox.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}

main();
