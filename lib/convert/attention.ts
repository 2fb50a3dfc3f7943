import { ATTRIBUTE, DATA_TYPE, makeNode, makeTensor, NodeView, OnnxModel, TensorView } from '../onnx/model';
import type { ProtoMessage } from '../onnx/proto-tree';

/** The contrib domain of onnxruntime's fused kernels (Attention, QAttention...). */
export const MS_DOMAIN = 'com.microsoft';

/**
 * Multi-head self-attention written out op by op, the way exporters and hand-built graphs say
 * it, becomes one `com.microsoft.Attention` node with the Q, K and V weights side by side
 * ([in, 3 x hidden]) and their biases ([3 x hidden]):
 *
 *   x -> MatMul(Wq) (+ bq) -> Reshape [_, _, N, D] -> Transpose [0,2,1,3] -----------.
 *   x -> MatMul(Wk) (+ bk) -> Reshape [_, _, N, D] -> Transpose [0,2,3,1] -> MatMul -> (Mul|Div c)
 *     -> Softmax(last axis) -> MatMul(., V heads) -> Transpose [0,2,1,3] -> Reshape [_, _, N x D]
 *   x -> MatMul(Wv) (+ bv) -> Reshape [_, _, N, D] -> Transpose [0,2,1,3] ----------^
 *
 * One kernel then computes the three projections as one GEMM and the heads without the
 * reshape/transpose copies; int8-dynamic turns it into `QAttention`. Attention scales scores by
 * 1/sqrt(D); any other factor is folded into Wq and bq. Only the main graph, only the unmasked
 * form, only when every intermediate value has this one use: anything else stays as it was.
 * Returns how many attention blocks were fused.
 */
