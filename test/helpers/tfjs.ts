// TF.js models built in test code: seeded weights, saved with TF.js's own IO to model.json + shard bytes.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { prng } from '../../lib/convert/random';

export { tf, tfl };

export async function useCpuBackend(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
}

/** Replaces every weight with seeded values; variances stay positive. */
export function seedWeights(model: tfl.LayersModel, seed: number): void {
  const rand = prng(seed);
  const weights = model.weights.map((w) => {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const positive = /variance/.test(w.name);
    const data = Float32Array.from({ length: size }, () => (positive ? 0.5 + rand() : rand() * 2 - 1) * (/kernel|embeddings/.test(w.name) ? 0.5 : 1));
    return tf.tensor(data, shape);
  });
  model.setWeights(weights);
}

export interface SavedTfjs {
  modelJson: Uint8Array;
  shards: Map<string, Uint8Array>;
}

/** The model as TF.js saves it: model.json with its weightsManifest, and one shard. */
export async function saveTfjs(model: tfl.LayersModel): Promise<SavedTfjs> {
  let saved: SavedTfjs | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const bytes = data === undefined ? new Uint8Array(0) : new Uint8Array(Array.isArray(data) ? tf.io.concatenateArrayBuffers(data) : data);
      const json = {
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      saved = { modelJson: new Uint8Array(Buffer.from(JSON.stringify(json))), shards: new Map([['group1-shard1of1.bin', bytes]]) };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}

/** Seeded inputs for the model's inputs: floats in [-1, 1), or ints below `intRange` for int32 inputs. */
export function seededInputs(model: tfl.LayersModel, batch: number, seed: number, intRange = 10): { name: string; shape: number[]; data: Float32Array | Int32Array; dtype: 'float32' | 'int32' }[] {
  const rand = prng(seed);
  return model.inputs.map((input, i) => {
    const shape = [batch, ...input.shape.slice(1).map((d) => d ?? 5)];
    const size = shape.reduce((a, b) => a * b, 1);
    const dtype = input.dtype === 'int32' ? 'int32' : 'float32';
    const data = dtype === 'int32' ? Int32Array.from({ length: size }, () => Math.floor(rand() * intRange)) : Float32Array.from({ length: size }, () => rand() * 2 - 1);
    return { name: model.inputNames[i]!, shape, data, dtype };
  });
}

/** Largest absolute difference between TF.js's predict and onnxruntime's answer, per output. */
export async function compareWithTfjs(model: tfl.LayersModel, onnx: Uint8Array, batch = 2, seed = 7): Promise<{ maxAbs: number[]; outputs: Record<string, Tensor> }> {
  const inputs = seededInputs(model, batch, seed);
  const predicted = model.predict(inputs.map((x) => tf.tensor(x.data, x.shape, x.dtype)));
  const expected = (Array.isArray(predicted) ? predicted : [predicted]).map((t) => ({ shape: t.shape, data: t.dataSync() as Float32Array }));
  const session = await InferenceSession.create(onnx, { logSeverityLevel: 3, intraOpNumThreads: 1 });
  try {
    const feeds: Record<string, Tensor> = {};
    for (const x of inputs) feeds[x.name] = new Tensor(x.dtype, x.data, x.shape);
    const outputs = await session.run(feeds);
    const maxAbs = model.outputNames.map((name, i) => {
      const got = outputs[name];
      const want = expected[i]!;
      if (!got) throw new Error(`onnx has no output "${name}" (has ${Object.keys(outputs).join(', ')})`);
      if (JSON.stringify(got.dims) !== JSON.stringify(want.shape)) throw new Error(`output "${name}": dims ${JSON.stringify(got.dims)} != ${JSON.stringify(want.shape)}`);
      const data = got.data as Float32Array;
      let max = 0;
      for (let k = 0; k < data.length; k++) {
        const d = Math.abs(data[k]! - want.data[k]!);
        max = Number.isNaN(d) ? Infinity : Math.max(max, d);
      }
      return max;
    });
    return { maxAbs, outputs };
  } finally {
    await session.release();
  }
}

/**
 * The model as Keras 2 saves it to HDF5 (`model_config` and `keras_version` on the root,
 * `model_weights/<layer>/<weight name>:0` datasets with `layer_names`/`weight_names`), written
 * by h5wasm in a child process (h5wasm ships ES modules only).
 */
export function writeKerasH5(model: tfl.LayersModel): Uint8Array {
  const topology = model.toJSON(undefined, false) as unknown as { class_name: string; config: unknown };
  const groups: Record<string, { attrs: Record<string, unknown> }> = {};
  const datasets: { path: string; shape: number[]; data: number[] }[] = [];
  const layerNames: string[] = [];
  for (const layer of model.layers) {
    if (layer.weights.length === 0) continue;
    layerNames.push(layer.name);
    const names = layer.weights.map((w) => `${(w as unknown as { originalName: string }).originalName}:0`);
    groups[`model_weights/${layer.name}`] = { attrs: { weight_names: names } };
    layer.weights.forEach((w, i) => datasets.push({ path: `model_weights/${layer.name}/${names[i]}`, shape: w.shape as number[], data: Array.from(w.read().dataSync()) }));
  }
  groups.model_weights = { attrs: { layer_names: layerNames } };
  const spec = {
    attrs: { model_config: JSON.stringify({ class_name: topology.class_name, config: topology.config }), keras_version: '2.15.0', backend: 'tensorflow' },
    groups: Object.fromEntries(Object.entries(groups).sort(([a], [b]) => a.length - b.length)),
    datasets,
  };
  return writeH5(spec);
}

/** What `write-h5.mjs` writes: root attributes, groups (parents first) with attributes, float32 datasets. */
export interface H5Spec {
  attrs?: Record<string, unknown>;
  groups?: Record<string, { attrs?: Record<string, unknown> }>;
  /** `data`, or `zeros: true` for a dataset of zeros; `compression` (gzip level) stores it chunked. */
  datasets: { path: string; shape: number[]; data?: number[]; zeros?: boolean; compression?: number; attrs?: Record<string, unknown> }[];
}

/** An HDF5 file written by h5wasm (the HDF5 C library as WASM) in a child process (h5wasm ships ES modules only). */
export function writeH5(spec: H5Spec): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'keras-h5-'));
  try {
    const out = join(dir, 'model.h5');
    // Next to this file under jest; from the repository root when this helper is bundled (bench).
    const writer = existsSync(join(__dirname, 'write-h5.mjs')) ? join(__dirname, 'write-h5.mjs') : join(process.cwd(), 'test', 'helpers', 'write-h5.mjs');
    execFileSync(process.execPath, [writer, out], { input: JSON.stringify(spec), maxBuffer: 1 << 30 });
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A real pretrained Keras model from npm: the MobileNetV2 (Keras 2.2.4, 224x224x3, 5 classes,
 * uint8-quantized weights) that the `nsfwjs` package (MIT) ships inside itself as JS modules:
 * the model.json object and the shard as base64. Nothing is downloaded at run time.
 */
export function nsfwMobileNetV2(): SavedTfjs {
  const dir = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
  // The files are UMD modules (model.json and the shard wrapped as JS), loaded as CommonJS.
  const requireModule = createRequire(__filename);
  const load = (file: string): unknown => {
    const m = requireModule(join(dir, file)) as { default?: unknown };
    return m.default ?? m;
  };
  const json = load('model.min.js') as { weightsManifest: { paths: string[] }[] };
  const shard = new Uint8Array(Buffer.from(load('group1-shard1of1.min.js') as string, 'base64'));
  return { modelJson: new Uint8Array(Buffer.from(JSON.stringify(json))), shards: new Map([[json.weightsManifest[0]!.paths[0]!, shard]]) };
}
