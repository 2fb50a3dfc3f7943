import { encodeModel, type ModelDef } from '../../lib/onnx/writer';
import { SUPPORTED_GRAPH_OPS } from '../../lib/convert/import/tfjs-graph-model';
import { tf, useCpuBackend } from '../helpers/tfjs';
import { attr, compareGraphWithTfjs, convertGraph, expectGraphMatches, GraphModelBuilder } from '../helpers/tfjs-graph';

beforeAll(async () => {
  // As the job runs TF.js: no debug checks, no advice to install tfjs-node in the test output.
  tf.enableProdMode();
  await useCpuBackend();
});

const NHWC = { data_format: attr.str('NHWC') };

/** Conv attributes: strides and dilations as TF lists them, padding by name. */
function convAttrs(stride: number, padding: string, dilation = 1, extra: Record<string, unknown> = {}) {
  return { ...NHWC, strides: attr.ints([1, stride, stride, 1]), dilations: attr.ints([1, dilation, dilation, 1]), padding: attr.str(padding), ...extra };
}

function fused(ops: string[], numArgs: number, extra: Record<string, unknown> = {}) {
  return { fused_ops: attr.strs(ops), num_args: attr.int(numArgs), epsilon: attr.float(0), ...extra };
}

function count(def: ModelDef, op: string): number {
  return def.graph.nodes.filter((n) => n.opType === op).length;
}

/** input [1, h, w, c] -> one node built by `body` -> output "out". */
async function single(h: number, w: number, c: number, body: (b: GraphModelBuilder, x: string) => string): Promise<ModelDef> {
  const b = new GraphModelBuilder(h * 100 + w * 10 + c);
  const x = b.input('x', [-1, h, w, c]);
  const y = body(b, x);
  return expectGraphMatches(b.build([b.op('out', 'Identity', [y])]));
}

