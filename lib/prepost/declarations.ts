import type { TensorSpec } from '../registry/manifest';

/** A declaration that does not parse or does not fit the model; the conversion job reports it. */
export class DeclarationError extends Error {}

export type ResizeMode = 'stretch' | 'cover' | 'contain';
export type ChannelOrder = 'rgb' | 'bgr' | 'gray';
/** Tensor layout of an image input; without `N` the tensor holds one image and no batch dim. */
export type ImageLayout = 'NCHW' | 'NHWC' | 'CHW' | 'HWC';
export type ImageDtype = 'float32' | 'float16' | 'uint8';

/** `preprocess.<input>` with `type: "image"`: encoded image bytes in, the model's tensor out. */
export interface ImagePreprocess {
  type: 'image';
  /** Target size; taken from the model's fixed dims when omitted. */
  width: number;
  height: number;
  resize: ResizeMode;
  /** Padding colour for `contain`, 0-255 per channel. */
  background: [number, number, number];
  channels: ChannelOrder;
  layout: ImageLayout;
  dtype: ImageDtype;
  /** value = (pixel * scale - mean[c]) / std[c], per channel in `channels` order. */
  scale: number;
  mean: number[];
  std: number[];
  /** Most pixels accepted, for one request's images together, read from the headers before decoding. */
  maxPixels: number;
}

/**
 * `preprocess.<name>` with `type: "text"`: strings in, token tensors out. `<name>` is what a
 * request calls the text (it need not be a model input); the tokenizer fills the model inputs
 * named by `ids`, `attentionMask` and `tokenTypeIds`.
 */
export interface TextPreprocess {
  type: 'text';
  /** A Hugging Face `tokenizer.json` uploaded beside the model: its file name under `uploads/<model>/`. */
  tokenizer: string;
  /** SHA-256 of the tokenizer the version was published with (set by the conversion job). */
  tokenizerSha256?: string;
  /** Most tokens per text, special tokens included (0 until checked against the model). */
  maxLength: number;
  /** Longer texts are cut to `maxLength` (keeping the special tokens); false refuses them. */
  truncation: boolean;
  /** `max_length` pads every text to `maxLength`; `longest` to the longest text of the request ('' until checked). */
  padding: 'max_length' | 'longest' | '';
  /** The model input that takes token ids. */
  ids: string;
  /** The model input that takes the attention mask (1 for tokens, 0 for padding), or null. */
  attentionMask: string | null;
  /** The model input that takes token type (segment) ids, or null. */
  tokenTypeIds: string | null;
  /** Whether the tokenizer's template adds its special tokens ([CLS] ... [SEP] and the like). */
  addSpecialTokens: boolean;
}

export type Activation = 'softmax' | 'sigmoid' | 'none';

/** `postprocess.<output>` with `type: "classification"`: scores per class, top-k with labels. */
export interface ClassificationPostprocess {
  type: 'classification';
  activation: Activation;
  /** Classes answered, best first (default 5, or every class when there are fewer). */
  topK: number;
}

/** `postprocess.<output>` with `type: "mask"`: a per-pixel score map, answered as PNG. */
export interface MaskPostprocess {
  type: 'mask';
  activation: 'sigmoid' | 'none';
  /** Pixels at or above it are 255, the others 0; `null` keeps the soft score (x 255). */
  threshold: number | null;
  /** Resize the mask back to the request image's size (needs an image input). */
  resizeToInput: boolean;
}

export type Preprocess = ImagePreprocess | TextPreprocess;
export type Postprocess = ClassificationPostprocess | MaskPostprocess;

/** What an upload declares, by input and output name, as the manifest stores it. */
export interface Declarations {
  preprocess: Record<string, Preprocess>;
  postprocess: Record<string, Postprocess>;
}

/** Classes a classification answers when its declaration does not say (fewer if the model has fewer). */
const DEFAULT_TOP_K = 5;
/** Beyond any photo a camera takes (~100 MP); a larger image is refused before it is decoded. */
export const DEFAULT_MAX_PIXELS = 100_000_000;
/** No tensor side above this: a 16384 x 16384 image tensor is already 3 GiB in float32. */
const MAX_SIDE = 16384;

