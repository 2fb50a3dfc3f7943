import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { calibrateMinMax } from '../../lib/convert/calibrate';
import { activationParams, quantizeStatic, roundHalfEven, staticCalibrationTargets } from '../../lib/convert/static-int8';
import { MODEL, OnnxModel, OPSET, TENSOR } from '../../lib/onnx/model';
import { ProtoField } from '../../lib/onnx/proto-tree';
import { encodeModel, floatTensor } from '../../lib/onnx/writer';
import { convStackModel, ONNX, prng } from '../helpers/models';

/** The nodes onnxruntime runs after its own optimizations at `level`, read back from its optimized file. */
async function runtimeGraph(bytes: Uint8Array, level: 'extended' | 'all'): Promise<OnnxModel> {
  const dir = mkdtempSync(join(tmpdir(), 'static-int8-'));
  try {
    const path = join(dir, 'optimized.onnx');
    const s = await InferenceSession.create(bytes, { graphOptimizationLevel: level, optimizedModelFilePath: path, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await s.release();
    return OnnxModel.decode(new Uint8Array(readFileSync(path)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Image-like samples: smooth gradients plus texture, in [0, 1]. */
function images(count: number, size: number, seed: number): Record<string, Tensor>[] {
  const rand = prng(seed);
  return Array.from({ length: count }, () => {
    const data = new Float32Array(3 * size * size);
    const [a, b, c] = [rand(), rand(), rand()];
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) data[(ch * size + y) * size + x] = Math.min(1, Math.max(0, 0.5 * (a * x + b * y) / size + 0.3 * c * (ch / 2) + 0.2 * rand()));
    return { image: new Tensor('float32', data, [1, 3, size, size]) };
  });
}

async function outputs(bytes: Uint8Array, samples: Record<string, Tensor>[]): Promise<Float32Array[]> {
  const s = await InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    const out: Float32Array[] = [];
    for (const feeds of samples) out.push((await s.run(feeds)).scores!.data as Float32Array);
    return out;
  } finally {
    await s.release();
  }
}

function cosine(a: Float32Array[], b: Float32Array[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  a.forEach((row, r) => row.forEach((v, i) => {
    const w = b[r]![i]!;
    dot += v * w;
    na += v * v;
    nb += w * w;
  }));
  return dot / Math.sqrt(na * nb);
}

async function quantized(source: Uint8Array, calibration: Record<string, Tensor>[], keepFloat: string[] = []) {
  const model = OnnxModel.decode(source);
  const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat }), calibration);
  const report = quantizeStatic(model, ranges, { keepFloat });
  return { bytes: model.encode(), report };
}

describe('static int8 (QDQ) for convolutions', () => {
  const source = convStackModel(16, 3, 16);
  const calibration = images(8, 16, 1);
  const held = images(8, 16, 2);

  it('rounds half to even and widens activation ranges to hold zero', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, 2, 3]);
    const relu = activationParams({ min: 0, max: 2.55 });
    expect(relu.zeroPoint).toBe(0);
    expect(relu.scale).toBeCloseTo(0.01, 12);
    const p = activationParams({ min: 1, max: 3 });
    expect(p.zeroPoint).toBe(0);
    expect(p.scale).toBeCloseTo(3 / 255, 9);
    expect(activationParams({ min: -1, max: 1 }).zeroPoint).toBe(128);
  });

  it('writes DQ -> Conv -> Q for each Conv, folds each Relu, and leaves no float weight', async () => {
    const { bytes, report } = await quantized(source, calibration);
    expect(report).toEqual({ convs: 3, reluFolded: 3, batchNormsFolded: 0, affineFolded: 0, affineFoldedIntoNext: 0, addsQuantized: 0, concatsQuantized: 0, convTransposeWeightsQuantized: 0, keptFloat: {} });
    const graph = OnnxModel.decode(bytes).graph();
    const ops = graph.nodes().map((n) => n.opType);
    expect(ops.filter((o) => o === 'Relu')).toHaveLength(0);
    expect(ops.filter((o) => o === 'Conv')).toHaveLength(3);
    // One Q/DQ for the image, one per Conv output; the second and third Conv read the previous DQ.
    expect(ops.filter((o) => o === 'QuantizeLinear')).toHaveLength(4);
    for (const conv of graph.nodes().filter((n) => n.opType === 'Conv')) {
      const producers = conv.inputs.map((i) => graph.nodes().find((n) => n.outputs.includes(i))?.opType);
      expect(producers).toEqual(['DequantizeLinear', 'DequantizeLinear', 'DequantizeLinear']);
    }
    const names = graph.initializers().map((t) => t.name);
    for (const l of [0, 1, 2]) expect(names).not.toContain(`k${l}`);
    // 5,040 conv weights go from 4 bytes to 1; the float head and the names stay.
    expect(bytes.byteLength).toBeLessThan(source.byteLength * 0.5);
  });

  it('writes each scale and zero point once per value, under short names of its own', async () => {
    const { bytes } = await quantized(source, calibration);
    const graph = OnnxModel.decode(bytes).graph();
    const sourceNames = new Set(OnnxModel.decode(source).graph().initializers().map((t) => t.name));
    const added = graph.initializers().filter((t) => !sourceNames.has(t.name));
    expect(added.length).toBeGreaterThan(0);
    for (const t of added) expect(t.name).toMatch(/^s8_\d+_[a-z_]+$/);
    // A Q and its DQ share their scale and zero point; no two small initializers hold the same value.
    const small = added.filter((t) => t.name !== '' && t.elementCount <= 1024 && !t.name.endsWith('_w') && !t.name.endsWith('_b'));
    const keys = small.map((t) => `${t.dataType}|${t.dims.join('x')}|${Buffer.from(t.proto.first(TENSOR.rawData)!.payload()).toString('hex')}`);
    expect(new Set(keys).size).toBe(keys.length);
    const q = graph.nodes().find((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === 'image')!;
    const dq = graph.nodes().find((n) => n.opType === 'DequantizeLinear' && n.inputs[0] === q.outputs[0])!;
    expect(dq.inputs.slice(1)).toEqual(q.inputs.slice(1));
  });

  it('is fused by onnxruntime into QLinearConv with u8 activations and s8 per-channel weights', async () => {
    const { bytes } = await quantized(source, calibration);
    const runtime = await runtimeGraph(bytes, 'extended');
    const ops = runtime.graph().nodes().map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(3);
    expect(ops).not.toContain('Conv');
    // Only the image's Q and the last Conv's DQ (before the float GlobalAveragePool) are left.
    expect(ops.filter((o) => o === 'QuantizeLinear')).toHaveLength(1);
    expect(ops.filter((o) => o === 'DequantizeLinear')).toHaveLength(1);
    const inits = new Map(runtime.graph().initializers().map((t) => [t.name, t]));
    for (const conv of runtime.graph().nodes().filter((n) => n.opType === 'QLinearConv')) {
      // QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B)
      expect(inits.get(conv.inputs[2]!)?.dataType).toBe(2); // uint8 activation zero point
      expect(inits.get(conv.inputs[3]!)?.dataType).toBe(3); // int8 weight
      expect(inits.get(conv.inputs[4]!)?.dims).toEqual([16]); // one scale per output channel
      expect(inits.get(conv.inputs[8]!)?.dataType).toBe(6); // int32 bias
    }
  });

  it('with s8 activations (internal option): the same grid; onnxruntime fuses QLinearConv and rewrites it to u8 itself', async () => {
    const model = OnnxModel.decode(source);
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: [] }), calibration);
    quantizeStatic(model, ranges, { keepFloat: [], activations: 'int8' });
    const s8 = model.encode();
    const written = OnnxModel.decode(s8).graph();
    const byName = new Map(written.initializers().map((t) => [t.name, t]));
    const zeros = written.nodes().filter((n) => n.opType === 'QuantizeLinear').map((n) => byName.get(n.inputs[2]!)!);
    expect(zeros.length).toBeGreaterThan(0);
    for (const z of zeros) expect(z.dataType).toBe(3); // int8 zero points
    const runtime = await runtimeGraph(s8, 'all');
    const ops = runtime.graph().nodes().map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(3);
    expect(ops).not.toContain('Conv');
    const inits = new Map(runtime.graph().initializers().map((t) => [t.name, t]));
    const zpTypes = runtime.graph().nodes().filter((n) => n.opType === 'QLinearConv').map((n) => inits.get(n.inputs[2]!)?.dataType);
    // onnxruntime 1.30 on x86 turns the s8 activation Q/DQ into u8 (zero point + 128) before
    // fusing: the kernel that runs is the u8 x s8 QLinearConv either way.
    expect(zpTypes).toEqual([2, 2, 2]);
    const { bytes: u8 } = await quantized(source, calibration);
    const [a, b] = [await outputs(u8, held), await outputs(s8, held)];
    expect(cosine(a, b)).toBeGreaterThan(0.9999);
  });

  it('answers as the float model does on held-out images', async () => {
    const { bytes } = await quantized(source, calibration);
    const [a, b] = [await outputs(source, held), await outputs(bytes, held)];
    expect(cosine(a, b)).toBeGreaterThan(0.99);
    const top = (row: Float32Array) => row.indexOf(Math.max(...row));
    expect(a.filter((row, i) => top(row) === top(b[i]!)).length).toBeGreaterThanOrEqual(7);
  });

  it('keeps a keepFloat Conv in float and still runs', async () => {
    const { bytes, report } = await quantized(source, calibration, ['c0']);
    expect(report.convs).toBe(2);
    expect(report.keptFloat).toEqual({ Conv_0: 'keepFloat' });
    const ops = (await runtimeGraph(bytes, 'extended')).graph().nodes().map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(2);
    expect(cosine(await outputs(source, held), await outputs(bytes, held))).toBeGreaterThan(0.99);
  });

  it('quantizes a depthwise Conv per channel too, and onnxruntime fuses it', async () => {
    const rand = prng(5);
    const w = (n: number, scale: number) => Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
    const depthwise = encodeModel({
      opsets: [{ domain: '', version: 17 }],
      graph: {
        name: 'depthwise',
        inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 16, 16] }],
        outputs: [{ name: 'scores', elemType: ONNX.FLOAT, shape: [1, 16, 1, 1] }],
        initializers: [
          floatTensor('k0', [16, 3, 3, 3], w(16 * 27, 0.4)),
          floatTensor('k1', [16, 1, 3, 3], w(16 * 9, 0.5)),
          floatTensor('b1', [16], w(16, 0.05)),
          floatTensor('k2', [16, 16, 1, 1], w(256, 0.3)),
        ],
        nodes: [
          { opType: 'Conv', inputs: ['image', 'k0'], outputs: ['c0'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
          { opType: 'Relu', inputs: ['c0'], outputs: ['r0'] },
          { opType: 'Conv', inputs: ['r0', 'k1', 'b1'], outputs: ['c1'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }, { name: 'group', i: 16 }] },
          { opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
          { opType: 'Conv', inputs: ['r1', 'k2'], outputs: ['c2'] },
          { opType: 'GlobalAveragePool', inputs: ['c2'], outputs: ['scores'] },
        ],
      },
    });
    const { bytes, report } = await quantized(depthwise, calibration);
    expect(report).toEqual({ convs: 3, reluFolded: 2, batchNormsFolded: 0, affineFolded: 0, affineFoldedIntoNext: 0, addsQuantized: 0, concatsQuantized: 0, convTransposeWeightsQuantized: 0, keptFloat: {} });
    const runtime = (await runtimeGraph(bytes, 'extended')).graph();
    expect(runtime.nodes().filter((n) => n.opType === 'QLinearConv')).toHaveLength(3);
    const dw = runtime.nodes().find((n) => n.opType === 'QLinearConv' && n.intAttribute('group', 1) === 16);
    expect(runtime.initializers().find((t) => t.name === dw?.inputs[4])?.dims).toEqual([16]);
    const run = async (model: Uint8Array) => {
      const s = await InferenceSession.create(model, { intraOpNumThreads: 1, logSeverityLevel: 3 });
      try {
        const out: Float32Array[] = [];
        for (const feeds of held) out.push((await s.run(feeds)).scores!.data as Float32Array);
        return out;
      } finally {
        await s.release();
      }
    };
    expect(cosine(await run(depthwise), await run(bytes))).toBeGreaterThan(0.99);
  });

  it('refuses opsets below 13 with the reason', () => {
    const old = OnnxModel.decode(convStackModel(4, 1, 8));
    for (const o of old.proto.messages(MODEL.opsetImport)) o.set(OPSET.version, [ProtoField.varint(OPSET.version, 11)]);
    expect(() => quantizeStatic(old, new Map(), { keepFloat: [] })).toThrow('int8-static needs opset 13 or later (per-channel weights); the model uses opset 11');
  });
});

