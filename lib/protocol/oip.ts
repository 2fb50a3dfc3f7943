import type { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import type { TensorSpec } from '../registry/manifest';
import { binarySize, chunksSize, decodeBinaryTensor, encodeBinaryTensor } from './binary-tensor';
import { byOip, byOrt, OIP_NAMES } from './dtypes';
import { checkAllInputsGiven, checkShapeFits, emptyFeeds, findInput, infoOf, selectOutputs } from './feeds';
import { checkShapeValues, describeValue, flatDataJson, flattenToShape, toOrtTensor } from './tensor-codec';

/** How one output goes back: in the JSON, after it as binary, or staged in S3 with a URL. */
export type Delivery = 'json' | 'binary' | 'staged';

/** An input whose data waits in the staging prefix; the service fetches it. */
export interface StagedInput {
  spec: TensorSpec;
  shape: number[];
  id: string;
}

/** An Open Inference Protocol v2 inference request, checked against the model. */
export interface OipRequest {
  id?: string;
  feeds: Record<string, Tensor>;
  /** Inputs still to fetch from the staging prefix before the run. */
  staged: StagedInput[];
  outputs: TensorSpec[];
  /** One per output, in the same order. */
  delivery: Delivery[];
}

/** Where a staged output was written, for its answer. */
export interface StagedOutput {
  id: string;
  url: string;
  bytes: number;
  expiresIn: number;
}

/** An encoded answer: the JSON part and the binary tensors that follow it (none: JSON only). */
export interface OipAnswer {
  json: string;
  binary: Uint8Array[];
}

/** Staged tensors are named by the id the staging call returned: 32 lowercase hex digits. */
export const STAGED_ID = /^[0-9a-f]{32}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function flag(where: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new InvalidRequestError(`${where} must be true or false, not ${describeValue(value)}`);
  return value;
}

/** `where` names the input or output; undefined for the request's own parameters. */
function parametersOf(where: string | undefined, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isObject(value)) throw new InvalidRequestError(`${where ? `${where}: ` : ''}"parameters" must be an object`);
  return value;
}

/**
 * Decodes `{id?, parameters?, inputs: [{name, shape, datatype, data | parameters}], outputs?}`
 * into onnxruntime feeds. Everything is checked against the model before it reaches ORT:
 * names (missing, unknown, repeated), datatype, rank and fixed dims, element count, and every
 * element's type and range. With `binary` (the bytes after the JSON header of a binary
 * request), an input with `parameters.binary_data_size` takes its data from there, in input
 * order, and the sizes must account for every byte; an input with `parameters.staged_id` names
 * a staged tensor.
 */
