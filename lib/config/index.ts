import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

/** Graph optimization levels onnxruntime accepts. */
export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'layout' | 'all';

/** A model to load during init: `name`, `name@3` (version) or `name:canary` (label). */
export interface WarmModel {
  model: string;
  version?: number;
  label?: string;
}

/** Everything the service reads from its environment, checked once at cold start. */
export interface Config extends StorageConfig {
  /** Directory of the on-disk artifact cache. */
  cacheDir: string;
  /** Bytes the on-disk cache may hold before it evicts the least recently used artifact. */
  diskCacheBytes: number;
  /** Bytes of artifacts whose sessions the memory cache may hold. */
  sessionCacheBytes: number;
  /** Sessions the memory cache may hold. */
  sessionCacheCount: number;
  /** How long a resolved manifest or alias is trusted before S3 is asked again. */
  manifestTtlMs: number;
  /** Artifacts this large or larger are fetched with parallel ranged GETs. */
  rangedGetThresholdBytes: number;
  rangedGetPartBytes: number;
  rangedGetConcurrency: number;
  intraOpNumThreads: number;
  /** `auto`: the level the model's manifest recommends (a conversion records one), else `all`. */
  graphOptimizationLevel: GraphOptimizationLevel | 'auto';
  warmModels: WarmModel[];
  /** SHA-256 (hex) of each accepted API key. Empty only when auth is disabled. */
  apiKeyHashes: Buffer[];
  authDisabled: boolean;
  maxBodyBytes: number;
  /** Largest response the transport carries (Lambda: 6 MB); larger OIP outputs are staged. */
  maxResponseBytes: number;
  /** How long a presigned staging URL works. */
  stagedUrlTtlSeconds: number;
  /** Largest staged input a request may name. */
  maxStagedBytes: number;
  serviceName: string;
  serverVersion: string;
}

type Env = Record<string, string | undefined>;

/** Thrown at cold start for a bad environment; the function fails to init rather than serve wrongly. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const MIB = 1024 * 1024;
const MB_PER_VCPU = 1769;
const MAX_LAMBDA_VCPUS = 6;
export const GRAPH_LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'layout', 'all'];
const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

function readInt(env: Env, key: string, fallback: number, min: number): number {
  const raw = env[key];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`${key} must be an integer >= ${min}, got "${raw}"`);
  }
  return value;
}

function readBool(env: Env, key: string, fallback: boolean): boolean {
  const raw = env[key]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${key} must be true or false, got "${env[key]}"`);
}

/**
 * Lambda gives one vCPU per 1,769 MB of memory (up to six); ORT's default of one thread per
 * visible core would oversubscribe a small function, so the thread count follows the memory.
 */
export function threadsForMemory(memoryMb: number | undefined, cores: number): number {
  if (memoryMb === undefined) return Math.max(1, cores);
  return Math.min(MAX_LAMBDA_VCPUS, Math.max(1, Math.round(memoryMb / MB_PER_VCPU)));
}

/** Parses `WARM_MODELS` (`a,b@2,c:canary`). */
export function parseWarmModels(raw: string | undefined): WarmModel[] {
  if (!raw?.trim()) return [];
  return raw.split(',').map((item) => {
    const spec = item.trim();
    const match = /^([^@:]+)(?:@(\d+)|:([A-Za-z0-9._-]+))?$/.exec(spec);
    if (!match?.[1] || !MODEL_NAME.test(match[1])) {
      throw new ConfigError(`WARM_MODELS entry "${spec}" is not model, model@version or model:label`);
    }
    const warm: WarmModel = { model: match[1] };
    if (match[2] !== undefined) warm.version = Number(match[2]);
    if (match[3] !== undefined) warm.label = match[3];
    return warm;
  });
}

function parseKeyHashes(raw: string | undefined): Buffer[] {
  if (!raw?.trim()) return [];
  return raw.split(',').map((item) => {
    const hex = item.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) {
      throw new ConfigError('API_KEY_HASHES must be comma-separated SHA-256 hex digests (64 hex characters each)');
    }
    return Buffer.from(hex, 'hex');
  });
}