const IMAGE_KEYS = ['type', 'width', 'height', 'resize', 'background', 'channels', 'layout', 'dtype', 'scale', 'mean', 'std', 'maxPixels'];
const TEXT_KEYS = ['type', 'tokenizer', 'tokenizerSha256', 'maxLength', 'truncation', 'padding', 'ids', 'attentionMask', 'tokenTypeIds', 'addSpecialTokens'];
/** A tokenizer file name: one plain file beside the upload, never a path. */
export const TOKENIZER_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.json$/;
/** Names the published version's own files use; a tokenizer may not take them. */
const RESERVED_FILES = ['manifest.json'];
/** Default longest text of a model whose sequence dim is dynamic, as most BERT-family models were trained. */
export const DEFAULT_MAX_TOKENS = 512;
const MAX_TOKENS = 1_048_576;
const CLASSIFICATION_KEYS = ['type', 'activation', 'topK'];
const MASK_KEYS = ['type', 'activation', 'threshold', 'resizeToInput'];
const DTYPE_OF_DATATYPE: Readonly<Record<string, ImageDtype>> = { FP32: 'float32', FP16: 'float16', UINT8: 'uint8' };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(message: string): never {
  throw new DeclarationError(message);
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], where: string): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) fail(`${where} must be one of ${allowed.join(', ')}`);
  return value as T;
}

function integer(value: unknown, where: string, min: number, max: number): number {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) fail(`${where} must be an integer in [${min}, ${max}]`);
  return value as number;
}

function finite(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(`${where} must be a finite number`);
  return value;
}

function onlyKeys(value: Record<string, unknown>, known: readonly string[], where: string): void {
  const unknown = Object.keys(value).filter((k) => !known.includes(k));
  if (unknown.length > 0) fail(`${where}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; known keys: ${known.join(', ')}`);
}

/** Per-channel numbers: one value for every channel, or one per channel. */
function perChannel(value: unknown, channels: number, fallback: number, where: string, nonZero = false): number[] {
  if (value === undefined) return new Array<number>(channels).fill(fallback);
  const list = typeof value === 'number' ? new Array<number>(channels).fill(value) : value;
  if (!Array.isArray(list) || list.length !== channels) fail(`${where} must be a number or an array of ${channels} numbers (one per channel)`);
  return list.map((v, i) => {
    const n = finite(v, `${where}[${i}]`);
    if (nonZero && n === 0) fail(`${where}[${i}] must not be 0`);
    return n;
  });
}

/**
 * Parses one image declaration; sizes, layout and dtype the model fixes are checked and filled
 * in later by {@link checkDeclarations}, so here they may still be missing (width/height 0).
 */
function parseImage(raw: Record<string, unknown>, where: string): ImagePreprocess {
  onlyKeys(raw, IMAGE_KEYS, where);
  const channels = raw.channels === undefined ? 'rgb' : oneOf(raw.channels, ['rgb', 'bgr', 'gray'] as const, `${where}.channels`);
  const count = channels === 'gray' ? 1 : 3;
  let background: [number, number, number] = [0, 0, 0];
  if (raw.background !== undefined) {
    if (!Array.isArray(raw.background) || raw.background.length !== 3) fail(`${where}.background must be [r, g, b], each 0-255`);
    background = raw.background.map((v, i) => integer(v, `${where}.background[${i}]`, 0, 255)) as [number, number, number];
  }
  return {
    type: 'image',
    width: raw.width === undefined ? 0 : integer(raw.width, `${where}.width`, 1, MAX_SIDE),
    height: raw.height === undefined ? 0 : integer(raw.height, `${where}.height`, 1, MAX_SIDE),
    resize: raw.resize === undefined ? 'stretch' : oneOf(raw.resize, ['stretch', 'cover', 'contain'] as const, `${where}.resize`),
    background,
    channels,
    layout: raw.layout === undefined ? ('' as ImageLayout) : oneOf(raw.layout, ['NCHW', 'NHWC', 'CHW', 'HWC'] as const, `${where}.layout`),
    dtype: raw.dtype === undefined ? ('' as ImageDtype) : oneOf(raw.dtype, ['float32', 'float16', 'uint8'] as const, `${where}.dtype`),
    scale: raw.scale === undefined ? 1 : finite(raw.scale, `${where}.scale`),
    mean: perChannel(raw.mean, count, 0, `${where}.mean`),
    std: perChannel(raw.std, count, 1, `${where}.std`, true),
    maxPixels: raw.maxPixels === undefined ? DEFAULT_MAX_PIXELS : integer(raw.maxPixels, `${where}.maxPixels`, 1, 1_000_000_000),
  };
}