describe('affine steps after a Conv are folded into it', () => {
  /** image[1, 3, 8, 8] -> Conv -> Mul(scalar) -> Mul(per channel [4, 1, 1]) -> Add(per channel [1, 4, 1, 1]) -> Relu -> y. */
  function affineNet(extraReader = false): Uint8Array {
    const rand = prng(12);
    const w = (n: number) => Array.from({ length: n }, () => rand() * 2 - 1);
    return encodeModel({
      graph: {
        name: 'affine',
        inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 8, 8] }],
        outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 4, 8, 8] }, ...(extraReader ? [{ name: 'm', elemType: ONNX.FLOAT, shape: [1, 4, 8, 8] }] : [])],
        initializers: [floatTensor('k', [4, 3, 3, 3], w(108)), floatTensor('kb', [4], w(4)), floatTensor('s', [], [1.7]), floatTensor('a', [1, 4, 1, 1], w(4)), floatTensor('t', [4, 1, 1], [0.5, 2, -1, 3])],
        nodes: [
          { opType: 'Conv', inputs: ['image', 'k', 'kb'], outputs: ['c'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
          { opType: 'Mul', inputs: ['s', 'c'], outputs: ['m'] },
          { opType: 'Mul', inputs: ['m', 't'], outputs: ['d'] },
          { opType: 'Add', inputs: ['d', 'a'], outputs: ['e'] },
          { opType: 'Relu', inputs: ['e'], outputs: ['y'] },
        ],
      },
      opsets: [{ domain: '', version: 17 }],
    });
  }

  it('Mul by a scalar or one value per channel becomes the Conv\'s weights and bias, same answers; the Add stays', async () => {
    const { foldIntoConvs } = await import('../../lib/convert/static-int8');
    const source = affineNet();
    const model = OnnxModel.decode(source);
    expect(foldIntoConvs(model.graph())).toEqual({ batchNorms: 0, affine: 2 });
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'Add', 'Relu']);
    expect(model.graph().initializers().map((t) => t.name).sort()).toEqual(['Conv_0__folded_b', 'Conv_0__folded_w', 'a']);
    const samples = images(2, 8, 3);
    const run = async (bytes: Uint8Array) => {
      const s = await InferenceSession.create(bytes, { logSeverityLevel: 3 });
      try {
        return (await s.run(samples[0]!)).y!.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const before = await run(source);
    const after = await run(model.encode());
    for (let i = 0; i < before.length; i++) expect(Math.abs(after[i]! - before[i]!)).toBeLessThan(1e-5);
  });

  it('a step whose input something else reads stops the fold there', async () => {
    const { foldIntoConvs } = await import('../../lib/convert/static-int8');
    const model = OnnxModel.decode(affineNet(true));
    expect(foldIntoConvs(model.graph())).toEqual({ batchNorms: 0, affine: 1 });
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'Mul', 'Add', 'Relu']);
  });
});

