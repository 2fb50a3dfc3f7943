import { Dataset, Group, type File } from 'jsfive';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { h5Floats, openH5, packWeights } from './keras-h5';
import { convertKerasModel, MODEL_CLASSES } from './keras-model';
import { KERAS3_HARD_SIGMOID, tfjsKnowsClass } from './keras3-tfjs';
import type { TfjsArtifacts } from './tfjs-layers-model';
import type { Weight } from './tfjs-weights';
import { ZipArchive, type ZipLimits } from './zip';

type Json = Record<string, unknown>;
type Ref = [string, number, number];

const RNN_CLASSES = new Set(['LSTM', 'GRU', 'SimpleRNN']);

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keras's `naming.to_snake_case`, which names a layer's folder in model.weights.h5 by its class. */
export function kerasSnakeCase(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

// --- config.json (Keras 3 serialization) to the Keras 2 form the converter and TF.js read ---

/** A dtype policy object (`{class_name: "DTypePolicy", config: {name}}`) as the variables' dtype. */
function dtypeName(v: unknown): unknown {
  if (!isObject(v)) return v;
  const name = isObject(v.config) ? v.config.name : undefined;
  if (typeof name !== 'string') return 'float32';
  // Mixed policies ("mixed_float16") keep float32 variables.
  return name.startsWith('mixed_') ? 'float32' : name;
}

/** An activation serialized as an object (`{class_name: "function", config: "relu"}`) as its name. */
function activationName(v: unknown): unknown {
  if (isObject(v) && typeof v.config === 'string') return v.config;
  if (isObject(v) && typeof v.registered_name === 'string') return v.registered_name;
  return v;
}

/** Any value inside a layer config: Keras 3 objects unwrapped to `{class_name, config}`. */
function plainValue(v: unknown, major: number): unknown {
  if (Array.isArray(v)) return v.map((x) => plainValue(x, major));
  if (!isObject(v)) return v;
  // Arrays Keras serialized as tensors or NumPy arrays: their values.
  if ((v.class_name === '__numpy__' || v.class_name === '__tensor__') && isObject(v.config)) return v.config.value;
  if (typeof v.class_name === 'string' && 'config' in v) return { class_name: v.class_name, config: isObject(v.config) ? plainConfig(v.class_name, v.config, major) : v.config };
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainValue(x, major)]));
}

function plainConfig(className: string, config: Json, major: number): Json {
  if (MODEL_CLASSES.has(className)) return modelConfig(className, config, major);
  const out: Json = {};
  for (const [key, value] of Object.entries(config)) {
    if (key === 'dtype') out.dtype = dtypeName(value);
    else if (key === 'batch_shape') out.batch_input_shape = value;
    // Only the loaded weights matter at inference: initializers become zeros (TF.js builds them
    // before loading, and its Orthogonal one needs ops the CPU-only job does not register),
    // regularizers and constraints go.
    else if (key.endsWith('_initializer')) out[key] = value === null ? null : { class_name: 'Zeros', config: {} };
    else if (key.endsWith('_regularizer') || key.endsWith('_constraint')) out[key] = null;
    else if (key === 'activation' || key === 'recurrent_activation') out[key] = activationName(value);
    else if ((key === 'layer' || key === 'backward_layer') && isObject(value)) out[key] = plainLayer(value, 'wrapped layer', major);
    else out[key] = plainValue(value, major);
  }
  // Keras 3 renamed LeakyReLU's alpha; TF.js reads the old name.
  if (className === 'LeakyReLU' && typeof out.negative_slope === 'number') {
    out.alpha = out.negative_slope;
    delete out.negative_slope;
  }
  if (className === 'Bidirectional') mirrorBackward(out);
  return out;
}

/**
 * Keras 3 names the wrapped layer `forward_<name>` and always writes the backward copy it made
 * (`backward_<name>`, go_backwards). Keras 2 and TF.js write the wrapped layer under its own name
 * and rebuild the copy; a backward layer that is anything else is left for the converter to refuse.
 */
