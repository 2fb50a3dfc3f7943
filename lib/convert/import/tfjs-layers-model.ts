import { gunzipSync } from 'node:zlib';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { convertKerasModel } from './keras-model';
import { readTfjsWeights, type Weight } from './tfjs-weights';

/** The most bytes a TF.js folder's gzipped files may expand to, all together, unless told otherwise. */
export const DEFAULT_MAX_EXPANDED_BYTES = 1024 * 1024 * 1024;

/** A file's bytes as they are, or gunzipped when they start with gzip's magic. */
export type Expand = (bytes: Uint8Array, what: string) => Uint8Array;

/**
 * Gunzips the files of one TF.js folder (tfjs files may be compressed) within one budget, so many
 * small bombs add up to no more than one. Inflation stops at what is left of `maxBytes`: past it
 * the file is refused before more than that is held (a gzip bomb expands a thousandfold).
 */
export function gunzipWithin(maxBytes = DEFAULT_MAX_EXPANDED_BYTES): Expand {
  let left = maxBytes;
  return (bytes, what) => {
    if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
    let out: Uint8Array;
    try {
      out = new Uint8Array(gunzipSync(bytes, { maxOutputLength: Math.max(1, left) }));
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new ConversionError(`${what} is gzipped and expands past ${maxBytes} bytes in all (a gzip bomb?)`);
      throw new ConversionError(`${what} is gzipped but does not gunzip: ${(err as Error).message}`);
    }
    left -= out.byteLength;
    return out;
  };
}

/**
 * Converts a TF.js layers model (`model.json` and its weight shards, read by path) to an ONNX model.
 * A graph model is refused (convert it with readTfjsGraphModel).
 */
export function importTfjsLayersModel(modelJson: Uint8Array, readShard: (path: string) => Uint8Array): ModelDef {
  return readTfjsLayersModel(parseModelJson(modelJson), readShard).def;
}

/** The bytes as an ArrayBuffer of their own length (copied only when they are a view into a larger one). */
function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  return bytes.slice().buffer;
}

/** What TF.js itself needs to load the same model (for measuring the conversion against it). */
export interface TfjsArtifacts {
  /** `graph-model` for a graph model (run by tfjs-converter); absent for a layers model. */
  format?: 'graph-model';
  modelTopology: object;
  /** Every group's weight entries, in order. */
  weightSpecs: object[];
  /** Every group's shards, concatenated in the same order. */
  weightData: ArrayBuffer;
  /** A graph model's signature (its inputs' and outputs' names), as model.json holds it. */
  signature?: object;
  userDefinedMetadata?: object;
}

/** model.json's object (gunzipped when it is compressed). */
export function parseModelJson(modelJson: Uint8Array, expand: Expand = gunzipWithin()): Record<string, unknown> {
  let json: unknown;
  const text = expand(modelJson, 'model.json');
  try {
    json = JSON.parse(Buffer.from(text).toString('utf8'));
  } catch (err) {
    throw new ConversionError(`model.json is not JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConversionError('model.json is not a JSON object');
  const topology = (json as Record<string, unknown>).modelTopology;
  if (!topology || typeof topology !== 'object') throw new ConversionError('model.json has no modelTopology');
  return json as Record<string, unknown>;
}

/** A graph model (TF ops): `format: "graph-model"`, or no format and a GraphDef with `node`. */
export function isGraphModel(json: Record<string, unknown>): boolean {
  return json.format === 'graph-model' || (json.format === undefined && 'node' in (json.modelTopology as object));
}

/**
 * Every group of the manifest read and dequantized by name, and the bytes and entries TF.js loads
 * the same weights from.
 */
export function readManifestWeights(
  manifest: unknown,
  readShard: (path: string) => Uint8Array,
  expand: Expand = gunzipWithin(),
): { weights: Map<string, Weight>; weightSpecs: object[]; weightData: ArrayBuffer } {
  const groups: Uint8Array[] = [];
  const weights = readTfjsWeights(manifest ?? [], (p) => expand(readShard(p), `weight file "${p}"`), (bytes) => groups.push(bytes));
  // TF.js reads the groups' bytes back to back; one group is handed over without a copy.
  const weightData = groups.length === 1 ? groups[0]! : new Uint8Array(groups.reduce((a, b) => a + b.byteLength, 0));
  if (groups.length !== 1) {
    let at = 0;
    for (const g of groups) {
      weightData.set(g, at);
      at += g.byteLength;
    }
  }
  const weightSpecs = ((manifest ?? []) as { weights: object[] }[]).flatMap((g) => g.weights);
  return { weights, weightSpecs, weightData: exactBuffer(weightData) };
}

/** The ONNX model of a TF.js layers model (its parsed model.json), and the artifacts TF.js loads it from. */
export function readTfjsLayersModel(
  json: Record<string, unknown>,
  readShard: (path: string) => Uint8Array,
  expand: Expand = gunzipWithin(),
): { def: ModelDef; artifacts: TfjsArtifacts } {
  const topology = json.modelTopology as Record<string, unknown>;
  if (isGraphModel(json)) throw new ConversionError('model.json is a TF.js graph model (TF ops), not a layers model (Keras topology)');
  const config = 'model_config' in topology ? topology.model_config : topology;
  const kerasVersion = typeof topology.keras_version === 'string' ? topology.keras_version : 'tfjs-layers';
  const { weights, weightSpecs, weightData } = readManifestWeights(json.weightsManifest, readShard, expand);
  const def = convertKerasModel(config, weights, { kerasVersion });
  return { def, artifacts: { modelTopology: topology, weightSpecs, weightData } };
}