describe('a residual Add of two quantized Conv outputs', () => {
  /** image -> Conv a -> Relu -> Conv b -> Relu; Add(a, b) -> Conv c -> y. */
  function residualNet(): Uint8Array {
    const rand = prng(21);
    const w = (n: number, s: number) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
    const pads = [{ name: 'pads', ints: [1, 1, 1, 1] }];
    return encodeModel({
      graph: {
        name: 'residual',
        inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 16, 16] }],
        outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 8, 4, 4] }],
        initializers: [floatTensor('ka', [8, 3, 3, 3], w(216, 0.4)), floatTensor('kb', [8, 8, 3, 3], w(576, 0.2)), floatTensor('kc', [8, 8, 3, 3], w(576, 0.2))],
        nodes: [
          { opType: 'Conv', inputs: ['image', 'ka'], outputs: ['a'], attributes: pads },
          { opType: 'Relu', inputs: ['a'], outputs: ['ra'] },
          { opType: 'Conv', inputs: ['ra', 'kb'], outputs: ['b'], attributes: pads },
          { opType: 'Relu', inputs: ['b'], outputs: ['rb'] },
          { opType: 'Add', inputs: ['ra', 'rb'], outputs: ['sum'] },
          { opType: 'Conv', inputs: ['sum', 'kc'], outputs: ['y'], attributes: pads },
        ],
      },
      opsets: [{ domain: '', version: 17 }],
    });
  }

  it('is written DQ, DQ -> Add -> Q and onnxruntime runs it as QLinearAdd; answers stay close', async () => {
    const source = residualNet();
    const samples = images(8, 16, 5);
    const model = OnnxModel.decode(source);
    const targets = staticCalibrationTargets(model, { keepFloat: [] });
    expect(targets).toContain('sum');
    const ranges = await calibrateMinMax(source, targets, samples);
    const report = quantizeStatic(model, ranges, { keepFloat: [] });
    expect(report).toMatchObject({ convs: 3, reluFolded: 2, addsQuantized: 1 });
    const bytes = model.encode();
    const ops = (await runtimeGraph(bytes, 'all')).graph().nodes().map((n) => n.opType);
    expect(ops).toContain('QLinearAdd');
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(3);
    expect(ops).not.toContain('Add');
    const run = async (b: Uint8Array) => {
      const s = await InferenceSession.create(b, { intraOpNumThreads: 1, logSeverityLevel: 3 });
      try {
        const out: Float32Array[] = [];
        for (const feeds of images(4, 16, 6)) out.push((await s.run(feeds)).y!.data as Float32Array);
        return out;
      } finally {
        await s.release();
      }
    };
    expect(cosine(await run(source), await run(bytes))).toBeGreaterThan(0.99);
  });
});