function mirrorBackward(config: Json): void {
  const fwd = config.layer;
  const bwd = config.backward_layer;
  if (!isObject(fwd) || !isObject(fwd.config)) return;
  const name = typeof fwd.config.name === 'string' ? fwd.config.name.replace(/^forward_/, '') : undefined;
  const forward: Json = name === undefined ? fwd.config : { ...fwd.config, name };
  fwd.config = forward;
  if (!isObject(bwd) || !isObject(bwd.config)) return;
  const rest = (c: Json): string => JSON.stringify(Object.entries(c).filter(([k]) => k !== 'name' && k !== 'go_backwards'));
  if (bwd.class_name === fwd.class_name && bwd.config.go_backwards === true && rest(forward) === rest(bwd.config)) delete config.backward_layer;
}

/** A Keras 3 layer entry (`{module, class_name, config, registered_name, build_config, name, inbound_nodes}`). */
function plainLayer(spec: Json, where: string, major: number): Json {
  if (typeof spec.class_name !== 'string') throw new ConversionError(`config.json: ${where} has no class_name`);
  const out: Json = { class_name: spec.class_name, config: isObject(spec.config) ? plainConfig(spec.class_name, spec.config, major) : {} };
  if (typeof spec.name === 'string') out.name = spec.name;
  return out;
}

/** `input_layers` / `output_layers`: one ref, a list, or (Keras 3 dict inputs) a dict of refs. */
function refList(v: unknown, shift: (name: string) => number): Ref[] {
  const one = (r: unknown): Ref => {
    const a = r as unknown[];
    const name = String(a[0]);
    return [name, Number(a[1] ?? 0) + shift(name), Number(a[2] ?? 0)];
  };
  if (isObject(v)) return Object.values(v).map(one);
  if (!Array.isArray(v)) return [];
  return typeof v[0] === 'string' ? [one(v)] : v.map(one);
}

/** A Keras 3 call (`{args, kwargs}` with `__keras_tensor__` entries) as a Keras 2 node: the refs it reads. */
function plainNode(node: unknown, shift: (name: string) => number): unknown[] {
  if (Array.isArray(node)) return node;
  const refs: unknown[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (isObject(v)) {
      if (v.class_name === '__keras_tensor__' && isObject(v.config) && Array.isArray(v.config.keras_history)) {
        const [name, node, tensor] = v.config.keras_history as [string, number, number];
        refs.push([name, Number(node) + shift(name), Number(tensor), {}]);
      } else Object.values(v).forEach(visit);
    }
  };
  visit(isObject(node) ? node.args : node);
  return refs;
}

function modelConfig(className: string, config: Json, major: number): Json {
  const name = config.name;
  const layers = config.layers;
  if (!Array.isArray(layers)) throw new ConversionError(`config.json: model "${String(name)}" has no layers`);
  if (className === 'Sequential') {
    const plain = layers.map((l, i) => plainLayer(l as Json, `layer ${i} of "${String(name)}"`, major));
    const first = plain[0];
    // A Sequential built without an Input: its build shape goes on the first layer, as Keras 2 wrote it.
    if (first && first.class_name !== 'InputLayer' && Array.isArray(config.build_input_shape)) (first.config as Json).batch_input_shape ??= config.build_input_shape;
    return { name, layers: plain };
  }
  // Keras 2 and TF.js count a nested model's own construction as its node 0; Keras 3 does so for a
  // Functional but not for a Sequential (no longer a Functional), whose calls are numbered one lower.
  const sequentials = major < 3 ? new Set<string>() : new Set(layers.filter((l) => isObject(l) && l.class_name === 'Sequential').map((l) => String((l as Json).name ?? (isObject((l as Json).config) ? ((l as Json).config as Json).name : ''))));
  const shift = (n: string): number => (sequentials.has(n) ? 1 : 0);
  const plain = layers.map((l, i) => {
    const spec = l as Json;
    const out = plainLayer(spec, `layer ${i} of "${String(name)}"`, major);
    out.name ??= (out.config as Json).name;
    out.inbound_nodes = Array.isArray(spec.inbound_nodes) ? spec.inbound_nodes.map((n) => plainNode(n, shift)) : [];
    return out;
  });
  return { name, layers: plain, input_layers: refList(config.input_layers, () => 0), output_layers: refList(config.output_layers, shift) };
}

