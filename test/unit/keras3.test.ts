import { InferenceSession, Tensor } from 'onnxruntime-node';
import { measureImportFidelity } from '../../lib/convert/import/fidelity';
import { Dataset } from 'jsfive';
import { H5Budget, h5Floats, openH5 } from '../../lib/convert/import/keras-h5';
import { importKeras3 } from '../../lib/convert/import/keras3';
import { kerasSnakeCase } from '../../lib/convert/import/keras3-weights';
import { encodeModel } from '../../lib/onnx/writer';
import { prng } from '../../lib/convert/random';
import { DTYPE_POLICY, keras3FromTfjs, keras3Layer, kerasTensor, writeKeras3 } from '../helpers/keras3';
import { compareWithTfjs, seedWeights, tf, tfl, useCpuBackend, writeH5 } from '../helpers/tfjs';

beforeAll(useCpuBackend);

/** Writes the model as a .keras file, converts it, and expects ONNX and TF.js to agree within 1e-4; returns the import. */
async function expectMatches(model: tfl.LayersModel, seed: number): Promise<ReturnType<typeof importKeras3>> {
  seedWeights(model, seed);
  const imported = importKeras3(keras3FromTfjs(model));
  const onnx = encodeModel(imported.def);
  const { maxAbs } = await compareWithTfjs(model, onnx);
  expect(maxAbs).toHaveLength(model.outputs.length);
  for (const m of maxAbs) expect(m).toBeLessThanOrEqual(1e-4);
  // The artifacts the job measures fidelity from load in TF.js and answer the same.
  expect(imported.fidelityUnavailable).toBeUndefined();
  const fidelity = await measureImportFidelity(imported.artifacts, onnx, { sampleCount: 2, seed: 3, dynamicDims: { first: 2, other: 5 } }, 0.9999);
  expect(fidelity.passed).toBe(true);
  for (const o of Object.values(fidelity.outputs)) expect(o.maxAbsError).toBeLessThanOrEqual(1e-4);
  return imported;
}

describe('Keras 3 .keras files (config.json + model.weights.h5), converted and compared with TF.js', () => {
  test('folder names follow Keras naming.to_snake_case of the class name', () => {
    expect(['Dense', 'Conv2D', 'Conv2DTranspose', 'DepthwiseConv2D', 'BatchNormalization', 'LSTM', 'GRU', 'PReLU', 'Functional', 'InputLayer'].map(kerasSnakeCase)).toEqual([
      'dense',
      'conv2d',
      'conv2d_transpose',
      'depthwise_conv2d',
      'batch_normalization',
      'lstm',
      'gru',
      'p_re_lu',
      'functional',
      'input_layer',
    ]);
  });

  test("float32 datasets are read from the file's bytes, the same values jsfive's own reader gives", () => {
    const values = seeded(7 * 5, 3, 10);
    const file = openH5(writeH5({ datasets: [{ path: 'a', shape: [3], data: [1.5, -2, 3e-7] }, { path: 'g/vars/0', shape: [7, 5], data: Array.from(values) }] }), 'test file');
    for (const path of ['a', 'g/vars/0']) {
      const d = file.get(path);
      expect(d).toBeInstanceOf(Dataset);
      expect(Array.from(h5Floats(d as Dataset, new H5Budget(1024, 'test file'), path))).toEqual(Array.from(Float32Array.from((d as Dataset).value, Number)));
    }
    expect(Array.from(h5Floats(file.get('g/vars/0') as Dataset, new H5Budget(1024, 'test file'), 'g/vars/0'))).toEqual(Array.from(values));
    // A dataset declaring more than the budget left is refused before it is read.
    const budget = new H5Budget(7 * 5 * 4 + 8, 'test file');
    h5Floats(file.get('g/vars/0') as Dataset, budget, 'g/vars/0');
    expect(() => h5Floats(file.get('a') as Dataset, budget, 'a')).toThrow('test file: a declares 12 bytes of weights, past the 8 bytes left of the upload\'s limit (an HDF5 bomb?)');
  });

  test('a Sequential CNN: Conv2D, BatchNormalization, DepthwiseConv2D, pooling, Flatten, two Dense', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: [12, 12, 3], name: 'image' }),
        tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }),
        tfl.layers.batchNormalization(),
        tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu6' }),
        tfl.layers.conv2d({ filters: 6, kernelSize: 1 }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 16, activation: 'relu' }),
        tfl.layers.dense({ units: 5, activation: 'softmax', name: 'probs' }),
      ],
    });
    const imported = await expectMatches(model, 31);
    expect(imported.def.graph.inputs.map((i) => [i.name, i.shape])).toEqual([['image', ['batch', 12, 12, 3]]]);
    expect(imported.artifacts.weightSpecs).toHaveLength(model.weights.length);
  });
});

