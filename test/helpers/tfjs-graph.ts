// TF.js graph models written in test code: a GraphDef in proto3 JSON (what tensorflowjs_converter
// writes to model.json) and one weight shard with seeded values, run by TF.js's own loadGraphModel.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { prng } from '../../lib/convert/random';
import { encodeModel, type ModelDef } from '../../lib/onnx/writer';
import { readTfjsGraphModel } from '../../lib/convert/import/tfjs-graph-model';
import { parseModelJson } from '../../lib/convert/import/tfjs-layers-model';
import { tf, type SavedTfjs } from './tfjs';

/** A GraphDef attribute value, as proto3 JSON writes it. */
export type Attr = Record<string, unknown>;

export const attr = {
  ints: (v: number[]): Attr => ({ list: { i: v.map(String) } }),
  int: (v: number): Attr => ({ i: String(v) }),
  str: (v: string): Attr => ({ s: Buffer.from(v).toString('base64') }),
  strs: (v: string[]): Attr => ({ list: { s: v.map((s) => Buffer.from(s).toString('base64')) } }),
  float: (v: number): Attr => ({ f: v }),
  bool: (v: boolean): Attr => ({ b: v }),
  type: (v = 'DT_FLOAT'): Attr => ({ type: v }),
};

interface Entry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

/** Builds a graph model node by node; constants go to the weights manifest under their node's name. */
export class GraphModelBuilder {
  readonly nodes: { name: string; op: string; input?: string[]; attr?: Record<string, Attr> }[] = [];
  private readonly entries: Entry[] = [];
  private readonly rand: () => number;
  private readonly inputs: { name: string; shape: number[]; dtype: string }[] = [];

  constructor(seed = 1) {
    this.rand = prng(seed);
  }

  input(name: string, shape: number[], dtype = 'DT_FLOAT'): string {
    this.nodes.push({ name, op: 'Placeholder', attr: { dtype: attr.type(dtype), shape: { shape: { dim: shape.map((d) => ({ size: String(d) })) } } } });
    this.inputs.push({ name, shape, dtype });
    return name;
  }

  /** A float constant: the given values, or seeded ones in [-scale, scale) (in [lo, lo + scale) when `lo` is given). */
  const(name: string, shape: number[], values?: number[], opts: { scale?: number; lo?: number } = {}): string {
    const size = shape.reduce((a, b) => a * b, 1);
    const scale = opts.scale ?? 1;
    const data = values ? Float32Array.from(values) : Float32Array.from({ length: size }, () => (opts.lo !== undefined ? opts.lo + this.rand() * scale : (this.rand() * 2 - 1) * scale));
    this.nodes.push({ name, op: 'Const', attr: { dtype: attr.type(), value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } } } });
    this.entries.push({ name, shape, dtype: 'float32', data });
    return name;
  }

  /** An int32 constant (axes, shapes, paddings, permutations). */
  ints(name: string, shape: number[], values: number[]): string {
    this.nodes.push({ name, op: 'Const', attr: { dtype: attr.type('DT_INT32'), value: { tensor: { dtype: 'DT_INT32', tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } } } });
    this.entries.push({ name, shape, dtype: 'int32', data: Int32Array.from(values) });
    return name;
  }

  op(name: string, op: string, input: string[], attrs: Record<string, Attr> = {}): string {
    this.nodes.push({ name, op, input, attr: { T: attr.type(), ...attrs } });
    return name;
  }

  /**
   * model.json and its shard. The signature names the inputs and outputs, at the top level (as
   * tensorflowjs_converter 2+ writes it), in userDefinedMetadata (as 1.x did), or not at all.
   */
  build(outputs: string[], signatureAt: 'top' | 'metadata' | 'none' = 'top', keys?: string[]): SavedTfjs {
    const bytes = Buffer.concat(this.entries.map((e) => Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength)));
    const signature = {
      inputs: Object.fromEntries(
        this.inputs.map((i) => [i.name, { name: `${i.name}:0`, dtype: i.dtype, tensorShape: { dim: i.shape.map((d) => ({ size: String(d) })) } }]),
      ),
      outputs: Object.fromEntries(outputs.map((o, k) => [keys?.[k] ?? o, { name: o.includes(':') ? o : `${o}:0`, dtype: 'DT_FLOAT' }])),
    };
    const json: Record<string, unknown> = {
      format: 'graph-model',
      generatedBy: '2.15.0',
      convertedBy: 'TensorFlow.js Converter v4.22.0',
      modelTopology: { node: this.nodes, versions: { producer: 1482 } },
      weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: this.entries.map(({ name, shape, dtype }) => ({ name, shape, dtype })) }],
    };
    if (signatureAt === 'top') json.signature = signature;
    if (signatureAt === 'metadata') json.userDefinedMetadata = { signature };
    return { modelJson: new Uint8Array(Buffer.from(JSON.stringify(json))), shards: new Map([['group1-shard1of1.bin', new Uint8Array(bytes)]]) };
  }
}

