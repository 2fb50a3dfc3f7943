import { Dataset, File, Group } from 'jsfive';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { convertKerasModel } from './keras-model';
import type { TfjsArtifacts } from './tfjs-layers-model';
import type { Weight } from './tfjs-weights';

/** An HDF5 attribute as text (jsfive gives strings, or bytes for fixed-length ones). */
export function h5Text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  return undefined;
}

/** A string-list attribute, joined from its `name0`, `name1`... parts when Keras split it (over 64 KB). */
function stringList(attrs: Record<string, unknown>, name: string): string[] {
  const whole = attrs[name];
  const parts = whole !== undefined ? [whole] : Object.keys(attrs).filter((k) => new RegExp(`^${name}\\d+$`).test(k)).sort((a, b) => Number(a.slice(name.length)) - Number(b.slice(name.length))).map((k) => attrs[k]);
  return parts.flatMap((p): unknown[] => (Array.isArray(p) ? (p as unknown[]) : [p])).map((v) => h5Text(v) ?? String(v));
}

/** Opens HDF5 bytes with jsfive; `what` names them in the refusal ("the .h5 upload"). */
export function openH5(bytes: Uint8Array, what: string): File {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  try {
    return new File(buffer, 'model.h5');
  } catch (err) {
    throw new ConversionError(`${what} is not an HDF5 file jsfive can read: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The part of jsfive's DataObjects (behind a Dataset) a contiguous dataset's bytes are found through. */
interface DataObjectsInternals {
  fh?: ArrayBuffer;
  dtype?: unknown;
  find_msg_type?(type: number): { get(key: string): unknown }[];
  _get_data_message_properties?(offset: number): [number, number, number, number];
}

const DATA_STORAGE_MESSAGE = 0x0008;
const CONTIGUOUS_LAYOUT = 1;

/**
 * A contiguous little-endian float32 dataset (how Keras and h5py store weights) read straight from
 * the file's bytes: jsfive's own `value` is a JS array of numbers, several times the data's size.
 * Undefined when the dataset is stored any other way or jsfive's internals are not as expected.
 */
function contiguousFloat32(d: Dataset): Float32Array | undefined {
  const o = (d as unknown as { _dataobjects?: DataObjectsInternals })._dataobjects;
  if (!o?.fh || o.dtype !== '<f4' || typeof o.find_msg_type !== 'function' || typeof o._get_data_message_properties !== 'function') return undefined;
  try {
    const message = o.find_msg_type(DATA_STORAGE_MESSAGE)[0];
    const messageOffset = message?.get('offset_to_message');
    if (typeof messageOffset !== 'number') return undefined;
    const [, , layout, at] = o._get_data_message_properties(messageOffset);
    if (layout !== CONTIGUOUS_LAYOUT) return undefined;
    const offset = Number(new DataView(o.fh).getBigUint64(at, true));
    const count = d.shape.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(offset) || offset + 4 * count > o.fh.byteLength) return undefined;
    // openH5 gave jsfive a buffer of its own, so an aligned dataset is used in place.
    return offset % 4 === 0 ? new Float32Array(o.fh, offset, count) : new Float32Array(o.fh.slice(offset, offset + 4 * count));
  } catch {
    return undefined;
  }
}

/**
 * What one upload's datasets may expand to, in float32 bytes, all together. A dataset's declared
 * shape is checked against what is left before any of it is read: a chunked, gzipped dataset of
 * zeros can declare gigabytes in a few kilobytes (an HDF5 bomb).
 */
export class H5Budget {
  constructor(
    private left: number,
    private readonly what: string,
  ) {}

  take(d: Dataset, where: string): void {
    const shape = d.shape as unknown;
    if (!Array.isArray(shape) || !shape.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) throw new ConversionError(`${this.what}: ${where} has no readable shape`);
    const bytes = 4 * (shape as number[]).reduce((a, b) => a * b, 1);
    if (bytes > this.left) throw new ConversionError(`${this.what}: ${where} declares ${bytes} bytes of weights, past the ${this.left} bytes left of the upload's limit (an HDF5 bomb?)`);
    this.left -= bytes;
  }
}

/** A dataset's values as float32 (Keras stores float32 weights; other numeric types are widened or narrowed), within `budget`. */
export function h5Floats(d: Dataset, budget: H5Budget, where: string): Float32Array {
  budget.take(d, where);
  return contiguousFloat32(d) ?? Float32Array.from(d.value, Number);
}

/**
 * Runs `read` over a jsfive file: what jsfive throws on a damaged file (offsets past its end,
 * unknown messages) becomes a refusal naming the file, not an internal error.
 */
export function readingH5<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ConversionError) throw err;
    throw new ConversionError(`${what} cannot be read (damaged or not as Keras writes it): ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

/** Weights as TF.js loads them: one spec per weight, and their float32 bytes back to back in the same order. */
export function packWeights(weights: Weight[]): Pick<TfjsArtifacts, 'weightSpecs' | 'weightData'> {
  const total = weights.reduce((a, w) => a + w.data.byteLength, 0);
  const weightData = new Uint8Array(total);
  let at = 0;
  for (const w of weights) {
    weightData.set(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength), at);
    at += w.data.byteLength;
  }
  return { weightSpecs: weights.map((w) => ({ name: w.name, shape: w.shape, dtype: 'float32' })), weightData: weightData.buffer };
}

/**
 * Converts a Keras 2 HDF5 model (`model_config` attribute, weights under `model_weights`) to
 * ONNX, and returns the artifacts TF.js loads the same model from.
 */
export function importKerasH5(bytes: Uint8Array, maxWeightBytes = 1024 * 1024 * 1024): { def: ModelDef; artifacts: TfjsArtifacts } {
  const what = 'the .h5 upload';
  const file = openH5(bytes, what);
  const { config, kerasVersion, weights } = readingH5(what, () => {
    const configText = h5Text(file.attrs.model_config);
    if (!configText) throw new ConversionError('the .h5 file has no model_config attribute (saved with weights only? save the whole model)');
    let config: unknown;
    try {
      config = JSON.parse(configText);
    } catch (err) {
      throw new ConversionError(`the .h5 model_config is not JSON: ${(err as Error).message}`);
    }
    const kerasVersion = h5Text(file.attrs.keras_version) ?? '2';
    const g = file.keys.includes('model_weights') ? file.get('model_weights') : file;
    if (!(g instanceof Group)) throw new ConversionError('the .h5 weights cannot be read: model_weights is not a group');
    const budget = new H5Budget(maxWeightBytes, what);
    const weights = new Map<string, Weight>();
    for (const layer of stringList(g.attrs, 'layer_names')) {
      const group = g.get(layer);
      if (!(group instanceof Group)) throw new ConversionError(`the .h5 weights of layer "${layer}" are not a group`);
      for (const weightName of stringList(group.attrs, 'weight_names')) {
        const d = group.get(weightName);
        if (!(d instanceof Dataset)) throw new ConversionError(`the .h5 weight "${layer}/${weightName}" is not a dataset`);
        const name = weightName.replace(/:\d+$/, '');
        weights.set(name, { name, shape: d.shape, data: h5Floats(d, budget, `weight "${layer}/${weightName}"`) });
      }
    }
    return { config, kerasVersion, weights };
  });
  const def = convertKerasModel((config as { config?: unknown; class_name?: string } | null)?.class_name ? config : undefined, weights, { kerasVersion });
  return { def, artifacts: { modelTopology: { keras_version: kerasVersion, backend: 'tensorflow', model_config: config as object }, ...packWeights([...weights.values()]) } };
}
