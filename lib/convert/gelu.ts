import { ATTRIBUTE, DATA_TYPE, GraphView, makeNode, makeTensor, OnnxModel, TensorView } from '../onnx/model';
import type { ProtoMessage } from '../onnx/proto-tree';

/** A float scalar constant equal to 1/sqrt(2) as float32 holds it. */
function isInverseSqrt2(t: TensorView | undefined): t is TensorView {
  if (!t || t.dataType !== DATA_TYPE.FLOAT || t.isExternal || t.elementCount !== 1) return false;
  return Math.abs((t.floats()[0] ?? 0) - Math.SQRT1_2) < 1e-6;
}

/**
 * Writes the exact GELU's `Mul(x, 1/sqrt2) -> Erf` (how tf2onnx, Keras and hand-built graphs
 * say it) as `Div(x, sqrt2) -> Erf` (how PyTorch exports it): onnxruntime 1.30 fuses only the
 * Div form into its single Gelu kernel, so the Mul form runs as five element-wise passes. The
 * two agree to float32 rounding. Walks subgraphs too; returns how many it rewrote.
 */
export function canonicalizeGelu(model: OnnxModel): number {
  let count = 0;
  const visit = (graph: GraphView, outer: ReadonlyMap<string, TensorView>, isMain: boolean): void => {
    const scope = new Map(outer);
    for (const t of graph.initializers()) scope.set(t.name, t);
    for (const name of graph.inputNames()) scope.delete(name); // a fed input is not a constant
    const nodes = graph.nodes();
    for (const node of nodes) {
      const value = node.opType === 'Constant' && !node.domain ? node.attribute('value')?.first(ATTRIBUTE.t)?.message() : undefined;
      if (value && node.outputs[0]) scope.set(node.outputs[0], new TensorView(value));
    }
    const erfInputs = new Set(nodes.filter((n) => n.opType === 'Erf' && !n.domain).map((n) => n.inputs[0]));

    const out: ProtoMessage[] = [];
    const initializers: ProtoMessage[] = [];
    for (const node of nodes) {
      for (const sub of node.subgraphs()) visit(sub, scope, false);
      const result = node.outputs[0];
      const k = node.inputs.findIndex((name) => isInverseSqrt2(scope.get(name)));
      if (node.opType !== 'Mul' || node.domain || node.inputs.length !== 2 || !result || !erfInputs.has(result) || k < 0) {
        out.push(node.proto);
        continue;
      }
      const constant = scope.get(node.inputs[k] as string) as TensorView;
      const name = `${result}__sqrt2`;
      const tensor = makeTensor(name, DATA_TYPE.FLOAT, constant.dims, new Uint8Array(Float32Array.of(Math.SQRT2).buffer));
      if (isMain) initializers.push(tensor);
      else out.push(makeNode('Constant', [], [name], `${name}_const`, { value: { t: tensor } }));
      out.push(makeNode('Div', [node.inputs[1 - k] as string, name], [result], node.name || `${result}_div`));
      count++;
    }
    if (out.length !== nodes.length || initializers.length > 0) {
      graph.setNodes(out);
      if (initializers.length > 0) graph.setInitializers([...graph.initializers().map((t) => t.proto), ...initializers]);
    }
  };
  visit(model.graph(), new Map(), true);
  return count;
}