function boolean(value: unknown, where: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(`${where} must be true or false`);
  return value;
}

function inputName(value: unknown, where: string): string {
  if (typeof value !== 'string' || value === '') fail(`${where} must be the name of a model input`);
  return value;
}

/** `null` when explicitly turned off, '' when left to the model (filled by {@link fitText}). */
function optionalInput(value: unknown, where: string): string | null {
  if (value === null) return null;
  if (value === undefined) return '';
  return inputName(value, where);
}

function parseText(raw: Record<string, unknown>, where: string): TextPreprocess {
  onlyKeys(raw, TEXT_KEYS, where);
  const tokenizer = raw.tokenizer ?? 'tokenizer.json';
  if (typeof tokenizer !== 'string' || !TOKENIZER_FILE.test(tokenizer) || RESERVED_FILES.includes(tokenizer)) {
    fail(`${where}.tokenizer must be the file name of a tokenizer.json uploaded beside the model (letters, digits, ".", "_", "-", ending in .json; no folders)`);
  }
  if (raw.tokenizerSha256 !== undefined && (typeof raw.tokenizerSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(raw.tokenizerSha256))) {
    fail(`${where}.tokenizerSha256 is set by the conversion job; leave it out`);
  }
  return {
    type: 'text',
    tokenizer,
    ...(raw.tokenizerSha256 !== undefined ? { tokenizerSha256: raw.tokenizerSha256 } : {}),
    maxLength: raw.maxLength === undefined ? 0 : integer(raw.maxLength, `${where}.maxLength`, 1, MAX_TOKENS),
    truncation: boolean(raw.truncation, `${where}.truncation`, true),
    padding: raw.padding === undefined ? '' : oneOf(raw.padding, ['max_length', 'longest'] as const, `${where}.padding`),
    ids: raw.ids === undefined ? 'input_ids' : inputName(raw.ids, `${where}.ids`),
    attentionMask: optionalInput(raw.attentionMask, `${where}.attentionMask`),
    tokenTypeIds: optionalInput(raw.tokenTypeIds, `${where}.tokenTypeIds`),
    addSpecialTokens: boolean(raw.addSpecialTokens, `${where}.addSpecialTokens`, true),
  };
}

function parseClassification(raw: Record<string, unknown>, where: string): ClassificationPostprocess {
  onlyKeys(raw, CLASSIFICATION_KEYS, where);
  return {
    type: 'classification',
    activation: raw.activation === undefined ? 'softmax' : oneOf(raw.activation, ['softmax', 'sigmoid', 'none'] as const, `${where}.activation`),
    // 0 until checked against the model: then 5, or every class when there are fewer.
    topK: raw.topK === undefined ? 0 : integer(raw.topK, `${where}.topK`, 1, 1_000_000),
  };
}

function parseMask(raw: Record<string, unknown>, where: string): MaskPostprocess {
  onlyKeys(raw, MASK_KEYS, where);
  let threshold: number | null = 0.5;
  if (raw.threshold === null) threshold = null;
  else if (raw.threshold !== undefined) {
    threshold = finite(raw.threshold, `${where}.threshold`);
    if (threshold < 0 || threshold > 1) fail(`${where}.threshold must be a number in [0, 1] or null (a soft mask)`);
  }
  if (raw.resizeToInput !== undefined && typeof raw.resizeToInput !== 'boolean') fail(`${where}.resizeToInput must be true or false`);
  return {
    type: 'mask',
    activation: raw.activation === undefined ? 'none' : oneOf(raw.activation, ['sigmoid', 'none'] as const, `${where}.activation`),
    threshold,
    resizeToInput: raw.resizeToInput === true,
  };
}

