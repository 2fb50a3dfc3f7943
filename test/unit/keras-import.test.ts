import { ConversionError } from '../../lib/convert/errors';
import { prng } from '../../lib/convert/random';
import { importTfjsLayersModel } from '../../lib/convert/import/tfjs-layers-model';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { encodeModel } from '../../lib/onnx/writer';
import { compareWithTfjs, saveTfjs, seedWeights, tfl, useCpuBackend } from '../helpers/tfjs';

beforeAll(useCpuBackend);

async function convert(model: tfl.LayersModel): Promise<Uint8Array> {
  const saved = await saveTfjs(model);
  return encodeModel(
    importTfjsLayersModel(saved.modelJson, (p) => {
      const s = saved.shards.get(p);
      if (!s) throw new Error(`no shard ${p}`);
      return s;
    }),
  );
}

/** Converts, runs both and expects every output within 1e-4. */
async function expectMatches(model: tfl.LayersModel, seed = 1): Promise<void> {
  seedWeights(model, seed);
  const onnx = await convert(model);
  const { maxAbs } = await compareWithTfjs(model, onnx);
  expect(maxAbs.length).toBe(model.outputs.length);
  for (const m of maxAbs) expect(m).toBeLessThanOrEqual(1e-4);
}

function seq(inputShape: number[], layers: tfl.layers.Layer[]): tfl.Sequential {
  const model = tfl.sequential();
  model.add(tfl.layers.inputLayer({ inputShape }));
  for (const l of layers) model.add(l);
  return model;
}

