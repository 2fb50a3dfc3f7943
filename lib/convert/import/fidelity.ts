import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { OnnxModel } from '../../onnx/model';
import { agreement, generateSamples, type EvaluateOptions } from '../evaluate';
import { ConversionError } from '../errors';
import type { TfjsArtifacts } from './tfjs-layers-model';

/** How closely the exported fp32 ONNX model answers like the original run by TF.js. */
export interface ImportFidelity {
  samples: number;
  minCosine: number;
  passed: boolean;
  outputs: Record<string, { maxAbsError: number; meanAbsError: number; cosine: number }>;
}

let backendReady: Promise<boolean> | undefined;

/** TF.js on its CPU backend (pure JS, the same answers everywhere); set once per process. */
function cpuBackend(): Promise<boolean> {
  // Production mode: no debug checks, and no console advice to install tfjs-node in the job's logs.
  tf.enableProdMode();
  backendReady ??= tf.setBackend('cpu').catch((err: unknown) => {
    backendReady = undefined;
    throw err;
  });
  return backendReady;
}

type TfjsConverter = typeof import('@tensorflow/tfjs-converter');

/** One way to run the original: its input count, its output count, and a run on inputs in ONNX's order. */
interface TfjsRunner {
  inputs: number;
  outputs: number;
  run(inputs: tf.Tensor[]): tf.Tensor[];
  dispose(): void;
}

/** A layers model (tfjs-layers) or a graph model (tfjs-converter, required only for one). */
async function loadOriginal(artifacts: TfjsArtifacts, inputNames: readonly string[], outputNames: readonly string[]): Promise<TfjsRunner> {
  if (artifacts.format === 'graph-model') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const converter = require('@tensorflow/tfjs-converter') as TfjsConverter;
    const model = await converter.loadGraphModel(tf.io.fromMemory(artifacts));
    // The export keeps the signature's names (or the node names), which TF.js accepts as they are.
    return {
      inputs: model.inputs.length,
      outputs: model.outputs.length,
      run: (inputs) => {
        const feeds: tf.NamedTensorMap = {};
        inputNames.forEach((n, i) => (feeds[n] = inputs[i]!));
        const out = model.execute(feeds, [...outputNames]);
        return Array.isArray(out) ? out : [out];
      },
      dispose: () => model.dispose(),
    };
  }
  const model = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
  return {
    inputs: model.inputs.length,
    outputs: model.outputs.length,
    run: (inputs) => {
      const predicted = model.predict(inputs);
      return Array.isArray(predicted) ? predicted : [predicted];
    },
    dispose: () => model.dispose(),
  };
}

function toTfjs(t: Tensor): tf.Tensor {
  if (t.type === 'float32') return tf.tensor(t.data as Float32Array, [...t.dims], 'float32');
  if (t.type === 'int32') return tf.tensor(t.data as Int32Array, [...t.dims], 'int32');
  if (t.type === 'int64') return tf.tensor(Int32Array.from(t.data as BigInt64Array, Number), [...t.dims], 'int32');
  throw new ConversionError(`import fidelity: a sample input has type ${t.type}, which TF.js is not fed`);
}

/**
 * Runs the original (TF.js, CPU backend: tfjs-layers for a layers model, tfjs-converter for a
 * graph model) and the exported ONNX model (onnxruntime, fp32) on the same samples, the given ones
 * or ones generated from the ONNX inputs, and compares each output. An original TF.js cannot load
 * or run fails the conversion with TF.js's reason.
 */
export async function measureImportFidelity(
  artifacts: TfjsArtifacts,
  onnx: Uint8Array,
  options: Pick<EvaluateOptions, 'samples' | 'sampleCount' | 'seed' | 'dynamicDims'> & { intraOpNumThreads?: number },
  minCosine: number,
): Promise<ImportFidelity> {
  await cpuBackend();
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(onnx, { logSeverityLevel: 3, intraOpNumThreads: options.intraOpNumThreads ?? 1 });
  } catch (err) {
    // An export onnxruntime refuses comes from a topology whose shapes do not fit together.
    throw new ConversionError(`onnxruntime cannot load the model: the ONNX export of the upload is refused: ${((err as Error)?.message ?? String(err)).slice(0, 400)}`, { cause: err });
  }
  let model: TfjsRunner | undefined;
  try {
    try {
      model = await loadOriginal(artifacts, session.inputNames, session.outputNames);
    } catch (err) {
      throw new ConversionError(`import fidelity: TF.js cannot load the original model: ${(err as Error).message}`, { cause: err });
    }
    const samples = options.samples ?? generateSamples(session, OnnxModel.decode(onnx), options as EvaluateOptions);
    // A layers model by position: TF.js renames layers that clash with ones it loaded before
    // (x -> x_1), and a loaded Sequential lists no names; the export keeps Keras's order of inputs
    // and outputs. A graph model by name: the export's names are its signature's.
    const names = session.outputNames;
    if (model.inputs !== session.inputNames.length || model.outputs !== names.length) {
      throw new ConversionError(`import fidelity: TF.js sees ${model.inputs} inputs and ${model.outputs} outputs, the export ${session.inputNames.length} and ${names.length}`);
    }
    const expected: Float32Array[][] = names.map(() => []);
    const got: Float32Array[][] = names.map(() => []);
    const dims: number[][] = names.map(() => []);
    for (const feeds of samples) {
      const inputs = session.inputNames.map((n) => {
        const t = feeds[n];
        if (!t) throw new ConversionError(`import fidelity: a sample has no input "${n}"`);
        return toTfjs(t);
      });
      let outs: tf.Tensor[];
      try {
        outs = model.run(inputs);
      } catch (err) {
        tf.dispose(inputs);
        throw new ConversionError(`import fidelity: TF.js cannot run the original model: ${(err as Error).message}`, { cause: err });
      }
      const ran = await session.run(feeds);
      names.forEach((name, i) => {
        const o = ran[name]!;
        expected[i]!.push(Float32Array.from(outs[i]!.dataSync()));
        got[i]!.push(Float32Array.from(o.data as Float32Array));
        dims[i] = [...o.dims].map(Number);
      });
      tf.dispose([...inputs, ...outs]);
    }
    const outputs: ImportFidelity['outputs'] = {};
    names.forEach((name, i) => {
      const a = agreement(expected[i]!, got[i]!, dims[i]!);
      outputs[name] = { maxAbsError: a.maxAbsError, meanAbsError: a.meanAbsError, cosine: a.cosine };
    });
    const passed = Object.values(outputs).every((o) => o.cosine >= minCosine);
    return { samples: samples.length, minCosine, passed, outputs };
  } finally {
    model?.dispose();
    await session.release();
  }
}

/** The gate's verdict as a ConversionError naming each failing output and its figures. */
export function checkImportFidelity(f: ImportFidelity): void {
  if (f.passed) return;
  const failing = Object.entries(f.outputs)
    .filter(([, o]) => !(o.cosine >= f.minCosine))
    .map(([name, o]) => `output "${name}": cosine ${o.cosine.toFixed(6)} < ${f.minCosine} (max abs error ${o.maxAbsError.toExponential(3)}, mean ${o.meanAbsError.toExponential(3)})`);
  throw new ConversionError(`import fidelity: the ONNX export does not answer like the original in TF.js: ${failing.join('; ')}; nothing was published`);
}