/**
 * A `.keras` `config.json` (the whole model, serialized) in the Keras 2 `model_config` form.
 * `kerasMajor` is the saving Keras's major version (Keras 2.13-2.15 also wrote `.keras` files).
 */
export function normalizeKeras3Config(json: unknown, kerasMajor = 3): Json {
  if (!isObject(json) || typeof json.class_name !== 'string' || !isObject(json.config)) throw new ConversionError('config.json is not a serialized Keras model ({class_name, config})');
  if (!MODEL_CLASSES.has(json.class_name)) {
    throw new ConversionError(`config.json holds a ${json.class_name}, not a Sequential or Functional model (a subclassed model cannot be rebuilt from its config)`);
  }
  return { class_name: json.class_name, config: modelConfig(json.class_name, json.config, kerasMajor) };
}

// --- model.weights.h5: `layers/<snake_case(class)>[_N]/vars/<i>`, in Keras's order ---

/** Where one layer's variables sit, relative to its folder, and the names they take. */
interface VarGroup {
  sub: string;
  prefix: string;
  keys: string[];
  /** Expected shape of each variable (null dims are not checked), or null when only its presence is. */
  shapes: ((number | null)[] | null)[];
}

function ints(v: unknown, n: number): (number | null)[] {
  if (typeof v === 'number') return new Array<number>(n).fill(v);
  return Array.isArray(v) && v.length === n ? v.map((x) => (typeof x === 'number' ? x : null)) : new Array<null>(n).fill(null);
}

function positive(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}

function rnnVars(className: string, c: Json, sub: string, prefix: string): VarGroup {
  const units = positive(c.units);
  const gates = className === 'LSTM' ? 4 : className === 'GRU' ? 3 : 1;
  const width = units === null ? null : gates * units;
  const keys = ['kernel', 'recurrent_kernel'];
  const shapes: ((number | null)[] | null)[] = [
    [null, width],
    [units, width],
  ];
  if (c.use_bias !== false) {
    keys.push('bias');
    shapes.push(className === 'GRU' && c.reset_after === true ? [2, width] : [width]);
  }
  return { sub, prefix, keys, shapes };
}

