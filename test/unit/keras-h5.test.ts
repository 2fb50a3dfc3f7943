import { importKerasH5 } from '../../lib/convert/import/keras-h5';
import { encodeModel } from '../../lib/onnx/writer';
import { compareWithTfjs, seedWeights, tfl, useCpuBackend, writeKerasH5 } from '../helpers/tfjs';

beforeAll(useCpuBackend);

describe('Keras 2 HDF5 (.h5) files, written with h5wasm and read with jsfive', () => {
  test('a functional CNN with BatchNormalization and a Bidirectional LSTM head matches TF.js', async () => {
    const image = tfl.input({ shape: [8, 8, 3], name: 'image' });
    let x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }).apply(image) as tfl.SymbolicTensor;
    x = tfl.layers.batchNormalization({ name: 'bn' }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.reshape({ targetShape: [8, 32], name: 'rows' }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.bidirectional({ layer: tfl.layers.lstm({ units: 3, recurrentInitializer: 'glorotUniform' }), name: 'bilstm' }).apply(x) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'probs' }).apply(x) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: image, outputs: out });
    seedWeights(model, 21);
    const h5 = writeKerasH5(model);
    const { def, artifacts } = importKerasH5(h5);
    expect(def.graph.inputs.map((i) => i.name)).toEqual(['image']);
    expect(artifacts.weightSpecs).toHaveLength(model.weights.length);
    const { maxAbs } = await compareWithTfjs(model, encodeModel(def));
    expect(maxAbs[0]).toBeLessThanOrEqual(1e-4);
  });

  test('bytes that are not HDF5 are refused with the reason', () => {
    expect(() => importKerasH5(new Uint8Array(Buffer.from('definitely not hdf5')))).toThrow(/^the \.h5 upload is not an HDF5 file jsfive can read/);
  });
});