export function decodeOipRequest(body: unknown, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], binary?: Uint8Array): OipRequest {
  if (!isObject(body)) throw new InvalidRequestError('request body must be a JSON object with an "inputs" array');
  const { id, inputs: given, outputs: requested } = body;
  if (id !== undefined && typeof id !== 'string') throw new InvalidRequestError('"id" must be a string');
  if (id !== undefined && id.length > 256) throw new InvalidRequestError('"id" is longer than 256 characters');
  const parameters = parametersOf(undefined, body.parameters);
  const names = inputs.map((s) => s.name).join(', ');
  if (!Array.isArray(given) || (given.length === 0 && inputs.length > 0)) {
    throw new InvalidRequestError(`"inputs" must be a non-empty array; the model's inputs are: ${names}`);
  }

  const feeds = emptyFeeds();
  const staged: StagedInput[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const item of given) {
    if (!isObject(item)) throw new InvalidRequestError('every entry of "inputs" must be an object {name, shape, datatype, data}');
    const spec = findInput(inputs, item.name);
    if (seen.has(spec.name)) throw new InvalidRequestError(`input "${spec.name}" is given more than once`);
    seen.add(spec.name);
    if (typeof item.datatype !== 'string' || !byOip(item.datatype)) {
      throw new InvalidRequestError(
        `input "${spec.name}": datatype ${item.datatype === undefined ? 'is missing' : `${describeValue(item.datatype)} is not one of ${OIP_NAMES}`}`,
      );
    }
    if (item.datatype !== spec.datatype) {
      throw new InvalidRequestError(`input "${spec.name}": datatype is ${item.datatype} but the model expects ${spec.datatype}`);
    }
    if (item.shape === undefined) throw new InvalidRequestError(`input "${spec.name}": shape is missing`);
    const shape = checkShapeValues(spec.name, item.shape);
    checkShapeFits(spec, shape);
    const params = parametersOf(`input "${spec.name}"`, item.parameters);
    const size = params.binary_data_size;
    const stagedId = params.staged_id;
    const sources = [item.data !== undefined, size !== undefined, stagedId !== undefined].filter(Boolean).length;
    if (sources > 1) {
      throw new InvalidRequestError(`input "${spec.name}": give its data one way only: "data", parameters.binary_data_size or parameters.staged_id`);
    }
    if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
        throw new InvalidRequestError(`input "${spec.name}": parameters.binary_data_size must be a non-negative integer, not ${describeValue(size)}`);
      }
      if (!binary) {
        throw new InvalidRequestError(
          `input "${spec.name}": parameters.binary_data_size is given but the request carries no binary data (send the JSON header's length in Inference-Header-Content-Length and the tensors after it)`,
        );
      }
      const expected = binarySize(infoOf(spec), shape);
      if (expected !== undefined && size !== expected) {
        throw new InvalidRequestError(
          `input "${spec.name}": binary_data_size is ${size} but shape ${JSON.stringify(shape)} of ${spec.datatype} is ${expected} bytes`,
        );
      }
      if (size > binary.byteLength - offset) {
        throw new InvalidRequestError(
          `input "${spec.name}": binary_data_size ${size} runs past the end of the body (${binary.byteLength - offset} bytes of binary data left at its offset ${offset})`,
        );
      }
      feeds[spec.name] = decodeBinaryTensor(spec.name, infoOf(spec), shape, binary.subarray(offset, offset + size));
      offset += size;
    } else if (stagedId !== undefined) {
      if (typeof stagedId !== 'string' || !STAGED_ID.test(stagedId)) {
        throw new InvalidRequestError(`input "${spec.name}": parameters.staged_id must be the id a POST /v2/staging call returned (32 hex digits), not ${describeValue(stagedId)}`);
      }
      staged.push({ spec, shape, id: stagedId });
    } else {
      if (item.data === undefined) throw new InvalidRequestError(`input "${spec.name}": data is missing`);
      const flat = flattenToShape(spec.name, item.data, shape);
      feeds[spec.name] = toOrtTensor(spec.name, infoOf(spec), shape, flat);
    }
  }
  if (binary && offset !== binary.byteLength) {
    throw new InvalidRequestError(
      `the body has ${binary.byteLength - offset} bytes of binary data after the last input's; binary_data_size must account for every byte after the JSON header`,
    );
  }
  const missing = inputs.filter((s) => !seen.has(s.name));
  if (missing.length > 0) checkAllInputsGiven(inputs, feeds);

  let requestedNames: unknown[] | undefined;
  let requestedParams: Record<string, unknown>[] = [];
  if (requested !== undefined) {
    if (!Array.isArray(requested)) throw new InvalidRequestError('"outputs" must be an array of {name}');
    requestedNames = requested.map((o) => (isObject(o) ? o.name : undefined));
    requestedParams = requested.map((o) => parametersOf(`output ${describeValue(isObject(o) ? o.name : o)}`, isObject(o) ? o.parameters : undefined));
  }
  const chosen = selectOutputs(outputs, requestedNames);
  const allBinary = flag('parameters.binary_data_output', parameters.binary_data_output) ?? false;
  const allStaged = flag('parameters.staged_outputs', parameters.staged_outputs) ?? false;
  const delivery = chosen.map((spec, i): Delivery => {
    const p = requestedNames && requestedNames.length > 0 ? (requestedParams[i] ?? {}) : {};
    if (flag(`output "${spec.name}": parameters.staged`, p.staged) ?? allStaged) return 'staged';
    return (flag(`output "${spec.name}": parameters.binary_data`, p.binary_data) ?? allBinary) ? 'binary' : 'json';
  });
  return { id, feeds, staged, outputs: chosen, delivery };
}

