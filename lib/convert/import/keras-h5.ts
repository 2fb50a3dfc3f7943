import { Dataset, File, Group } from 'jsfive';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { convertKerasModel } from './keras-model';
import type { TfjsArtifacts } from './tfjs-layers-model';
import type { Weight } from './tfjs-weights';

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  return undefined;
}

/** A string-list attribute, joined from its `name0`, `name1`... parts when Keras split it (over 64 KB). */
function stringList(attrs: Record<string, unknown>, name: string): string[] {
  const whole = attrs[name];
  const parts = whole !== undefined ? [whole] : Object.keys(attrs).filter((k) => new RegExp(`^${name}\\d+$`).test(k)).sort((a, b) => Number(a.slice(name.length)) - Number(b.slice(name.length))).map((k) => attrs[k]);
  return parts.flatMap((p): unknown[] => (Array.isArray(p) ? (p as unknown[]) : [p])).map((v) => text(v) ?? String(v));
}

function open(bytes: Uint8Array): File {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  try {
    return new File(buffer, 'model.h5');
  } catch (err) {
    throw new ConversionError(`the .h5 upload is not an HDF5 file jsfive can read: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Converts a Keras 2 HDF5 model (`model_config` attribute, weights under `model_weights`) to
 * ONNX, and returns the artifacts TF.js loads the same model from.
 */
export function importKerasH5(bytes: Uint8Array): { def: ModelDef; artifacts: TfjsArtifacts } {
  const file = open(bytes);
  const configText = text(file.attrs.model_config);
  if (!configText) throw new ConversionError('the .h5 file has no model_config attribute (saved with weights only? save the whole model)');
  let config: unknown;
  try {
    config = JSON.parse(configText);
  } catch (err) {
    throw new ConversionError(`the .h5 model_config is not JSON: ${(err as Error).message}`);
  }
  const kerasVersion = text(file.attrs.keras_version) ?? '2';
  let root: Group;
  try {
    const g = file.keys.includes('model_weights') ? file.get('model_weights') : file;
    if (!(g instanceof Group)) throw new Error('model_weights is not a group');
    root = g;
  } catch (err) {
    throw new ConversionError(`the .h5 weights cannot be read: ${(err as Error).message}`);
  }
  const weights = new Map<string, Weight>();
  const specs: { name: string; shape: number[]; dtype: string }[] = [];
  const chunks: Float32Array[] = [];
  for (const layer of stringList(root.attrs, 'layer_names')) {
    const group = root.get(layer);
    if (!(group instanceof Group)) throw new ConversionError(`the .h5 weights of layer "${layer}" are not a group`);
    for (const weightName of stringList(group.attrs, 'weight_names')) {
      const d = group.get(weightName);
      if (!(d instanceof Dataset)) throw new ConversionError(`the .h5 weight "${layer}/${weightName}" is not a dataset`);
      const data = Float32Array.from(d.value, Number);
      const name = weightName.replace(/:\d+$/, '');
      weights.set(name, { name, shape: d.shape, data });
      specs.push({ name, shape: d.shape, dtype: 'float32' });
      chunks.push(data);
    }
  }
  const def = convertKerasModel((config as { config?: unknown; class_name?: string }).class_name ? config : undefined, weights, { kerasVersion });
  const total = chunks.reduce((a, c) => a + c.byteLength, 0);
  const weightData = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    weightData.set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), at);
    at += c.byteLength;
  }
  return { def, artifacts: { modelTopology: { keras_version: kerasVersion, backend: 'tensorflow', model_config: config as object }, weightSpecs: specs, weightData: weightData.buffer } };
}
