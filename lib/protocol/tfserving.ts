import type { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import type { TensorSpec } from '../registry/manifest';
import { checkAllInputsGiven, checkShapeFits, emptyFeeds, findInput, infoOf, selectOutputs } from './feeds';
import { describeValue, elementCount, nestedDataJson, toOrtTensor } from './tensor-codec';

/** A TensorFlow Serving `:predict` request, checked against the model. */
export interface PredictRequest {
  format: 'row' | 'columnar';
  /** Instances in a row request. */
  batch: number;
  feeds: Record<string, Tensor>;
  outputs: TensorSpec[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isB64(value: unknown): value is { b64: unknown } {
  return isObject(value) && 'b64' in value && Object.keys(value).length === 1;
}

const MAX_DEPTH = 32;

/** The shape of a nested JSON value: arrays down the first elements; a scalar has shape []. */
function shapeOf(input: string, value: unknown): number[] {
  const shape: number[] = [];
  let node = value;
  while (Array.isArray(node)) {
    if (shape.length >= MAX_DEPTH) throw new InvalidRequestError(`input "${input}": nested deeper than ${MAX_DEPTH} levels`);
    shape.push(node.length);
    if (node.length === 0) break;
    node = node[0];
  }
  return shape;
}

/** Flattens a nested value that must be regular (every sub-array of a level the same length). */
function flattenRegular(input: string, value: unknown, shape: readonly number[], out: unknown[], depth = 0): void {
  if (depth === shape.length) {
    if (Array.isArray(value)) throw new InvalidRequestError(`input "${input}": ragged nested arrays (not a tensor)`);
    out.push(isB64(value) ? decodeB64(input, value.b64) : value);
    return;
  }
  if (!Array.isArray(value) || value.length !== shape[depth]) {
    throw new InvalidRequestError(`input "${input}": ragged nested arrays (not a tensor) at depth ${depth}`);
  }
  for (const child of value) flattenRegular(input, child, shape, out, depth + 1);
}

/** `{"b64": ...}` carries bytes; onnxruntime-node strings are UTF-8, so the bytes must be too. */
function decodeB64(input: string, b64: unknown): string {
  if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 === 1) {
    throw new InvalidRequestError(`input "${input}": "b64" must hold a base64 string`);
  }
  const bytes = Buffer.from(b64, 'base64');
  try {
    // ignoreBOM: bytes are data, so a leading EF BB BF is kept, not stripped as a byte-order mark.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new InvalidRequestError(
      `input "${input}": "b64" bytes are not valid UTF-8; onnxruntime-node carries BYTES tensors as UTF-8 strings`,
    );
  }
}

function tensorFrom(spec: TensorSpec, value: unknown, shape: number[]): Tensor {
  checkShapeFits(spec, shape);
  const flat: unknown[] = [];
  flattenRegular(spec.name, value, shape, flat);
  return toOrtTensor(spec.name, infoOf(spec), shape, flat);
}

/**
 * Decodes `{"instances": [...]}` (row format: one entry per example, a value for a one-input
 * model or an object of named values) or `{"inputs": ...}` (columnar: a value or an object of
 * named values, batch dimension included). Datatypes come from the model.
 */
export function decodePredictRequest(body: unknown, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): PredictRequest {
  if (!isObject(body)) throw new InvalidRequestError('request body must be a JSON object with "instances" or "inputs"');
  const hasInstances = 'instances' in body;
  const hasInputs = 'inputs' in body;
  if (hasInstances === hasInputs) {
    throw new InvalidRequestError('request must have exactly one of "instances" (row format) or "inputs" (columnar format)');
  }
  if (body.signature_name !== undefined && body.signature_name !== 'serving_default') {
    throw new InvalidRequestError(`unknown signature_name ${describeValue(body.signature_name)}; ONNX models have only "serving_default"`);
  }
  let requested: unknown[] | undefined;
  if (body.output_filter !== undefined) {
    if (!Array.isArray(body.output_filter)) throw new InvalidRequestError('"output_filter" must be an array of output names');
    requested = body.output_filter;
  }
  const chosen = selectOutputs(outputs, requested);
  const feeds = emptyFeeds();

  if (hasInputs) {
    const columns = body.inputs;
    if (isObject(columns) && !isB64(columns)) {
      for (const [name, value] of Object.entries(columns)) {
        const spec = findInput(inputs, name);
        feeds[spec.name] = tensorFrom(spec, value, shapeOf(spec.name, value));
      }
    } else {
      const spec = onlyInput(inputs);
      feeds[spec.name] = tensorFrom(spec, columns, shapeOf(spec.name, columns));
    }
    checkAllInputsGiven(inputs, feeds);
    return { format: 'columnar', batch: 0, feeds, outputs: chosen };
  }

  const instances = body.instances;
  if (!Array.isArray(instances) || instances.length === 0) throw new InvalidRequestError('"instances" must be a non-empty array');
  const named = isObject(instances[0]) && !isB64(instances[0]);
  if (!named) {
    const spec = onlyInput(inputs);
    feeds[spec.name] = tensorFrom(spec, instances, shapeOf(spec.name, instances));
  } else {
    for (const spec of inputs) {
      const column = instances.map((inst, i) => {
        if (!isObject(inst)) throw new InvalidRequestError(`instance ${i} is not an object of named inputs like instance 0`);
        if (!(spec.name in inst)) throw new InvalidRequestError(`instance ${i} is missing input "${spec.name}"`);
        return inst[spec.name];
      });
      feeds[spec.name] = tensorFrom(spec, column, shapeOf(spec.name, column));
    }
    // Every instance was checked to be an object above; now refuse names the model lacks.
    for (const inst of instances) for (const key of Object.keys(inst as object)) findInput(inputs, key);
  }
  return { format: 'row', batch: instances.length, feeds, outputs: chosen };
}

function onlyInput(inputs: readonly TensorSpec[]): TensorSpec {
  const [first, ...rest] = inputs;
  if (!first || rest.length > 0) {
    throw new InvalidRequestError(
      `the model has ${inputs.length} inputs (${inputs.map((s) => s.name).join(', ')}); send an object of named inputs`,
    );
  }
  return first;
}

/**
 * Encodes the answer: `{"predictions": [...]}` for a row request (one entry per instance; an
 * object of named outputs when there are several), `{"outputs": ...}` for a columnar one.
 */
export function encodePredictResponse(request: PredictRequest, results: Record<string, Tensor>): string {
  const tensors = request.outputs.map((spec) => {
    const tensor = results[spec.name];
    if (!tensor) throw new Error(`onnxruntime returned no "${spec.name}"`);
    return { name: spec.name, tensor };
  });
  const single = tensors.length === 1 ? tensors[0] : undefined;

  if (request.format === 'columnar') {
    if (single) return `{"outputs":${nestedDataJson(single.tensor, single.tensor.dims)}}`;
    const fields = tensors.map((t) => `${JSON.stringify(t.name)}:${nestedDataJson(t.tensor, t.tensor.dims)}`);
    return `{"outputs":{${fields.join(',')}}}`;
  }

  for (const t of tensors) {
    if (t.tensor.dims[0] !== request.batch) {
      throw new InvalidRequestError(
        `output "${t.name}" has shape ${JSON.stringify(t.tensor.dims)}, not one row per instance; use the columnar "inputs" format`,
      );
    }
  }
  const rows: string[] = [];
  for (let i = 0; i < request.batch; i++) {
    const row = tensors.map((t) => {
      const inner = t.tensor.dims.slice(1);
      return { name: t.name, json: nestedDataJson(t.tensor, inner, i * elementCount(inner)) };
    });
    rows.push(single ? (row[0]?.json ?? '') : `{${row.map((r) => `${JSON.stringify(r.name)}:${r.json}`).join(',')}}`);
  }
  return `{"predictions":[${rows.join(',')}]}`;
}