/**
 * A raw binary request (Inference-Header-Content-Length: 0): the whole body is the data of the
 * model's only input. Its shape is the model's, with the one dynamic dimension (if any) taken
 * from the body's size; BYTES inputs hold one element. Every output comes back binary.
 */
export function decodeRawBinaryRequest(bytes: Uint8Array, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): OipRequest {
  const [spec, ...others] = inputs;
  if (!spec || others.length > 0) {
    throw new InvalidRequestError(`a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; this one has ${inputs.length} (${inputs.map((s) => s.name).join(', ')})`);
  }
  const info = infoOf(spec);
  const dynamic = spec.shape.filter((d) => d < 0).length;
  let shape: number[];
  if (info.size === undefined) {
    shape = spec.shape.map(() => 1);
    if (spec.shape.some((d) => d > 1)) {
      throw new InvalidRequestError(`input "${spec.name}": a raw binary BYTES request carries one element, but the model's shape is ${JSON.stringify(spec.shape)}`);
    }
  } else {
    if (dynamic > 1) {
      throw new InvalidRequestError(`input "${spec.name}" has ${dynamic} dynamic dimensions ${JSON.stringify(spec.shape)}; a raw binary request can fill at most one: send a JSON header with the shape`);
    }
    const fixed = spec.shape.reduce((n, d) => (d < 0 ? n : n * d), 1) * info.size;
    const free = fixed === 0 ? 0 : bytes.byteLength / fixed;
    if (!Number.isInteger(free) || (dynamic === 0 && bytes.byteLength !== fixed)) {
      throw new InvalidRequestError(`input "${spec.name}": a raw body of ${bytes.byteLength} bytes does not fill shape ${JSON.stringify(spec.shape)} of ${spec.datatype} (${fixed} bytes per ${dynamic ? 'step of its dynamic dimension' : 'tensor'})`);
    }
    shape = spec.shape.map((d) => (d < 0 ? free : d));
  }
  const feeds = emptyFeeds();
  feeds[spec.name] = decodeBinaryTensor(spec.name, info, shape, bytes);
  const chosen = selectOutputs(outputs, undefined);
  return { feeds, staged: [], outputs: chosen, delivery: chosen.map(() => 'binary') };
}

/**
 * Encodes the inference response. JSON outputs carry `data` (float data written straight from
 * the typed arrays); binary ones carry `parameters.binary_data_size` and their bytes follow
 * the JSON in output order; staged ones carry where they were written.
 */
export function encodeOipResponse(
  model: string,
  version: number,
  request: Pick<OipRequest, 'id' | 'outputs' | 'delivery'>,
  results: Record<string, Tensor>,
  staged: ReadonlyMap<string, StagedOutput> = new Map(),
): OipAnswer {
  const binary: Uint8Array[] = [];
  const parts = request.outputs.map((spec, i) => {
    const tensor = results[spec.name];
    if (!tensor) throw new Error(`onnxruntime returned no "${spec.name}"`);
    const datatype = byOrt(tensor.type)?.oip ?? spec.datatype;
    const head = `{"name":${JSON.stringify(spec.name)},"datatype":"${datatype}","shape":${JSON.stringify(tensor.dims)}`;
    const where = staged.get(spec.name);
    if (where) {
      const p = { staged_id: where.id, staged_url: where.url, staged_size: where.bytes, staged_expires_in: where.expiresIn };
      return `${head},"parameters":${JSON.stringify(p)}}`;
    }
    if (request.delivery[i] === 'binary') {
      const chunks = encodeBinaryTensor(tensor);
      binary.push(...chunks);
      return `${head},"parameters":{"binary_data_size":${chunksSize(chunks)}}}`;
    }
    return `${head},"data":${flatDataJson(tensor)}}`;
  });
  const idPart = request.id === undefined ? '' : `,"id":${JSON.stringify(request.id)}`;
  return { json: `{"model_name":${JSON.stringify(model)},"model_version":"${version}"${idPart},"outputs":[${parts.join(',')}]}`, binary };
}
