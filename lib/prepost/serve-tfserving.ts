import type { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import { decodePredictRequest, type PredictRequest } from '../protocol/tfserving';
import type { TensorSpec } from '../registry/manifest';
import { textTargets, type Declarations, type MaskPostprocess, type Preprocess } from './declarations';
import { imagesToTensor } from './image';
import { chooseClassification, chooseMasks, type Classification, type TokenizerSource } from './serve-oip';

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

/** One instance's value for a declared input: an image is `{"b64"}`, a text a string. */
function isOneValue(decl: Preprocess, value: unknown): boolean {
  return decl.type === 'image' ? isB64(value) : typeof value === 'string';
}

/** A column's values for a declared input (one value, or an array of them); undefined when it holds none. */
function columnValues(decl: Preprocess, value: unknown): unknown[] | undefined {
  if (isOneValue(decl, value)) return [value];
  if (Array.isArray(value) && value.length > 0 && value.every((v) => isOneValue(decl, v))) return value as unknown[];
  return undefined;
}

/** The model inputs a declared input fills: itself (an image), or its token inputs (a text). */
function filledBy(name: string, decl: Preprocess): string[] {
  return decl.type === 'text' ? textTargets(decl) : [name];
}

/**
 * Decodes a `:predict` request for a model with declared processing. An input declared as an
 * image takes `{"b64": "<file>"}` values, a text input takes strings: row format
 * `{"instances": [<value>, ...]}` (when that input is all the model takes) or
 * `[{"<input>": <value>}, ...]`; columnar `{"inputs": <value or [values]>}` or
 * `{"<input>": [...]}`. Each value is one instance of the batch. Other values go through the
 * plain decoder; outputs answer as declared.
 */
export async function decodeDeclaredPredict(
  body: unknown,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
  declarations: Declarations,
  tokenizerFor?: TokenizerSource,
): Promise<DeclaredPredictRequest> {
  const declared = Object.entries(declarations.preprocess);
  const found = new Map<string, unknown[]>();
  // The one declared input that fills every model input: it may be sent bare.
  const sole = declared.length === 1 && declared[0] && inputs.every((s) => filledBy(declared[0]![0], declared[0]![1]).includes(s.name)) ? declared[0] : undefined;
  let rewritten = body;
  let rows: number | undefined;
  if (isObject(body) && Array.isArray(body.instances) && body.instances.length > 0 && !('inputs' in body)) {
    const instances = body.instances;
    if (sole && instances.every((v) => isOneValue(sole[1], v))) {
      found.set(sole[0], instances);
    } else if (instances.every(isObject)) {
      for (const [name, decl] of declared) {
        if (instances.every((inst) => isOneValue(decl, inst[name]))) found.set(name, instances.map((inst) => inst[name]));
      }
      rewritten = { ...body, instances: instances.map((inst) => Object.fromEntries(Object.entries(inst as object).filter(([k]) => !found.has(k)))) };
    }
    if (found.size > 0) rows = instances.length;
  } else if (isObject(body) && 'inputs' in body && !('instances' in body)) {
    const columns = body.inputs;
    const direct = sole ? columnValues(sole[1], columns) : undefined;
    if (sole && direct) {
      found.set(sole[0], direct);
    } else if (isObject(columns) && !isB64(columns)) {
      for (const [name, decl] of declared) {
        const values = Object.hasOwn(columns, name) ? columnValues(decl, columns[name]) : undefined;
        if (values) found.set(name, values);
      }
      rewritten = { ...body, inputs: Object.fromEntries(Object.entries(columns).filter(([k]) => !found.has(k))) };
    }
  }
  if (found.size === 0) {
    const plain = decodePredictRequest(body, inputs, outputs);
    return { ...plain, classify: chooseClassification({}, plain.outputs, declarations), masks: chooseMasks({}, plain.outputs, declarations) };
  }

  const filled = new Set([...found.keys()].flatMap((name) => filledBy(name, declarations.preprocess[name] as Preprocess)));
  const rest = inputs.filter((s) => !filled.has(s.name));
  if (rest.length === 0 && isObject(rewritten)) {
    // Every input was declared: the plain decoder still checks the rest (signature, output_filter).
    const { instances: _instances, ...others } = rewritten;
    rewritten = { ...others, inputs: {} };
  }
  const decoded = decodePredictRequest(rewritten, rest, outputs);
  const feeds: Record<string, Tensor> = decoded.feeds;
  let sizes: { width: number; height: number }[] | undefined;
  for (const [name, values] of found) {
    const decl = declarations.preprocess[name] as Preprocess;
    if (decl.type === 'text') {
      if (!tokenizerFor) throw new Error('a text input needs the tokenizer source');
      Object.assign(feeds, (await tokenizerFor(decl)).toFeeds(name, values as string[], decl, inputs));
      continue;
    }
    const spec = inputs.find((s) => s.name === name) as TensorSpec;
    const image = await imagesToTensor(name, filesOf(name, values), decl, spec);
    feeds[name] = image.tensor;
    sizes ??= image.sizes;
  }
  const format = rows === undefined ? decoded.format : 'row';
  return {
    format, batch: rows ?? decoded.batch, feeds, outputs: decoded.outputs, sizes,
    classify: chooseClassification({}, decoded.outputs, declarations), masks: chooseMasks({}, decoded.outputs, declarations),
  };
}
