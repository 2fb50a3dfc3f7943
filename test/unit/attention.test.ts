import { InferenceSession, Tensor } from 'onnxruntime-node';
import { fuseAttention } from '../../lib/convert/attention';
import { quantizeModel } from '../../lib/convert/quantize';
import { DATA_TYPE, GRAPH, makeNode, makeTensor, NodeView, OnnxModel } from '../../lib/onnx/model';
import { ProtoField, ProtoMessage } from '../../lib/onnx/proto-tree';
import { convertModel, DEFAULT_PIPELINE_OPTIONS } from '../../lib/convert/pipeline';
import { attentionBlockModel, bertEncoderModel } from '../helpers/models';

const SEQ = 16;
const ids = new Tensor('int64', BigInt64Array.from({ length: SEQ }, (_, i) => BigInt((i * 37) % 1000)), [1, SEQ]);
const small = () => bertEncoderModel({ vocab: 1000, hidden: 64, layers: 2, heads: 2, maxPositions: 64 });

async function run(bytes: Uint8Array): Promise<Record<string, Float32Array>> {
  const s = await InferenceSession.create(bytes, { logSeverityLevel: 3 });
  try {
    const out = await s.run({ input_ids: ids });
    return Object.fromEntries(s.outputNames.map((n) => [n, out[n]!.data as Float32Array]));
  } finally {
    await s.release();
  }
}