describe('Keras 3 .keras structures, compared with TF.js predict', () => {
  test('a functional model with two inputs and two outputs', async () => {
    const image = tfl.input({ shape: [6, 6, 2], name: 'image' });
    const meta = tfl.input({ shape: [4], name: 'meta' });
    let x = tfl.layers.conv2d({ filters: 3, kernelSize: 3, activation: 'relu' }).apply(image) as tfl.SymbolicTensor;
    x = tfl.layers.globalAveragePooling2d({}).apply(x) as tfl.SymbolicTensor;
    const m = tfl.layers.dense({ units: 3, activation: 'tanh' }).apply(meta) as tfl.SymbolicTensor;
    const joined = tfl.layers.concatenate().apply([x, m]) as tfl.SymbolicTensor;
    const scores = tfl.layers.dense({ units: 4, activation: 'softmax', name: 'scores' }).apply(joined) as tfl.SymbolicTensor;
    const value = tfl.layers.dense({ units: 1, name: 'value' }).apply(tfl.layers.add().apply([x, m])) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: [image, meta], outputs: [scores, value] });
    const imported = await expectMatches(model, 32);
    expect(imported.def.graph.inputs.map((i) => i.name)).toEqual(['image', 'meta']);
    expect(imported.def.graph.outputs.map((o) => o.name)).toEqual(['scores', 'value']);
  });

  test('nested models: a Sequential and a Functional inside a Functional, weights found under layers/<model>/layers/...', async () => {
    const inner = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [5], units: 6, activation: 'relu' }), tfl.layers.dense({ units: 4 })] });
    const subIn = tfl.input({ shape: [4] });
    const subOut = tfl.layers.dense({ units: 3, activation: 'sigmoid' }).apply(tfl.layers.batchNormalization().apply(subIn)) as tfl.SymbolicTensor;
    const sub = tfl.model({ inputs: subIn, outputs: subOut });
    const x = tfl.input({ shape: [5], name: 'x' });
    const h = inner.apply(x) as tfl.SymbolicTensor;
    const y = tfl.layers.dense({ units: 2, name: 'head' }).apply(sub.apply(h)) as tfl.SymbolicTensor;
    await expectMatches(tfl.model({ inputs: x, outputs: y }), 33);
  });

  test("nested models as outputs: output_layers count a Sequential's calls from 0 and a Functional's from 1 in Keras 3", async () => {
    const inner = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [3], units: 4, activation: 'relu' })] });
    const subIn = tfl.input({ shape: [4] });
    const sub = tfl.model({ inputs: subIn, outputs: tfl.layers.dense({ units: 2 }).apply(subIn) as tfl.SymbolicTensor });
    const x = tfl.input({ shape: [3], name: 'x' });
    const h = inner.apply(x) as tfl.SymbolicTensor;
    await expectMatches(tfl.model({ inputs: x, outputs: [h, sub.apply(h) as tfl.SymbolicTensor] }), 37);
  });

  test('a shared layer called on two inputs (two inbound nodes, the second read as node 1)', async () => {
    const a = tfl.input({ shape: [4], name: 'a' });
    const b = tfl.input({ shape: [4], name: 'b' });
    const shared = tfl.layers.dense({ units: 3, activation: 'tanh', name: 'shared' });
    const sum = tfl.layers.add({ name: 'sum' }).apply([shared.apply(a) as tfl.SymbolicTensor, shared.apply(b) as tfl.SymbolicTensor]) as tfl.SymbolicTensor;
    await expectMatches(tfl.model({ inputs: [a, b], outputs: sum }), 36);
  });

  test('LSTM (return_sequences) into a Bidirectional GRU (reset_after=false), with sigmoid recurrent activations', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: [5, 3], name: 'seq' }),
        tfl.layers.lstm({ units: 4, returnSequences: true, recurrentActivation: 'sigmoid', recurrentInitializer: 'glorotUniform' }),
        tfl.layers.bidirectional({ layer: tfl.layers.gru({ units: 3, recurrentActivation: 'sigmoid', recurrentInitializer: 'glorotUniform' }), mergeMode: 'concat' }),
        tfl.layers.dense({ units: 2 }),
      ],
    });
    await expectMatches(model, 34);
  });

  test('BatchNormalization with and without center and scale, after a convolution and on features', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: [4, 4, 3] }),
        tfl.layers.conv2d({ filters: 4, kernelSize: 1 }),
        tfl.layers.batchNormalization({ epsilon: 0.01 }),
        tfl.layers.batchNormalization({ center: false }),
        tfl.layers.flatten(),
        tfl.layers.batchNormalization({ scale: false }),
        tfl.layers.dense({ units: 3 }),
      ],
    });
    await expectMatches(model, 35);
  });
});