/** What every function needs to reach the models bucket. */
export interface StorageConfig {
  bucket: string;
  region: string;
  s3Endpoint?: string;
  s3ForcePathStyle: boolean;
}

/** The conversion function's settings. */
export interface ConvertConfig extends StorageConfig {
  /** Uploads larger than this are refused with a report. */
  maxModelBytes: number;
  intraOpNumThreads: number;
  serviceName: string;
}

/** Reads the bucket and S3 endpoint settings shared by every function. */
export function loadStorageConfig(env: Env = process.env): StorageConfig {
  const bucket = env.MODELS_BUCKET?.trim();
  if (!bucket) throw new ConfigError('MODELS_BUCKET is required: the S3 bucket that holds models/');
  const s3Endpoint = env.S3_ENDPOINT?.trim() || undefined;
  return {
    bucket,
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    s3Endpoint,
    s3ForcePathStyle: readBool(env, 'S3_FORCE_PATH_STYLE', s3Endpoint !== undefined),
  };
}

/** Reads and checks the conversion function's environment. */
export function loadConvertConfig(env: Env = process.env): ConvertConfig {
  const memoryMb = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ? Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE) : undefined;
  return {
    ...loadStorageConfig(env),
    maxModelBytes: readInt(env, 'MAX_MODEL_MB', 500, 1) * MIB,
    intraOpNumThreads: readInt(env, 'ORT_INTRA_OP_THREADS', threadsForMemory(memoryMb, availableParallelism()), 1),
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? 'onnx-lambda',
  };
}

/** Reads and checks the inference function's environment. Throws {@link ConfigError} naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const storage = loadStorageConfig(env);

  const memoryMb = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ? Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE) : undefined;
  const level = (env.ORT_GRAPH_OPTIMIZATION_LEVEL ?? 'auto') as GraphOptimizationLevel | 'auto';
  if (level !== 'auto' && !GRAPH_LEVELS.includes(level)) {
    throw new ConfigError(`ORT_GRAPH_OPTIMIZATION_LEVEL must be auto or one of ${GRAPH_LEVELS.join(', ')}, got "${level}"`);
  }

  const authDisabled = readBool(env, 'AUTH_DISABLED', false);
  const apiKeyHashes = parseKeyHashes(env.API_KEY_HASHES);
  if (!authDisabled && apiKeyHashes.length === 0) {
    throw new ConfigError('API_KEY_HASHES is required (or set AUTH_DISABLED=true): SHA-256 hex of each API key');
  }

  return {
    ...storage,
    cacheDir: env.MODEL_CACHE_DIR ?? join(tmpdir(), 'model-cache'),
    diskCacheBytes: readInt(env, 'DISK_CACHE_MB', 1536, 1) * MIB,
    sessionCacheBytes: readInt(env, 'SESSION_CACHE_MB', 1024, 1) * MIB,
    sessionCacheCount: readInt(env, 'SESSION_CACHE_COUNT', 8, 1),
    manifestTtlMs: readInt(env, 'MANIFEST_TTL_MS', 30_000, 0),
    rangedGetThresholdBytes: readInt(env, 'RANGED_GET_THRESHOLD_MB', 64, 1) * MIB,
    rangedGetPartBytes: readInt(env, 'RANGED_GET_PART_MB', 8, 1) * MIB,
    rangedGetConcurrency: readInt(env, 'RANGED_GET_CONCURRENCY', 8, 1),
    intraOpNumThreads: readInt(env, 'ORT_INTRA_OP_THREADS', threadsForMemory(memoryMb, availableParallelism()), 1),
    graphOptimizationLevel: level,
    warmModels: parseWarmModels(env.WARM_MODELS),
    apiKeyHashes,
    authDisabled,
    maxBodyBytes: readInt(env, 'MAX_BODY_BYTES', 6 * MIB, 1),
    maxResponseBytes: readInt(env, 'MAX_RESPONSE_BYTES', 6 * MIB, 1024),
    stagedUrlTtlSeconds: readInt(env, 'STAGED_URL_TTL_S', 900, 1),
    maxStagedBytes: readInt(env, 'MAX_STAGED_MB', 256, 1) * MIB,
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? 'onnx-lambda',
    serverVersion: env.SERVER_VERSION ?? '0.1.0',
  };
}
