import { gunzipSync } from 'node:zlib';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { convertKerasModel } from './keras-model';
import { readTfjsWeights, type Weight } from './tfjs-weights';

/** Bytes as they are, or gunzipped when they start with gzip's magic (tfjs files may be compressed). */
export function maybeGunzip(bytes: Uint8Array): Uint8Array {
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? new Uint8Array(gunzipSync(bytes)) : bytes;
}

/**
 * Converts a TF.js layers model (`model.json` and its weight shards, read by path) to an ONNX model.
 * A graph model is refused (convert it with readTfjsGraphModel).
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
export function parseModelJson(modelJson: Uint8Array): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(maybeGunzip(modelJson)).toString('utf8'));
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
export function readManifestWeights(manifest: unknown, readShard: (path: string) => Uint8Array): { weights: Map<string, Weight>; weightSpecs: object[]; weightData: ArrayBuffer } {
  const groups: Uint8Array[] = [];
  const weights = readTfjsWeights(manifest ?? [], (p) => maybeGunzip(readShard(p)), (bytes) => groups.push(bytes));
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

/** The ONNX model of a TF.js layers model, and the artifacts TF.js loads it from. */
export function readTfjsLayersModel(modelJson: Uint8Array, readShard: (path: string) => Uint8Array): { def: ModelDef; artifacts: TfjsArtifacts } {
  const json = parseModelJson(modelJson);
  const topology = json.modelTopology as Record<string, unknown>;
  if (isGraphModel(json)) throw new ConversionError('model.json is a TF.js graph model (TF ops), not a layers model (Keras topology)');
  const config = 'model_config' in topology ? topology.model_config : topology;
  const kerasVersion = typeof topology.keras_version === 'string' ? topology.keras_version : 'tfjs-layers';
  const { weights, weightSpecs, weightData } = readManifestWeights(json.weightsManifest, readShard);
  const def = convertKerasModel(config, weights, { kerasVersion });
  return { def, artifacts: { modelTopology: topology, weightSpecs, weightData } };
}
