import { InferenceSession, Tensor } from 'onnxruntime-node';
import { OpsetUpgradeError, upgradeOpset } from '../../lib/convert/opset-upgrade';
import { OnnxModel } from '../../lib/onnx/model';
import { opset9ConvModel, prng } from '../helpers/models';

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
    const source = opset9ConvModel();
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
    const model = OnnxModel.decode(opset9ConvModel());
    upgradeOpset(model, 14);
    const bytes = model.encode();
    expect(upgradeOpset(model, 14)).toEqual({ from: 14, to: 14, rewritten: {} });
    expect(model.encode()).toEqual(bytes);
  });

  test('an op without a known upgrade is refused by name', () => {
    const model = OnnxModel.decode(opset9ConvModel([{ opType: 'LpNormalization', inputs: ['p'], outputs: ['n'], name: 'norm' }], 'n'));
    expect(() => upgradeOpset(model, 14)).toThrow(new OpsetUpgradeError('node "norm" (LpNormalization) has no known upgrade from opset 9 to 14'));
  });
});

describe('BatchNormalization folded into the Conv before it (int8-static)', () => {
  test('the upgraded opset-9 net quantizes with its BatchNormalization folded, answering close to the original', async () => {
    const { foldIntoConvs } = await import('../../lib/convert/static-int8');
    const model = OnnxModel.decode(opset9ConvModel());
    upgradeOpset(model, 14);
    expect(foldIntoConvs(model.graph())).toEqual({ batchNorms: 1, affine: 0 });
    const ops = model.graph().nodes().map((n) => n.opType);
    expect(ops).not.toContain('BatchNormalization');
    // The float copies of the unfolded weights are gone too.
    expect(model.graph().initializers().map((t) => t.name)).not.toContain('k');
    const rand = prng(4);
    const x = new Tensor('float32', Float32Array.from({ length: 192 }, () => rand() * 4 - 2), [1, 3, 8, 8]);
    const before = await run(opset9ConvModel(), x);
    const after = await run(model.encode(), x);
    for (let i = 0; i < before.length; i++) expect(Math.abs(after[i]! - before[i]!)).toBeLessThan(1e-6);
  });
});

describe('upgrading to opset 11 (int8-dynamic)', () => {
  test('only the changes up to 11 are made: Squeeze keeps its axes attribute, Softmax its old form', async () => {
    const source = opset9ConvModel([{ opType: 'Unsqueeze', inputs: ['p'], outputs: ['u1'], attributes: [{ name: 'axes', ints: [0] }] }, { opType: 'Squeeze', inputs: ['u1'], outputs: ['q'], attributes: [{ name: 'axes', ints: [0] }] }], 'q');
    const model = OnnxModel.decode(source);
    expect(upgradeOpset(model, 11)).toEqual({ from: 9, to: 11, rewritten: { BatchNormalization: 1, Clip: 1, Upsample: 1, Slice: 1, Pad: 1 } });
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'BatchNormalization', 'Clip', 'Resize', 'Slice', 'Pad', 'Unsqueeze', 'Squeeze', 'Softmax']);
    const rand = prng(7);
    const x = new Tensor('float32', Float32Array.from({ length: 192 }, () => rand() * 4 - 2), [1, 3, 8, 8]);
    const before = await run(source, x);
    const after = await run(model.encode(), x);
    for (let i = 0; i < before.length; i++) expect(Math.abs(after[i]! - before[i]!)).toBeLessThan(1e-7);
  });
});
