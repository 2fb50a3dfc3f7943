import { InferenceSession, Tensor } from 'onnxruntime-node';
import { OpsetUpgradeError, upgradeOpset } from '../../lib/convert/opset-upgrade';
import { OnnxModel } from '../../lib/onnx/model';
import { encodeModel, floatTensor, type NodeDef } from '../../lib/onnx/writer';
import { ONNX, prng } from '../helpers/models';

/**
 * An opset-9 conv net using the ops whose signature changed by opset 14: Conv -> BatchNormalization
 * -> Clip (min/max attributes) -> Upsample (x2, nearest) -> Slice (attributes) -> Pad (attributes)
 * -> Softmax (axis 1 of a 4-D tensor: the old 2-D meaning) -> y.
 */
function oldNet(extra: NodeDef[] = [], last = 'p'): Uint8Array {
  const rand = prng(2);
  const w = (n: number, s = 1) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
  return encodeModel({
    graph: {
      name: 'old',
      inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: [1, 3, 8, 8] }],
      outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 4, 16, 16] }],
      initializers: [
        floatTensor('k', [4, 3, 3, 3], w(108)),
        floatTensor('gamma', [4], w(4)),
        floatTensor('beta', [4], w(4)),
        floatTensor('mean', [4], w(4, 0.1)),
        floatTensor('var', [4], [0.5, 1, 1.5, 2]),
        floatTensor('scales', [4], [1, 1, 2, 2]),
      ],
      nodes: [
        { opType: 'Conv', inputs: ['x', 'k'], outputs: ['c'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
        { opType: 'BatchNormalization', inputs: ['c', 'gamma', 'beta', 'mean', 'var'], outputs: ['b'], attributes: [{ name: 'epsilon', f: 1e-5 }] },
        { opType: 'Clip', inputs: ['b'], outputs: ['r'], attributes: [{ name: 'min', f: 0 }, { name: 'max', f: 6 }] },
        { opType: 'Upsample', inputs: ['r', 'scales'], outputs: ['u'], attributes: [{ name: 'mode', s: 'nearest' }] },
        { opType: 'Slice', inputs: ['u'], outputs: ['s'], attributes: [{ name: 'starts', ints: [1, 1] }, { name: 'ends', ints: [15, 15] }, { name: 'axes', ints: [2, 3] }] },
        { opType: 'Pad', inputs: ['s'], outputs: ['p'], attributes: [{ name: 'pads', ints: [0, 0, 1, 1, 0, 0, 1, 1] }, { name: 'value', f: 0.5 }] },
        ...extra,
        { opType: 'Softmax', inputs: [last], outputs: ['y'], attributes: [{ name: 'axis', i: 1 }] },
      ],
    },
    opsets: [{ domain: '', version: 9 }],
  });
}

async function run(bytes: Uint8Array, x: Tensor): Promise<Float32Array> {
  const s = await InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    return (await s.run({ x })).y!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('default-domain opset upgrade', () => {
  test('an opset-9 net becomes opset 14 with its changed ops rewritten, and answers as before', async () => {
    const source = oldNet();
    const model = OnnxModel.decode(source);
    expect(upgradeOpset(model, 14)).toEqual({ from: 9, to: 14, rewritten: { BatchNormalization: 1, Clip: 1, Upsample: 1, Slice: 1, Pad: 1, Softmax: 1 } });
    expect(model.opsets).toEqual([{ domain: '', version: 14 }]);
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'BatchNormalization', 'Clip', 'Resize', 'Slice', 'Pad', 'Flatten', 'Softmax', 'Shape', 'Reshape']);
    const rand = prng(3);
    const x = new Tensor('float32', Float32Array.from({ length: 192 }, () => rand() * 4 - 2), [1, 3, 8, 8]);
    const before = await run(source, x);
    const after = await run(model.encode(), x);
    expect(after.length).toBe(before.length);
    for (let i = 0; i < before.length; i++) expect(Math.abs(after[i]! - before[i]!)).toBeLessThan(1e-7);
  });

  test('a model at or above the target is left as it is', () => {
    const model = OnnxModel.decode(oldNet());
    upgradeOpset(model, 14);
    const bytes = model.encode();
    expect(upgradeOpset(model, 14)).toEqual({ from: 14, to: 14, rewritten: {} });
    expect(model.encode()).toEqual(bytes);
  });

  test('an op without a known upgrade is refused by name', () => {
    const model = OnnxModel.decode(oldNet([{ opType: 'LpNormalization', inputs: ['p'], outputs: ['n'], name: 'norm' }], 'n'));
    expect(() => upgradeOpset(model, 14)).toThrow(new OpsetUpgradeError('node "norm" (LpNormalization) has no known upgrade from opset 9 to 14'));
  });
});