/** The variable groups a layer saves, in Keras's order (trainable first, then the others). */
function layerVars(spec: Json, name: string): VarGroup[] {
  const className = String(spec.class_name);
  const c = (spec.config ?? {}) as Json;
  const bias = c.use_bias !== false;
  const vars = (keys: string[], shapes: VarGroup['shapes']): VarGroup[] => [{ sub: 'vars', prefix: name, keys, shapes }];
  const withBias = (keys: string[], shapes: VarGroup['shapes'], size: number | null): VarGroup[] => vars(bias ? [...keys, 'bias'] : keys, bias ? [...shapes, [size]] : shapes);
  const filters = positive(c.filters);
  switch (className) {
    case 'Dense':
      return withBias(['kernel'], [[null, positive(c.units)]], positive(c.units));
    case 'Conv1D':
    case 'Conv2D':
    case 'Conv3D': {
      const rank = Number(className[4]);
      return withBias(['kernel'], [[...ints(c.kernel_size, rank), null, filters]], filters);
    }
    case 'Conv1DTranspose':
    case 'Conv2DTranspose':
    case 'Conv3DTranspose': {
      const rank = Number(className[4]);
      return withBias(['kernel'], [[...ints(c.kernel_size, rank), filters, null]], filters);
    }
    case 'DepthwiseConv1D':
    case 'DepthwiseConv2D': {
      const rank = Number(className[13]);
      return withBias(['depthwise_kernel'], [[...ints(c.kernel_size, rank), null, positive(c.depth_multiplier ?? 1)]], null);
    }
    case 'SeparableConv1D':
    case 'SeparableConv2D': {
      const rank = Number(className[13]);
      const ones = new Array<number>(rank).fill(1);
      return withBias(['depthwise_kernel', 'pointwise_kernel'], [[...ints(c.kernel_size, rank), null, positive(c.depth_multiplier ?? 1)], [...ones, null, filters]], filters);
    }
    case 'BatchNormalization': {
      const keys = [...(c.scale !== false ? ['gamma'] : []), ...(c.center !== false ? ['beta'] : []), 'moving_mean', 'moving_variance'];
      return vars(keys, keys.map(() => [null]));
    }
    case 'LayerNormalization': {
      const keys = [...(c.scale !== false ? ['gamma'] : []), ...(c.center !== false ? ['beta'] : [])];
      return vars(keys, keys.map(() => [null]));
    }
    case 'Embedding':
      return vars(['embeddings'], [[positive(c.input_dim), positive(c.output_dim)]]);
    case 'PReLU':
      return vars(['alpha'], [null]);
    case 'Normalization':
      // Given a mean and variance in its config, the layer holds constants, not variables.
      return c.mean === null || c.mean === undefined ? vars(['mean', 'variance'], [null, null]) : vars([], []);
    case 'LSTM':
    case 'GRU':
    case 'SimpleRNN':
      return [rnnVars(className, c, 'cell/vars', name)];
    case 'Bidirectional': {
      const inner = c.layer as Json | undefined;
      const innerClass = String(inner?.class_name);
      const innerConfig = (inner?.config ?? {}) as Json;
      if (!RNN_CLASSES.has(innerClass)) return vars([], []);
      const innerName = String(innerConfig.name);
      return [rnnVars(innerClass, innerConfig, 'forward_layer/cell/vars', `${name}/forward_${innerName}`), rnnVars(innerClass, innerConfig, 'backward_layer/cell/vars', `${name}/backward_${innerName}`)];
    }
    default:
      return vars([], []);
  }
}