/** Runs the ONNX model on one input and returns its outputs by name. */
async function runOnnx(imported: ReturnType<typeof importKeras3>, feeds: Record<string, Tensor>): Promise<Record<string, Float32Array>> {
  const session = await InferenceSession.create(encodeModel(imported.def), { logSeverityLevel: 3, intraOpNumThreads: 1 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

function seeded(n: number, seed: number, scale = 1): Float32Array {
  const rand = prng(seed);
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const hardSigmoid3 = (v: number) => Math.min(1, Math.max(0, v / 6 + 0.5));

describe('Keras 3 files written by hand to the documented layout, checked against the definitions', () => {
  test('weights are placed by class order in model.layers, not by layer name; a nested Functional recurses', async () => {
    // Two Dense layers whose names sort the other way from their order, and a nested model with its own "dense".
    const config = {
      module: 'keras.src.models.functional',
      class_name: 'Functional',
      config: {
        name: 'outer',
        trainable: true,
        layers: [
          keras3Layer('InputLayer', { batch_shape: [null, 2], dtype: 'float32', sparse: false, name: 'x' }, []),
          keras3Layer('Dense', { name: 'z_first', units: 2, activation: 'relu', use_bias: true }, [{ args: [kerasTensor('x')], kwargs: {} }]),
          keras3Layer(
            'Functional',
            {
              name: 'inner',
              trainable: true,
              layers: [
                keras3Layer('InputLayer', { batch_shape: [null, 2], dtype: 'float32', sparse: false, name: 'inner_in' }, []),
                keras3Layer('Dense', { name: 'inner_dense', units: 2, activation: 'linear', use_bias: false }, [{ args: [kerasTensor('inner_in')], kwargs: {} }]),
              ],
              input_layers: [['inner_in', 0, 0]],
              output_layers: [['inner_dense', 0, 0]],
            },
            [{ args: [kerasTensor('z_first')], kwargs: {} }],
          ),
          // Keras 3 numbers a nested model's calls from 0 where another layer reads them.
          keras3Layer('Dense', { name: 'a_second', units: 1, activation: 'linear', use_bias: true }, [{ args: [kerasTensor('inner', 0, 0)], kwargs: {} }]),
        ],
        input_layers: [['x', 0, 0]],
        // Newer Keras 3 releases write a single output (or input) as one reference, not a list of them.
        output_layers: ['a_second', 0, 0],
      },
      registered_name: 'Functional',
      build_config: { input_shape: null },
    };
    const W1 = [1, -2, 0.5, 1];
    const b1 = [0.1, -0.1];
    const W2 = [2, 0, 0, -1];
    const W3 = [0.5, 3];
    const b3 = [0.25];
    const file = writeKeras3(
      config,
      {
        vars: {
          'layers/dense': [
            { shape: [2, 2], data: W1 },
            { shape: [2], data: b1 },
          ],
          'layers/functional/layers/dense': [{ shape: [2, 2], data: W2 }],
          'layers/dense_1': [
            { shape: [2, 1], data: W3 },
            { shape: [1], data: b3 },
          ],
        },
      },
      { emptyFolders: ['layers/input_layer', 'layers/functional/layers/input_layer'] },
    );
    const imported = importKeras3(file);
    const x = [0.3, -0.7];
    const h1 = [0, 1].map((j) => Math.max(0, x[0]! * W1[j]! + x[1]! * W1[2 + j]! + b1[j]!));
    const h2 = [0, 1].map((j) => h1[0]! * W2[j]! + h1[1]! * W2[2 + j]!);
    const want = h2[0]! * W3[0]! + h2[1]! * W3[1]! + b3[0]!;
    const out = await runOnnx(imported, { x: new Tensor('float32', Float32Array.from(x), [1, 2]) });
    expect(Math.abs(out.a_second![0]! - want)).toBeLessThanOrEqual(1e-6);
    const fidelity = await measureImportFidelity(imported.artifacts, encodeModel(imported.def), { sampleCount: 2, seed: 1, dynamicDims: { first: 2, other: 1 } }, 0.9999);
    expect(fidelity.passed).toBe(true);
  });

  test("hard_sigmoid is Keras 3's clip(x/6 + 0.5) in the export, and the TF.js twin the fidelity check runs computes the same", async () => {
    const config = {
      module: 'keras',
      class_name: 'Sequential',
      config: {
        name: 'gates',
        trainable: true,
        dtype: DTYPE_POLICY,
        layers: [
          // Newer Keras 3 releases also write ragged and optional.
          keras3Layer('InputLayer', { batch_shape: [null, 3], dtype: 'float32', sparse: false, ragged: false, name: 'x', optional: false }),
          keras3Layer('Dense', { name: 'd', units: 3, activation: 'hard_sigmoid', use_bias: true }),
          keras3Layer('Activation', { name: 'act', activation: { module: 'keras.activations', class_name: 'function', config: 'hard_sigmoid', registered_name: 'hard_sigmoid' } }),
        ],
      },
      registered_name: null,
    };
    const W = seeded(9, 5, 4);
    const b = seeded(3, 6, 2);
    const imported = importKeras3(writeKeras3(config, { vars: { 'layers/dense': [{ shape: [3, 3], data: W }, { shape: [3], data: b }] } }, { emptyFolders: ['layers/activation'] }));
    expect(imported.fidelityUnavailable).toBeUndefined();
    const x = seeded(6, 7, 5);
    const out = await runOnnx(imported, { x: new Tensor('float32', x, [2, 3]) });
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 3; j++) {
        let v = b[j]!;
        for (let i = 0; i < 3; i++) v += x[n * 3 + i]! * W[i * 3 + j]!;
        expect(Math.abs(out.act![n * 3 + j]! - hardSigmoid3(hardSigmoid3(v)))).toBeLessThanOrEqual(1e-6);
      }
    }
    const fidelity = await measureImportFidelity(imported.artifacts, encodeModel(imported.def), { sampleCount: 3, seed: 2, dynamicDims: { first: 4, other: 1 } }, 0.9999);
    expect(fidelity).toMatchObject({ passed: true });
    expect(fidelity.outputs.act!.maxAbsError).toBeLessThanOrEqual(1e-6);
  });

  test('a .keras file from Keras 2.15: _layer_checkpoint_dependencies folders, list-form nodes, a nested Sequential numbered from 1, hard_sigmoid 0.2x + 0.5', async () => {
    const config = {
      module: 'keras.src.engine.functional',
      class_name: 'Functional',
      config: {
        name: 'model',
        trainable: true,
        layers: [
          { module: 'keras.layers', class_name: 'InputLayer', config: { batch_input_shape: [null, 2], dtype: 'float32', sparse: false, ragged: false, name: 'x' }, registered_name: null, name: 'x', inbound_nodes: [] },
          {
            module: 'keras.src.engine.sequential',
            class_name: 'Sequential',
            config: {
              name: 'seq',
              layers: [
                { module: 'keras.layers', class_name: 'InputLayer', config: { batch_input_shape: [null, 2], dtype: 'float32', sparse: false, ragged: false, name: 'seq_in' }, registered_name: null },
                { module: 'keras.layers', class_name: 'Dense', config: { name: 'hidden', trainable: true, dtype: 'float32', units: 2, activation: 'relu', use_bias: true }, registered_name: null, build_config: { input_shape: [null, 2] } },
              ],
            },
            registered_name: null,
            name: 'seq',
            inbound_nodes: [[['x', 0, 0, {}]]],
          },
          { module: 'keras.layers', class_name: 'Dense', config: { name: 'gate', trainable: true, dtype: 'float32', units: 1, activation: 'hard_sigmoid', use_bias: false }, registered_name: null, name: 'gate', inbound_nodes: [[['seq', 1, 0, {}]]] },
        ],
        input_layers: [['x', 0, 0]],
        output_layers: [['gate', 0, 0]],
      },
      registered_name: 'Functional',
    };
    const W1 = [1, -1, 2, 0.5];
    const W2 = [3, -2];
    const file = writeKeras3(
      config,
      {
        vars: {
          '_layer_checkpoint_dependencies/sequential/_layer_checkpoint_dependencies/dense': [
            { shape: [2, 2], data: W1 },
            { shape: [2], data: [0, 0.5] },
          ],
          '_layer_checkpoint_dependencies/dense': [{ shape: [2, 1], data: W2 }],
        },
      },
      { kerasVersion: '2.15.0' },
    );
    const imported = importKeras3(file);
    const x = [0.4, 0.2];
    const h = [0, 1].map((j) => Math.max(0, x[0]! * W1[j]! + x[1]! * W1[2 + j]! + [0, 0.5][j]!));
    const v = h[0]! * W2[0]! + h[1]! * W2[1]!;
    const out = await runOnnx(imported, { x: new Tensor('float32', Float32Array.from(x), [1, 2]) });
    expect(Math.abs(out.gate![0]! - Math.min(1, Math.max(0, 0.2 * v + 0.5)))).toBeLessThanOrEqual(1e-6);
    const fidelity = await measureImportFidelity(imported.artifacts, encodeModel(imported.def), { sampleCount: 2, seed: 5, dynamicDims: { first: 3, other: 1 } }, 0.9999);
    expect(fidelity.passed).toBe(true);
  });

  test('silu is run by TF.js as swish; Normalization with its mean and variance in the config (NumPy-serialized), which TF.js lacks, is converted from them', async () => {
    const config = {
      module: 'keras',
      class_name: 'Sequential',
      config: {
        name: 'prep',
        trainable: true,
        dtype: DTYPE_POLICY,
        layers: [
          keras3Layer('InputLayer', { batch_shape: [null, 3], dtype: 'float32', sparse: false, name: 'x' }),
          keras3Layer('Dense', { name: 'd', units: 2, activation: 'silu', use_bias: false }),
          keras3Layer('Normalization', {
            name: 'norm',
            axis: [-1],
            invert: false,
            mean: { class_name: '__numpy__', config: { value: [0.5, -1], dtype: 'float32' } },
            variance: [4, 0.25],
          }),
        ],
      },
      registered_name: null,
    };
    const W = [1, -1, 0.5, 2, -2, 0.25];
    const imported = importKeras3(writeKeras3(config, { vars: { 'layers/dense': [{ shape: [3, 2], data: W }] } }, { emptyFolders: ['layers/normalization'] }));
    expect(imported.fidelityUnavailable).toBe('TF.js has no Normalization layer ("norm")');
    const x = [0.3, -0.6, 0.9];
    const out = await runOnnx(imported, { x: new Tensor('float32', Float32Array.from(x), [1, 3]) });
    [0, 1].forEach((j) => {
      const v = x.reduce((a, xi, i) => a + xi * W[i * 2 + j]!, 0);
      const silu = v * sigmoid(v);
      expect(Math.abs(out.norm![j]! - (silu - [0.5, -1][j]!) / Math.sqrt([4, 0.25][j]!))).toBeLessThanOrEqual(1e-6);
    });
    // Without the Normalization, TF.js runs the rest (silu as its swish) and agrees.
    config.config.layers.pop();
    const dense = importKeras3(writeKeras3(config, { vars: { 'layers/dense': [{ shape: [3, 2], data: W }] } }));
    expect(dense.fidelityUnavailable).toBeUndefined();
    const fidelity = await measureImportFidelity(dense.artifacts, encodeModel(dense.def), { sampleCount: 2, seed: 6, dynamicDims: { first: 3, other: 1 } }, 0.9999);
    expect(fidelity.outputs.d!.maxAbsError).toBeLessThanOrEqual(1e-6);
  });

  test("a Sequential saved without an InputLayer takes its input shape from build_input_shape; a Bidirectional whose backward layer is not the forward one's mirror is refused", async () => {
    const dense = keras3Layer('Dense', { name: 'd', units: 2, activation: 'linear', use_bias: false });
    const config = { module: 'keras', class_name: 'Sequential', config: { name: 's', trainable: true, dtype: DTYPE_POLICY, layers: [dense], build_input_shape: [null, 2] }, registered_name: null };
    const imported = importKeras3(writeKeras3(config, { vars: { 'layers/dense': [{ shape: [2, 2], data: [1, 2, 3, 4] }] } }));
    expect(imported.def.graph.inputs.map((i) => [i.name, i.shape])).toEqual([['d_input', ['batch', 2]]]);
    const out = await runOnnx(imported, { d_input: new Tensor('float32', Float32Array.from([1, 1]), [1, 2]) });
    expect(Array.from(out.d!)).toEqual([4, 6]);

    const lstm = (name: string, extra: object) => keras3Layer('LSTM', { name, units: 2, activation: 'tanh', recurrent_activation: 'sigmoid', use_bias: true, return_sequences: false, ...extra });
    const bidi = {
      module: 'keras',
      class_name: 'Sequential',
      config: {
        name: 'b',
        trainable: true,
        dtype: DTYPE_POLICY,
        layers: [
          keras3Layer('InputLayer', { batch_shape: [null, 3, 2], dtype: 'float32', sparse: false, name: 'x' }),
          keras3Layer('Bidirectional', { name: 'bi', merge_mode: 'concat', layer: lstm('forward_lstm', {}), backward_layer: lstm('backward_lstm', { go_backwards: true, activation: 'relu' }) }),
        ],
      },
      registered_name: null,
    };
    const cell = [
      { shape: [2, 8], data: new Float32Array(16) },
      { shape: [2, 8], data: new Float32Array(16) },
      { shape: [8], data: new Float32Array(8) },
    ];
    expect(() => importKeras3(writeKeras3(bidi, { vars: { 'layers/bidirectional/forward_layer/cell': cell, 'layers/bidirectional/backward_layer/cell': cell } }))).toThrow(
      'layer "bi" (Bidirectional): a separate backward_layer is not supported',
    );
  });

  test('GRU with reset_after=true (the Keras 3 default, which TF.js cannot build): the definition, and fidelity marked not measurable', async () => {
    const [T, I, H] = [4, 3, 2];
    const config = {
      module: 'keras',
      class_name: 'Sequential',
      config: {
        name: 'rnn',
        trainable: true,
        dtype: DTYPE_POLICY,
        layers: [
          keras3Layer('InputLayer', { batch_shape: [null, T, I], dtype: 'float32', sparse: false, name: 'steps' }),
          keras3Layer('GRU', {
            name: 'gru',
            units: H,
            activation: 'tanh',
            recurrent_activation: 'sigmoid',
            use_bias: true,
            kernel_initializer: { module: 'keras.initializers', class_name: 'GlorotUniform', config: { seed: null }, registered_name: null },
            recurrent_initializer: { module: 'keras.initializers', class_name: 'Orthogonal', config: { gain: 1.0, seed: null }, registered_name: null },
            bias_initializer: { module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null },
            dropout: 0.0,
            recurrent_dropout: 0.0,
            reset_after: true,
            return_sequences: false,
            return_state: false,
            go_backwards: false,
            stateful: false,
            unroll: false,
            seed: null,
          }),
        ],
      },
      registered_name: null,
    };
    const W = seeded(I * 3 * H, 11);
    const U = seeded(H * 3 * H, 12);
    const B = seeded(2 * 3 * H, 13);
    const file = writeKeras3(config, {
      vars: {
        'layers/gru/cell': [
          { shape: [I, 3 * H], data: W },
          { shape: [H, 3 * H], data: U },
          { shape: [2, 3 * H], data: B },
        ],
      },
    });
    const imported = importKeras3(file);
    expect(imported.fidelityUnavailable).toBe('TF.js cannot build GRU "gru" with reset_after=true (the Keras 3 default)');
    const x = seeded(T * I, 14);
    const out = await runOnnx(imported, { steps: new Tensor('float32', x, [1, T, I]) });
    // Keras: gates z, r, h in column blocks; the recurrent part gets its own bias and is reset after the product.
    let h = new Array<number>(H).fill(0);
    for (let t = 0; t < T; t++) {
      const xt = Array.from(x.subarray(t * I, (t + 1) * I));
      const proj = (m: Float32Array, v: number[], gate: number, j: number) => v.reduce((a, vi, i) => a + vi * m[i * 3 * H + gate * H + j]!, 0);
      const next = h.map((_, j) => {
        const z = sigmoid(proj(W, xt, 0, j) + B[j]! + proj(U, h, 0, j) + B[3 * H + j]!);
        const r = sigmoid(proj(W, xt, 1, j) + B[H + j]! + proj(U, h, 1, j) + B[3 * H + H + j]!);
        const hh = Math.tanh(proj(W, xt, 2, j) + B[2 * H + j]! + r * (proj(U, h, 2, j) + B[3 * H + 2 * H + j]!));
        return z * h[j]! + (1 - z) * hh;
      });
      h = next;
    }
    for (let j = 0; j < H; j++) expect(Math.abs(out.gru![j]! - h[j]!)).toBeLessThanOrEqual(1e-5);
  });
});

describe('a config.json as Keras 3.5 writes it, every key kept', () => {
  const init = (className: string, config: object = {}) => ({ module: 'keras.initializers', class_name: className, config, registered_name: null });
  const layer = (className: string, config: Record<string, unknown>, inputShape: (number | null)[]) => ({ ...keras3Layer(className, config), build_config: { input_shape: inputShape } });

  test('a compiled Sequential CNN with Dropout: optimizer variables ignored, answers like the same model built in TF.js', async () => {
    const config = {
      module: 'keras',
      class_name: 'Sequential',
      config: {
        name: 'sequential',
        trainable: true,
        dtype: DTYPE_POLICY,
        layers: [
          keras3Layer('InputLayer', { batch_shape: [null, 8, 8, 3], dtype: 'float32', sparse: false, name: 'input_layer' }),
          layer(
            'Conv2D',
            {
              name: 'conv2d',
              filters: 4,
              kernel_size: [3, 3],
              strides: [1, 1],
              padding: 'valid',
              data_format: 'channels_last',
              dilation_rate: [1, 1],
              groups: 1,
              activation: 'relu',
              use_bias: true,
              kernel_initializer: init('GlorotUniform', { seed: null }),
              bias_initializer: init('Zeros'),
              kernel_regularizer: null,
              bias_regularizer: null,
              activity_regularizer: null,
              kernel_constraint: null,
              bias_constraint: null,
            },
            [null, 8, 8, 3],
          ),
          layer(
            'BatchNormalization',
            {
              name: 'batch_normalization',
              axis: -1,
              momentum: 0.99,
              epsilon: 0.001,
              center: true,
              scale: true,
              beta_initializer: init('Zeros'),
              gamma_initializer: init('Ones'),
              moving_mean_initializer: init('Zeros'),
              moving_variance_initializer: init('Ones'),
              beta_regularizer: null,
              gamma_regularizer: null,
              beta_constraint: null,
              gamma_constraint: null,
              synchronized: false,
            },
            [null, 6, 6, 4],
          ),
          layer('MaxPooling2D', { name: 'max_pooling2d', pool_size: [2, 2], padding: 'valid', strides: [2, 2], data_format: 'channels_last' }, [null, 6, 6, 4]),
          layer('Dropout', { name: 'dropout', rate: 0.25, seed: null, noise_shape: null }, [null, 3, 3, 4]),
          layer('Flatten', { name: 'flatten', data_format: 'channels_last' }, [null, 3, 3, 4]),
          layer(
            'Dense',
            {
              name: 'dense',
              units: 3,
              activation: 'softmax',
              use_bias: true,
              kernel_initializer: init('GlorotUniform', { seed: null }),
              bias_initializer: init('Zeros'),
              kernel_regularizer: null,
              bias_regularizer: null,
              kernel_constraint: null,
              bias_constraint: null,
            },
            [null, 36],
          ),
        ],
        build_input_shape: [null, 8, 8, 3],
      },
      registered_name: null,
      build_config: { input_shape: [null, 8, 8, 3] },
      compile_config: { optimizer: { module: 'keras.optimizers', class_name: 'Adam', config: { name: 'adam', learning_rate: 0.001 }, registered_name: null }, loss: 'categorical_crossentropy', metrics: ['accuracy'] },
    };
    const kernel = seeded(3 * 3 * 3 * 4, 21, 0.5);
    const bias = seeded(4, 22);
    const [gamma, beta, mean] = [seeded(4, 23), seeded(4, 24), seeded(4, 25)];
    const variance = seeded(4, 26).map((v) => 0.5 + Math.abs(v));
    const dense = seeded(36 * 3, 27, 0.5);
    const denseBias = seeded(3, 28);
    const file = writeKeras3(
      config,
      {
        vars: {
          'layers/conv2d': [
            { shape: [3, 3, 3, 4], data: kernel },
            { shape: [4], data: bias },
          ],
          'layers/batch_normalization': [gamma, beta, mean, variance].map((data) => ({ shape: [4], data })),
          'layers/dense': [
            { shape: [36, 3], data: dense },
            { shape: [3], data: denseBias },
          ],
          // What compile() and fit() leave beside the layers: never read.
          optimizer: [
            { shape: [], data: [10] },
            { shape: [3, 3, 3, 4], data: new Float32Array(108) },
          ],
        },
      },
      { emptyFolders: ['layers/max_pooling2d', 'layers/dropout', 'layers/flatten'] },
    );
    const imported = importKeras3(file);
    expect(imported.artifacts.weightSpecs.map((w) => (w as { name: string }).name)).toEqual([
      'conv2d/kernel',
      'conv2d/bias',
      'batch_normalization/gamma',
      'batch_normalization/beta',
      'batch_normalization/moving_mean',
      'batch_normalization/moving_variance',
      'dense/kernel',
      'dense/bias',
    ]);
    // The same model built with TF.js's own API and given the same weights is the reference.
    const reference = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: [8, 8, 3], name: 'input_layer' }),
        tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }),
        tfl.layers.batchNormalization(),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.dropout({ rate: 0.25 }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 3, activation: 'softmax', name: 'dense' }),
      ],
    });
    const set = (className: string, values: [Float32Array, number[]][]) =>
      reference.layers.find((l) => l.getClassName() === className)!.setWeights(values.map(([data, shape]) => tf.tensor(data, shape)));
    set('Conv2D', [
      [kernel, [3, 3, 3, 4]],
      [bias, [4]],
    ]);
    set('BatchNormalization', [gamma, beta, mean, variance].map((v) => [v, [4]]));
    set('Dense', [
      [dense, [36, 3]],
      [denseBias, [3]],
    ]);
    const onnx = encodeModel(imported.def);
    const x = seeded(3 * 8 * 8 * 3, 29);
    const want = (reference.predict(tf.tensor(x, [3, 8, 8, 3])) as tf.Tensor).dataSync();
    const got = (await runOnnx(imported, { input_layer: new Tensor('float32', x, [3, 8, 8, 3]) })).dense!;
    expect(got).toHaveLength(9);
    for (let i = 0; i < 9; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-4);
    const fidelity = await measureImportFidelity(imported.artifacts, onnx, { sampleCount: 3, seed: 4, dynamicDims: { first: 2, other: 1 } }, 0.9999);
    expect(fidelity.passed).toBe(true);
    expect(fidelity.outputs.dense!.maxAbsError).toBeLessThanOrEqual(1e-4);
  });
});