/**
 * image[1, 3, 16, 16] -> Conv 8 -> MaxPool 2x2 -> Conv 8 -> Relu -> Resize x0.5 (nearest) -> Conv 8
 * -> y: the pass-through ops between quantized Convs. No Relu before the MaxPool and a Resize
 * that drops pixels, so their outputs' calibrated ranges differ from their inputs'.
 */
function poolResizeNet(): Uint8Array {
  const rand = prng(23);
  const w = (n: number) => Array.from({ length: n }, () => (rand() * 2 - 1) * 0.3);
  return encodeModel({
    opsets: [{ domain: '', version: 17 }],
    graph: {
      name: 'pool_resize',
      inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 16, 16] }],
      outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 8, 4, 4] }],
      initializers: [
        floatTensor('k0', [8, 3, 3, 3], w(216)),
        floatTensor('k1', [8, 8, 3, 3], w(576)),
        floatTensor('k2', [8, 8, 3, 3], w(576)),
        floatTensor('scales', [4], [1, 1, 0.5, 0.5]),
      ],
      nodes: [
        { opType: 'Conv', name: 'conv0', inputs: ['image', 'k0'], outputs: ['c0'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
        { opType: 'MaxPool', name: 'pool', inputs: ['c0'], outputs: ['p0'], attributes: [{ name: 'kernel_shape', ints: [2, 2] }, { name: 'strides', ints: [2, 2] }] },
        { opType: 'Conv', name: 'conv1', inputs: ['p0', 'k1'], outputs: ['c1'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
        { opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
        { opType: 'Resize', name: 'up', inputs: ['r1', '', 'scales'], outputs: ['u1'], attributes: [{ name: 'mode', s: 'nearest' }] },
        { opType: 'Conv', name: 'conv2', inputs: ['u1', 'k2'], outputs: ['y'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      ],
    },
  });
}

describe('int8-static: MaxPool and Resize between quantized Convs', () => {
  const source = poolResizeNet();
  const samples = (seed: number) => {
    const rand = prng(seed);
    return Array.from({ length: 8 }, () => ({ image: new Tensor('float32', Float32Array.from({ length: 768 }, rand), [1, 3, 16, 16]) }));
  };

  it('quantizes their outputs with their input\'s scale and zero point', async () => {
    const model = OnnxModel.decode(source);
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: [] }), samples(1));
    expect(quantizeStatic(model, ranges, { keepFloat: [] }).convs).toBe(3);
    const graph = model.graph();
    const inits = new Map(graph.initializers().map((t) => [t.name, t]));
    const qOf = (tensor: string) => graph.nodes().find((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === tensor)!;
    // Scales (each zero point comes from the same range as its scale).
    const paramsOf = (q: { inputs: readonly string[] }) => inits.get(q.inputs[1]!)!.floats()[0];
    // conv0's output Q and the Q conv1 puts on the MaxPool's output: the same; likewise conv1's and the Resize's.
    const conv0Q = graph.nodes().find((n) => n.opType === 'QuantizeLinear' && n.name.startsWith('conv0') && n.name.endsWith('_yq'))!;
    const conv1Q = graph.nodes().find((n) => n.opType === 'QuantizeLinear' && n.name.startsWith('conv1') && n.name.endsWith('_yq'))!;
    expect(paramsOf(qOf('p0'))).toEqual(paramsOf(conv0Q));
    expect(paramsOf(qOf('u1'))).toEqual(paramsOf(conv1Q));
  });

  it('onnxruntime runs MaxPool and Resize on the 8-bit data, between QLinearConvs, and the answers agree', async () => {
    const model = OnnxModel.decode(source);
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: [] }), samples(1));
    quantizeStatic(model, ranges, { keepFloat: [] });
    const bytes = model.encode();
    const runtime = (await runtimeGraph(bytes, 'extended')).graph();
    const ops = runtime.nodes().map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(3);
    // Only the image's Q and the last Conv's DQ are left: no DQ -> MaxPool/Resize -> Q round trip.
    expect(ops.filter((o) => o === 'QuantizeLinear')).toHaveLength(1);
    expect(ops.filter((o) => o === 'DequantizeLinear')).toHaveLength(1);
    const producer = (name: string) => runtime.nodes().find((n) => n.outputs.includes(name))?.opType;
    for (const op of ['MaxPool', 'Resize']) {
      const node = runtime.nodes().find((n) => n.opType === op)!;
      expect(producer(node.inputs[0]!)).toBe('QLinearConv');
    }
    const run = async (b: Uint8Array) => {
      const s = await InferenceSession.create(b, { intraOpNumThreads: 1, logSeverityLevel: 3 });
      const out: Float32Array[] = [];
      for (const feeds of samples(2)) out.push((await s.run(feeds)).y!.data as Float32Array);
      await s.release();
      return out;
    };
    expect(cosine(await run(source), await run(bytes))).toBeGreaterThan(0.99);
  });
});

