import { gunzipSync } from 'node:zlib';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { convertKerasModel } from './keras-model';
import { readTfjsWeights } from './tfjs-weights';

/** The most bytes a TF.js folder's gzipped files may expand to, all together, unless told otherwise. */
export const DEFAULT_MAX_EXPANDED_BYTES = 1024 * 1024 * 1024;

/**
 * Bytes as they are, or gunzipped when they start with gzip's magic (tfjs files may be
 * compressed). Inflation stops at `maxBytes`: past it the file is refused (a gzip bomb expands
 * a thousandfold), before more than that is held.
 */
export function maybeGunzip(bytes: Uint8Array, what: string, maxBytes = DEFAULT_MAX_EXPANDED_BYTES): Uint8Array {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return new Uint8Array(gunzipSync(bytes, { maxOutputLength: Math.max(1, maxBytes) }));
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new ConversionError(`${what} is gzipped and expands past ${maxBytes} bytes (a gzip bomb?)`);
    throw new ConversionError(`${what} is gzipped but does not gunzip: ${(err as Error).message}`);
  }
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
export function readTfjsLayersModel(
  modelJson: Uint8Array,
  readShard: (path: string) => Uint8Array,
  maxExpandedBytes = DEFAULT_MAX_EXPANDED_BYTES,
): { def: ModelDef; artifacts: TfjsArtifacts } {
  // Every gzipped file shares one budget, so many small bombs add up to no more than one.
  let budget = maxExpandedBytes;
  const expand = (bytes: Uint8Array, what: string): Uint8Array => {
    const out = maybeGunzip(bytes, what, budget);
    if (out !== bytes) budget -= out.byteLength;
    return out;
  };
  const text = expand(modelJson, 'model.json');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(Buffer.from(text).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ConversionError(`model.json is not JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConversionError('model.json is not a JSON object');
  const topology = json.modelTopology as Record<string, unknown> | undefined;
  if (!topology || typeof topology !== 'object') throw new ConversionError('model.json has no modelTopology');
  if (json.format === 'graph-model' || (json.format === undefined && 'node' in topology)) {
    throw new ConversionError('model.json is a TF.js graph model (TF ops); only layers models (Keras topology) are supported');
  }
  const config = 'model_config' in topology ? topology.model_config : topology;
  const kerasVersion = typeof topology.keras_version === 'string' ? topology.keras_version : 'tfjs-layers';
  const manifest = json.weightsManifest ?? [];
  const groups: Uint8Array[] = [];
  const weights = readTfjsWeights(manifest, (p) => expand(readShard(p), `weight file "${p}"`), (bytes) => groups.push(bytes));
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
