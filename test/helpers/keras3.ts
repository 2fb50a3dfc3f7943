// Keras 3 `.keras` files written in test code to the layout Keras's saving_lib writes: a stored zip
// of metadata.json, config.json (Keras 3 serialization: {module, class_name, config,
// registered_name}, DTypePolicy objects, batch_shape, {args, kwargs} inbound nodes) and
// model.weights.h5 (variables at layers/<snake_case(class)>[_N]/vars/<i>, RNN cells under cell/).
import { writeZip } from '../../lib/convert/import/zip';
import { tfl, writeH5 } from './tfjs';

type Json = Record<string, unknown>;

export interface Keras3Vars {
  /** Folder (`layers/dense`, `layers/lstm/cell`) -> its variables, written as `<folder>/vars/<i>`. */
  vars: Record<string, { shape: number[]; data: ArrayLike<number>; attrs?: Record<string, unknown> }[]>;
}

export const DTYPE_POLICY = { module: 'keras', class_name: 'DTypePolicy', config: { name: 'float32' }, registered_name: null };

/** A Keras 3 KerasTensor reference, as inbound nodes and call arguments hold it. */
export function kerasTensor(layer: string, node = 0, tensor = 0, shape: (number | null)[] = [null]): Json {
  return { class_name: '__keras_tensor__', config: { shape, dtype: 'float32', keras_history: [layer, node, tensor] } };
}

/** A layer entry as Keras 3 serializes it inside a model config. */
export function keras3Layer(className: string, config: Json, inbound?: Json[]): Json {
  const module = className === 'Functional' ? 'keras.src.models.functional' : className === 'Sequential' ? 'keras' : 'keras.layers';
  const withDtype = className === 'InputLayer' ? config : { trainable: true, ...config, dtype: DTYPE_POLICY };
  const entry: Json = { module, class_name: className, config: withDtype, registered_name: className === 'Functional' ? 'Functional' : null };
  if (inbound !== undefined) {
    entry.name = config.name;
    entry.inbound_nodes = inbound;
  }
  return entry;
}

/** The `.keras` zip (stored, as Keras writes it); `omit` leaves a member out, for refusals. */
export function writeKeras3(config: Json, weights: Keras3Vars, options: { kerasVersion?: string; omit?: string; emptyFolders?: string[] } = {}): Uint8Array {
  const groups = new Set<string>(['vars']);
  const addParents = (path: string) => {
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) groups.add(parts.slice(0, i).join('/'));
  };
  const datasets: { path: string; shape: number[]; data: number[]; attrs?: Record<string, unknown> }[] = [];
  for (const folder of options.emptyFolders ?? []) addParents(`${folder}/vars`);
  for (const [folder, vars] of Object.entries(weights.vars)) {
    addParents(`${folder}/vars`);
    vars.forEach((v, i) => datasets.push({ path: `${folder}/vars/${i}`, shape: v.shape, data: Array.from(v.data), ...(v.attrs ? { attrs: v.attrs } : {}) }));
  }
  const sorted = [...groups].sort((a, b) => a.split('/').length - b.split('/').length);
  const h5 = writeH5({ groups: Object.fromEntries(sorted.map((g) => [g, {}])), datasets });
  const metadata = { keras_version: options.kerasVersion ?? '3.5.0', date_saved: '2026-12-05@12:00:00' };
  const files = [
    { name: 'metadata.json', data: new Uint8Array(Buffer.from(JSON.stringify(metadata))) },
    { name: 'config.json', data: new Uint8Array(Buffer.from(JSON.stringify(config))) },
    { name: 'model.weights.h5', data: h5 },
  ].filter((f) => f.name !== options.omit);
  return writeZip(files, true);
}

// --- a TF.js model written as Keras 3 would save the same model ---