/**
 * A feature-pyramid-style join: image[1, 3, 16, 16] -> Conv a -> Relu (ra); Conv b (stride 2)
 * -> Resize x2 (ub); Conv c (stride 2) -> swish written out (c x Sigmoid(c), a float op, m) ->
 * Resize x2 (um); Concat(ra, ub, um) -> Conv d -> y. The Concat's inputs are a quantized Conv
 * output, an upsampled quantized Conv output, and an upsampled float tensor.
 */
function pyramidNet(): Uint8Array {
  const rand = prng(29);
  const w = (n: number, s: number) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
  const pads = { name: 'pads', ints: [1, 1, 1, 1] };
  const down = [pads, { name: 'strides', ints: [2, 2] }];
  const up = [{ name: 'mode', s: 'nearest' }];
  return encodeModel({
    opsets: [{ domain: '', version: 17 }],
    graph: {
      name: 'pyramid',
      inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 16, 16] }],
      outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 8, 16, 16] }],
      initializers: [
        floatTensor('ka', [8, 3, 3, 3], w(216, 0.4)),
        floatTensor('kb', [8, 8, 3, 3], w(576, 0.2)),
        floatTensor('kc', [8, 8, 3, 3], w(576, 0.2)),
        floatTensor('kd', [8, 24, 3, 3], w(1728, 0.1)),
        floatTensor('scales', [4], [1, 1, 2, 2]),
      ],
      nodes: [
        { opType: 'Conv', name: 'conv_a', inputs: ['image', 'ka'], outputs: ['a'], attributes: [pads] },
        { opType: 'Relu', inputs: ['a'], outputs: ['ra'] },
        { opType: 'Conv', name: 'conv_b', inputs: ['ra', 'kb'], outputs: ['b'], attributes: down },
        { opType: 'Resize', name: 'up_b', inputs: ['b', '', 'scales'], outputs: ['ub'], attributes: up },
        { opType: 'Conv', name: 'conv_c', inputs: ['ra', 'kc'], outputs: ['c'], attributes: down },
        { opType: 'Sigmoid', inputs: ['c'], outputs: ['sc'] },
        { opType: 'Mul', name: 'swish', inputs: ['c', 'sc'], outputs: ['m'] },
        { opType: 'Resize', name: 'up_m', inputs: ['m', '', 'scales'], outputs: ['um'], attributes: up },
        { opType: 'Concat', name: 'join', inputs: ['ra', 'ub', 'um'], outputs: ['cat'], attributes: [{ name: 'axis', i: 1 }] },
        { opType: 'Conv', name: 'conv_d', inputs: ['cat', 'kd'], outputs: ['y'], attributes: [pads] },
      ],
    },
  });
}