export function fuseAttention(model: OnnxModel, keepFloat: readonly string[] = []): number {
  const graph = model.graph();
  const nodes = graph.nodes();
  const constants = new Map<string, TensorView>();
  for (const t of graph.initializers()) constants.set(t.name, t);
  for (const name of graph.inputNames()) constants.delete(name); // a fed input is not a constant
  for (const node of nodes) {
    const value = node.opType === 'Constant' && !node.domain ? node.attribute('value')?.first(ATTRIBUTE.t)?.message() : undefined;
    if (value && node.outputs[0]) constants.set(node.outputs[0], new TensorView(value));
  }
  const producer = new Map<string, NodeView>();
  const uses = new Map<string, number>();
  for (const node of nodes) {
    for (const o of node.outputs) producer.set(o, node);
    for (const i of node.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
    // A value a subgraph reads counts as used elsewhere.
    for (const sub of node.subgraphs()) for (const n of sub.nodes()) for (const i of n.inputs) uses.set(i, (uses.get(i) ?? 0) + 2);
  }
  for (const o of graph.outputNames()) uses.set(o, (uses.get(o) ?? 0) + 2);
  const opsetVersion = model.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0;

  const consumers = (name: string) => nodes.filter((n) => n.inputs.includes(name));
  const only = (name: string | undefined, op: string): NodeView | undefined => {
    if (!name || uses.get(name) !== 1) return undefined;
    const node = producer.get(name);
    return node && node.opType === op && !node.domain ? node : undefined;
  };
  const perm = (node: NodeView | undefined, expected: readonly number[]) => {
    const ints = node?.intsAttribute('perm');
    return ints !== undefined && ints.length === expected.length && ints.every((v, i) => v === expected[i]);
  };
  const int64Const = (name: string | undefined) => {
    const t = name ? constants.get(name) : undefined;
    return t && t.dataType === DATA_TYPE.INT64 && !t.isExternal ? t.int64s().map(Number) : undefined;
  };
  const floatConst = (name: string | undefined) => {
    const t = name ? constants.get(name) : undefined;
    return t && t.dataType === DATA_TYPE.FLOAT && !t.isExternal ? t : undefined;
  };

  /** x -> MatMul(W) (+ b) -> Reshape [_, _, N, D] -> Transpose(perm): the projection of one of Q, K, V. */
  const projection = (transposed: string | undefined, expectedPerm: readonly number[]) => {
    const transpose = only(transposed, 'Transpose');
    if (!transpose || !perm(transpose, expectedPerm)) return undefined;
    const reshape = only(transpose.inputs[0], 'Reshape');
    const shape = int64Const(reshape?.inputs[1]);
    if (!reshape || !shape || shape.length !== 4 || reshape.intAttribute('allowzero', 0) !== 0) return undefined;
    const [d0, d1, heads = 0, size = 0] = shape;
    if (d0 !== 0 || (d1 !== 0 && d1 !== -1) || heads <= 0 || size <= 0) return undefined;
    let matmul = only(reshape.inputs[0], 'MatMul');
    let bias: TensorView | undefined;
    let add: NodeView | undefined;
    if (!matmul) {
      add = only(reshape.inputs[0], 'Add');
      if (!add || add.inputs.length !== 2) return undefined;
      const k = add.inputs.findIndex((i) => floatConst(i)?.dims.length === 1);
      if (k < 0) return undefined;
      bias = floatConst(add.inputs[k]);
      matmul = only(add.inputs[1 - k], 'MatMul');
    }
    const weight = floatConst(matmul?.inputs[1]);
    if (!matmul || !weight || weight.dims.length !== 2 || weight.dims[1] !== heads * size) return undefined;
    if (bias && bias.dims[0] !== heads * size) return undefined;
    return { x: matmul.inputs[0] ?? '', weight, bias, heads, size, nodes: [matmul, ...(add ? [add] : []), reshape, transpose] };
  };

  const replaced = new Map<ProtoMessage, ProtoMessage[]>();
  const dropped = new Set<ProtoMessage>();
  const newInitializers: ProtoMessage[] = [];
  let fused = 0;
  for (const softmax of nodes) {
    if (softmax.opType !== 'Softmax' || softmax.domain) continue;
    const axis = softmax.attribute('axis') ? softmax.intAttribute('axis', -1) : opsetVersion >= 13 ? -1 : 1;
    if (axis !== -1 && axis !== 3) continue;
    // Scores: MatMul(Q, K^T), optionally scaled by a scalar constant.
    let factor = 1;
    let scaleNode: NodeView | undefined;
    let scoresMatMul = only(softmax.inputs[0], 'MatMul');
    if (!scoresMatMul) {
      scaleNode = producer.get(softmax.inputs[0] ?? '');
      if (!scaleNode || scaleNode.domain || (scaleNode.opType !== 'Mul' && scaleNode.opType !== 'Div') || uses.get(softmax.inputs[0] ?? '') !== 1) continue;
      const k = scaleNode.inputs.findIndex((i) => floatConst(i)?.elementCount === 1);
      if (k < 0 || (scaleNode.opType === 'Div' && k !== 1)) continue;
      const c = floatConst(scaleNode.inputs[k])?.floats()[0] ?? 0;
      if (!Number.isFinite(c) || c === 0) continue;
      factor = scaleNode.opType === 'Mul' ? c : 1 / c;
      scoresMatMul = only(scaleNode.inputs[1 - k], 'MatMul');
    }
    if (!scoresMatMul) continue;
    const q = projection(scoresMatMul.inputs[0], [0, 2, 1, 3]);
    const k = projection(scoresMatMul.inputs[1], [0, 2, 3, 1]);
    // Probabilities -> MatMul with V heads -> merge heads.
    const out1 = softmax.outputs[0] ?? '';
    const contextMatMul = uses.get(out1) === 1 ? consumers(out1)[0] : undefined;
    if (!q || !k || !contextMatMul || contextMatMul.opType !== 'MatMul' || contextMatMul.domain || contextMatMul.inputs[0] !== out1) continue;
    const v = projection(contextMatMul.inputs[1], [0, 2, 1, 3]);
    const context = contextMatMul.outputs[0] ?? '';
    const mergeTranspose = uses.get(context) === 1 ? consumers(context)[0] : undefined;
    if (!v || !mergeTranspose || mergeTranspose.opType !== 'Transpose' || !perm(mergeTranspose, [0, 2, 1, 3])) continue;
    const merged = mergeTranspose.outputs[0] ?? '';
    const mergeReshape = uses.get(merged) === 1 ? consumers(merged)[0] : undefined;
    const mergeShape = int64Const(mergeReshape?.inputs[1]);
    if (!mergeReshape || mergeReshape.opType !== 'Reshape' || mergeReshape.domain || !mergeShape || mergeShape.length !== 3) continue;
    if (mergeShape[0] !== 0 || (mergeShape[1] !== 0 && mergeShape[1] !== -1) || mergeShape[2] !== q.heads * q.size) continue;
    // One input, one head layout, one width for all three.
    const same = [k, v].every((p) => p.x === q.x && p.heads === q.heads && p.size === q.size && p.weight.dims[0] === q.weight.dims[0]);
    if (!same || !q.x) continue;
    const all = [...q.nodes, ...k.nodes, ...v.nodes, scoresMatMul, ...(scaleNode ? [scaleNode] : []), softmax, contextMatMul, mergeTranspose, mergeReshape];
    if (all.some((n) => keepFloat.some((name) => name === n.name || n.outputs.includes(name)))) continue;
    if (all.some((n) => dropped.has(n.proto))) continue;

    const hidden = q.heads * q.size;
    const inWidth = q.weight.dims[0] as number;
    // Attention divides the scores by sqrt(D); a different factor goes into Wq and bq.
    const fold = factor * Math.sqrt(q.size);
    const weights = new Float32Array(inWidth * 3 * hidden);
    const biases = new Float32Array(3 * hidden);
    [q, k, v].forEach((p, index) => {
      const w = p.weight.floats();
      const b = p.bias?.floats();
      const scale = index === 0 && Math.abs(fold - 1) > 1e-6 ? fold : 1;
      for (let r = 0; r < inWidth; r++) {
        for (let c = 0; c < hidden; c++) weights[r * 3 * hidden + index * hidden + c] = (w[r * hidden + c] as number) * scale;
      }
      if (b) for (let c = 0; c < hidden; c++) biases[index * hidden + c] = (b[c] as number) * scale;
    });
    const base = `${mergeReshape.name || mergeReshape.outputs[0] || 'attention'}__attn${fused}`;
    newInitializers.push(
      makeTensor(`${base}_qkv_w`, DATA_TYPE.FLOAT, [inWidth, 3 * hidden], new Uint8Array(weights.buffer)),
      makeTensor(`${base}_qkv_b`, DATA_TYPE.FLOAT, [3 * hidden], new Uint8Array(biases.buffer)),
    );
    const attention = makeNode('Attention', [q.x, `${base}_qkv_w`, `${base}_qkv_b`], [mergeReshape.outputs[0] ?? ''], base, { num_heads: { i: q.heads } }, MS_DOMAIN);
    for (const n of all) dropped.add(n.proto);
    replaced.set(mergeReshape.proto, [attention]);
    fused++;
  }
  if (fused === 0) return 0;

  const kept: ProtoMessage[] = [];
  for (const node of nodes) {
    const instead = replaced.get(node.proto);
    if (instead) kept.push(...instead);
    else if (!dropped.has(node.proto)) kept.push(node.proto);
  }
  // Constants no remaining node reads (the separate Q, K, V weights, the shape tensors) go.
  const read = new Set<string>(graph.outputNames());
  const collect = (list: readonly ProtoMessage[]) => {
    for (const proto of list) {
      const node = new NodeView(proto);
      for (const i of node.inputs) read.add(i);
      for (const sub of node.subgraphs()) collect(sub.nodes().map((n) => n.proto));
    }
  };
  collect(kept);
  const inputs = new Set(graph.inputNames());
  graph.setNodes(kept.filter((proto) => {
    const node = new NodeView(proto);
    return !(node.opType === 'Constant' && !node.domain && node.outputs.every((o) => !read.has(o)));
  }));
  graph.setInitializers([...graph.initializers().filter((t) => read.has(t.name) || inputs.has(t.name)).map((t) => t.proto), ...newInitializers]);
  model.requireOpset(MS_DOMAIN, 1);
  return fused;
}
