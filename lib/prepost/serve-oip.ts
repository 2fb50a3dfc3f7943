import { Tensor } from 'onnxruntime-node';
import { InvalidRequestError, ServiceUnavailableError } from '../errors';
import { checkAllInputsGiven, emptyFeeds, findInput, selectOutputs } from '../protocol/feeds';
import { decodeOipRequest } from '../protocol/oip';
import { describeValue } from '../protocol/tensor-codec';
import type { Manifest, TensorSpec } from '../registry/manifest';
import { classificationString, topK } from './classify';
import { bytesElementText, splitBytesElements } from '../protocol/binary-tensor';
import { checkDeclarations, DeclarationError, parseDeclarations, imageDeclaration, textTargets, type Activation, type Declarations, type ImagePreprocess, type MaskPostprocess, type TextPreprocess } from './declarations';
import { imagesToTensor } from './image';
import { masksToPng } from './mask';
import { readTexts, type TextTokenizer } from './text';

/** What a classified output answers: the top `k` after `activation`. */
export interface Classification {
  k: number;
  activation: Activation;
}

/** An OIP request with its images decoded and its outputs' post-processing chosen. */
export interface DeclaredOipRequest {
  id?: string;
  feeds: Record<string, Tensor>;
  outputs: TensorSpec[];
  /** Outputs answered as classification strings instead of their tensor. */
  classify: Map<string, Classification>;
  /** Outputs answered as PNG masks. */
  masks: Map<string, MaskPostprocess>;
  /** The request images' sizes, upright, when one input took images: what masks resize back to. */
  sizes?: { width: number; height: number }[];
}

const EMPTY: Declarations = { preprocess: {}, postprocess: {} };
const parsed = new WeakMap<Manifest, Declarations>();

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A manifest's declarations, checked once per manifest object. The conversion job wrote and
 * checked them; one that no longer parses is the publisher's fault: 503, as a malformed manifest is.
 */
export function declarationsOf(manifest: Manifest): Declarations {
  if (manifest.preprocess === undefined && manifest.postprocess === undefined) return EMPTY;
  let found = parsed.get(manifest);
  if (!found) {
    try {
      const labels = classLabelsOf(manifest);
      found = checkDeclarations(parseDeclarations(manifest.preprocess, manifest.postprocess), manifest, labels);
    } catch (err) {
      if (!(err instanceof DeclarationError)) throw err;
      throw new ServiceUnavailableError(`model ${manifest.model} version ${manifest.version}: declared processing is malformed: ${err.message}`, { cause: err });
    }
    parsed.set(manifest, found);
  }
  return found;
}

/** The class names the upload gave (`classLabels`), if any. */
export function classLabelsOf(manifest: Manifest): string[] | undefined {
  const labels = manifest.conversion?.classLabels;
  return Array.isArray(labels) && labels.every((l) => typeof l === 'string') ? (labels) : undefined;
}

