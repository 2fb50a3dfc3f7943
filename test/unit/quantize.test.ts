import { InferenceSession, Tensor } from 'onnxruntime-node';
import { quantizeModel, quantizePerColumn, quantizePerRow, type QuantizeOptions } from '../../lib/convert/quantize';
import { DATA_TYPE, makeTensor, OnnxModel, TENSOR, TensorView } from '../../lib/onnx/model';
import { ProtoField, ProtoMessage } from '../../lib/onnx/proto-tree';
import { encodeModel, floatTensor } from '../../lib/onnx/writer';
import { bertEncoderModel, denseStackModel, mlpModel, ONNX, prng, sileroVadModel } from '../helpers/models';

const options = (mode: QuantizeOptions['mode'], extra: Partial<QuantizeOptions> = {}): QuantizeOptions => ({
  mode, minElements: 16, minGatherElements: 16, keepFloat: [], reduceRange: false, ...extra,
});

async function outputs(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<Float32Array> {
  const session = await InferenceSession.create(bytes);
  try {
    const result = await session.run(feeds);
    return result[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function convert(bytes: Uint8Array, opts: QuantizeOptions) {
  const model = OnnxModel.decode(bytes);
  const report = quantizeModel(model, opts);
  const out = model.encode();
  const opTypes = model.graph().nodes().map((n) => n.opType);
  return { report, out, opTypes };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('weight quantization', () => {
  test('per-column symmetric int8: the largest magnitude of each column maps to ±127', () => {
    const { q, scales } = quantizePerColumn(Float32Array.from([1, -4, -2, 2, 0.5, 0]), 3, 2, 127);
    expect(Array.from(scales)).toEqual([2 / 127, 4 / 127].map((v) => Math.fround(v)));
    expect(Array.from(q)).toEqual([64, -127, -127, 64, 32, 0]);
    const rows = quantizePerRow(Float32Array.from([0, 0, 3, -6]), 2, 2, 127);
    expect(Array.from(rows.scales)).toEqual([1, Math.fround(6 / 127)]);
    expect(Array.from(rows.q)).toEqual([0, 0, 64, -127]);
  });

  test('tables are read a chunk of rows at a time, from raw_data or float_data, with the same result', () => {
    // 100,000 x 3 is more rows than one chunk holds (2^18 elements), so chunk edges are crossed.
    const [rows, cols] = [100_000, 3];
    const values = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const raw = new TensorView(makeTensor('t', DATA_TYPE.FLOAT, [rows, cols], new Uint8Array(values.buffer.slice(0))));
    const read = raw.floatRowReader();
    expect(Array.from(read(99_999, 1))).toEqual(Array.from(values.subarray(299_997)));
    for (const quantize of [quantizePerColumn, quantizePerRow]) {
      const whole = quantize(values, rows, cols, 127);
      const chunked = quantize(read, rows, cols, 127);
      expect(Buffer.from(chunked.q.buffer).equals(Buffer.from(whole.q.buffer))).toBe(true);
      expect(Array.from(chunked.scales)).toEqual(Array.from(whole.scales));
    }
    // float_data (packed repeated floats) instead of raw_data: decoded once, then sliced.
    const packed = new ProtoMessage([
      ProtoField.bytes(TENSOR.dims, Uint8Array.from([2, 3])),
      ProtoField.varint(TENSOR.dataType, DATA_TYPE.FLOAT),
      ProtoField.string(TENSOR.name, 'p'),
      ProtoField.bytes(TENSOR.floatData, new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer)),
    ]);
    expect(Array.from(new TensorView(packed).floatRowReader()(1, 1))).toEqual([4, 5, 6]);
  });

  test('int8-dynamic: MatMul weights become int8 in the pattern onnxruntime fuses, outputs stay close', async () => {
    const bytes = denseStackModel(256, 4);
    const { report, out, opTypes } = convert(bytes, options('int8-dynamic'));
    expect(report).toEqual({ mode: 'int8-dynamic', rewritten: { MatMul: 4 }, tensors: 4, skipped: 0 });
    expect(opTypes.filter((t) => t === 'MatMul')).toHaveLength(0);
    expect(opTypes.filter((t) => t === 'DynamicQuantizeLinear')).toHaveLength(4);
    expect(opTypes.filter((t) => t === 'MatMulInteger')).toHaveLength(4);
    expect(out.byteLength).toBeLessThan(bytes.byteLength * 0.27);
    const rand = prng(4);
    const x = new Tensor('float32', Float32Array.from({ length: 256 }, () => rand() * 2 - 1), [1, 256]);
    expect(maxAbsDiff(await outputs(bytes, { x }), await outputs(out, { x }))).toBeLessThan(0.02);
  });

  test('int8-dynamic on Gemm: transB, alpha and the bias are honoured', async () => {
    const rand = prng(12);
    const w = Array.from({ length: 32 * 8 }, () => rand() - 0.5);
    const bytes = encodeModel({
      graph: {
        name: 'gemm',
        inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: [2, 32] }],
        outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [2, 8] }],
        initializers: [floatTensor('w', [8, 32], w), floatTensor('b', [8], Array.from({ length: 8 }, (_, i) => i / 10))],
        nodes: [{ opType: 'Gemm', inputs: ['x', 'w', 'b'], outputs: ['y'], attributes: [{ name: 'transB', i: 1 }, { name: 'alpha', f: 0.5 }] }],
      },
    });
    const { report, out } = convert(bytes, options('int8-dynamic'));
    expect(report.rewritten).toEqual({ Gemm: 1 });
    const x = new Tensor('float32', Float32Array.from({ length: 64 }, () => rand() * 2 - 1), [2, 32]);
    expect(maxAbsDiff(await outputs(bytes, { x }), await outputs(out, { x }))).toBeLessThan(0.02);
  });

  test('int8-dynamic on a BERT-shaped encoder: embedding tables read by Gather and by Slice become int8', async () => {
    const bytes = bertEncoderModel({ vocab: 1000, hidden: 64, layers: 2, heads: 2, maxPositions: 128 });
    const { report, out } = convert(bytes, options('int8-dynamic', { minGatherElements: 4096 }));
    expect(report.rewritten).toEqual({ Gather: 1, Slice: 1, MatMul: 13 });
    expect(out.byteLength).toBeLessThan(bytes.byteLength * 0.3);
    const ids = new Tensor('int64', BigInt64Array.from({ length: 16 }, (_, i) => BigInt((i * 37) % 1000)), [1, 16]);
    const a = await InferenceSession.create(bytes);
    const b = await InferenceSession.create(out);
    const [ra, rb] = [await a.run({ input_ids: ids }), await b.run({ input_ids: ids })];
    expect(maxAbsDiff(ra.last_hidden_state!.data as Float32Array, rb.last_hidden_state!.data as Float32Array)).toBeLessThan(0.05);
    expect(rb.pooled!.dims).toEqual([1, 64]);
    await a.release();
    await b.release();
  });

  test('small weights and nodes named in keepFloat stay float', () => {
    const bytes = mlpModel({ hidden: 64 }); // w1 is 4x64 = 256 elements, w2 64x3 = 192
    expect(convert(bytes, options('int8-dynamic', { minElements: 200 })).report).toEqual({
      mode: 'int8-dynamic', rewritten: { Gemm: 1 }, tensors: 1, skipped: 1,
    });
    expect(convert(bytes, options('int8-dynamic', { keepFloat: ['Gemm_0'] })).report.rewritten).toEqual({ Gemm: 1 });
    const none = convert(bytes, options('none'));
    expect(Buffer.from(none.out).equals(Buffer.from(bytes))).toBe(true);
  });

  test('fp16 on Silero VAD: Constant weights inside If branches, inputs and outputs untouched', async () => {
    const bytes = sileroVadModel();
    const { report, out } = convert(bytes, options('fp16', { minElements: 1024 }));
    expect(report.tensors).toBeGreaterThan(5);
    expect(out.byteLength).toBeLessThan(bytes.byteLength * 0.8);
    const feeds = {
      input: new Tensor('float32', Float32Array.from({ length: 576 }, (_, i) => Math.sin(i / 5) * 0.3), [1, 576]),
      state: new Tensor('float32', new Float32Array(256), [2, 1, 128]),
      sr: new Tensor('int64', BigInt64Array.from([16000n]), []),
    };
    expect(maxAbsDiff(await outputs(bytes, feeds), await outputs(out, feeds))).toBeLessThan(1e-3);
    const session = await InferenceSession.create(out);
    expect(session.inputNames).toEqual(['input', 'state', 'sr']);
    expect(session.outputNames).toEqual(['output', 'stateN']);
    await session.release();
  });
});
