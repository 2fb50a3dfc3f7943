import { Dataset, Group, type File } from 'jsfive';
import { ConversionError } from '../errors';
import { h5Floats, h5Text, type H5Budget } from './keras-h5';
import { MODEL_CLASSES } from './keras-model';
import type { Json } from './keras3-config';
import type { Weight } from './tfjs-weights';

// A `.keras` file's model.weights.h5: each layer's variables at
// `layers/<snake_case(class)>[_N]/vars/<i>`, numbered per class in the order of the model's layers.

const RNN_CLASSES = new Set(['LSTM', 'GRU', 'SimpleRNN']);

/** Keras's `naming.to_snake_case`, which names a layer's folder in model.weights.h5 by its class. */
export function kerasSnakeCase(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

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

/** Reads a model's weights from model.weights.h5, layer by layer in Keras's order, checking each against its layer. */
export class WeightReader {
  readonly weights: Weight[] = [];
  private readonly names = new Set<string>();
  /** Keras 2.13-2.15 wrote `.keras` files with `_layer_checkpoint_dependencies` where Keras 3 writes `layers`. */
  private readonly layersKey: string;

  constructor(
    private readonly file: File,
    private readonly budget: H5Budget,
  ) {
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
        // Keras marks bfloat16 variables with a dtype attribute; their stored bits are not float32 values.
        if (h5Text(d.attrs.dtype) === 'bfloat16') {
          throw new ConversionError(`model.weights.h5: ${path}/${index} (${where}, ${key}) holds bfloat16 values, which the importer does not read; save the model with float32 weights`);
        }
        this.add({ name: `${g.prefix}/${key}`, shape, data: h5Floats(d, this.budget, `${path}/${index}`) }, where);
      });
    }
  }
}
