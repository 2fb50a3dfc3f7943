import { gunzipSync } from 'node:zlib';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { convertKerasModel } from './keras-model';
import { readTfjsWeights } from './tfjs-weights';

/** Bytes as they are, or gunzipped when they start with gzip's magic (tfjs files may be compressed). */
export function maybeGunzip(bytes: Uint8Array): Uint8Array {
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? new Uint8Array(gunzipSync(bytes)) : bytes;
}

/**
 * Converts a TF.js layers model (`model.json` and its weight shards, read by path) to an ONNX model.
 * A graph model is refused by name.
 */
export function importTfjsLayersModel(modelJson: Uint8Array, readShard: (path: string) => Uint8Array): ModelDef {
  return readTfjsLayersModel(modelJson, readShard).def;
}

/** The bytes as an ArrayBuffer of their own length (copied only when they are a view into a larger one). */
function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  return bytes.slice().buffer;
}

/** What TF.js itself needs to load the same model (for measuring the conversion against it). */
export interface TfjsArtifacts {
  modelTopology: object;
  /** Every group's weight entries, in order. */
  weightSpecs: object[];
  /** Every group's shards, concatenated in the same order. */
  weightData: ArrayBuffer;
}

/** The ONNX model of a TF.js layers model, and the artifacts TF.js loads it from. */
export function readTfjsLayersModel(modelJson: Uint8Array, readShard: (path: string) => Uint8Array): { def: ModelDef; artifacts: TfjsArtifacts } {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(Buffer.from(maybeGunzip(modelJson)).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ConversionError(`model.json is not JSON: ${(err as Error).message}`);
  }
  const topology = json.modelTopology as Record<string, unknown> | undefined;
  if (!topology || typeof topology !== 'object') throw new ConversionError('model.json has no modelTopology');
  if (json.format === 'graph-model' || (json.format === undefined && 'node' in topology)) {
    throw new ConversionError('model.json is a TF.js graph model (TF ops); only layers models (Keras topology) are supported');
  }
  const config = 'model_config' in topology ? topology.model_config : topology;
  const kerasVersion = typeof topology.keras_version === 'string' ? topology.keras_version : 'tfjs-layers';
  const manifest = json.weightsManifest ?? [];
  const groups: Uint8Array[] = [];
  const weights = readTfjsWeights(manifest, (p) => maybeGunzip(readShard(p)), (bytes) => groups.push(bytes));
  const def = convertKerasModel(config, weights, { kerasVersion });
  // TF.js reads the groups' bytes back to back; one group is handed over without a copy.
  const weightData = groups.length === 1 ? groups[0]! : new Uint8Array(groups.reduce((a, b) => a + b.byteLength, 0));
  if (groups.length !== 1) {
    let at = 0;
    for (const g of groups) {
      weightData.set(g, at);
      at += g.byteLength;
    }
  }
  const weightSpecs = (manifest as { weights: object[] }[]).flatMap((g) => g.weights);
  return { def, artifacts: { modelTopology: topology, weightSpecs, weightData: exactBuffer(weightData) } };
}
