import type { ModelDef, ValueDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { GraphBuilder, type Shape, type Sym } from './graph-builder';
import { LAYER_CONVERTERS } from './keras-layers';
import type { Weight } from './tfjs-weights';

interface LayerSpec {
  class_name: string;
  name?: string;
  config: Record<string, unknown>;
  inbound_nodes?: unknown[];
}

/** Where a Keras file came from, which settles a few defaults that changed between versions. */
export interface KerasSource {
  /** `keras_version` of the file ("2.15.0", "3.5.0", "tfjs-layers 4.22.0"). */
  kerasVersion: string;
}

/** Class names of Keras models (a model can be a layer of another). */
export const MODEL_CLASSES = new Set(['Sequential', 'Functional', 'Model']);

/** Every layer class the importer converts. */
export const SUPPORTED_LAYERS = ['InputLayer', ...Object.keys(LAYER_CONVERTERS), ...MODEL_CLASSES].sort();

interface ModelState {
  g: GraphBuilder;
  weights: Map<string, Weight>;
  kerasMajor: number;
  fromTfjs: boolean;
  graphInputs: ValueDef[];
}

function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConversionError(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function layerName(spec: LayerSpec): string {
  const n = spec.name ?? spec.config.name;
  if (typeof n !== 'string') throw new ConversionError(`a ${spec.class_name} layer has no name`);
  return n;
}

/** The layer's weight `key`: stored as `<layer>/<key>`, possibly under a prefix or a cell scope. */
function findWeight(weights: Map<string, Weight>, layer: string, key: string): Weight | undefined {
  const exact = weights.get(`${layer}/${key}`);
  if (exact) return exact;
  for (const [name, w] of weights) {
    const bare = name.replace(/:\d+$/, '');
    if (bare === `${layer}/${key}` || bare.endsWith(`/${layer}/${key}`)) return w;
  }
  return undefined;
}

/** A weight `key` under the layer's `scope` prefix, any cell scope between (`lstm/lstm_cell/kernel`). */
function findScopedWeight(weights: Map<string, Weight>, layer: string, scope: string, key: string): Weight | undefined {
  for (const [name, w] of weights) {
    const bare = name.replace(/:\d+$/, '');
    const head = `${layer}/${scope}`;
    if ((bare.startsWith(head) || bare.includes(`/${head}`)) && (bare.endsWith(`/${key}`) || bare === `${layer}/${key}`)) return w;
  }
  return undefined;
}

function symbolicShape(shape: Shape, prefix: string): (number | string)[] {
  return shape.map((d, i) => (d === null ? (i === 0 ? 'batch' : `${prefix}_${i}`) : d));
}

function inputLayerShape(spec: LayerSpec): { shape: Shape; dtype: 'float32' | 'int32' } {
  const c = spec.config;
  const shape = (c.batch_input_shape ?? c.batch_shape ?? (Array.isArray(c.input_shape) ? [null, ...(c.input_shape as Shape)] : undefined)) as Shape | undefined;
  if (!Array.isArray(shape)) throw new ConversionError(`input layer "${layerName(spec)}" has no batch_input_shape`);
  const dtype = c.dtype === 'int32' || c.dtype === 'int64' ? 'int32' : 'float32';
  if (c.dtype !== undefined && c.dtype !== null && typeof c.dtype === 'string' && !['float32', 'int32', 'int64'].includes(c.dtype)) {
    throw new ConversionError(`input layer "${layerName(spec)}" has dtype ${c.dtype} (supported: float32, int32)`);
  }
  return { shape, dtype };
}

function addGraphInput(state: ModelState, name: string, shape: Shape, dtype: 'float32' | 'int32'): Sym {
  state.g.reserve(name);
  state.graphInputs.push({ name, elemType: dtype === 'int32' ? 6 : 1, shape: symbolicShape(shape, name) });
  return { name, shape, channelsFirst: false, dtype };
}

function convertLayer(state: ModelState, spec: LayerSpec, inputs: Sym[]): Sym[] {
  const name = layerName(spec);
  if (MODEL_CLASSES.has(spec.class_name)) return convertModelConfig(state, spec, inputs);
  const convert = LAYER_CONVERTERS[spec.class_name];
  if (!convert) {
    throw new ConversionError(`layer "${name}" (${spec.class_name}) is not supported; supported layers: ${SUPPORTED_LAYERS.join(', ')}`);
  }
  return [
    convert(
      {
        g: state.g,
        name,
        className: spec.class_name,
        config: spec.config,
        weight: (key) => findWeight(state.weights, name, key),
        weightIn: (scope, key) => findScopedWeight(state.weights, name, scope, key),
        kerasMajor: state.kerasMajor,
        fromTfjs: state.fromTfjs,
      },
      inputs,
    ),
  ];
}

type Ref = [string, number, number];

/** The tensors one call of a layer reads: Keras 2 lists or Keras 3 `{args, kwargs}`. */
function nodeRefs(node: unknown, where: string): Ref[] {
  if (Array.isArray(node)) {
    return node.map((r) => {
      if (!Array.isArray(r) || typeof r[0] !== 'string') throw new ConversionError(`${where}: inbound node ${JSON.stringify(r)} is not [layer, node, tensor]`);
      return [r[0], Number(r[1] ?? 0), Number(r[2] ?? 0)];
    });
  }
  const refs: Ref[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (o.class_name === '__keras_tensor__') {
        const h = asObject(o.config, where).keras_history as unknown[];
        refs.push([String(h[0]), Number(h[1]), Number(h[2])]);
      }
    }
  };
  visit(asObject(node, where).args);
  return refs;
}

function sequentialLayers(config: unknown): LayerSpec[] {
  if (Array.isArray(config)) return config as LayerSpec[];
  const layers = asObject(config, 'Sequential config').layers;
  if (!Array.isArray(layers)) throw new ConversionError('Sequential config has no layers');
  return layers as LayerSpec[];
}

/** Converts a model config; `given` are its input tensors when the model is nested. */
function convertModelConfig(state: ModelState, spec: LayerSpec, given?: Sym[]): Sym[] {
  const modelName = typeof spec.config.name === 'string' ? spec.config.name : (spec.name ?? 'model');
  if (spec.class_name === 'Sequential') {
    const layers = sequentialLayers(spec.config);
    let x: Sym;
    let rest = layers;
    if (given) {
      if (given.length !== 1) throw new ConversionError(`nested Sequential "${modelName}" is called with ${given.length} inputs`);
      x = given[0]!;
      if (layers[0]?.class_name === 'InputLayer') rest = layers.slice(1);
    } else if (layers[0]?.class_name === 'InputLayer') {
      const { shape, dtype } = inputLayerShape(layers[0]);
      x = addGraphInput(state, layerName(layers[0]), shape, dtype);
      rest = layers.slice(1);
    } else if (layers[0]) {
      const { shape, dtype } = inputLayerShape(layers[0]);
      x = addGraphInput(state, `${layerName(layers[0])}_input`, shape, dtype);
    } else {
      throw new ConversionError(`Sequential "${modelName}" has no layers`);
    }
    for (const layer of rest) x = convertLayer(state, layer, [x])[0]!;
    return [x];
  }
  const layers = spec.config.layers;
  if (!Array.isArray(layers)) throw new ConversionError(`model "${modelName}" has no layers`);
  const specs = new Map<string, LayerSpec>((layers as LayerSpec[]).map((l) => [layerName(l), l]));
  const tensors = new Map<string, Sym>();
  const key = (r: Ref) => `${r[0]}@${r[1]}@${r[2]}`;
  const refsOf = (v: unknown, what: string): Ref[] => {
    if (!Array.isArray(v)) throw new ConversionError(`model "${modelName}": ${what} is not a list`);
    // A single [name, node, tensor] or a list of them.
    return (typeof v[0] === 'string' ? [v] : v).map((r: unknown) => {
      const a = r as unknown[];
      return [String(a[0]), Number(a[1] ?? 0), Number(a[2] ?? 0)] as Ref;
    });
  };
  const inputRefs = refsOf(spec.config.input_layers, 'input_layers');
  inputRefs.forEach((r, i) => {
    const s = specs.get(r[0]);
    if (!s) throw new ConversionError(`model "${modelName}": input layer "${r[0]}" is not among its layers`);
    if (given) {
      const g = given[i];
      if (!g) throw new ConversionError(`nested model "${modelName}" is called with ${given.length} inputs, it has ${inputRefs.length}`);
      tensors.set(key(r), g);
    } else {
      const { shape, dtype } = inputLayerShape(s);
      tensors.set(key(r), addGraphInput(state, r[0], shape, dtype));
    }
  });
  // Calls of every layer, converted once all the tensors they read exist.
  const pending: { spec: LayerSpec; node: number; refs: Ref[] }[] = [];
  for (const s of specs.values()) {
    if (s.class_name === 'InputLayer') continue;
    // A nested model's node 0 is its own construction, which the config leaves out of inbound_nodes.
    const first = MODEL_CLASSES.has(s.class_name) ? 1 : 0;
    (s.inbound_nodes ?? []).forEach((node, n) => pending.push({ spec: s, node: n + first, refs: nodeRefs(node, `layer "${layerName(s)}"`) }));
  }
  while (pending.length) {
    const ready = pending.findIndex((p) => p.refs.every((r) => tensors.has(key(r))));
    if (ready < 0) {
      const p = pending[0]!;
      const missing = p.refs.find((r) => !tensors.has(key(r)))!;
      throw new ConversionError(`model "${modelName}": layer "${layerName(p.spec)}" reads ${missing[0]}[${missing[1]}][${missing[2]}], which no layer produces`);
    }
    const [p] = pending.splice(ready, 1);
    const outputs = convertLayer(
      state,
      p!.spec,
      p!.refs.map((r) => tensors.get(key(r))!),
    );
    outputs.forEach((o, t) => tensors.set(key([layerName(p!.spec), p!.node, t]), o));
  }
  return refsOf(spec.config.output_layers, 'output_layers').map((r) => {
    const t = tensors.get(key(r));
    if (!t) throw new ConversionError(`model "${modelName}": output ${r[0]}[${r[1]}][${r[2]}] is never computed`);
    return t;
  });
}

/** The graph output names: the output layers' names (as Keras and tfjs name them), made unique. */
function outputNames(spec: LayerSpec, count: number): string[] {
  const names: string[] = [];
  if (spec.class_name === 'Sequential') {
    const layers = sequentialLayers(spec.config);
    names.push(layerName(layers[layers.length - 1]!));
  } else {
    const v = spec.config.output_layers as unknown[];
    const refs = typeof v[0] === 'string' ? [v] : v;
    for (const r of refs) names.push(String((r as unknown[])[0]));
  }
  const seen = new Map<string, number>();
  return names.slice(0, count).map((n) => {
    const k = seen.get(n) ?? 0;
    seen.set(n, k + 1);
    return k ? `${n}_${k}` : n;
  });
}

/**
 * Converts a Keras model (its topology and its weights by name) to an ONNX model.
 * Inputs and outputs keep Keras's names, shapes and dtypes and channels-last order; inside,
 * convolutions run channels-first, with a transpose only where a tensor changes layout.
 */
export function convertKerasModel(modelConfig: unknown, weights: Map<string, Weight>, source: KerasSource): ModelDef {
  try {
    return convertChecked(modelConfig, weights, source);
  } catch (err) {
    if (err instanceof ConversionError) throw err;
    // A config shaped unlike anything Keras writes (a string where a list belongs, a cycle
    // deeper than the stack...) is the upload's fault: said so, with what broke.
    throw new ConversionError(`the Keras model config is malformed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

function convertChecked(modelConfig: unknown, weights: Map<string, Weight>, source: KerasSource): ModelDef {
  const spec = asObject(modelConfig, 'model_config') as unknown as LayerSpec;
  if (!MODEL_CLASSES.has(spec.class_name)) throw new ConversionError(`model_config is a ${String(spec.class_name)}, not a Sequential or Functional model`);
  const fromTfjs = source.kerasVersion.startsWith('tfjs');
  const major = fromTfjs ? 2 : Number(/^(\d+)/.exec(source.kerasVersion)?.[1] ?? 2);
  const state: ModelState = { g: new GraphBuilder(), weights, kerasMajor: major, fromTfjs, graphInputs: [] };
  const syms = convertModelConfig(state, spec);
  const names = outputNames(spec, syms.length);
  const outputs: ValueDef[] = syms.map((s, i) => {
    const last = state.g.channelsLast(s);
    const name = names[i]!;
    state.g.nodes.push({ opType: 'Identity', inputs: [last.name], outputs: [name], name: state.g.unique(`${name}/output`) });
    return { name, elemType: last.dtype === 'int32' ? 6 : 1, shape: symbolicShape(last.shape, name) };
  });
  return {
    graph: { name: typeof spec.config.name === 'string' ? spec.config.name : 'keras', nodes: state.g.nodes, inputs: state.graphInputs, outputs, initializers: state.g.initializers },
    opsets: [{ domain: '', version: 17 }],
    producerName: 'onnx-lambda keras import',
  };
}