describe('TF.js layers model -> ONNX, compared with TF.js predict', () => {
  test('Dense on rank 2 and rank 3 inputs, with and without bias', async () => {
    await expectMatches(seq([6], [tfl.layers.dense({ units: 5, activation: 'relu' }), tfl.layers.dense({ units: 3, useBias: false })]));
    await expectMatches(seq([4, 6], [tfl.layers.dense({ units: 5, activation: 'tanh' })]));
  });

  test.each(['relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'swish', 'elu', 'selu', 'softplus', 'softsign', 'linear', 'hardSigmoid', 'gelu', 'gelu_new', 'mish'])(
    'Activation %s',
    async (name) => {
      await expectMatches(seq([8], [tfl.layers.dense({ units: 6 }), tfl.layers.activation({ activation: name as 'relu' })]));
    },
  );

  test('ReLU(max_value), LeakyReLU (default slope 0.3), PReLU, ELU, ThresholdedReLU, Softmax layers', async () => {
    await expectMatches(seq([4, 4, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same' }), tfl.layers.reLU({ maxValue: 0.4 })]));
    await expectMatches(seq([10], [tfl.layers.leakyReLU()]));
    await expectMatches(seq([4, 4, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: 1 }), tfl.layers.prelu(), tfl.layers.flatten()]));
    await expectMatches(seq([10], [tfl.layers.elu(), tfl.layers.thresholdedReLU({ theta: 0.2 }), tfl.layers.softmax()]));
  });

  test('Conv2D: valid and same padding, strides, dilation; then Flatten in Keras order', async () => {
    await expectMatches(seq([9, 8, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'valid', activation: 'relu' }), tfl.layers.flatten(), tfl.layers.dense({ units: 3 })]));
    await expectMatches(seq([9, 8, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: [3, 2], strides: 2, padding: 'same' }), tfl.layers.flatten()]));
    await expectMatches(seq([10, 10, 2], [tfl.layers.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', useBias: false })]));
    await expectMatches(seq([8, 7, 2], [tfl.layers.conv2d({ filters: 3, kernelSize: 4, strides: [2, 3], padding: 'same' })]));
  });

  test('Conv1D (valid, same, strides, dilation) and 1-D pooling', async () => {
    await expectMatches(seq([12, 3], [tfl.layers.conv1d({ filters: 4, kernelSize: 3, padding: 'same', strides: 2 }), tfl.layers.maxPooling1d({ poolSize: 2 })]));
    await expectMatches(seq([12, 3], [tfl.layers.conv1d({ filters: 4, kernelSize: 3, padding: 'valid', dilationRate: 2 }), tfl.layers.averagePooling1d({ poolSize: 3, strides: 2, padding: 'same' })]));
    await expectMatches(seq([12, 3], [tfl.layers.conv1d({ filters: 4, kernelSize: 5 }), tfl.layers.globalAveragePooling1d()]));
    await expectMatches(seq([12, 3], [tfl.layers.conv1d({ filters: 4, kernelSize: 2 }), tfl.layers.globalMaxPooling1d()]));
  });

  test('DepthwiseConv2D with a depth multiplier, SeparableConv2D, Conv2DTranspose (valid and same)', async () => {
    await expectMatches(seq([8, 8, 3], [tfl.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', strides: 2 })]));
    await expectMatches(seq([8, 8, 3], [tfl.layers.separableConv2d({ filters: 5, kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'relu' })]));
    await expectMatches(seq([5, 4, 3], [tfl.layers.conv2dTranspose({ filters: 2, kernelSize: 3, strides: 2, padding: 'same' })]));
    await expectMatches(seq([5, 4, 3], [tfl.layers.conv2dTranspose({ filters: 2, kernelSize: 3, strides: 2, padding: 'valid' })]));
    await expectMatches(seq([5, 4, 3], [tfl.layers.conv2dTranspose({ filters: 2, kernelSize: 2, strides: 3, padding: 'same' })]));
  });

  test('BatchNormalization (after a conv, center/scale off) and LayerNormalization', async () => {
    await expectMatches(seq([6, 6, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: 3 }), tfl.layers.batchNormalization({ epsilon: 0.01 })]));
    await expectMatches(seq([6, 6, 3], [tfl.layers.batchNormalization({ center: false, scale: false })]));
  });

  test('BatchNormalization on a non-last axis, checked against the formula (tfjs-backend-cpu indexes it by the last axis)', async () => {
    const model = seq([5, 4], [tfl.layers.batchNormalization({ axis: 1, epsilon: 0.001 })]);
    seedWeights(model, 2);
    const [gamma, beta, mean, variance] = model.getWeights().map((w) => w.dataSync() as Float32Array);
    const onnx = await convert(model);
    const session = await InferenceSession.create(onnx, { logSeverityLevel: 3 });
    const x = Float32Array.from({ length: 20 }, (_, i) => (i % 7) / 3 - 1);
    const y = (await session.run({ [model.inputNames[0]!]: new Tensor('float32', x, [1, 5, 4]) }))[model.outputNames[0]!]!.data as Float32Array;
    await session.release();
    let max = 0;
    for (let i = 0; i < 20; i++) {
      const c = Math.floor(i / 4);
      const want = ((x[i]! - mean![c]!) / Math.sqrt(variance![c]! + 0.001)) * gamma![c]! + beta![c]!;
      max = Math.max(max, Math.abs(want - y[i]!));
    }
    expect(max).toBeLessThanOrEqual(1e-5);
    await expectMatches(seq([5, 4], [tfl.layers.layerNormalization({ epsilon: 1e-3 })]));
  });

  test('pooling 2-D (same-padding average does not count the padding), global pooling', async () => {
    await expectMatches(seq([7, 7, 3], [tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' })]));
    await expectMatches(seq([7, 7, 3], [tfl.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'same' })]));
    await expectMatches(seq([7, 7, 3], [tfl.layers.maxPooling2d({ poolSize: 3, padding: 'valid' }), tfl.layers.globalAveragePooling2d({})]));
    await expectMatches(seq([7, 7, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: 1 }), tfl.layers.globalMaxPooling2d({})]));
  });

  test('ZeroPadding2D, Cropping2D, UpSampling2D (nearest, bilinear)', async () => {
    await expectMatches(seq([5, 5, 2], [tfl.layers.zeroPadding2d({ padding: [[1, 2], [0, 3]] }), tfl.layers.conv2d({ filters: 2, kernelSize: 3 })]));
    await expectMatches(seq([6, 7, 2], [tfl.layers.cropping2D({ cropping: [[1, 0], [2, 1]] })]));
    await expectMatches(seq([3, 4, 2], [tfl.layers.upSampling2d({ size: [2, 3] })]));
    await expectMatches(seq([3, 4, 2], [tfl.layers.upSampling2d({ size: [2, 2], interpolation: 'bilinear' })]));
  });

  test('Reshape, Permute, Flatten after Permute, Dropout variants and Rescaling', async () => {
    await expectMatches(seq([12], [tfl.layers.reshape({ targetShape: [3, 4] }), tfl.layers.permute({ dims: [2, 1] }), tfl.layers.flatten(), tfl.layers.dropout({ rate: 0.5 })]));
    await expectMatches(seq([4, 4, 3], [tfl.layers.conv2d({ filters: 2, kernelSize: 1 }), tfl.layers.reshape({ targetShape: [-1, 2] })]));
    await expectMatches(seq([4, 4, 3], [tfl.layers.rescaling({ scale: 1 / 127.5, offset: -1 }), tfl.layers.gaussianNoise({ stddev: 1 }), tfl.layers.conv2d({ filters: 2, kernelSize: 1 })]));
    await expectMatches(seq([6, 3], [tfl.layers.spatialDropout1d({ rate: 0.3 }), tfl.layers.flatten()]));
    await expectMatches(seq([6], [tfl.layers.alphaDropout({ rate: 0.2 }), tfl.layers.gaussianDropout({ rate: 0.2 }), tfl.layers.dense({ units: 2 })]));
  });

  test('Embedding on an int32 input', async () => {
    const input = tfl.input({ shape: [5], dtype: 'int32', name: 'tokens' });
    const out = tfl.layers.globalAveragePooling1d().apply(tfl.layers.embedding({ inputDim: 10, outputDim: 4 }).apply(input)) as tfl.SymbolicTensor;
    await expectMatches(tfl.model({ inputs: input, outputs: out }));
  });

  test('functional: two inputs, two outputs, merges across layouts, a shared layer and a nested model', async () => {
    const image = tfl.input({ shape: [6, 6, 3], name: 'image' });
    const extra = tfl.input({ shape: [6, 6, 3], name: 'extra' });
    const shared = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'shared_conv' });
    const a = shared.apply(image) as tfl.SymbolicTensor;
    const b = shared.apply(extra) as tfl.SymbolicTensor;
    const merged = [
      tfl.layers.add().apply([a, b]),
      tfl.layers.multiply().apply([a, b]),
      tfl.layers.average().apply([a, b]),
      tfl.layers.maximum().apply([a, b]),
      tfl.layers.minimum().apply([a, b]),
    ] as tfl.SymbolicTensor[];
    const cat = tfl.layers.concatenate({ axis: -1 }).apply([...merged, extra]) as tfl.SymbolicTensor;
    const inner = seq([6, 6, 23], [tfl.layers.conv2d({ filters: 3, kernelSize: 1, activation: 'relu' }), tfl.layers.globalAveragePooling2d({})]);
    const pooled = inner.apply(cat) as tfl.SymbolicTensor;
    const head = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'probs' }).apply(pooled) as tfl.SymbolicTensor;
    const mapOut = tfl.layers.concatenate({ axis: 1 }).apply([a, b]) as tfl.SymbolicTensor;
    await expectMatches(tfl.model({ inputs: [image, extra], outputs: [head, mapOut] }));
  });

  // tfjs's orthogonal initializer needs chained ops this build does not register; seedWeights replaces the values anyway.
  const rnn = { recurrentInitializer: 'glorotUniform' as const };

  test('LSTM (hard_sigmoid gates as tfjs defaults, and sigmoid), last state and sequences', async () => {
    await expectMatches(seq([6, 3], [tfl.layers.lstm({ units: 4, ...rnn })]));
    await expectMatches(seq([6, 3], [tfl.layers.lstm({ units: 4, returnSequences: true, recurrentActivation: 'sigmoid', ...rnn }), tfl.layers.dense({ units: 2 })]));
  });

  test('GRU (reset_after false, as tfjs builds it) and SimpleRNN', async () => {
    await expectMatches(seq([5, 3], [tfl.layers.gru({ units: 4, ...rnn })]));
    await expectMatches(seq([5, 3], [tfl.layers.gru({ units: 3, returnSequences: true, recurrentActivation: 'sigmoid', ...rnn })]));
    await expectMatches(seq([5, 3], [tfl.layers.simpleRNN({ units: 4, ...rnn })]));
    await expectMatches(seq([5, 3], [tfl.layers.simpleRNN({ units: 4, returnSequences: true, activation: 'relu', ...rnn })]));
  });

  test.each(['concat', 'sum', 'ave', 'mul'] as const)('Bidirectional LSTM/GRU, merge_mode %s', async (mergeMode) => {
    await expectMatches(seq([5, 3], [tfl.layers.bidirectional({ layer: tfl.layers.lstm({ units: 3, returnSequences: true, ...rnn }), mergeMode })]));
    await expectMatches(seq([5, 3], [tfl.layers.bidirectional({ layer: tfl.layers.gru({ units: 3, ...rnn }), mergeMode })]));
  });

  test('GRU with reset_after (Keras 2 default; tfjs cannot build it), checked against the GRU equations', async () => {
    const [I, H, T] = [3, 4, 5];
    const rand = prng(9);
    const vals = (n: number) => Float32Array.from({ length: n }, () => rand() - 0.5);
    const kernel = vals(I * 3 * H);
    const recurrentKernel = vals(H * 3 * H);
    const bias = vals(2 * 3 * H);
    const json = {
      format: 'layers-model',
      modelTopology: {
        keras_version: '2.15.0',
        model_config: {
          class_name: 'Sequential',
          config: {
            name: 'seq',
            layers: [
              { class_name: 'InputLayer', config: { name: 'x', batch_input_shape: [null, T, I] } },
              { class_name: 'GRU', config: { name: 'gru', units: H, activation: 'tanh', recurrent_activation: 'sigmoid', use_bias: true, reset_after: true, return_sequences: false } },
            ],
          },
        },
      },
      weightsManifest: [
        {
          paths: ['w.bin'],
          weights: [
            { name: 'gru/gru_cell/kernel', shape: [I, 3 * H], dtype: 'float32' },
            { name: 'gru/gru_cell/recurrent_kernel', shape: [H, 3 * H], dtype: 'float32' },
            { name: 'gru/gru_cell/bias', shape: [2, 3 * H], dtype: 'float32' },
          ],
        },
      ],
    };
    const shard = new Uint8Array(Buffer.concat([kernel, recurrentKernel, bias].map((a) => Buffer.from(a.buffer))));
    const onnx = encodeModel(importTfjsLayersModel(new Uint8Array(Buffer.from(JSON.stringify(json))), () => shard));
    const x = vals(T * I);
    const session = await InferenceSession.create(onnx, { logSeverityLevel: 3 });
    const got = (await session.run({ x: new Tensor('float32', x, [1, T, I]) })).gru!.data as Float32Array;
    await session.release();
    // Keras: gates z, r, h; the reset gate multiplies the recurrent term after its bias is added.
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    let h = new Float64Array(H);
    for (let t = 0; t < T; t++) {
      const xw = (g: number, j: number) => {
        let v = bias[g * H + j]!;
        for (let i = 0; i < I; i++) v += x[t * I + i]! * kernel[i * 3 * H + g * H + j]!;
        return v;
      };
      const hu = (g: number, j: number) => {
        let v = bias[3 * H + g * H + j]!;
        for (let k = 0; k < H; k++) v += h[k]! * recurrentKernel[k * 3 * H + g * H + j]!;
        return v;
      };
      const next = new Float64Array(H);
      for (let j = 0; j < H; j++) {
        const z = sig(xw(0, j) + hu(0, j));
        const r = sig(xw(1, j) + hu(1, j));
        const cand = Math.tanh(xw(2, j) + r * hu(2, j));
        next[j] = z * h[j]! + (1 - z) * cand;
      }
      h = next;
    }
    expect(got).toHaveLength(H);
    for (let j = 0; j < H; j++) expect(Math.abs(got[j]! - h[j]!)).toBeLessThanOrEqual(1e-5);
  });

  test('the ONNX interface keeps Keras names, NHWC shapes and dtypes', async () => {
    const model = seq([8, 8, 3], [tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', name: 'c1' }), tfl.layers.conv2d({ filters: 2, kernelSize: 1, name: 'c2' })]);
    seedWeights(model, 3);
    const saved = await saveTfjs(model);
    const def = importTfjsLayersModel(saved.modelJson, (p) => saved.shards.get(p)!);
    expect(def.graph.inputs.map((i) => [i.name, i.shape, i.elemType])).toEqual([[model.inputNames[0], ['batch', 8, 8, 3], 1]]);
    expect(def.graph.outputs.map((o) => [o.name, o.shape])).toEqual([['c2', ['batch', 4, 4, 2]]]);
    // One transpose in, one out: none between the two convolutions.
    expect(def.graph.nodes.filter((n) => n.opType === 'Transpose')).toHaveLength(2);
  });
});

