import { posix } from 'node:path';
import { encodeModel } from '../../onnx/writer';
import { ConversionError } from '../errors';
import { importKerasH5 } from './keras-h5';
import { importKeras3 } from './keras3';
import { readTfjsGraphModel } from './tfjs-graph-model';
import { gunzipWithin, isGraphModel, parseModelJson, readTfjsLayersModel, type TfjsArtifacts } from './tfjs-layers-model';
import { ZipArchive, type ZipLimits } from './zip';

/** Upload suffixes converted to ONNX before the pipeline, besides `.onnx` itself. */
export const IMPORT_SUFFIXES = ['zip', 'h5', 'keras'] as const;
export type ImportSuffix = (typeof IMPORT_SUFFIXES)[number];

export interface ImportResult {
  onnx: Uint8Array;
  /** What was read: `tfjs-layers` or `tfjs-graph` for a TF.js folder, `keras-h5`. */
  format: string;
  /** The original as TF.js loads it, to measure the conversion against. */
  tfjs: TfjsArtifacts;
  /** Set when TF.js cannot run the original as it was defined: why export fidelity is not measured. */
  fidelityUnavailable?: string;
}

/** The folder's model.json: at the archive's root, or the only one in it. */
function findModelJson(zip: ZipArchive): string {
  if (zip.has('model.json')) return 'model.json';
  const found = zip.names().filter((n) => posix.basename(n) === 'model.json');
  if (found.length === 1) return found[0]!;
  if (found.length === 0) throw new ConversionError(`the zip holds no model.json (it holds ${zip.names().slice(0, 10).join(', ')})`);
  throw new ConversionError(`the zip holds ${found.length} model.json files (${found.join(', ')}); upload one model per zip`);
}

/** Converts a TF.js model folder (a layers or a graph model), zipped, to ONNX bytes. */
export function importTfjsZip(bytes: Uint8Array, limits?: ZipLimits): ImportResult {
  const zip = new ZipArchive(bytes, limits);
  const modelJson = findModelJson(zip);
  const dir = posix.dirname(modelJson);
  const readShard = (path: string): Uint8Array => {
    const name = posix.normalize(posix.join(dir, path));
    if (!zip.has(name)) throw new ConversionError(`model.json names the weight file "${path}", which the zip does not hold`);
    return zip.read(name);
  };
  // model.json and the shards may be gzipped: all of them expand within the zip's own budget.
  const expand = gunzipWithin(limits?.maxTotalBytes);
  const parsed = parseModelJson(zip.read(modelJson), expand);
  if (isGraphModel(parsed)) {
    const { def, artifacts } = readTfjsGraphModel(parsed, readShard, expand);
    return { onnx: encodeModel(def), format: 'tfjs-graph', tfjs: artifacts };
  }
  const { def, artifacts } = readTfjsLayersModel(parsed, readShard, expand);
  return { onnx: encodeModel(def), format: 'tfjs-layers', tfjs: artifacts };
}

/** Converts an upload in one of IMPORT_SUFFIXES to ONNX bytes. */
export function importUpload(suffix: ImportSuffix, bytes: Uint8Array, limits?: ZipLimits): ImportResult {
  if (suffix === 'zip') return importTfjsZip(bytes, limits);
  if (suffix === 'h5') {
    const { def, artifacts } = importKerasH5(bytes, limits?.maxTotalBytes);
    return { onnx: encodeModel(def), format: 'keras-h5', tfjs: artifacts };
  }
  if (suffix === 'keras') {
    const { def, artifacts, fidelityUnavailable } = importKeras3(bytes, limits);
    return { onnx: encodeModel(def), format: 'keras3', tfjs: artifacts, ...(fidelityUnavailable ? { fidelityUnavailable } : {}) };
  }
  throw new ConversionError(`.${String(suffix)} uploads are not supported`);
}