function describeShape(s: (number | null)[]): string {
  return `[${s.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

/** A number or nested list of numbers from a config, as a weight of its shape. */
function configArray(name: string, v: unknown, where: string): Weight {
  const shape: number[] = [];
  for (let level = v; Array.isArray(level); level = level[0] as unknown) shape.push(level.length);
  const values = Array.isArray(v) ? (v as unknown[]).flat(Infinity) : [v];
  if (values.length !== shape.reduce((a, b) => a * b, 1) || !values.every((x) => typeof x === 'number')) {
    throw new ConversionError(`${where}: config "${name.slice(name.lastIndexOf('/') + 1)}" is not a number or a rectangular list of numbers`);
  }
  return { name, shape, data: Float32Array.from(values) };
}

class WeightReader {
  readonly weights: Weight[] = [];
  private readonly names = new Set<string>();
  /** Keras 2.13-2.15 wrote `.keras` files with `_layer_checkpoint_dependencies` where Keras 3 writes `layers`. */
  private readonly layersKey: string;

  constructor(private readonly file: File) {
    this.layersKey = file.keys.includes('layers') || !file.keys.includes('_layer_checkpoint_dependencies') ? 'layers' : '_layer_checkpoint_dependencies';
  }

  private group(path: string): Group | undefined {
    try {
      const g = this.file.get(path);
      return g instanceof Group ? g : undefined;
    } catch {
      return undefined;
    }
  }

  /** The model's layers, numbered by class name in Keras's order, each read from its folder. */
  readModel(spec: Json, base: string): void {
    const config = spec.config as Json;
    let layers = (config.layers ?? []) as Json[];
    // Keras 3's Sequential.layers leaves out its InputLayer; a Functional's lists it.
    if (spec.class_name === 'Sequential' && layers[0]?.class_name === 'InputLayer') layers = layers.slice(1);
    const used = new Map<string, number>();
    for (const layer of layers) {
      const snake = kerasSnakeCase(String(layer.class_name));
      const n = used.get(snake);
      used.set(snake, n === undefined ? 0 : n + 1);
      const folder = `${base}${base ? '/' : ''}${this.layersKey}/${n === undefined ? snake : `${snake}_${n + 1}`}`;
      if (MODEL_CLASSES.has(String(layer.class_name))) this.readModel(layer, folder);
      else this.readLayer(layer, folder);
    }
  }

  private add(weight: Weight, where: string): void {
    if (this.names.has(weight.name)) throw new ConversionError(`${where}: another layer already holds the weight "${weight.name}" (layer names must be unique across nested models)`);
    this.names.add(weight.name);
    this.weights.push(weight);
  }

  private readLayer(spec: Json, folder: string): void {
    const name = String(spec.name ?? (spec.config as Json).name);
    const where = `layer "${name}" (${String(spec.class_name)})`;
    const config = spec.config as Json;
    if (spec.class_name === 'Normalization' && config.mean !== null && config.mean !== undefined) {
      // Given its mean and variance, the layer holds them as constants in its config, not variables.
      for (const key of ['mean', 'variance']) this.add(configArray(`${name}/${key}`, config[key], where), where);
    }
    for (const g of layerVars(spec, name)) {
      const path = `${folder}/${g.sub}`;
      const group = this.group(path);
      const indices = (group?.keys ?? []).filter((k) => /^\d+$/.test(k)).sort((a, b) => Number(a) - Number(b));
      if (indices.length !== g.keys.length) {
        const holds = group ? `holds ${indices.length} variables at ${path}` : `has no ${path}`;
        throw new ConversionError(`model.weights.h5 ${holds}; ${where} has ${g.keys.length}${g.keys.length ? ` (${g.keys.join(', ')})` : ''}`);
      }
      indices.forEach((index, i) => {
        const d = group!.get(index);
        if (!(d instanceof Dataset)) throw new ConversionError(`model.weights.h5: ${path}/${index} is not a dataset`);
        const key = g.keys[i]!;
        const want = g.shapes[i];
        const shape = d.shape;
        if (want && (shape.length !== want.length || want.some((w, k) => w !== null && w !== shape[k]))) {
          throw new ConversionError(`model.weights.h5: ${path}/${index} has shape ${describeShape(shape)}; ${where} expects its ${key} to be ${describeShape(want)}`);
        }
        this.add({ name: `${g.prefix}/${key}`, shape, data: h5Floats(d) }, where);
      });
    }
  }
}

// --- what TF.js needs to run the original for the fidelity check ---

/** The same config for TF.js: Keras 3 activations it lacks under the names that compute them. */
function tfjsConfig(v: unknown, kerasMajor: number): unknown {
  if (Array.isArray(v)) return v.map((x) => tfjsConfig(x, kerasMajor));
  if (!isObject(v)) return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    if ((k === 'activation' || k === 'recurrent_activation') && typeof x === 'string') {
      if (kerasMajor >= 3 && (x === 'hard_sigmoid' || x === 'hardSigmoid')) out[k] = KERAS3_HARD_SIGMOID;
      else out[k] = x === 'silu' ? 'swish' : x;
    } else out[k] = tfjsConfig(x, kerasMajor);
  }
  return out;
}

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Why TF.js cannot run this model as Keras defines it, or undefined when it can. */
function tfjsGap(config: unknown): string | undefined {
  const gaps: string[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(visit);
    if (!isObject(v)) return;
    if (typeof v.class_name === 'string' && isObject(v.config)) {
      const c = v.config;
      const name = typeof v.name === 'string' ? v.name : String(c.name);
      if (!MODEL_CLASSES.has(v.class_name) && !tfjsKnowsClass(v.class_name)) gaps.push(`TF.js has no ${v.class_name} layer ("${name}")`);
      if (v.class_name === 'GRU' && c.reset_after === true) gaps.push(`TF.js cannot build GRU "${name}" with reset_after=true (the Keras 3 default)`);
      if (typeof c.groups === 'number' && c.groups > 1) gaps.push(`TF.js has no grouped convolution ("${name}", groups=${c.groups})`);
      for (const key of ['activation', 'recurrent_activation']) {
        const a = c[key];
        if (typeof a === 'string' && !tfjsKnowsClass(a) && !tfjsKnowsClass(camel(a))) gaps.push(`TF.js has no activation "${a}" ("${name}")`);
      }
    }
    Object.values(v).forEach(visit);
  };
  visit(config);
  return gaps.length ? [...new Set(gaps)].join('; ') : undefined;
}

/** A Keras 3 `.keras` upload converted: the ONNX model, and the original as TF.js loads it. */
export interface Keras3Import {
  def: ModelDef;
  artifacts: TfjsArtifacts;
  /** Set when TF.js cannot run the original as Keras defines it: why export fidelity is not measured. */
  fidelityUnavailable?: string;
}

function readJson(zip: ZipArchive, name: string): unknown {
  try {
    return JSON.parse(Buffer.from(zip.read(name)).toString('utf8'));
  } catch (err) {
    if (err instanceof ConversionError) throw err;
    throw new ConversionError(`the .keras ${name} is not JSON: ${(err as Error).message}`);
  }
}

/**
 * Converts a Keras 3 `.keras` file (a zip of metadata.json, config.json and model.weights.h5)
 * to ONNX. The config is read in its Keras 2 form; the weights are placed by their folder in the
 * HDF5 file, numbered by class name in the order of the model's layers, as Keras saves them.
 */
export function importKeras3(bytes: Uint8Array, limits?: ZipLimits): Keras3Import {
  const zip = new ZipArchive(bytes, limits);
  const holds = () => zip.names().slice(0, 10).join(', ') || 'nothing';
  if (!zip.has('config.json')) throw new ConversionError(`the .keras upload holds no config.json (it holds ${holds()})`);
  if (!zip.has('model.weights.h5')) {
    if (zip.has('model.weights.npz')) throw new ConversionError('the .keras upload holds its weights as model.weights.npz; only model.weights.h5 (the default) is supported');
    throw new ConversionError(`the .keras upload holds no model.weights.h5 (it holds ${holds()})`);
  }
  const metadata = zip.has('metadata.json') ? readJson(zip, 'metadata.json') : undefined;
  const kerasVersion = isObject(metadata) && typeof metadata.keras_version === 'string' ? metadata.keras_version : '3';
  const kerasMajor = Number(/^(\d+)/.exec(kerasVersion)?.[1] ?? 3);
  const modelConfig = normalizeKeras3Config(readJson(zip, 'config.json'), kerasMajor);
  const file = openH5(zip.read('model.weights.h5'), 'the .keras model.weights.h5');
  const reader = new WeightReader(file);
  reader.readModel(modelConfig, '');
  const def = convertKerasModel(modelConfig, new Map(reader.weights.map((w) => [w.name, w])), { kerasVersion });
  const artifacts: TfjsArtifacts = {
    modelTopology: { keras_version: kerasVersion, backend: 'tensorflow', model_config: tfjsConfig(modelConfig, kerasMajor) as object },
    ...packWeights(reader.weights),
  };
  const gap = tfjsGap(artifacts.modelTopology);
  return gap ? { def, artifacts, fidelityUnavailable: gap } : { def, artifacts };
}