function snake(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const MODELS = new Set(['Sequential', 'Functional', 'Model']);

function keras3Config(className: string, config: Json): Json {
  if (MODELS.has(className)) return keras3Model(className === 'Sequential' ? 'Sequential' : 'Functional', config);
  const out: Json = {};
  for (const [k, v] of Object.entries(config)) {
    if (k === 'batch_input_shape') {
      if (className === 'InputLayer') out.batch_shape = v;
      continue;
    }
    if ((k === 'activation' || k === 'recurrent_activation') && typeof v === 'string' && /hard_?sigmoid/i.test(v)) {
      throw new Error(`a TF.js ${className} with ${k} ${v} computes Keras 2's hard_sigmoid, not Keras 3's: write it by hand`);
    }
    out[k] = k.endsWith('_initializer') && isObject(v) ? { module: 'keras.initializers', class_name: v.class_name, config: v.config, registered_name: null } : v;
  }
  if (className === 'Bidirectional' && isObject(config.layer)) {
    const inner = config.layer as { class_name: string; config: Json };
    const name = String(inner.config.name);
    out.layer = keras3Layer(inner.class_name, { ...keras3Config(inner.class_name, inner.config), name: `forward_${name}` });
    out.backward_layer = keras3Layer(inner.class_name, { ...keras3Config(inner.class_name, inner.config), name: `backward_${name}`, go_backwards: true });
  }
  return out;
}

function keras3Model(className: 'Sequential' | 'Functional', config: Json): Json {
  const layers = config.layers as { class_name: string; config: Json; name?: string; inbound_nodes?: unknown[][][] }[];
  if (className === 'Sequential') {
    const plain = layers.map((l) => keras3Layer(l.class_name, keras3Config(l.class_name, l.config)));
    // Keras 3 turns a first layer's input_shape into an InputLayer of its own.
    const shape = layers[0]?.config.batch_input_shape;
    if (layers[0]?.class_name !== 'InputLayer' && Array.isArray(shape)) plain.unshift(keras3Layer('InputLayer', { batch_shape: shape, dtype: 'float32', sparse: false, name: `${String(config.name)}_input` }));
    return { name: config.name, trainable: true, dtype: DTYPE_POLICY, layers: plain };
  }
  // Keras 2 and TF.js number a nested model's calls from 1 (node 0 is its construction). Keras 3
  // numbers them from 0 where a call reads them, and where outputs are named counts a Functional's
  // from 1 and a Sequential's from 0 (functional.py: get_config, serialize_node).
  const models = new Set(layers.filter((l) => MODELS.has(l.class_name)).map((l) => l.name ?? String(l.config.name)));
  const sequentials = new Set(layers.filter((l) => l.class_name === 'Sequential').map((l) => l.name ?? String(l.config.name)));
  const ref = (r: unknown[]) => kerasTensor(String(r[0]), Number(r[1]) - (models.has(String(r[0])) ? 1 : 0), Number(r[2]));
  return {
    name: config.name,
    trainable: true,
    layers: layers.map((l) => {
      const className = l.class_name === 'Model' ? 'Functional' : l.class_name;
      const inbound = (l.inbound_nodes ?? []).map((node) => ({ args: node.length === 1 ? [ref(node[0]!)] : [node.map(ref)], kwargs: {} }));
      return keras3Layer(className, { ...keras3Config(l.class_name, l.config), name: l.name ?? l.config.name }, inbound);
    }),
    input_layers: config.input_layers,
    output_layers: (config.output_layers as unknown[][]).map((r) => [r[0], Number(r[1]) - (sequentials.has(String(r[0])) ? 1 : 0), r[2]]),
  };
}

function layerClass(layer: tfl.layers.Layer): string {
  const c = layer.getClassName();
  return c === 'Model' ? 'Functional' : c;
}

function collectVars(model: tfl.LayersModel, base: string, out: Keras3Vars, empty: string[]): void {
  const used = new Map<string, number>();
  let layers = model.layers;
  if (layerClass(model) === 'Sequential' && layers[0]?.getClassName() === 'InputLayer') layers = layers.slice(1);
  for (const layer of layers) {
    const s = snake(layerClass(layer));
    const n = used.get(s);
    used.set(s, n === undefined ? 0 : n + 1);
    const folder = `${base}layers/${n === undefined ? s : `${s}_${n + 1}`}`;
    const values = layer.weights.map((w) => ({ shape: w.shape as number[], data: w.read().dataSync() as Float32Array }));
    if (layer instanceof tfl.LayersModel) collectVars(layer, `${folder}/`, out, empty);
    else if (['LSTM', 'GRU', 'SimpleRNN'].includes(layer.getClassName())) out.vars[`${folder}/cell`] = values;
    else if (layer.getClassName() === 'Bidirectional') {
      out.vars[`${folder}/forward_layer/cell`] = values.slice(0, values.length / 2);
      out.vars[`${folder}/backward_layer/cell`] = values.slice(values.length / 2);
    } else if (values.length) out.vars[folder] = values;
    else empty.push(folder);
  }
}

/** The TF.js model as Keras 3 saves the same model to a `.keras` file. */
export function keras3FromTfjs(model: tfl.LayersModel, options: { kerasVersion?: string } = {}): Uint8Array {
  const topology = model.toJSON(undefined, false) as unknown as { class_name: string; config: Json };
  const className = topology.class_name === 'Sequential' ? 'Sequential' : 'Functional';
  const config = {
    module: className === 'Sequential' ? 'keras' : 'keras.src.models.functional',
    class_name: className,
    config: keras3Model(className, topology.config),
    registered_name: className === 'Functional' ? 'Functional' : null,
    build_config: { input_shape: null },
    compile_config: null,
  };
  const weights: Keras3Vars = { vars: {} };
  const empty: string[] = [];
  collectVars(model, '', weights, empty);
  return writeKeras3(config, weights, { ...options, emptyFolders: empty });
}