/** The graph model converted to ONNX, as the upload job does. */
export function convertGraph(saved: SavedTfjs): ModelDef {
  return readTfjsGraphModel(parseModelJson(saved.modelJson), (p) => saved.shards.get(p)!).def;
}

/** The graph model loaded by TF.js from memory (tfjs-converter). */
export async function loadTfjsGraph(saved: SavedTfjs): Promise<GraphModel> {
  const json = JSON.parse(Buffer.from(saved.modelJson).toString()) as Record<string, any>;
  const shards = (json.weightsManifest as { paths: string[] }[]).flatMap((g) => g.paths.map((p) => saved.shards.get(p)!));
  const data = new Uint8Array(Buffer.concat(shards));
  return loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: (json.weightsManifest as { weights: tf.io.WeightsManifestEntry[] }[]).flatMap((g) => g.weights),
      weightData: data.buffer,
      signature: json.signature,
      userDefinedMetadata: json.userDefinedMetadata,
    }),
  );
}

/**
 * Runs TF.js (execute, by the ONNX model's input and output names) and onnxruntime on the same
 * seeded inputs; the largest absolute difference per output, NaN counting as Infinity.
 */
export async function compareGraphWithTfjs(saved: SavedTfjs, onnx: Uint8Array, seed = 7, reference?: SavedTfjs): Promise<{ maxAbs: Record<string, number>; outputs: Record<string, Tensor> }> {
  const session = await InferenceSession.create(onnx, { logSeverityLevel: 3, intraOpNumThreads: 1 });
  const model = await loadTfjsGraph(reference ?? saved);
  try {
    const rand = prng(seed);
    const feeds: Record<string, Tensor> = {};
    const tfFeeds: tf.NamedTensorMap = {};
    for (const meta of session.inputMetadata) {
      if (!meta.isTensor) throw new Error('not a tensor input');
      const dims = meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 2));
      const data = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1);
      feeds[meta.name] = new Tensor('float32', data, dims);
      tfFeeds[meta.name] = tf.tensor(data, dims, 'float32');
    }
    const want = model.execute(tfFeeds, [...session.outputNames]);
    const wants = Array.isArray(want) ? want : [want];
    const got = await session.run(feeds);
    const maxAbs: Record<string, number> = {};
    session.outputNames.forEach((name, i) => {
      const w = wants[i]!;
      const o = got[name]!;
      if (JSON.stringify([...o.dims]) !== JSON.stringify(w.shape)) throw new Error(`output "${name}": dims ${JSON.stringify(o.dims)} != TF.js ${JSON.stringify(w.shape)}`);
      const a = o.data as Float32Array;
      const b = w.dataSync();
      let max = 0;
      for (let k = 0; k < a.length; k++) {
        const d = Math.abs(a[k]! - b[k]!);
        max = Number.isNaN(d) ? Infinity : Math.max(max, d);
      }
      maxAbs[name] = max;
    });
    tf.dispose([...Object.values(tfFeeds), ...wants]);
    return { maxAbs, outputs: got };
  } finally {
    model.dispose();
    await session.release();
  }
}

/** Converts, then checks every output against TF.js; returns the ONNX model for further checks. */
export async function expectGraphMatches(saved: SavedTfjs, atol = 1e-4, reference?: SavedTfjs): Promise<ModelDef> {
  const def = convertGraph(saved);
  const { maxAbs } = await compareGraphWithTfjs(saved, encodeModel(def), 7, reference);
  for (const [name, err] of Object.entries(maxAbs)) {
    if (!(err <= atol)) throw new Error(`output "${name}": max abs error ${err} > ${atol}`);
  }
  return def;
}

/**
 * A real pretrained TF.js graph model from npm: the MobileNetV2 graph model (tensorflowjs_converter
 * 1.7, 224x224x3, 5 classes, uint8-quantized weights in two shards) that the `nsfwjs` package ships
 * as JS modules, as `mobilenet_v2_mid`. Nothing is downloaded at run time.
 */
export function nsfwMobileNetV2Graph(): SavedTfjs {
  const dir = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2_mid');
  const requireModule = createRequire(__filename);
  const load = (file: string): unknown => {
    const m = requireModule(join(dir, file)) as { default?: unknown };
    return m.default ?? m;
  };
  const json = load('model.min.js') as { weightsManifest: { paths: string[] }[] };
  const shards = new Map<string, Uint8Array>();
  for (const path of json.weightsManifest.flatMap((g) => g.paths)) shards.set(path, new Uint8Array(Buffer.from(load(`${path}.min.js`) as string, 'base64')));
  return { modelJson: new Uint8Array(Buffer.from(JSON.stringify(json))), shards };
}