describe('int8-static: a Concat of quantized and float branches', () => {
  const source = pyramidNet();
  const samples = (seed: number) => {
    const rand = prng(seed);
    return Array.from({ length: 8 }, () => ({ image: new Tensor('float32', Float32Array.from({ length: 768 }, rand), [1, 3, 16, 16]) }));
  };
  const convert = async () => {
    const model = OnnxModel.decode(source);
    const targets = staticCalibrationTargets(model, { keepFloat: [] });
    const ranges = await calibrateMinMax(source, targets, samples(1));
    const report = quantizeStatic(model, ranges, { keepFloat: [] });
    return { targets, report, model };
  };

  it('calibrates the Concat\'s output and the float branch where it is produced, not after its Resize', async () => {
    const { targets, report, model } = await convert();
    expect(targets).toEqual(expect.arrayContaining(['cat', 'm']));
    expect(report).toMatchObject({ convs: 4, concatsQuantized: 1 });
    const nodes = model.graph().nodes();
    const byOutput = (name: string) => nodes.find((n) => n.outputs.includes(name))!;
    const join = nodes.find((n) => n.opType === 'Concat')!;
    // Every Concat input is a DQ; its output goes through one Q.
    expect(join.inputs.map((i) => byOutput(i).opType)).toEqual(['DequantizeLinear', 'DequantizeLinear', 'DequantizeLinear']);
    expect(nodes.filter((n) => n.inputs.includes(join.outputs[0]!)).map((n) => n.opType)).toEqual(['QuantizeLinear']);
    // Both Resizes read a DQ (8-bit data underneath); the Mul's output is quantized once, right after the Mul.
    for (const name of ['up_b', 'up_m']) expect(byOutput(nodes.find((n) => n.name === name)!.inputs[0]!).opType).toBe('DequantizeLinear');
    expect(nodes.filter((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === 'm')).toHaveLength(1);
  });

  it('onnxruntime runs it as QLinearConcat on 8-bit inputs, the Resizes on 8-bit data, and the answers agree', async () => {
    const { model } = await convert();
    const bytes = model.encode();
    const runtime = (await runtimeGraph(bytes, 'all')).graph();
    const nodes = runtime.nodes();
    const ops = nodes.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConcat')).toHaveLength(1);
    expect(ops).not.toContain('Concat');
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(4);
    const producer = (name: string) => nodes.find((n) => n.outputs.includes(name))?.opType;
    for (const resize of nodes.filter((n) => n.opType === 'Resize')) expect(['QLinearConv', 'QuantizeLinear']).toContain(producer(resize.inputs[0]!));
    // QLinearConcat(y_scale, y_zero, [x, x_scale, x_zero]...): its data inputs are 8-bit tensors, its output feeds the last QLinearConv.
    const join = nodes.find((n) => n.opType === 'QLinearConcat')!;
    expect([2, 5, 8].map((k) => producer(join.inputs[k]!))).toEqual(['QLinearConv', 'Resize', 'Resize']);
    expect(nodes.filter((n) => n.inputs.includes(join.outputs[0]!)).map((n) => n.opType)).toEqual(['QLinearConv']);
    // ub and um (nothing else reads b or m) carry the Concat's own scale and zero point, so the
    // kernel copies their bytes; ra, which two Convs also read, keeps its own and is requantized.
    const inits = new Map(runtime.initializers().map((t) => [t.name, t]));
    const scale = (k: number) => inits.get(join.inputs[k]!)!.floats()[0];
    const zero = (k: number) => inits.get(join.inputs[k]!)!.proto.first(TENSOR.rawData)!.payload()[0];
    for (const k of [5, 8]) expect([scale(k + 1), zero(k + 2)]).toEqual([scale(0), zero(1)]);
    expect(scale(3)).not.toBe(scale(0));
    // Left in float: the swish (Sigmoid, Mul). Q: the image and the swish's output, nothing else.
    expect(ops.filter((o) => o === 'QuantizeLinear')).toHaveLength(2);
    // DQs only where float ops read: conv_c's output (onnxruntime gives each float reader its own DQ) and y.
    expect(new Set(nodes.filter((n) => n.opType === 'DequantizeLinear').map((n) => n.name.split('__')[0]))).toEqual(new Set(['conv_c', 'conv_d']));
    const run = async (b: Uint8Array) => {
      const s = await InferenceSession.create(b, { intraOpNumThreads: 1, logSeverityLevel: 3 });
      try {
        const out: Float32Array[] = [];
        for (const feeds of samples(2)) out.push((await s.run(feeds)).y!.data as Float32Array);
        return out;
      } finally {
        await s.release();
      }
    };
    expect(cosine(await run(source), await run(bytes))).toBeGreaterThan(0.99);
  });

  it('leaves float a Concat that neither feeds a quantized Conv nor reads only quantized tensors', async () => {
    const model = OnnxModel.decode(source);
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: ['conv_d'] }), samples(1));
    const report = quantizeStatic(model, ranges, { keepFloat: ['conv_d'] });
    expect(report).toMatchObject({ convs: 3, concatsQuantized: 0 });
    expect(model.graph().nodes().filter((n) => n.opType === 'QuantizeLinear' && n.inputs[0] === 'm')).toHaveLength(0);
  });
});