/** True when a request needs this module: the model declares processing, or an output asks for classification. */
export function needsDeclaredPath(manifest: Manifest, body: unknown): boolean {
  if (manifest.preprocess !== undefined || manifest.postprocess !== undefined) return true;
  return isObject(body) && Array.isArray(body.outputs) && body.outputs.some((o) => isObject(o) && isObject(o.parameters) && o.parameters.classification !== undefined);
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The encoded images of one BYTES input: `shape` [n], `data` n base64 strings. */
function imageBytes(item: Record<string, unknown>, name: string): Buffer[] {
  const where = `input "${name}"`;
  const data = Array.isArray(item.data) && item.data.length === 1 && Array.isArray(item.data[0]) ? (item.data[0] as unknown[]) : item.data;
  if (!Array.isArray(data)) throw new InvalidRequestError(`${where}: data must be an array of base64-encoded images`);
  const shape = item.shape;
  if (!Array.isArray(shape) || shape.length !== 1 || shape[0] !== data.length) {
    throw new InvalidRequestError(`${where}: an image input's shape is [n], the number of images; got ${describeValue(shape)} for ${data.length} image${data.length === 1 ? '' : 's'}`);
  }
  return data.map((v, i) => {
    if (typeof v !== 'string' || v.length % 4 !== 0 || !BASE64.test(v)) {
      throw new InvalidRequestError(`${where}: image ${i} is not a base64 string (the encoded JPEG, PNG or WebP file)`);
    }
    return Buffer.from(v, 'base64');
  });
}

/** The request's `id`, `parameters` and `outputs` when every input it sent was an image. */
function headerOnly(body: Record<string, unknown>, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): { id?: string; feeds: Record<string, Tensor>; outputs: TensorSpec[] } {
  const { id, parameters, outputs: requested } = body;
  if (id !== undefined && (typeof id !== 'string' || id.length > 256)) throw new InvalidRequestError('"id" must be a string of at most 256 characters');
  if (parameters !== undefined && !isObject(parameters)) throw new InvalidRequestError('"parameters" must be an object');
  const feeds = emptyFeeds();
  checkAllInputsGiven(inputs, feeds);
  if (requested !== undefined && !Array.isArray(requested)) throw new InvalidRequestError('"outputs" must be an array of {name}');
  return { id, feeds, outputs: selectOutputs(outputs, requested?.map((o) => (isObject(o) ? o.name : undefined))) };
}

/** Which outputs answer classification strings: asked per output (OIP), else the declared default. */
export function chooseClassification(body: Record<string, unknown>, chosen: readonly TensorSpec[], declarations: Declarations): Map<string, Classification> {
  const asked = new Map<string, unknown>();
  if (Array.isArray(body.outputs)) {
    for (const o of body.outputs) {
      if (isObject(o) && typeof o.name === 'string' && isObject(o.parameters) && o.parameters.classification !== undefined) asked.set(o.name, o.parameters.classification);
    }
  }
  const out = new Map<string, Classification>();
  for (const spec of chosen) {
    const declared = declarations.postprocess[spec.name];
    const activation = declared?.type === 'classification' ? declared.activation : 'none';
    if (asked.has(spec.name)) {
      const k = asked.get(spec.name);
      if (!Number.isInteger(k) || (k as number) < 0 || (k as number) > 1_000_000) {
        throw new InvalidRequestError(`output "${spec.name}": parameters.classification must be a whole number of classes (0 answers the raw tensor)`);
      }
      if (k === 0) continue;
      if (!['FP32', 'FP16', 'FP64'].includes(spec.datatype) || spec.shape.length < 1 || spec.shape.length > 2) {
        throw new InvalidRequestError(`output "${spec.name}" is ${spec.datatype} ${JSON.stringify(spec.shape)}; classification needs float scores shaped [C] or [N, C]`);
      }
      out.set(spec.name, { k: k as number, activation });
    } else if (declared?.type === 'classification') {
      out.set(spec.name, { k: declared.topK, activation });
    }
  }
  return out;
}

/** Outputs declared as masks answer PNGs, unless the request asks for the raw tensor (`classification: 0`). */
export function chooseMasks(body: Record<string, unknown>, chosen: readonly TensorSpec[], declarations: Declarations): Map<string, MaskPostprocess> {
  const raw = new Set<string>();
  if (Array.isArray(body.outputs)) {
    for (const o of body.outputs) if (isObject(o) && typeof o.name === 'string' && isObject(o.parameters) && o.parameters.classification === 0) raw.add(o.name);
  }
  const out = new Map<string, MaskPostprocess>();
  for (const spec of chosen) {
    const declared = declarations.postprocess[spec.name];
    if (declared?.type === 'mask' && !raw.has(spec.name)) out.set(spec.name, declared);
  }
  return out;
}

/**
 * The answer's tensors as declared: classified outputs become Triton's strings, masks become a
 * BYTES tensor `[N]` of base64-encoded PNGs (resized to the request images when declared so).
 */
export async function answerAsDeclared(results: Record<string, Tensor>, decoded: Pick<DeclaredOipRequest, 'classify' | 'masks' | 'sizes'>, labels?: readonly string[]): Promise<Record<string, Tensor>> {
  const out = classifyResults(results, decoded.classify, labels);
  if (decoded.masks.size === 0) return out;
  const answered: Record<string, Tensor> = { ...out };
  for (const [name, decl] of decoded.masks) {
    const tensor = results[name];
    if (!tensor) continue;
    const pngs = await masksToPng(tensor, decl, decoded.sizes);
    answered[name] = new Tensor('string', pngs.map((p) => p.toString('base64')), [pngs.length]);
  }
  return answered;
}

/** Finds the tokenizer of a text declaration (the service's per-container cache). */
export type TokenizerSource = (decl: TextPreprocess) => Promise<TextTokenizer>;

/** A declared input's values as the request sent them: JSON `data`, or elements of binary data. */
type DeclaredValues = { json: Record<string, unknown> } | { elements: Uint8Array[] };

/** Checks a `binary_data_size`; the plain decoder words its own the same way. */
function binarySizeOf(item: Record<string, unknown>, name: string, left: number): number | undefined {
  const size = isObject(item.parameters) ? item.parameters.binary_data_size : undefined;
  if (size === undefined) return undefined;
  if (!Number.isSafeInteger(size) || (size as number) < 0) throw new InvalidRequestError(`input "${name}": parameters.binary_data_size must be a non-negative integer, not ${describeValue(size)}`);
  if ((size as number) > left) throw new InvalidRequestError(`input "${name}": binary_data_size ${size as number} runs past the end of the body (${left} bytes of binary data left)`);
  return size as number;
}

/** The element count of a declared BYTES input: `shape` is [n]. */
function declaredCount(item: Record<string, unknown>, name: string, kind: 'image' | 'text', given: number | undefined): number {
  const shape = item.shape;
  if (!Array.isArray(shape) || shape.length !== 1 || !Number.isSafeInteger(shape[0]) || (shape[0] as number) < 1 || (given !== undefined && shape[0] !== given)) {
    const what = kind === 'image' ? 'images' : 'texts';
    throw new InvalidRequestError(`input "${name}": a${kind === 'image' ? 'n image' : ' text'} input's shape is [n], the number of ${what}; got ${describeValue(shape)}${given === undefined ? '' : ` for ${given} ${what}`}`);
  }
  return shape[0] as number;
}

/**
 * Decodes an OIP request for a model with declared processing. An input declared as an image
 * may come as `BYTES` holding encoded files (base64 strings in JSON, raw elements in binary
 * data) or as the model's own tensor; a text input comes as `BYTES` strings and fills the
 * token inputs its declaration names. Every other input goes through the plain tensor
 * decoder, and each output's answer is chosen (classification strings or the raw tensor).
 */
export async function decodeDeclaredOip(
  body: unknown,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
  declarations: Declarations,
  binary?: Uint8Array,
  tokenizerFor?: TokenizerSource,
): Promise<DeclaredOipRequest> {
  if (!isObject(body) || !Array.isArray(body.inputs) || body.inputs.length === 0) return { ...decodeOipRequest(body, inputs, outputs, binary), classify: new Map(), masks: new Map() };
  const images: { spec: TensorSpec; decl: ImagePreprocess; values: DeclaredValues }[] = [];
  const texts: { name: string; decl: TextPreprocess; values: DeclaredValues }[] = [];
  const rest: unknown[] = [];
  const restBinary: Uint8Array[] = [];
  const seen = new Set<string>();
  // Binary data follows the JSON in input order: declared inputs take their slices here, the
  // others' slices go on, in order, to the plain decoder.
  let offset = 0;
  const takeBinary = (item: Record<string, unknown>, name: string): Uint8Array | undefined => {
    const left = (binary?.byteLength ?? 0) - offset;
    const size = binarySizeOf(item, name, left);
    if (size === undefined) return undefined;
    if (!binary) throw new InvalidRequestError(`input "${name}": parameters.binary_data_size is given but the request carries no binary data`);
    const slice = binary.subarray(offset, offset + size);
    offset += size;
    return slice;
  };
  for (const item of body.inputs) {
    const named = isObject(item) && typeof item.name === 'string' ? declarations.preprocess[item.name] : undefined;
    if (!isObject(item) || !named || item.datatype !== 'BYTES') {
      if (isObject(item)) {
        const slice = takeBinary(item, typeof item.name === 'string' ? item.name : '?');
        if (slice) restBinary.push(slice);
      }
      rest.push(item);
      continue;
    }
    const name = item.name as string;
    if (seen.has(name)) throw new InvalidRequestError(`input "${name}" is given more than once`);
    seen.add(name);
    const slice = takeBinary(item, name);
    let values: DeclaredValues = { json: item };
    if (slice) {
      if (item.data !== undefined) throw new InvalidRequestError(`input "${name}": give its data one way only: "data" or parameters.binary_data_size`);
      values = { elements: splitBytesElements(name, declaredCount(item, name, named.type, undefined), slice) };
    }
    if (named.type === 'text') texts.push({ name, decl: named, values });
    else images.push({ spec: findInput(inputs, name), decl: named, values });
  }
  if (binary && offset !== binary.byteLength) {
    throw new InvalidRequestError(`the body has ${binary.byteLength - offset} bytes of binary data after the last input's; binary_data_size must account for every byte after the JSON header`);
  }
  const filled = new Set<string>([...images.map((i) => i.spec.name), ...texts.flatMap((t) => textTargets(t.decl))]);
  const tensorInputs = inputs.filter((s) => !filled.has(s.name));
  for (const item of rest) {
    if (isObject(item) && typeof item.name === 'string' && filled.has(item.name)) throw new InvalidRequestError(`input "${item.name}" is filled by a declared text input; do not send it as well`);
  }
  const restBytes = restBinary.length > 0 ? Buffer.concat(restBinary) : undefined;
  const base = rest.length > 0 ? decodeOipRequest({ ...body, inputs: rest }, tensorInputs, outputs, restBytes) : headerOnly(body, tensorInputs, outputs);
  let sizes: { width: number; height: number }[] | undefined;
  for (const { spec, decl, values } of images) {
    const files = 'elements' in values ? values.elements.map((e) => Buffer.from(e.buffer, e.byteOffset, e.byteLength)) : imageBytes(values.json, spec.name);
    const decoded = await imagesToTensor(spec.name, files, decl, spec);
    base.feeds[spec.name] = decoded.tensor;
    sizes ??= decoded.sizes;
  }
  for (const { name, decl, values } of texts) {
    if (!tokenizerFor) throw new Error('a text input needs the tokenizer source');
    let strings: string[];
    if ('elements' in values) strings = values.elements.map((e, i) => bytesElementText(name, i, e));
    else {
      strings = readTexts(values.json.data, name);
      declaredCount(values.json, name, 'text', strings.length);
    }
    Object.assign(base.feeds, (await tokenizerFor(decl)).toFeeds(name, strings, decl, inputs));
  }
  return { ...base, classify: chooseClassification(body, base.outputs, declarations), masks: chooseMasks(body, base.outputs, declarations), sizes };
}

/**
 * Replaces each classified output by a BYTES tensor of Triton's `"<score>:<index>[:<label>]"`
 * strings, `[N, k]` for an `[N, C]` output and `[k]` for `[C]`.
 */
export function classifyResults(results: Record<string, Tensor>, classify: ReadonlyMap<string, Classification>, labels?: readonly string[]): Record<string, Tensor> {
  if (classify.size === 0) return results;
  const out: Record<string, Tensor> = { ...results };
  for (const [name, { k, activation }] of classify) {
    const tensor = results[name];
    if (!tensor) continue;
    const rows = topK(tensor, k, activation, labels);
    const strings = rows.flatMap((row) => row.map(classificationString));
    const width = rows[0]?.length ?? 0;
    out[name] = new Tensor('string', strings, tensor.dims.length === 1 ? [width] : [rows.length, width]);
  }
  return out;
}

/**
 * A plain `POST` of one image file (`content-type: image/*`) to the infer route: the model
 * must take exactly one input, declared as an image; every output answers as declared.
 */
export async function decodeImagePost(bytes: Buffer, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], declarations: Declarations, asPng = false): Promise<DeclaredOipRequest> {
  if (asPng) {
    const only = outputs.length === 1 ? outputs[0] : undefined;
    if (!only || declarations.postprocess[only.name]?.type !== 'mask') {
      throw new InvalidRequestError(`accept: image/png answers the mask of a model with one output declared as a mask; this model's outputs are ${outputs.map((o) => `"${o.name}"`).join(', ')}: accept application/json`);
    }
  }
  const spec = inputs[0];
  const decl = spec && imageDeclaration(declarations, spec.name);
  if (!spec || inputs.length !== 1 || !decl) {
    const imageInputs = Object.values(declarations.preprocess).filter((d) => d.type === 'image');
    throw new InvalidRequestError(
      imageInputs.length === 0
        ? `this model declares no image input; send application/json with its inputs (${inputs.map((s) => s.name).join(', ')})`
        : `an image body needs a model with one input, declared as an image; this model takes ${inputs.map((s) => `"${s.name}"`).join(', ')}: send application/json`,
    );
  }
  const feeds = emptyFeeds();
  const decoded = await imagesToTensor(spec.name, [bytes], decl, spec);
  feeds[spec.name] = decoded.tensor;
  const chosen = [...outputs];
  return { feeds, outputs: chosen, classify: chooseClassification({}, chosen, declarations), masks: chooseMasks({}, chosen, declarations), sizes: decoded.sizes };
}

