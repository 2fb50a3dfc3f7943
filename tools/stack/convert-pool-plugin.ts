/**
 * The seam between serverless offline and the conversion pool (tools/stack/convert-pool.ts):
 * serverless-s3-local delivers S3 events by calling a function's handler in its own process;
 * this builds its event handlers anew so that events for a function are queued on a pool of
 * sandboxes instead. Bundled and loaded by tools/local-convert-pool.js. The bucket rules
 * (prefix, suffix, event names) are matched by serverless-s3-local's own code.
 */
import { resolve } from 'node:path';
import { openBucket } from './local';
import { ConvertPool, type PoolFunction } from './convert-pool';

/** The parts of serverless's objects this reads. */
interface FunctionDefinition {
  name?: string;
  handler: string;
  memorySize?: number;
  timeout?: number;
  maximumRetryAttempts?: number;
  environment?: Record<string, unknown>;
  events?: { s3?: unknown; existingS3?: unknown; event?: string; events?: string[]; rules?: unknown[] }[];
}
interface Serverless {
  serviceDir?: string;
  config: { serviceDir?: string; servicePath?: string };
  service: {
    service: string;
    custom?: Record<string, Record<string, unknown> | undefined>;
    provider: { environment?: Record<string, unknown>; memorySize?: number; timeout?: number; stage?: string };
    getAllFunctions(): string[];
    getFunction(key: string): FunctionDefinition;
  };
  cli: { log(message: string): void };
}
interface S3LocalInstance {
  serverless: Serverless;
  getResourceForBucket(name: string): { Properties: { BucketName: string } } | undefined;
}
type EventHandler = unknown;
interface S3LocalClass {
  buildEventHandler(s3: unknown, name: string, pattern: string, rules: unknown[], func: (event: unknown) => void): EventHandler;
}

/** A positive integer from the environment, or the fallback. */
function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${raw} must be a positive integer`);
  return n;
}

function stringValues(values: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(values ?? {})) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
  }
  return out;
}

/** The function as Lambda would run it: its bundle, limits and environment. */
function poolFunction(serverless: Serverless, key: string, def: FunctionDefinition): PoolFunction {
  const { service } = serverless;
  const serviceDir = serverless.serviceDir ?? serverless.config.serviceDir ?? serverless.config.servicePath ?? process.cwd();
  // serverless-esbuild points serverless offline at its build folder.
  const location = service.custom?.['serverless-offline']?.location;
  const dot = def.handler.lastIndexOf('.');
  const memoryMb = positive('CONVERT_MEMORY_MB', def.memorySize ?? service.provider.memorySize ?? 1024);
  const name = def.name ?? `${service.service}-${service.provider.stage ?? 'dev'}-${key}`;
  return {
    name: key,
    handlerFile: resolve(serviceDir, typeof location === 'string' ? location : '', `${def.handler.slice(0, dot)}.js`),
    handlerExport: def.handler.slice(dot + 1),
    memoryMb,
    timeoutS: positive('CONVERT_TIMEOUT_S', def.timeout ?? service.provider.timeout ?? 6),
    maxRetries: def.maximumRetryAttempts ?? 2,
    // As serverless offline gives a function with localEnvironment: the local environment, then
    // the provider's and the function's variables, then what Lambda sets.
    env: {
      ...stringValues(process.env),
      ...stringValues(service.provider.environment),
      ...stringValues(def.environment),
      AWS_LAMBDA_FUNCTION_NAME: name,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(memoryMb),
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      IS_OFFLINE: 'true',
      IS_LOCAL: 'true',
    },
  };
}

/**
 * serverless-s3-local's event handlers, with every function's S3 events sent to a pool of its
 * own. Settings: CONVERT_CONCURRENCY (default 1), CONVERT_MEMORY_MB and CONVERT_TIMEOUT_S
 * (default: the function's memorySize and timeout), CONVERT_STATUS_FILE (the queue, for the CLI).
 */
export function pooledEventHandlers(plugin: S3LocalInstance, S3Local: S3LocalClass, workerFile: string): EventHandler[] {
  const { serverless } = plugin;
  const handlers: EventHandler[] = [];
  const pools: ConvertPool[] = [];
  for (const key of serverless.service.getAllFunctions()) {
    const def = serverless.service.getFunction(key);
    const s3Events = (def.events ?? []).filter((e) => e && (e.s3 ?? e.existingS3));
    if (s3Events.length === 0) continue;
    const fn = poolFunction(serverless, key, def);
    const bucket = process.env.MODELS_BUCKET ?? '';
    const pool = new ConvertPool({
      fn,
      concurrency: positive('CONVERT_CONCURRENCY', 1),
      workerFile,
      store: openBucket(bucket, process.env.S3_ENDPOINT).store,
      statusFile: process.env.CONVERT_STATUS_FILE || undefined,
      log: (line) => void process.stdout.write(`${line}\n`),
    });
    pools.push(pool);
    serverless.cli.log(`${key}: S3 events run in sandboxes of their own (concurrency ${positive('CONVERT_CONCURRENCY', 1)}, ${fn.memoryMb} MB, ${fn.timeoutS} s)`);
    for (const event of s3Events) {
      const s3 = event.s3 ?? event.existingS3;
      const config = (typeof s3 === 'object' ? s3 : event) as { bucket?: string; event?: string; events?: string[]; rules?: unknown[] };
      const bucketName = typeof s3 === 'string' ? s3 : String(config.bucket);
      const resourceName = plugin.getResourceForBucket(bucketName)?.Properties.BucketName ?? bucketName;
      for (const eventName of config.events ?? [config.event ?? '*']) {
        const pattern = eventName.replace(/^s3:/, '').replace('*', '.*');
        handlers.push(S3Local.buildEventHandler(s3, resourceName, pattern, config.rules ?? [], (e) => pool.submit(e as Parameters<ConvertPool['submit']>[0])));
      }
    }
  }
  process.once('exit', () => {
    for (const pool of pools) pool.close();
  });
  return handlers;
}
