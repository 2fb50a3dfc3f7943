import type { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import type { TensorSpec } from '../registry/manifest';
import { byOip, byOrt, OIP_NAMES } from './dtypes';
import { checkAllInputsGiven, checkShapeFits, emptyFeeds, findInput, infoOf, selectOutputs } from './feeds';
import { checkShapeValues, describeValue, flatDataJson, flattenToShape, toOrtTensor } from './tensor-codec';

/** An Open Inference Protocol v2 inference request, checked against the model. */
export interface OipRequest {
  id?: string;
  feeds: Record<string, Tensor>;
  outputs: TensorSpec[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Decodes `{id?, parameters?, inputs: [{name, shape, datatype, data}], outputs?: [{name}]}`
 * into onnxruntime feeds. Everything is checked against the model before it reaches ORT:
 * names (missing, unknown, repeated), datatype, rank and fixed dims, element count, and every
 * element's type and range.
 */
export function decodeOipRequest(body: unknown, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): OipRequest {
  if (!isObject(body)) throw new InvalidRequestError('request body must be a JSON object with an "inputs" array');
  const { id, inputs: given, outputs: requested, parameters } = body;
  if (id !== undefined && typeof id !== 'string') throw new InvalidRequestError('"id" must be a string');
  if (id !== undefined && id.length > 256) throw new InvalidRequestError('"id" is longer than 256 characters');
  if (parameters !== undefined && !isObject(parameters)) throw new InvalidRequestError('"parameters" must be an object');
  if (!Array.isArray(given) || given.length === 0) {
    throw new InvalidRequestError(`"inputs" must be a non-empty array; the model's inputs are: ${inputs.map((s) => s.name).join(', ')}`);
  }

  const feeds = emptyFeeds();
  for (const item of given) {
    if (!isObject(item)) throw new InvalidRequestError('every entry of "inputs" must be an object {name, shape, datatype, data}');
    const spec = findInput(inputs, item.name);
    if (Object.prototype.hasOwnProperty.call(feeds, spec.name)) {
      throw new InvalidRequestError(`input "${spec.name}" is given more than once`);
    }
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
    if (item.data === undefined) throw new InvalidRequestError(`input "${spec.name}": data is missing`);
    const flat = flattenToShape(spec.name, item.data, shape);
    feeds[spec.name] = toOrtTensor(spec.name, infoOf(spec), shape, flat);
  }
  checkAllInputsGiven(inputs, feeds);

  let names: unknown[] | undefined;
  if (requested !== undefined) {
    if (!Array.isArray(requested)) throw new InvalidRequestError('"outputs" must be an array of {name}');
    names = requested.map((o) => (isObject(o) ? o.name : undefined));
  }
  return { id, feeds, outputs: selectOutputs(outputs, names) };
}

/** Encodes the inference response; float data is written straight from the typed arrays. */
export function encodeOipResponse(
  model: string,
  version: number,
  id: string | undefined,
  outputs: readonly TensorSpec[],
  results: Record<string, Tensor>,
): string {
  const parts = outputs.map((spec) => {
    const tensor = results[spec.name];
    if (!tensor) throw new Error(`onnxruntime returned no "${spec.name}"`);
    const datatype = byOrt(tensor.type)?.oip ?? spec.datatype;
    return `{"name":${JSON.stringify(spec.name)},"datatype":"${datatype}","shape":${JSON.stringify(tensor.dims)},"data":${flatDataJson(tensor)}}`;
  });
  const idPart = id === undefined ? '' : `,"id":${JSON.stringify(id)}`;
  return `{"model_name":${JSON.stringify(model)},"model_version":"${version}"${idPart},"outputs":[${parts.join(',')}]}`;
}