describe('TF.js graph model convolutions match TF.js (max abs error <= 1e-4)', () => {
  test('Conv2D VALID, then BiasAdd and Relu as their own ops', async () => {
    await single(9, 7, 3, (b, x) => {
      const conv = b.op('conv', 'Conv2D', [x, b.const('k', [3, 3, 3, 4], undefined, { scale: 0.5 })], convAttrs(1, 'VALID'));
      return b.op('relu', 'Relu', [b.op('bias', 'BiasAdd', [conv, b.const('b', [4])], NHWC)]);
    });
  });

  test('_FusedConv2D stride 2 SAME on even and odd sizes (asymmetric pads), BiasAdd + Relu6', async () => {
    for (const [h, w] of [
      [8, 8],
      [9, 6],
      [7, 10],
    ] as const) {
      await single(h, w, 3, (b, x) => b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 3, 5], undefined, { scale: 0.5 }), b.const('b', [5])], convAttrs(2, 'SAME', 1, fused(['BiasAdd', 'Relu6'], 1))));
    }
  });

  test('_FusedConv2D with dilation 2 SAME, a 1x1 kernel, and EXPLICIT padding', async () => {
    await single(9, 9, 2, (b, x) => b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 2, 3]), b.const('b', [3])], convAttrs(1, 'SAME', 2, fused(['BiasAdd'], 1))));
    await single(5, 6, 4, (b, x) => b.op('conv', '_FusedConv2D', [x, b.const('k', [1, 1, 4, 6]), b.const('b', [6])], convAttrs(1, 'VALID', 1, fused(['BiasAdd', 'Relu'], 1))));
    await single(6, 6, 2, (b, x) =>
      b.op('conv', 'Conv2D', [x, b.const('k', [3, 2, 2, 3])], convAttrs(2, 'EXPLICIT', 1, { explicit_paddings: attr.ints([0, 0, 1, 2, 0, 1, 0, 0]) })),
    );
  });

  test('_FusedConv2D fused activations: LeakyRelu (its alpha), Elu, Sigmoid, Prelu', async () => {
    await single(6, 6, 3, (b, x) => b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 3, 4]), b.const('b', [4])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'LeakyRelu'], 1, { leakyrelu_alpha: attr.float(0.1) }))));
    await single(6, 6, 3, (b, x) => b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 3, 4]), b.const('b', [4])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Elu'], 1))));
    await single(6, 6, 3, (b, x) => b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 3, 4]), b.const('b', [4])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Sigmoid'], 1))));
    await single(6, 6, 3, (b, x) =>
      b.op('conv', '_FusedConv2D', [x, b.const('k', [3, 3, 3, 4]), b.const('b', [4]), b.const('alpha', [4], undefined, { lo: 0, scale: 0.5 })], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Prelu'], 2))),
    );
  });

  test('the LeakyRelu alpha is copied, not left at a default', async () => {
    const b = new GraphModelBuilder(3);
    const x = b.input('x', [-1, 4, 4, 2]);
    b.op('out', '_FusedConv2D', [x, b.const('k', [1, 1, 2, 2]), b.const('b', [2])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'LeakyRelu'], 1, { leakyrelu_alpha: attr.float(0.37) })));
    const def = await expectGraphMatches(b.build(['out']));
    const leaky = def.graph.nodes.find((n) => n.opType === 'LeakyRelu')!;
    expect(leaky.attributes).toEqual([{ name: 'alpha', f: 0.37 }]);
  });

  test('FusedDepthwiseConv2dNative: depth multiplier 2 with BiasAdd + Relu6, NoOp + Relu without a bias, stride 2 SAME; plain DepthwiseConv2dNative dilated', async () => {
    await single(7, 8, 3, (b, x) => b.op('dw', 'FusedDepthwiseConv2dNative', [x, b.const('k', [3, 3, 3, 2]), b.const('b', [6])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Relu6'], 1))));
    await single(8, 8, 4, (b, x) => b.op('dw', 'FusedDepthwiseConv2dNative', [x, b.const('k', [3, 3, 4, 1])], convAttrs(2, 'SAME', 1, fused(['NoOp', 'Relu'], 0))));
    await single(9, 9, 2, (b, x) => b.op('dw', 'DepthwiseConv2dNative', [x, b.const('k', [3, 3, 2, 3])], convAttrs(1, 'VALID', 2)));
  });

  test('FusedBatchNormV3 on its own, and FusedBatchNorm fused into a conv (checked against TF.js running the unfused graph)', async () => {
    const bn = (b: GraphModelBuilder, name: string, c: number) => [b.const(`${name}/gamma`, [c]), b.const(`${name}/beta`, [c]), b.const(`${name}/mean`, [c]), b.const(`${name}/var`, [c], undefined, { lo: 0.5, scale: 1 })];
    await single(5, 5, 3, (b, x) => b.op('bn', 'FusedBatchNormV3', [x, ...bn(b, 'bn', 3)], { ...NHWC, epsilon: attr.float(0.001), is_training: attr.bool(false) }));
    // TF.js's executor cannot run FusedBatchNorm inside a fused conv: the same weights, unfused, are its reference.
    const build = (fusedForm: boolean) => {
      const b = new GraphModelBuilder(21);
      const x = b.input('x', [-1, 6, 6, 3]);
      const k = b.const('k', [3, 3, 3, 4]);
      const args = bn(b, 'bn', 4);
      if (fusedForm) {
        b.op('conv', '_FusedConv2D', [x, k, ...args], convAttrs(2, 'SAME', 1, { ...fused(['FusedBatchNorm', 'Relu'], 4), epsilon: attr.float(0.001) }));
      } else {
        const conv = b.op('conv/raw', 'Conv2D', [x, k], convAttrs(2, 'SAME'));
        b.op('conv', 'Relu', [b.op('conv/bn', 'FusedBatchNormV3', [conv, ...args], { ...NHWC, epsilon: attr.float(0.001) })]);
      }
      return b.build(['conv']);
    };
    await expectGraphMatches(build(true), 1e-4, build(false));
  });

  test('two consecutive convolutions (and the elementwise ops, pooling and BiasAdd between them) run NCHW: one Transpose in, one out', async () => {
    const b = new GraphModelBuilder(5);
    const x = b.input('x', [-1, 12, 12, 3]);
    const c1 = b.op('c1', '_FusedConv2D', [x, b.const('k1', [3, 3, 3, 8]), b.const('b1', [8])], convAttrs(2, 'SAME', 1, fused(['BiasAdd', 'Relu'], 1)));
    const c2 = b.op('c2', 'Conv2D', [c1, b.const('k2', [1, 1, 8, 8])], convAttrs(1, 'VALID'));
    const biased = b.op('c2/bias', 'BiasAdd', [c2, b.const('b2', [8])], NHWC);
    const scaled = b.op('scaled', 'Mul', [biased, b.const('scale', [8])]);
    const res = b.op('res', 'AddV2', [scaled, c1]);
    const pooled = b.op('pool', 'MaxPool', [res], { ...NHWC, ksize: attr.ints([1, 2, 2, 1]), strides: attr.ints([1, 2, 2, 1]), padding: attr.str('VALID') });
    const dw = b.op('dw', 'FusedDepthwiseConv2dNative', [pooled, b.const('k3', [3, 3, 8, 1]), b.const('b3', [8])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Relu6'], 1)));
    const def = await expectGraphMatches(b.build([b.op('out', 'Identity', [dw])]));
    expect(count(def, 'Conv')).toBe(3);
    expect(count(def, 'Transpose')).toBe(2);
    // Between the first and the last Conv, nothing but NCHW ops.
    const ops = def.graph.nodes.map((n) => n.opType);
    const first = ops.indexOf('Conv');
    const last = ops.lastIndexOf('Conv');
    expect(ops.slice(first, last + 1)).not.toContain('Transpose');
  });
});

describe('TF.js graph model MatMul, elementwise and shape ops match TF.js', () => {
  test('_FusedMatMul (BiasAdd + Relu, transpose_b), MatMul, BatchMatMulV2 of two tensors, Softmax', async () => {
    const b = new GraphModelBuilder(9);
    const x = b.input('x', [-1, 6]);
    const h = b.op('h', '_FusedMatMul', [x, b.const('w', [5, 6]), b.const('bias', [5])], { ...fused(['BiasAdd', 'Relu'], 1), transpose_a: attr.bool(false), transpose_b: attr.bool(true) });
    const y = b.op('y', 'MatMul', [h, b.const('w2', [5, 4])], { transpose_a: attr.bool(false), transpose_b: attr.bool(false) });
    const probs = b.op('probs', 'Softmax', [y]);
    const s = b.input('s', [-1, 3, 4]);
    const t = b.input('t', [-1, 4, 2]);
    const bmm = b.op('bmm', 'BatchMatMulV2', [s, t], { adj_x: attr.bool(false), adj_y: attr.bool(false) });
    await expectGraphMatches(b.build([probs, bmm]));
  });

  test('Add/AddV2/Sub/Mul/RealDiv/Maximum/Minimum/SquaredDifference against per-channel constants, scalars and each other, after a conv', async () => {
    const b = new GraphModelBuilder(11);
    const x = b.input('x', [-1, 5, 6, 4]);
    const c = b.op('c', 'Conv2D', [x, b.const('k', [3, 3, 4, 4])], convAttrs(1, 'SAME'));
    let y = b.op('add', 'Add', [c, b.const('a', [4])]);
    y = b.op('addv2', 'AddV2', [b.const('row', [6, 4]), y]);
    y = b.op('sub', 'Sub', [b.const('one', [], [1]), y]);
    y = b.op('mul', 'Mul', [y, b.const('m', [1, 1, 1, 4])]);
    y = b.op('div', 'RealDiv', [y, b.const('d', [4], undefined, { lo: 1, scale: 1 })]);
    y = b.op('max', 'Maximum', [y, c]);
    y = b.op('min', 'Minimum', [y, b.const('cap', [], [0.8])]);
    y = b.op('sqd', 'SquaredDifference', [y, c]);
    const def = await expectGraphMatches(b.build([b.op('out', 'Identity', [y])]));
    expect(count(def, 'Transpose')).toBe(2);
  });

  test('unary ops: Relu, Relu6, Elu, Selu, Sigmoid, Tanh, LeakyRelu, Prelu, Softplus, Rsqrt, Sqrt, Square, Exp, Neg', async () => {
    const b = new GraphModelBuilder(13);
    const x = b.input('x', [-1, 4, 4, 3]);
    const c = b.op('c', 'Conv2D', [x, b.const('k', [1, 1, 3, 3])], convAttrs(1, 'VALID'));
    const outs = ['Relu', 'Relu6', 'Elu', 'Selu', 'Sigmoid', 'Tanh', 'Softplus', 'Exp', 'Neg', 'Square'].map((op) => b.op(op.toLowerCase(), op, [c]));
    outs.push(b.op('leaky', 'LeakyRelu', [c], { alpha: attr.float(0.15) }));
    outs.push(b.op('prelu', 'Prelu', [c, b.const('alpha', [3], undefined, { lo: 0, scale: 0.5 })]));
    const positive = b.op('positive', 'AddV2', [b.op('sq', 'Square', [c]), b.const('eps', [], [0.5])]);
    outs.push(b.op('rsqrt', 'Rsqrt', [positive]), b.op('sqrt', 'Sqrt', [positive]));
    await expectGraphMatches(b.build(outs));
  });

  test('MaxPool and AvgPool, SAME (the average not counting the padding) and VALID, stride 2 on odd sizes', async () => {
    for (const op of ['MaxPool', 'AvgPool']) {
      for (const padding of ['SAME', 'VALID']) {
        await single(7, 9, 2, (b, x) => b.op('pool', op, [x], { ...NHWC, ksize: attr.ints([1, 3, 3, 1]), strides: attr.ints([1, 2, 2, 1]), padding: attr.str(padding) }));
      }
    }
  });

  test('Mean/Max/Sum with and without keep_dims over spatial, channel and mixed axes of a conv output', async () => {
    const cases: [string, number[], boolean][] = [
      ['Mean', [1, 2], false],
      ['Mean', [1, 2], true],
      ['Max', [3], false],
      ['Sum', [-1], true],
      ['Sum', [2], false],
      ['Mean', [1, 3], false],
    ];
    for (const [op, axes, keep] of cases) {
      await single(5, 4, 3, (b, x) => {
        const c = b.op('c', 'Conv2D', [x, b.const('k', [1, 1, 3, 3])], convAttrs(1, 'VALID'));
        return b.op('r', op, [c, b.ints('axes', [axes.length], axes)], { keep_dims: attr.bool(keep), Tidx: attr.type('DT_INT32') });
      });
    }
  });

  test('Squeeze, ExpandDims, Reshape (flatten after a conv keeps TF element order), Transpose', async () => {
    const b = new GraphModelBuilder(17);
    const x = b.input('x', [-1, 4, 3, 2]);
    const c = b.op('c', 'Conv2D', [x, b.const('k', [1, 1, 2, 5])], convAttrs(1, 'VALID'));
    const flat = b.op('flat', 'Reshape', [c, b.ints('shape', [2], [-1, 60])]);
    const dense = b.op('dense', 'MatMul', [flat, b.const('w', [60, 3])]);
    const pooled = b.op('gap', 'Mean', [c, b.ints('axes', [2], [1, 2])], { keep_dims: attr.bool(true) });
    const squeezed = b.op('squeeze', 'Squeeze', [pooled], { squeeze_dims: attr.ints([1, 2]) });
    const expanded = b.op('expand', 'ExpandDims', [squeezed, b.ints('dim', [], [1])]);
    const transposed = b.op('transpose', 'Transpose', [c, b.ints('perm', [4], [0, 3, 1, 2])]);
    await expectGraphMatches(b.build([dense, expanded, transposed]));
  });

  test('ConcatV2 of two convs and a constant on the channel axis, Pad, PadV2, MirrorPad (REFLECT), Pack', async () => {
    const b = new GraphModelBuilder(19);
    // A batch of one: TF concatenates only tensors of equal sizes, the constant included.
    const x = b.input('x', [1, 5, 5, 2]);
    const c1 = b.op('c1', 'Conv2D', [x, b.const('k1', [3, 3, 2, 3])], convAttrs(1, 'SAME'));
    const c2 = b.op('c2', 'Conv2D', [x, b.const('k2', [1, 1, 2, 2])], convAttrs(1, 'SAME'));
    const cat = b.op('cat', 'ConcatV2', [c1, c2, b.const('extra', [1, 5, 5, 1]), b.ints('axis', [], [-1])], { N: attr.int(3) });
    const padded = b.op('pad', 'Pad', [cat, b.ints('p1', [4, 2], [0, 0, 1, 2, 0, 1, 0, 0])]);
    const padded2 = b.op('pad2', 'PadV2', [padded, b.ints('p2', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0]), b.const('value', [], [0.25])]);
    const mirrored = b.op('mirror', 'MirrorPad', [c1, b.ints('p3', [4, 2], [0, 0, 2, 1, 1, 2, 0, 0])], { mode: attr.str('REFLECT') });
    const pooled1 = b.op('gap1', 'Mean', [c1, b.ints('axes1', [2], [1, 2])], { keep_dims: attr.bool(false) });
    const pooled2 = b.op('gap2', 'Max', [c1, b.ints('axes2', [2], [1, 2])], { keep_dims: attr.bool(false) });
    const stacked = b.op('stack', 'Pack', [pooled1, pooled2], { axis: attr.int(1), N: attr.int(2) });
    await expectGraphMatches(b.build([padded2, mirrored, stacked]));
  });

  test("Keras's Flatten as the converter writes it for a dynamic batch: Shape, StridedSlice, Pack into Reshape", async () => {
    const b = new GraphModelBuilder(43);
    const x = b.input('x', [-1, 4, 3, 2]);
    const c = b.op('c', '_FusedConv2D', [x, b.const('k', [3, 3, 2, 5]), b.const('bias', [5])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Relu'], 1)));
    const shape = b.op('flatten/Shape', 'Shape', [c], { out_type: attr.type('DT_INT32') });
    const batch = b.op('flatten/strided_slice', 'StridedSlice', [shape, b.ints('begin', [1], [0]), b.ints('end', [1], [1]), b.ints('strides', [1], [1])], {
      Index: attr.type('DT_INT32'),
      shrink_axis_mask: attr.int(1),
      begin_mask: attr.int(0),
      end_mask: attr.int(0),
      ellipsis_mask: attr.int(0),
      new_axis_mask: attr.int(0),
    });
    const packed = b.op('flatten/Reshape/shape', 'Pack', [batch, b.ints('minus1', [], [-1])], { axis: attr.int(0), N: attr.int(2), T: attr.type('DT_INT32') });
    const flat = b.op('flatten/Reshape', 'Reshape', [c, packed]);
    const dense = b.op('dense', 'MatMul', [flat, b.const('w', [60, 3])], { transpose_a: attr.bool(false), transpose_b: attr.bool(false) });
    const def = await expectGraphMatches(b.build([dense]));
    expect(def.graph.outputs).toEqual([{ name: 'dense', elemType: 1, shape: ['batch', 3] }]);
  });

  test('StridedSlice of a tensor: begin/end masks, strides 2 and -1, a shrunk axis', async () => {
    const slice = (b: GraphModelBuilder, name: string, x: string, begin: number[], end: number[], strides: number[], masks: { begin?: number; end?: number; shrink?: number }) =>
      b.op(name, 'StridedSlice', [x, b.ints(`${name}/b`, [4], begin), b.ints(`${name}/e`, [4], end), b.ints(`${name}/s`, [4], strides)], {
        Index: attr.type('DT_INT32'),
        begin_mask: attr.int(masks.begin ?? 0),
        end_mask: attr.int(masks.end ?? 0),
        shrink_axis_mask: attr.int(masks.shrink ?? 0),
        ellipsis_mask: attr.int(0),
        new_axis_mask: attr.int(0),
      });
    const b = new GraphModelBuilder(47);
    const x = b.input('x', [-1, 5, 6, 3]);
    const c = b.op('c', 'Conv2D', [x, b.const('k', [1, 1, 3, 3])], convAttrs(1, 'VALID'));
    const s1 = slice(b, 's1', c, [0, 1, 0, 0], [0, 4, 0, 2], [1, 1, 2, 1], { begin: 0b0101, end: 0b0101 });
    const s2 = slice(b, 's2', c, [0, 0, 0, 1], [0, 0, 0, 2], [1, 1, 1, 1], { begin: 0b0111, end: 0b0111, shrink: 0b1000 });
    const s3 = slice(b, 's3', x, [0, -1, 0, 0], [0, 0, 0, 0], [1, -1, 1, 1], { begin: 0b1101, end: 0b1111 });
    await expectGraphMatches(b.build([s1, s2, s3]));
  });

  test('a Softmax after a conv runs on the channel axis (the last in TF)', async () => {
    await single(4, 5, 3, (b, x) => b.op('sm', 'Softmax', [b.op('c', 'Conv2D', [x, b.const('k', [3, 3, 3, 6])], convAttrs(1, 'SAME'))]));
  });

  test('Identity, IdentityN, StopGradient pass through; control inputs (^node) are dropped; NoOp nodes are ignored', async () => {
    const b = new GraphModelBuilder(23);
    const x = b.input('x', [-1, 3]);
    b.op('noop', 'NoOp', []);
    const idn = b.op('idn', 'IdentityN', [x, b.const('w', [3, 2])]);
    const sg = b.op('sg', 'StopGradient', [`${idn}:1`]);
    const y = b.op('y', 'MatMul', [`${idn}:0`, sg, '^noop'], { transpose_a: attr.bool(false), transpose_b: attr.bool(false) });
    await expectGraphMatches(b.build([b.op('out', 'Identity', [y])]));
  });
});

describe('TF.js graph model interface', () => {
  test('inputs and outputs keep the signature names, shapes and dtypes; NHWC stays NHWC at the boundary', async () => {
    for (const at of ['top', 'metadata'] as const) {
      const b = new GraphModelBuilder(29);
      const x = b.input('image', [-1, 6, 6, 3]);
      // A scalar scaling first (as image models do): the batch size must stay dynamic through it.
      const scaled = b.op('scaled', 'Mul', [b.const('s', [], [2]), x]);
      const c = b.op('c', 'Conv2D', [scaled, b.const('k', [3, 3, 3, 4])], convAttrs(2, 'SAME'));
      b.op('Identity', 'Identity', [c]);
      const saved = b.build(['Identity'], at, ['features']);
      const def = convertGraph(saved);
      expect(def.graph.inputs).toEqual([{ name: 'image', elemType: 1, shape: ['batch', 6, 6, 3] }]);
      expect(def.graph.outputs).toEqual([{ name: 'features', elemType: 1, shape: ['batch', 3, 3, 4] }]);
      const { maxAbs } = await compareGraphWithTfjs(saved, encodeModel(def));
      expect(maxAbs.features).toBeLessThanOrEqual(1e-4);
    }
  });

  test('without a signature, placeholders are the inputs and unread nodes the outputs, by node name', async () => {
    const b = new GraphModelBuilder(31);
    const x = b.input('x', [-1, 4]);
    b.op('y', 'Relu', [b.op('mm', 'MatMul', [x, b.const('w', [4, 2])])]);
    const saved = b.build(['y'], 'none');
    const def = convertGraph(saved);
    expect(def.graph.inputs.map((i) => i.name)).toEqual(['x']);
    expect(def.graph.outputs.map((o) => o.name)).toEqual(['y']);
    expect((await compareGraphWithTfjs(saved, encodeModel(def))).maxAbs.y).toBeLessThanOrEqual(1e-4);
  });
});

describe('TF.js graph model refusals name the node, its op and what is supported', () => {
  test('an unsupported op', () => {
    const b = new GraphModelBuilder(37);
    const x = b.input('x', [-1, 4]);
    b.op('sorted', 'TopKV2', [x, b.ints('k', [], [2])]);
    expect(() => convertGraph(b.build(['sorted']))).toThrow(/^node "sorted" \(TopKV2\): op TopKV2 is not supported; supported ops: .*FusedDepthwiseConv2dNative.*_FusedConv2D, _FusedMatMul$/);
    expect(SUPPORTED_GRAPH_OPS).toEqual(expect.arrayContaining(['_FusedConv2D', '_FusedMatMul', 'FusedDepthwiseConv2dNative', 'AvgPool', 'Squeeze', 'Softmax', 'AddV2', 'Mul', 'Sub']));
  });

  test('an unsupported fused op, NCHW data, a SYMMETRIC MirrorPad, a non-constant filter, integer data, a missing weight', () => {
    const model = (body: (b: GraphModelBuilder, x: string) => void) => {
      const b = new GraphModelBuilder(41);
      body(b, b.input('x', [-1, 4, 4, 2]));
      return b.build(['out']);
    };
    expect(() => convertGraph(model((b, x) => b.op('out', '_FusedConv2D', [x, b.const('k', [1, 1, 2, 2]), b.const('b', [2])], convAttrs(1, 'SAME', 1, fused(['BiasAdd', 'Gelu'], 1)))))).toThrow(
      /^node "out" \(_FusedConv2D\): fused op "Gelu" is not supported \(supported: BiasAdd, FusedBatchNorm, .*LeakyRelu, Prelu\)$/,
    );
    expect(() => convertGraph(model((b, x) => b.op('out', 'Conv2D', [x, b.const('k', [1, 1, 2, 2])], { ...convAttrs(1, 'SAME'), data_format: attr.str('NCHW') })))).toThrow(
      'node "out" (Conv2D): data_format NCHW is not supported (NHWC only)',
    );
    expect(() => convertGraph(model((b, x) => b.op('out', 'MirrorPad', [x, b.ints('p', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0])], { mode: attr.str('SYMMETRIC') })))).toThrow(
      'node "out" (MirrorPad): mode SYMMETRIC is not supported (REFLECT only)',
    );
    expect(() => convertGraph(model((b, x) => b.op('out', 'Conv2D', [x, x], convAttrs(1, 'SAME'))))).toThrow('node "out" (Conv2D): its filter must be a constant');
    expect(() => convertGraph(model((b, x) => b.op('out', 'AddV2', [x, b.ints('n', [2], [1, 2])])))).toThrow('node "out" (AddV2): an integer constant used as data is not supported (only float32 data)');
    const missing = model((b, x) => b.op('out', 'BiasAdd', [x, b.const('bias', [2])], NHWC));
    const json = JSON.parse(Buffer.from(missing.modelJson).toString()) as { weightsManifest: { weights: object[] }[] };
    json.weightsManifest[0]!.weights = [];
    expect(() => convertGraph({ ...missing, modelJson: new Uint8Array(Buffer.from(JSON.stringify(json))) })).toThrow('node "bias" (Const): its value is missing from the weights manifest');
  });
});