/** A model.json from a hand-written Keras config and float32 weights (for layers tfjs cannot build). */
async function runHandMade(config: object, kerasVersion: string, weights: { name: string; shape: number[]; data: Float32Array }[], feeds: Record<string, Tensor>): Promise<Record<string, Float32Array>> {
  const json = {
    format: 'layers-model',
    modelTopology: { keras_version: kerasVersion, model_config: config },
    weightsManifest: [{ paths: ['w.bin'], weights: weights.map(({ name, shape }) => ({ name, shape, dtype: 'float32' })) }],
  };
  const shard = new Uint8Array(Buffer.concat(weights.map((w) => Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength))));
  const onnx = encodeModel(importTfjsLayersModel(new Uint8Array(Buffer.from(JSON.stringify(json))), () => shard));
  const session = await InferenceSession.create(onnx, { logSeverityLevel: 3 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

const keras3Tensor = (layer: string) => ({ class_name: '__keras_tensor__', config: { shape: [null, 3], dtype: 'float32', keras_history: [layer, 0, 0] } });

describe('layers tfjs cannot build, checked against their definitions', () => {
  test('Keras 3 functional form: Subtract, Normalization, and hard_sigmoid with its Keras 3 slope (x/6 + 0.5)', async () => {
    const config = {
      class_name: 'Functional',
      config: {
        name: 'k3',
        layers: [
          { class_name: 'InputLayer', name: 'a', config: { name: 'a', batch_shape: [null, 3], dtype: 'float32' }, inbound_nodes: [] },
          { class_name: 'InputLayer', name: 'b', config: { name: 'b', batch_shape: [null, 3], dtype: 'float32' }, inbound_nodes: [] },
          { class_name: 'Subtract', name: 'diff', config: { name: 'diff' }, inbound_nodes: [{ args: [[keras3Tensor('a'), keras3Tensor('b')]], kwargs: {} }] },
          { class_name: 'Normalization', name: 'norm', config: { name: 'norm', axis: [-1] }, inbound_nodes: [{ args: [keras3Tensor('diff')], kwargs: {} }] },
          { class_name: 'Activation', name: 'gate', config: { name: 'gate', activation: 'hard_sigmoid' }, inbound_nodes: [{ args: [keras3Tensor('norm')], kwargs: {} }] },
        ],
        input_layers: [['a', 0, 0], ['b', 0, 0]],
        output_layers: [['gate', 0, 0]],
      },
    };
    const mean = Float32Array.from([0.5, -1, 2]);
    const variance = Float32Array.from([4, 0.25, 1]);
    const a = Float32Array.from([1, 2, 3, -4, 5, -6]);
    const b = Float32Array.from([0.5, 0.5, 0.5, 1, 1, 1]);
    const out = await runHandMade(config, '3.5.0', [{ name: 'norm/mean', shape: [3], data: mean }, { name: 'norm/variance', shape: [3], data: variance }], {
      a: new Tensor('float32', a, [2, 3]),
      b: new Tensor('float32', b, [2, 3]),
    });
    const got = out.gate!;
    expect(got).toHaveLength(6);
    for (let i = 0; i < 6; i++) {
      const c = i % 3;
      const norm = (a[i]! - b[i]! - mean[c]!) / Math.sqrt(variance[c]!);
      expect(Math.abs(got[i]! - Math.min(1, Math.max(0, norm / 6 + 0.5)))).toBeLessThanOrEqual(1e-6);
    }
  });

  test('causal Conv1D pads d*(k-1) on the left only', async () => {
    const config = {
      class_name: 'Sequential',
      config: {
        name: 'c',
        layers: [
          { class_name: 'InputLayer', config: { name: 'x', batch_input_shape: [null, 6, 1] } },
          { class_name: 'Conv1D', config: { name: 'conv', filters: 1, kernel_size: [2], strides: [1], padding: 'causal', dilation_rate: [2], use_bias: false, activation: 'linear' } },
        ],
      },
    };
    const x = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const out = await runHandMade(config, '2.15.0', [{ name: 'conv/kernel', shape: [2, 1, 1], data: Float32Array.from([10, 1]) }], { x: new Tensor('float32', x, [1, 6, 1]) });
    // y[t] = 10 * x[t - 2] + x[t], with x before the start taken as 0.
    expect(Array.from(out.conv!)).toEqual([1, 2, 13, 24, 35, 46]);
  });
});

describe('TF.js weights: quantized and float16 shards are dequantized', () => {
  test.each([
    ['uint8', 1e-2],
    ['uint16', 1e-4],
    ['float16', 1e-3],
  ] as const)('%s weights', async (dtype, tolerance) => {
    const model = seq([6], [tfl.layers.dense({ units: 4, activation: 'tanh' })]);
    seedWeights(model, 5);
    const saved = await saveTfjs(model);
    const json = JSON.parse(Buffer.from(saved.modelJson).toString()) as { weightsManifest: { weights: { name: string; shape: number[]; dtype: string; quantization?: object }[] }[] };
    const floats = new Float32Array(saved.shards.get('group1-shard1of1.bin')!.slice().buffer);
    const chunks: Buffer[] = [];
    let at = 0;
    for (const w of json.weightsManifest[0]!.weights) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      const values = floats.subarray(at, at + n);
      at += n;
      if (dtype === 'float16') {
        const buf = Buffer.alloc(2 * n);
        values.forEach((v, i) => buf.writeUInt16LE(toHalf(v), 2 * i));
        chunks.push(buf);
        w.quantization = { dtype };
      } else {
        const levels = dtype === 'uint8' ? 255 : 65535;
        const min = Math.min(...values);
        const scale = (Math.max(...values) - min) / levels;
        const buf = Buffer.alloc((dtype === 'uint8' ? 1 : 2) * n);
        values.forEach((v, i) => (dtype === 'uint8' ? buf.writeUInt8(Math.round((v - min) / scale), i) : buf.writeUInt16LE(Math.round((v - min) / scale), 2 * i)));
        chunks.push(buf);
        w.quantization = { dtype, min, scale };
      }
    }
    const def = importTfjsLayersModel(new Uint8Array(Buffer.from(JSON.stringify(json))), () => new Uint8Array(Buffer.concat(chunks)));
    const { maxAbs } = await compareWithTfjs(model, encodeModel(def));
    expect(maxAbs[0]).toBeLessThanOrEqual(tolerance);
  });
});

/** float32 to IEEE half, round to nearest (normal range only, which seeded weights stay in). */
function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = ((bits >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  const mant = bits & 0x7fffff;
  let half = sign | (exp << 10) | (mant >>> 13);
  if (mant & 0x1000) half++;
  return half;
}

describe('refusals name the layer, its class and what is supported', () => {
  test('an unsupported layer (RepeatVector) fails with a ConversionError', async () => {
    const model = seq([4], [tfl.layers.dense({ units: 3, name: 'd' }), tfl.layers.repeatVector({ n: 2, name: 'rep' })]);
    const saved = await saveTfjs(model);
    const run = () => importTfjsLayersModel(saved.modelJson, (p) => saved.shards.get(p)!);
    expect(run).toThrow(ConversionError);
    expect(run).toThrow(/layer "rep" \(RepeatVector\) is not supported; supported layers: .*Conv2D.*Dense/);
  });

  test('a Lambda or custom layer is refused the same way', () => {
    const json = {
      format: 'layers-model',
      modelTopology: {
        keras_version: '2.15.0',
        model_config: {
          class_name: 'Sequential',
          config: { name: 's', layers: [{ class_name: 'InputLayer', config: { name: 'x', batch_input_shape: [null, 3] } }, { class_name: 'Lambda', config: { name: 'my_lambda' } }] },
        },
      },
      weightsManifest: [],
    };
    expect(() => importTfjsLayersModel(new Uint8Array(Buffer.from(JSON.stringify(json))), () => new Uint8Array())).toThrow(
      /layer "my_lambda" \(Lambda\) is not supported; supported layers: /,
    );
  });

  test('a graph model is not read as a layers model', () => {
    const json = { format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [] };
    expect(() => importTfjsLayersModel(new Uint8Array(Buffer.from(JSON.stringify(json))), () => new Uint8Array())).toThrow(/graph model \(TF ops\), not a layers model/);
  });

  test('a shard shorter than its manifest says is refused, naming the weight', async () => {
    const model = seq([4], [tfl.layers.dense({ units: 3, name: 'short' })]);
    const saved = await saveTfjs(model);
    expect(() => importTfjsLayersModel(saved.modelJson, () => new Uint8Array(8))).toThrow(/weight "short\/kernel" ends at byte 48, past the 8 bytes/);
  });
});
