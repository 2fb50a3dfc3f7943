import { gunzipSync } from 'node:zlib';
import type { ModelDef } from '../../onnx/writer';
import { ConversionError } from '../pipeline';
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
  const weights = readTfjsWeights(json.weightsManifest ?? [], (p) => maybeGunzip(readShard(p)));
  return convertKerasModel(config, weights, { kerasVersion });
}