/**
 * A plain `POST` of one text (`content-type: text/plain`) to the infer route: the model must
 * declare one text input, which fills every input it takes; every output answers as declared.
 */
export async function decodeTextPost(text: string, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], declarations: Declarations, tokenizerFor: TokenizerSource): Promise<DeclaredOipRequest> {
  const texts = Object.entries(declarations.preprocess).filter((e): e is [string, TextPreprocess] => e[1].type === 'text');
  const only = texts.length === 1 ? texts[0] : undefined;
  if (!only || !inputs.every((s) => textTargets(only[1]).includes(s.name))) {
    throw new InvalidRequestError(
      texts.length === 0
        ? `this model declares no text input; send application/json with its inputs (${inputs.map((s) => s.name).join(', ')})`
        : `a text body needs a model whose one declared text input fills all its inputs; this model takes ${inputs.map((s) => `"${s.name}"`).join(', ')}: send application/json`,
    );
  }
  const [name, decl] = only;
  const feeds = emptyFeeds();
  Object.assign(feeds, (await tokenizerFor(decl)).toFeeds(name, [text], decl, inputs));
  const chosen = [...outputs];
  return { feeds, outputs: chosen, classify: chooseClassification({}, chosen, declarations), masks: chooseMasks({}, chosen, declarations) };
}

/** The one PNG of a one-output mask answer (checked by {@link decodeImagePost} before the run). */
export function onlyPng(results: Record<string, Tensor>, outputs: readonly TensorSpec[]): Buffer {
  const tensor = outputs.length === 1 && outputs[0] ? results[outputs[0].name] : undefined;
  const first = tensor?.type === 'string' ? (tensor.data as string[])[0] : undefined;
  if (first === undefined) throw new Error('the mask answer holds no PNG');
  return Buffer.from(first, 'base64');
}