describe('int8-static: ConvTranspose weights', () => {
  /** image[1, 3, 8, 8] -> Conv 8 -> Relu -> ConvTranspose 8 -> 4 (2x2, stride 2) -> y[1, 4, 16, 16]. */
  function upNet(): Uint8Array {
    const rand = prng(31);
    const w = (n: number, s: number) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
    return encodeModel({
      opsets: [{ domain: '', version: 17 }],
      graph: {
        name: 'up',
        inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 8, 8] }],
        outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 4, 16, 16] }],
        // Output channels of the ConvTranspose (axis 1) at different magnitudes: one scale each.
        initializers: [
          floatTensor('k', [8, 3, 3, 3], w(216, 0.4)),
          floatTensor('kt', [8, 4, 2, 2], w(128, 1).map((v, i) => v * 10 ** (((i >> 2) % 4) - 2))),
          floatTensor('bt', [4], [0.1, -0.2, 0.3, 0]),
        ],
        nodes: [
          { opType: 'Conv', name: 'conv', inputs: ['image', 'k'], outputs: ['c'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
          { opType: 'Relu', inputs: ['c'], outputs: ['r'] },
          { opType: 'ConvTranspose', name: 'up', inputs: ['r', 'kt', 'bt'], outputs: ['y'], attributes: [{ name: 'strides', ints: [2, 2] }, { name: 'kernel_shape', ints: [2, 2] }] },
        ],
      },
    });
  }

  it('are stored int8 with one scale per output channel behind a DQ that onnxruntime keeps offline, and answer as the float model', async () => {
    const source = upNet();
    const rand = prng(7);
    const samples = Array.from({ length: 8 }, () => ({ image: new Tensor('float32', Float32Array.from({ length: 192 }, rand), [1, 3, 8, 8]) }));
    const model = OnnxModel.decode(source);
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(model, { keepFloat: [] }), samples);
    const report = quantizeStatic(model, ranges, { keepFloat: [] });
    expect(report).toMatchObject({ convs: 1, convTransposeWeightsQuantized: 1 });
    const bytes = model.encode();
    // The extended level is what the job saves offline: the int8 weight is still there, not folded back to float.
    const runtime = (await runtimeGraph(bytes, 'extended')).graph();
    const inits = new Map(runtime.initializers().map((t) => [t.name, t]));
    const up = runtime.nodes().find((n) => n.opType === 'ConvTranspose')!;
    const dq = runtime.nodes().find((n) => n.outputs.includes(up.inputs[1]!))!;
    expect(dq.opType).toBe('DequantizeLinear');
    expect(dq.intAttribute('axis', 0)).toBe(1);
    expect(inits.get(dq.inputs[0]!)!.dataType).toBe(3);
    expect(inits.get(dq.inputs[1]!)!.dims).toEqual([4]);
    expect([...runtime.initializers()].some((t) => t.name === 'kt')).toBe(false);
    const run = async (b: Uint8Array) => {
      const s = await InferenceSession.create(b, { intraOpNumThreads: 1, logSeverityLevel: 3 });
      try {
        const out: Float32Array[] = [];
        for (const feeds of samples) out.push((await s.run(feeds)).y!.data as Float32Array);
        return out;
      } finally {
        await s.release();
      }
    };
    expect(cosine(await run(source), await run(bytes))).toBeGreaterThan(0.999);
  });

  it('stay float when named in keepFloat', async () => {
    const source = upNet();
    const model = OnnxModel.decode(source);
    const ranges = new Map([['image', { min: 0, max: 1 }], ['r', { min: 0, max: 4 }]]);
    expect(quantizeStatic(model, ranges, { keepFloat: ['up'] }).convTransposeWeightsQuantized).toBe(0);
    expect(model.graph().initializers().some((t) => t.name === 'kt')).toBe(true);
  });
});