function parseGroup<T>(raw: unknown, key: string, parsers: Readonly<Record<string, (v: Record<string, unknown>, where: string) => T>>): Record<string, T> {
  if (raw === undefined) return {};
  if (!isObject(raw)) fail(`"${key}" must be an object keyed by ${key === 'preprocess' ? 'input' : 'output'} name`);
  const out: Record<string, T> = {};
  for (const [name, decl] of Object.entries(raw)) {
    const where = `${key}.${name}`;
    if (!isObject(decl)) fail(`${where} must be an object with a "type"`);
    const parse = typeof decl.type === 'string' && Object.hasOwn(parsers, decl.type) ? parsers[decl.type] : undefined;
    if (!parse) fail(`${where}.type must be one of ${Object.keys(parsers).join(', ')}`);
    out[name] = parse(decl, where);
  }
  return out;
}

/**
 * Reads an upload's `preprocess` and `postprocess` options. Unknown keys and types are
 * refused, as every other option is: a misspelt `mean` would serve a model fed the wrong
 * numbers, which answers confidently and wrongly.
 */
export function parseDeclarations(preprocess: unknown, postprocess: unknown): Declarations {
  return {
    preprocess: parseGroup<Preprocess>(preprocess, 'preprocess', { image: parseImage, text: parseText }),
    postprocess: parseGroup<Postprocess>(postprocess, 'postprocess', { classification: parseClassification, mask: parseMask }),
  };
}

/** Where each part of an image tensor sits in its dims, for a layout. */
export function layoutAxes(layout: ImageLayout): { batch?: number; channels: number; height: number; width: number } {
  switch (layout) {
    case 'NCHW':
      return { batch: 0, channels: 1, height: 2, width: 3 };
    case 'NHWC':
      return { batch: 0, channels: 3, height: 1, width: 2 };
    case 'CHW':
      return { channels: 0, height: 1, width: 2 };
    case 'HWC':
      return { channels: 2, height: 0, width: 1 };
  }
}

