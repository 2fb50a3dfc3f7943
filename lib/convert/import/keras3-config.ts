import { ConversionError } from '../errors';
import { MODEL_CLASSES } from './keras-model';

// A `.keras` file's config.json (Keras 3 serialization) in the Keras 2 form the converter and TF.js read.

export type Json = Record<string, unknown>;
type Ref = [string, number, number];

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

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

/** The tensors a Keras 3 call (`{args, kwargs}` with `__keras_tensor__` entries) reads, in order. */
function callRefs(node: Json): Ref[] {
  const refs: Ref[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (isObject(v)) {
      if (v.class_name === '__keras_tensor__' && isObject(v.config) && Array.isArray(v.config.keras_history)) {
        const [name, index, tensor] = v.config.keras_history as unknown[];
        refs.push([String(name), Number(index), Number(tensor)]);
      } else Object.values(v).forEach(visit);
    }
  };
  visit(node.args);
  return refs;
}

/** A call as a Keras 2 node (`[[layer, node, tensor, kwargs], ...]`); a Keras 2 node is kept as it is. */
function plainNode(node: unknown, shift: (name: string) => number): unknown[] {
  if (Array.isArray(node)) return node;
  if (!isObject(node)) return [];
  return callRefs(node).map(([name, index, tensor]) => [name, index + shift(name), tensor, {}]);
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
  // Keras 2 and TF.js count a nested model's own construction as its node 0 and its calls from 1.
  // Keras 3 numbers a nested model's calls from 0 where other layers' calls read them; where the
  // model's outputs are named, it counts a Functional's from 1 and a Sequential's (no longer a
  // Functional) from 0. Nested models read as node 0 are renumbered from 1.
  const nameOf = (l: unknown): string => String((l as Json).name ?? (isObject((l as Json).config) ? ((l as Json).config as Json).name : ''));
  const models = new Set(layers.filter((l) => isObject(l) && MODEL_CLASSES.has(String(l.class_name))).map(nameOf));
  const sequentials = new Set(layers.filter((l) => isObject(l) && l.class_name === 'Sequential').map(nameOf));
  const fromZero = new Set<string>();
  if (major >= 3) {
    for (const l of layers) {
      for (const node of Array.isArray((l as Json).inbound_nodes) ? ((l as Json).inbound_nodes as unknown[]) : []) {
        if (isObject(node)) for (const [ref, index] of callRefs(node)) if (index === 0 && models.has(ref)) fromZero.add(ref);
      }
    }
  }
  const callShift = (n: string): number => (fromZero.has(n) ? 1 : 0);
  const outputShift = (n: string): number => (major >= 3 && sequentials.has(n) ? 1 : 0);
  const plain = layers.map((l, i) => {
    const spec = l as Json;
    const out = plainLayer(spec, `layer ${i} of "${String(name)}"`, major);
    out.name ??= (out.config as Json).name;
    out.inbound_nodes = Array.isArray(spec.inbound_nodes) ? spec.inbound_nodes.map((n) => plainNode(n, callShift)) : [];
    return out;
  });
  return { name, layers: plain, input_layers: refList(config.input_layers, () => 0), output_layers: refList(config.output_layers, outputShift) };
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