describe('affine steps between two Convs are folded into the second', () => {
  /**
   * image[1, 3, 8, 8] -> Conv a (3x3, pads 1) -> Add(per channel [1, 8, 1, 1]) -> Mul(scalar) -> Conv b -> y:
   * b is 1x1 without padding, or 3x3 with padding 1 (`padded`). With `floatStart`, a Sigmoid
   * stands between Conv a and the steps.
   */
  function betweenNet(padded: boolean, floatStart = false): Uint8Array {
    const rand = prng(37);
    const w = (n: number, s: number) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
    const k = padded ? 3 : 1;
    return encodeModel({
      opsets: [{ domain: '', version: 17 }],
      graph: {
        name: 'between',
        inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, 8, 8] }],
        outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 4, 8, 8] }],
        initializers: [
          floatTensor('ka', [8, 3, 3, 3], w(216, 0.4)),
          floatTensor('shift', [1, 8, 1, 1], w(8, 2)),
          floatTensor('scale', [], [0.6]),
          floatTensor('kb', [4, 8, k, k], w(32 * k * k, 0.3)),
          floatTensor('bb', [4], w(4, 0.1)),
        ],
        nodes: [
          { opType: 'Conv', name: 'conv_a', inputs: ['image', 'ka'], outputs: ['a'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
          ...(floatStart ? [{ opType: 'Sigmoid', inputs: ['a'], outputs: ['sa'] }] : []),
          { opType: 'Add', inputs: [floatStart ? 'sa' : 'a', 'shift'], outputs: ['t'] },
          { opType: 'Mul', inputs: ['scale', 't'], outputs: ['u'] },
          { opType: 'Conv', name: 'conv_b', inputs: ['u', 'kb', 'bb'], outputs: ['y'], attributes: padded ? [{ name: 'pads', ints: [1, 1, 1, 1] }] : [] },
        ],
      },
    });
  }
  const samples = (seed: number) => {
    const rand = prng(seed);
    return Array.from({ length: 8 }, () => ({ image: new Tensor('float32', Float32Array.from({ length: 192 }, rand), [1, 3, 8, 8]) }));
  };
  const run = async (bytes: Uint8Array, feeds: Record<string, Tensor>[]) => {
    const s = await InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
    try {
      const out: Float32Array[] = [];
      for (const f of feeds) out.push((await s.run(f)).y!.data as Float32Array);
      return out;
    } finally {
      await s.release();
    }
  };

  it('into a Conv without padding: shift and scale become its weights and bias, same answers', async () => {
    const { foldIntoConvs, foldIntoNextConvs } = await import('../../lib/convert/static-int8');
    const source = betweenNet(false);
    const model = OnnxModel.decode(source);
    expect(foldIntoConvs(model.graph())).toEqual({ batchNorms: 0, affine: 0 });
    expect(foldIntoNextConvs(model.graph())).toBe(2);
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'Conv']);
    expect(model.graph().nodes()[1]!.inputs[0]).toBe('a');
    const [before, after] = [await run(source, samples(1)), await run(model.encode(), samples(1))];
    before.forEach((row, r) => row.forEach((v, i) => expect(Math.abs(after[r]![i]! - v)).toBeLessThan(1e-5)));
  });

  it('into a padded Conv: the shift does not fold (a border would read 0, not the shift), nor the steps after it', async () => {
    const { foldIntoNextConvs } = await import('../../lib/convert/static-int8');
    const model = OnnxModel.decode(betweenNet(true));
    expect(foldIntoNextConvs(model.graph())).toBe(0);
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'Add', 'Mul', 'Conv']);
  });

  it('not after a float op: the steps stay', async () => {
    const { foldIntoNextConvs } = await import('../../lib/convert/static-int8');
    const model = OnnxModel.decode(betweenNet(false, true));
    expect(foldIntoNextConvs(model.graph())).toBe(0);
    expect(model.graph().nodes().map((n) => n.opType)).toEqual(['Conv', 'Sigmoid', 'Add', 'Mul', 'Conv']);
  });

  it('quantized: onnxruntime runs the two QLinearConvs back to back, with nothing in float between them', async () => {
    const source = betweenNet(false);
    const model = OnnxModel.decode(source);
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(OnnxModel.decode(source), { keepFloat: [] }), samples(1));
    expect(quantizeStatic(model, ranges, { keepFloat: [] })).toMatchObject({ convs: 2, affineFoldedIntoNext: 2 });
    const bytes = model.encode();
    const nodes = (await runtimeGraph(bytes, 'all')).graph().nodes();
    const convs = nodes.filter((n) => n.opType === 'QLinearConv');
    expect(convs).toHaveLength(2);
    expect(convs[1]!.inputs[0]).toBe(convs[0]!.outputs[0]);
    expect(nodes.map((n) => n.opType).filter((o) => o === 'Add' || o === 'Mul')).toEqual([]);
    expect(cosine(await run(source, samples(2)), await run(bytes, samples(2)))).toBeGreaterThan(0.99);
  });
});