function dimName(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Checks one image declaration against its input and fills in what the model fixes. */
function fitImage(decl: ImagePreprocess, spec: TensorSpec, where: string): ImagePreprocess {
  const dtype = DTYPE_OF_DATATYPE[spec.datatype];
  if (!dtype) fail(`${where}: input "${spec.name}" is ${spec.datatype}; an image input must be FP32, FP16 or UINT8`);
  if (decl.dtype && decl.dtype !== dtype) fail(`${where}.dtype is ${decl.dtype} but input "${spec.name}" is ${spec.datatype} (${dtype})`);
  if (decl.dtype === 'uint8' || dtype === 'uint8') {
    const identity = decl.scale === 1 && decl.mean.every((m) => m === 0) && decl.std.every((s) => s === 1);
    if (!identity) fail(`${where}: a uint8 input takes pixels as they are; scale, mean and std apply to float inputs only`);
  }
  let layout = decl.layout;
  if (!layout) {
    if (spec.shape.length !== 4) fail(`${where}.layout is required for input "${spec.name}" of shape ${dimName(spec.shape)} (NCHW, NHWC, CHW or HWC)`);
    const count = decl.channels === 'gray' ? 1 : 3;
    const first = spec.shape[1] === count;
    const last = spec.shape[3] === count;
    if (first === last) fail(`${where}.layout is required: the shape ${dimName(spec.shape)} of input "${spec.name}" does not say whether channels come first or last`);
    layout = first ? 'NCHW' : 'NHWC';
  }
  const axes = layoutAxes(layout);
  const rank = axes.batch === undefined ? 3 : 4;
  if (spec.shape.length !== rank) fail(`${where}.layout ${layout} needs a rank-${rank} input, but "${spec.name}" has shape ${dimName(spec.shape)}`);
  const channelDim = spec.shape[axes.channels] ?? -1;
  const count = decl.channels === 'gray' ? 1 : 3;
  if (channelDim !== -1 && channelDim !== count) {
    fail(`${where}.channels ${decl.channels} gives ${count} channel${count > 1 ? 's' : ''}, but input "${spec.name}" has ${channelDim} in its ${layout} shape ${dimName(spec.shape)}`);
  }
  const side = (declared: number, dim: number, key: 'width' | 'height'): number => {
    if (dim === -1) {
      if (!declared) fail(`${where}.${key} is required: input "${spec.name}" has a dynamic ${key} in ${dimName(spec.shape)}`);
      return declared;
    }
    if (declared && declared !== dim) fail(`${where}.${key} is ${declared} but input "${spec.name}" fixes it at ${dim} in ${dimName(spec.shape)}`);
    if (dim > MAX_SIDE) fail(`${where}: input "${spec.name}" has a ${key} of ${dim}, over ${MAX_SIDE}`);
    return dim;
  };
  return {
    ...decl,
    layout,
    dtype,
    width: side(decl.width, spec.shape[axes.width] ?? -1, 'width'),
    height: side(decl.height, spec.shape[axes.height] ?? -1, 'height'),
  };
}

const TOKEN_DATATYPES = ['INT64', 'INT32'];

/**
 * Checks a text declaration against the model: the inputs it fills exist, take integer tokens
 * shaped `[N, S]` or `[S]` alike, and a fixed sequence length decides `maxLength` and padding.
 */
function fitText(decl: TextPreprocess, name: string, inputs: readonly TensorSpec[], where: string): TextPreprocess {
  const byName = (n: string): TensorSpec | undefined => inputs.find((s) => s.name === n);
  const ids = byName(decl.ids);
  if (!ids) fail(`${where}.ids: the model has no input "${decl.ids}"; its inputs are ${inputs.map((s) => `"${s.name}"`).join(', ')} (name the token-id input in "ids")`);
  const fitted: TextPreprocess = {
    ...decl,
    attentionMask: decl.attentionMask === '' ? (byName('attention_mask') ? 'attention_mask' : null) : decl.attentionMask,
    tokenTypeIds: decl.tokenTypeIds === '' ? (byName('token_type_ids') ? 'token_type_ids' : null) : decl.tokenTypeIds,
  };
  const targets = [fitted.ids, fitted.attentionMask, fitted.tokenTypeIds].filter((n): n is string => n !== null);
  if (new Set(targets).size !== targets.length) fail(`${where}: ids, attentionMask and tokenTypeIds must name different inputs`);
  if (inputs.some((s) => s.name === name) && !targets.includes(name)) {
    fail(`${where}: "${name}" is a model input that the tokenizer does not fill; name the text after the input that takes its ids, or use a name the model does not have`);
  }
  for (const target of targets) {
    const spec = byName(target);
    if (!spec) fail(`${where}: the model has no input "${target}"; its inputs are ${inputs.map((s) => `"${s.name}"`).join(', ')}`);
    if (!TOKEN_DATATYPES.includes(spec.datatype)) fail(`${where}: input "${target}" is ${spec.datatype}; token inputs must be INT64 or INT32`);
    if (spec.shape.length !== 1 && spec.shape.length !== 2) fail(`${where}: input "${target}" has shape ${dimName(spec.shape)}; token inputs are [N, S] or [S]`);
    if (spec.shape.length !== ids.shape.length || spec.shape.some((d, i) => d !== -1 && ids.shape[i] !== -1 && d !== ids.shape[i])) {
      fail(`${where}: input "${target}" has shape ${dimName(spec.shape)}, unlike "${ids.name}" ${dimName(ids.shape)}; the tokenizer fills them alike`);
    }
  }
  const seq = targets.map((t) => byName(t)?.shape.at(-1) ?? -1).find((d) => d !== -1) ?? -1;
  if (seq !== -1) {
    if (decl.maxLength && decl.maxLength !== seq) fail(`${where}.maxLength is ${decl.maxLength} but input "${ids.name}" fixes the sequence at ${seq} in ${dimName(ids.shape)}`);
    if (decl.padding === 'longest') fail(`${where}.padding "longest" cannot fill input "${ids.name}", whose sequence is fixed at ${seq}: use "max_length"`);
    return { ...fitted, maxLength: seq, padding: 'max_length' };
  }
  return { ...fitted, maxLength: decl.maxLength || DEFAULT_MAX_TOKENS, padding: decl.padding || 'longest' };
}

/** The image declaration of an input, if it has one. */
export function imageDeclaration(declarations: Declarations, input: string): ImagePreprocess | undefined {
  const decl = Object.hasOwn(declarations.preprocess, input) ? declarations.preprocess[input] : undefined;
  return decl?.type === 'image' ? decl : undefined;
}

/** The model inputs a text declaration fills. */
export function textTargets(decl: TextPreprocess): string[] {
  return [decl.ids, decl.attentionMask, decl.tokenTypeIds].filter((n): n is string => n !== null && n !== '');
}

/** Classes of a classification output: its last dim; `[C]` or `[N, C]` only. */
function fitClassification(decl: ClassificationPostprocess, spec: TensorSpec, where: string, classLabels: readonly string[] | undefined): ClassificationPostprocess {
  if (!['FP32', 'FP16', 'FP64'].includes(spec.datatype)) fail(`${where}: output "${spec.name}" is ${spec.datatype}; classification needs float scores (FP32, FP16 or FP64)`);
  if (spec.shape.length !== 1 && spec.shape.length !== 2) fail(`${where}: output "${spec.name}" has shape ${dimName(spec.shape)}; classification needs [C] or [N, C]`);
  const classes = spec.shape[spec.shape.length - 1] ?? -1;
  if (classes !== -1) {
    if (classLabels && classLabels.length !== classes) fail(`${where}: classLabels has ${classLabels.length} names but output "${spec.name}" has ${classes} classes`);
    if (decl.topK > classes) fail(`${where}.topK is ${decl.topK} but output "${spec.name}" has ${classes} classes`);
  }
  return { ...decl, topK: decl.topK || (classes === -1 ? DEFAULT_TOP_K : Math.min(DEFAULT_TOP_K, classes)) };
}

/** A mask output: `[N, 1, H, W]`, `[N, H, W, 1]`, `[N, H, W]`, `[1, H, W]` or `[H, W]`, float scores. */
function fitMask(decl: MaskPostprocess, spec: TensorSpec, where: string, hasImageInput: boolean): MaskPostprocess {
  if (!['FP32', 'FP16', 'FP64', 'UINT8'].includes(spec.datatype)) fail(`${where}: output "${spec.name}" is ${spec.datatype}; a mask needs FP32, FP16, FP64 or UINT8`);
  const s = spec.shape;
  const fits = s.length === 2 || s.length === 3 || (s.length === 4 && (s[1] === 1 || s[3] === 1));
  if (!fits) fail(`${where}: output "${spec.name}" has shape ${dimName(s)}; a mask needs [N, 1, H, W], [N, H, W, 1], [N, H, W] or [H, W]`);
  if (decl.resizeToInput && !hasImageInput) fail(`${where}.resizeToInput needs an image input declared in preprocess`);
  return decl;
}

/**
 * Checks every declaration against the model's inputs and outputs and fills in what the model
 * fixes (size, layout, dtype). Runs at conversion time, so a declaration that cannot work
 * fails the job with its reason instead of failing every request later.
 */
export function checkDeclarations(
  declared: Declarations,
  model: { inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] },
  classLabels?: readonly string[],
): Declarations {
  const find = (specs: readonly TensorSpec[], name: string, kind: string, where: string): TensorSpec => {
    const spec = specs.find((s) => s.name === name);
    if (!spec) fail(`${where}: the model has no ${kind} "${name}"; its ${kind}s are ${specs.map((s) => `"${s.name}"`).join(', ')}`);
    return spec;
  };
  const out: Declarations = { preprocess: {}, postprocess: {} };
  const filled = new Map<string, string>();
  for (const [name, decl] of Object.entries(declared.preprocess)) {
    const where = `preprocess.${name}`;
    const fitted = decl.type === 'text' ? fitText(decl, name, model.inputs, where) : fitImage(decl, find(model.inputs, name, 'input', where), where);
    for (const target of fitted.type === 'text' ? textTargets(fitted) : [name]) {
      const other = filled.get(target);
      if (other !== undefined) fail(`${where}: input "${target}" is already filled by preprocess.${other}`);
      filled.set(target, name);
    }
    out.preprocess[name] = fitted;
  }
  const hasImageInput = Object.values(out.preprocess).some((d) => d.type === 'image');
  for (const [name, decl] of Object.entries(declared.postprocess)) {
    const where = `postprocess.${name}`;
    const spec = find(model.outputs, name, 'output', where);
    out.postprocess[name] = decl.type === 'classification' ? fitClassification(decl, spec, where, classLabels) : fitMask(decl, spec, where, hasImageInput);
  }
  return out;
}

/** True when nothing is declared: the manifest then carries no declarations at all. */
export function isEmpty(declarations: Declarations): boolean {
  return Object.keys(declarations.preprocess).length === 0 && Object.keys(declarations.postprocess).length === 0;
}
