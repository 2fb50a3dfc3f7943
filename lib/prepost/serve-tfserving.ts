import type { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import { decodePredictRequest, type PredictRequest } from '../protocol/tfserving';
import type { TensorSpec } from '../registry/manifest';
import type { Declarations, MaskPostprocess } from './declarations';
import { imagesToTensor } from './image';
import { chooseClassification, chooseMasks, type Classification } from './serve-oip';

/** A TF Serving request with its images decoded and its outputs' post-processing chosen. */
export interface DeclaredPredictRequest extends PredictRequest {
  classify: Map<string, Classification>;
  masks: Map<string, MaskPostprocess>;
  sizes?: { width: number; height: number }[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isB64(value: unknown): value is { b64: unknown } {
  return isObject(value) && 'b64' in value && Object.keys(value).length === 1;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The file bytes of `{"b64": ...}` values, one per image. */
function filesOf(name: string, values: readonly unknown[]): Buffer[] {
  return values.map((v, i) => {
    const b64 = (v as { b64: unknown }).b64;
    if (typeof b64 !== 'string' || b64.length % 4 !== 0 || !BASE64.test(b64)) {
      throw new InvalidRequestError(`input "${name}": image ${i} "b64" must hold a base64 string (the encoded JPEG, PNG or WebP file)`);
    }
    return Buffer.from(b64, 'base64');
  });
}

/** The `{"b64"}` images a value holds for one input: one, or an array of them; undefined when it holds none. */
function b64Images(value: unknown): unknown[] | undefined {
  if (isB64(value)) return [value];
  if (Array.isArray(value) && value.length > 0 && value.every(isB64)) return value;
  return undefined;
}

/**
 * Decodes a `:predict` request for a model with declared processing. An input declared as an
 * image takes `{"b64": "<file>"}` values: row format `{"instances": [{"b64": ...}, ...]}` (a
 * one-input model) or `[{"<input>": {"b64": ...}}, ...]`; columnar `{"inputs": {"b64": ...}}`,
 * `[{"b64"}...]` or `{"<input>": [...]}`. Each image is one instance of the batch. Other values
 * go through the plain decoder; outputs answer as declared.
 */
export async function decodeDeclaredPredict(body: unknown, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], declarations: Declarations): Promise<DeclaredPredictRequest> {
  const images = new Map<string, unknown[]>();
  let rewritten = body;
  let rows: number | undefined;
  if (isObject(body) && Array.isArray(body.instances) && body.instances.length > 0 && !('inputs' in body)) {
    const instances = body.instances;
    const only = inputs.length === 1 ? inputs[0] : undefined;
    if (only && declarations.preprocess[only.name] && instances.every(isB64)) {
      images.set(only.name, instances);
    } else if (instances.every(isObject)) {
      for (const spec of inputs) {
        if (declarations.preprocess[spec.name] && instances.every((inst) => isB64((inst)[spec.name]))) {
          images.set(spec.name, instances.map((inst) => (inst)[spec.name]));
        }
      }
      rewritten = { ...body, instances: instances.map((inst) => Object.fromEntries(Object.entries(inst as object).filter(([k]) => !images.has(k)))) };
    }
    if (images.size > 0) rows = instances.length;
  } else if (isObject(body) && 'inputs' in body && !('instances' in body)) {
    const columns = body.inputs;
    const only = inputs.length === 1 ? inputs[0] : undefined;
    const direct = b64Images(columns);
    if (only && declarations.preprocess[only.name] && direct) {
      images.set(only.name, direct);
    } else if (isObject(columns) && !isB64(columns)) {
      for (const spec of inputs) {
        const found = declarations.preprocess[spec.name] ? b64Images(columns[spec.name]) : undefined;
        if (found) images.set(spec.name, found);
      }
      rewritten = { ...body, inputs: Object.fromEntries(Object.entries(columns).filter(([k]) => !images.has(k))) };
    }
  }
  if (images.size === 0) {
    const plain = decodePredictRequest(body, inputs, outputs);
    return { ...plain, classify: chooseClassification({}, plain.outputs, declarations), masks: chooseMasks({}, plain.outputs, declarations) };
  }

  const rest = inputs.filter((s) => !images.has(s.name));
  if (rest.length === 0 && isObject(rewritten)) {
    // Every input was an image: the plain decoder still checks the rest (signature, output_filter).
    const { instances: _instances, ...others } = rewritten;
    rewritten = { ...others, inputs: {} };
  }
  const decoded = decodePredictRequest(rewritten, rest, outputs);
  const feeds: Record<string, Tensor> = decoded.feeds;
  let sizes: { width: number; height: number }[] | undefined;
  for (const spec of inputs) {
    const values = images.get(spec.name);
    const decl = declarations.preprocess[spec.name];
    if (!values || !decl) continue;
    const image = await imagesToTensor(spec.name, filesOf(spec.name, values), decl, spec);
    feeds[spec.name] = image.tensor;
    sizes ??= image.sizes;
  }
  const format = rows === undefined ? decoded.format : 'row';
  return {
    format, batch: rows ?? decoded.batch, feeds, outputs: decoded.outputs, sizes,
    classify: chooseClassification({}, decoded.outputs, declarations), masks: chooseMasks({}, decoded.outputs, declarations),
  };
}
