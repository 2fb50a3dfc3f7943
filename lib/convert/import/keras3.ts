import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { H5Budget, openH5, packWeights, readingH5 } from './keras-h5';
import { convertKerasModel } from './keras-model';
import { isObject, normalizeKeras3Config } from './keras3-config';
import { tfjsConfig, tfjsGap } from './keras3-tfjs';
import { WeightReader } from './keras3-weights';
import type { TfjsArtifacts } from './tfjs-layers-model';
import { DEFAULT_ZIP_LIMITS, ZipArchive, type ZipLimits } from './zip';

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
  const what = 'the .keras model.weights.h5';
  const file = openH5(zip.read('model.weights.h5'), what);
  const reader = new WeightReader(file, new H5Budget(limits?.maxTotalBytes ?? DEFAULT_ZIP_LIMITS.maxTotalBytes, what));
  readingH5(what, () => reader.readModel(modelConfig, ''));
  const def = convertKerasModel(modelConfig, new Map(reader.weights.map((w) => [w.name, w])), { kerasVersion });
  const artifacts: TfjsArtifacts = {
    modelTopology: { keras_version: kerasVersion, backend: 'tensorflow', model_config: tfjsConfig(modelConfig, kerasMajor) as object },
    ...packWeights(reader.weights),
  };
  const gap = tfjsGap(artifacts.modelTopology);
  return gap ? { def, artifacts, fidelityUnavailable: gap } : { def, artifacts };
}