function maxAbsDiff(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  let max = 0;
  for (const [name, x] of Object.entries(a)) {
    const y = b[name]!;
    expect(y.length).toBe(x.length);
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

function fused(bytes: Uint8Array, keepFloat: string[] = []): { count: number; bytes: Uint8Array; ops: string[] } {
  const model = OnnxModel.decode(bytes);
  const count = fuseAttention(model, keepFloat);
  const out = model.encode();
  return { count, bytes: out, ops: OnnxModel.decode(out).graph().nodes().map((n) => n.opType) };
}

/** Rebuilds the model with `edit` applied to its node list (and extra initializers). */
function edited(bytes: Uint8Array, edit: (nodes: NodeView[]) => ReturnType<typeof makeNode>[], extra: ReturnType<typeof makeTensor>[] = []): Uint8Array {
  const model = OnnxModel.decode(bytes);
  const graph = model.graph();
  graph.setNodes(edit(graph.nodes()));
  if (extra.length) graph.setInitializers([...graph.initializers().map((t) => t.proto), ...extra]);
  return model.encode();
}

const count = (ops: string[], op: string) => ops.filter((o) => o === op).length;

describe('self-attention fused into one com.microsoft Attention node', () => {
  test('every block of the BERT-shaped encoder becomes one Attention node; the outputs keep their values', async () => {
    const bert = small();
    const out = fused(bert);
    expect(out.count).toBe(2);
    expect(count(out.ops, 'Attention')).toBe(2);
    for (const gone of ['Softmax', 'Transpose']) expect(out.ops).not.toContain(gone);
    // Q, K, V weights (3 x 64 x 64 floats each layer) now sit side by side: nothing is kept twice.
    expect(Math.abs(out.bytes.byteLength - bert.byteLength)).toBeLessThan(4096);
    expect(maxAbsDiff(await run(bert), await run(out.bytes))).toBeLessThan(1e-4);
  });

  test('a score scale other than 1/sqrt(head size), as Mul or as Div, is folded into the Q weights', async () => {
    const bert = small();
    // Layer 0: Mul by 40; layer 1: Div by 0.02 (head size 32: neither is Attention's own 1/sqrt(32)).
    // Scores this large make Softmax peaked, so a scale left out would show.
    const scaled = edited(
      bert,
      (nodes) =>
        nodes.map((n) => {
          if (n.opType !== 'Mul' || !n.inputs.includes('inv_sqrt_dh')) return n.proto;
          const layer0 = n.outputs[0] === 'l0_scores';
          return layer0 ? makeNode('Mul', [n.inputs[0]!, 'scale_40'], n.outputs, n.name) : makeNode('Div', [n.inputs[0]!, 'fiftieth'], n.outputs, n.name);
        }),
      [makeTensor('scale_40', DATA_TYPE.FLOAT, [], new Uint8Array(Float32Array.of(40).buffer)), makeTensor('fiftieth', DATA_TYPE.FLOAT, [], new Uint8Array(Float32Array.of(0.02).buffer))],
    );
    const out = fused(scaled);
    expect(out.count).toBe(2);
    const before = await run(scaled);
    expect(maxAbsDiff(before, await run(bert))).toBeGreaterThan(1e-2); // the edit changed the model
    expect(maxAbsDiff(before, await run(out.bytes))).toBeLessThan(1e-4);
  });

  test('blocks it cannot prove equal stay as they are: a mask, a value read elsewhere, keepFloat', async () => {
    const bert = small();
    // Layer 0 adds a mask to its scores before Softmax: not the unmasked form.
    const masked = edited(
      bert,
      (nodes) =>
        nodes.flatMap((n) =>
          n.outputs[0] === 'l0_scores'
            ? [makeNode(n.opType, n.inputs, ['l0_scores_unmasked'], n.name), makeNode('Add', ['l0_scores_unmasked', 'mask_bias'], ['l0_scores'], 'l0_mask')]
            : [n.proto],
        ),
      [makeTensor('mask_bias', DATA_TYPE.FLOAT, [], new Uint8Array(Float32Array.of(-0.5).buffer))],
    );
    const m = fused(masked);
    expect(m.count).toBe(1);
    expect(count(m.ops, 'Softmax')).toBe(1);
    expect(maxAbsDiff(await run(masked), await run(m.bytes))).toBeLessThan(1e-4);

    // Layer 1's Q projection is also a graph output: fusing would lose it.
    const exposed = OnnxModel.decode(bert);
    exposed.graph().proto.fields.push(ProtoField.message(GRAPH.output, new ProtoMessage([ProtoField.string(1, 'l1_q')])));
    const e = fused(exposed.encode());
    expect(e.count).toBe(1);
    expect(e.ops).toContain('Softmax');
    expect(Object.keys(await run(e.bytes))).toContain('l1_q');

    // keepFloat naming any node or value of a block keeps that block as written.
    expect(fused(bert, ['l0_probs']).count).toBe(1);
    expect(fused(bert, ['l0_probs', 'l1_probs']).count).toBe(0);
  });

  test('int8-dynamic turns each fused block into DynamicQuantizeLinear + QAttention, close to the float model', async () => {
    const bert = small();
    const model = OnnxModel.decode(bert);
    expect(fuseAttention(model)).toBe(2);
    const report = quantizeModel(model, { mode: 'int8-dynamic', minElements: 1024, minGatherElements: 4096, keepFloat: [], reduceRange: false });
    expect(report.rewritten).toEqual({ Gather: 1, Slice: 1, Attention: 2, MatMul: 7 });
    const out = model.encode();
    const ops = OnnxModel.decode(out).graph().nodes().map((n) => n.opType);
    expect(count(ops, 'QAttention')).toBe(2);
    expect(ops).not.toContain('Attention');
    const [a, b] = [await run(bert), await run(out)];
    let dot = 0;
    let na = 0;
    let nb = 0;
    a.pooled!.forEach((x, i) => {
      const y = b.pooled![i]!;
      dot += x * y;
      na += x * x;
      nb += y * y;
    });
    expect(dot / Math.sqrt(na * nb)).toBeGreaterThan(0.999);
  });

  test('the conversion serves a fused block only when onnxruntime takes it, and says why when it does not', async () => {
    const options = { ...DEFAULT_PIPELINE_OPTIONS, minElements: 1024, evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate, dynamicDims: { first: 1, other: 8 } } };
    const rank3 = await convertModel(attentionBlockModel({ rank: 3 }), options);
    expect(rank3.outcome).toBe('converted');
    expect(rank3.optimization.attentionFused).toBe(1);
    expect(rank3.quantization.rewritten).toEqual({ Attention: 1 });
    expect(rank3.evaluation.outputs.y!.cosine).toBeGreaterThan(0.999);

    // x[sequence, hidden]: the op-by-op block runs (each row a length-1 sequence), Attention
    // wants three dimensions. The same pattern matches, so only the guard keeps this upload alive.
    const rank2 = await convertModel(attentionBlockModel({ rank: 2 }), options);
    expect(rank2.outcome).toBe('converted');
    expect(rank2.optimization.attentionFused).toBe(0);
    expect(rank2.optimization.attentionNotFused).toMatch(/Attention.*3 dimensions/);
    expect(rank2.quantization.rewritten).toEqual({ MatMul: 3 });
    expect(rank2.evaluation.outputs.y!.cosine).toBeGreaterThan(0.999);
  });
});
