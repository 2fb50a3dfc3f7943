import { InvalidRequestError, ServiceUnavailableError } from '../errors';

/** Datatype names of the Open Inference Protocol that a manifest may carry. */
export type TensorDatatype =
  | 'BOOL'
  | 'UINT8'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'FP16'
  | 'FP32'
  | 'FP64'
  | 'BYTES';

/** A model input or output as published: `-1` marks a dynamic dimension. */
export interface TensorSpec {
  name: string;
  datatype: TensorDatatype;
  shape: number[];
}

/** `models/<model>/<version>/manifest.json`, written last by a conversion. */
export interface Manifest {
  schemaVersion: 1;
  model: string;
  version: number;
  createdAt: string;
  artifact: { key: string; sha256: string; bytes: number };
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  source?: { key: string; etag?: string; sha256?: string; bytes?: number };
  conversion?: Record<string, unknown>;
  evaluation?: { passed: boolean } & Record<string, unknown>;
  /** Declared pre-/post-processing by input/output name (lib/prepost reads them). */
  preprocess?: Record<string, unknown>;
  postprocess?: Record<string, unknown>;
}

/** `models/<model>/aliases/<label>.json`. */
export interface Alias {
  label: string;
  version: number;
  updatedAt?: string;
}

export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const LABEL_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const DATATYPES = new Set<string>([
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES',
]);

/** Refuses a model name that is not `^[a-z0-9][a-z0-9._-]{0,62}$` (no paths, no look-alikes). */
export function checkModelName(name: string): string {
  if (!MODEL_NAME_PATTERN.test(name) || name.includes('..')) {
    throw new InvalidRequestError(
      `invalid model name "${printable(name)}": use 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/** Parses a version path segment: a positive integer. */
export function parseVersion(raw: string): number {
  const version = Number(raw);
  if (!/^[1-9][0-9]{0,9}$/.test(raw) || !Number.isSafeInteger(version)) {
    throw new InvalidRequestError(`invalid model version "${printable(raw)}": versions are positive integers`);
  }
  return version;
}

export function checkLabel(label: string): string {
  if (!LABEL_PATTERN.test(label)) {
    throw new InvalidRequestError(
      `invalid label "${printable(label)}": use 1-63 characters of a-z, 0-9, '.', '_' or '-'`,
    );
  }
  return label;
}

/** Shortens and escapes a user-supplied string for an error message. */
export function printable(value: string, max = 80): string {
  const short = value.length > max ? `${value.slice(0, max)}...` : value;
  return JSON.stringify(short).slice(1, -1);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkTensorSpecs(value: unknown, where: string): TensorSpec[] {
  if (!Array.isArray(value)) throw new Error(`${where} is not an array`);
  return value.map((item, i) => {
    if (
      !isObject(item) ||
      typeof item.name !== 'string' ||
      typeof item.datatype !== 'string' ||
      !DATATYPES.has(item.datatype) ||
      !Array.isArray(item.shape) ||
      !item.shape.every((d) => Number.isInteger(d) && (d as number) >= -1)
    ) {
      throw new Error(`${where}[${i}] is not {name, datatype, shape}`);
    }
    return { name: item.name, datatype: item.datatype as TensorDatatype, shape: item.shape as number[] };
  });
}

/**
 * Checks a manifest read from storage. A manifest that does not parse is a fault of the
 * publisher, not of the client: 503, and the version is not served.
 */
export function parseManifest(value: unknown, key: string): Manifest {
  try {
    if (!isObject(value)) throw new Error('not an object');
    const { model, version, artifact, createdAt } = value;
    if (typeof model !== 'string' || !Number.isSafeInteger(version) || (version as number) < 1) {
      throw new Error('model or version missing');
    }
    if (
      !isObject(artifact) ||
      typeof artifact.key !== 'string' ||
      typeof artifact.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(artifact.sha256) ||
      !Number.isSafeInteger(artifact.bytes)
    ) {
      throw new Error('artifact {key, sha256, bytes} missing or malformed');
    }
    const evaluation = value.evaluation;
    if (evaluation !== undefined && (!isObject(evaluation) || typeof evaluation.passed !== 'boolean')) {
      throw new Error('evaluation.passed is not a boolean');
    }
    return {
      ...(value as object),
      schemaVersion: 1,
      model,
      version: version as number,
      createdAt: typeof createdAt === 'string' ? createdAt : '',
      artifact: { key: artifact.key, sha256: artifact.sha256, bytes: artifact.bytes as number },
      inputs: checkTensorSpecs(value.inputs, 'inputs'),
      outputs: checkTensorSpecs(value.outputs, 'outputs'),
    };
  } catch (err) {
    throw new ServiceUnavailableError(`manifest ${key} is malformed: ${(err as Error).message}`, { cause: err });
  }
}

export function parseAlias(value: unknown, key: string): Alias {
  if (!isObject(value) || !Number.isSafeInteger(value.version) || (value.version as number) < 1) {
    throw new ServiceUnavailableError(`alias ${key} is malformed: version is not a positive integer`);
  }
  return { label: typeof value.label === 'string' ? value.label : '', version: value.version as number };
}
