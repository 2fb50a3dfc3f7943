import { ATTRIBUTE, DATA_TYPE, makeNode, type NodeView, type OnnxModel, TensorView } from '../onnx/model';
import type { ProtoMessage } from '../onnx/proto-tree';

/** HardSwish joined the default domain at opset 14; onnxruntime's CPU provider has a kernel for it. */
export const HARD_SWISH_MIN_OPSET = 14;

function scalar(t: TensorView | undefined): number | undefined {
  if (!t || t.dataType !== DATA_TYPE.FLOAT || t.isExternal || t.elementCount !== 1) return undefined;
  return t.floats()[0];
}

const near = (v: number | undefined, target: number) => v !== undefined && Math.abs(v - target) <= 1e-6 * Math.max(1, Math.abs(target));

/**
 * Writes hard-swish spelt out in element-wise ops as one ONNX `HardSwish` node (opset 14+):
 * `x * Clip(x + 3, 0, 6) / 6` in any order of its last two steps (Mul then Div or Mul by 1/6,
 * or the division first). MobileNetV3-style exports write it out that way, and onnxruntime
 * then runs four element-wise passes per activation; as HardSwish, its level-all optimizer
 * makes it the activation of the Conv before it (measured on 1.30). `x * HardSigmoid(x)` with
 * the hard-swish slope is left alone: onnxruntime fuses that form itself. The rewrite is exact
 * up to float32 rounding. Only chains whose intermediate tensors nothing else reads are rewritten.
 * Main graph only; returns how many it rewrote (0 below opset 14).
 */
export function fuseHardSwish(model: OnnxModel): number {
  const main = model.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!main || main.version < HARD_SWISH_MIN_OPSET) return 0;
  const graph = model.graph();
  const nodes = graph.nodes();
  const inputs = new Set(graph.inputNames());
  const constants = new Map<string, TensorView>();
  for (const t of graph.initializers()) if (!inputs.has(t.name)) constants.set(t.name, t);
  for (const n of nodes) {
    const value = n.opType === 'Constant' && !n.domain ? n.attribute('value')?.first(ATTRIBUTE.t)?.message() : undefined;
    if (value && n.outputs[0]) constants.set(n.outputs[0], new TensorView(value));
  }
  const producer = new Map<string, NodeView>();
  const readers = new Map<string, number>();
  for (const n of nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  for (const o of graph.outputNames()) readers.set(o, (readers.get(o) ?? 0) + 2);
  const op = (name: string | undefined, type: string): NodeView | undefined => {
    const n = name === undefined ? undefined : producer.get(name);
    return n && n.opType === type && !n.domain && readers.get(name as string) === 1 ? n : undefined;
  };
  /** The other operand of a binary node whose one operand is the constant `value`. */
  const withConstant = (n: NodeView, value: number): string | undefined => {
    const [a, b] = n.inputs;
    if (n.inputs.length !== 2 || a === undefined || b === undefined) return undefined;
    if (near(scalar(constants.get(b)), value)) return a;
    if (n.opType !== 'Div' && near(scalar(constants.get(a)), value)) return b;
    return undefined;
  };
  /** `x` when `name` is Clip(Add(x, 3), 0, 6) read only once; the nodes it covers go in `used`. */
  const relu6Shifted = (name: string | undefined, used: NodeView[]): string | undefined => {
    const clip = op(name, 'Clip');
    if (!clip || !near(scalar(constants.get(clip.inputs[1] ?? '')), 0) || !near(scalar(constants.get(clip.inputs[2] ?? '')), 6)) return undefined;
    const add = op(clip.inputs[0], 'Add');
    const x = add && withConstant(add, 3);
    if (!add || x === undefined) return undefined;
    used.push(clip, add);
    return x;
  };
  /** `(x, nodes)` when `name` is x * Clip(x + 3, 0, 6) with the /6 already applied to one side, or without it. */
  const scaled = (n: NodeView | undefined, divided: boolean): { x: string; used: NodeView[] } | undefined => {
    if (!n || n.opType !== 'Mul' || n.domain || n.inputs.length !== 2) return undefined;
    for (const k of [0, 1]) {
      const x = n.inputs[1 - k] as string;
      const used: NodeView[] = [];
      let inner = n.inputs[k];
      if (divided) {
        const div = op(inner, 'Div') ?? op(inner, 'Mul');
        const rest = div && withConstant(div, div.opType === 'Div' ? 6 : 1 / 6);
        if (!div || rest === undefined) continue;
        used.push(div);
        inner = rest;
      }
      if (relu6Shifted(inner, used) === x) return { x, used };
    }
    return undefined;
  };

  const removed = new Set<ProtoMessage>();
  const replaced = new Map<ProtoMessage, ProtoMessage>();
  for (const end of nodes) {
    if (end.domain || removed.has(end.proto) || replaced.has(end.proto)) continue;
    const y = end.outputs[0];
    if (!y) continue;
    let found: { x: string; used: NodeView[] } | undefined;
    if (end.opType === 'Mul') {
      found = scaled(end, true);
      if (!found) {
        // (x * Clip(x + 3, 0, 6)) * (1/6)
        const m = withConstant(end, 1 / 6);
        const inner = m === undefined ? undefined : op(m, 'Mul');
        const s = scaled(inner, false);
        if (inner && s) found = { x: s.x, used: [...s.used, inner] };
      }
    } else if (end.opType === 'Div') {
      const m = withConstant(end, 6);
      const inner = m === undefined ? undefined : op(m, 'Mul');
      const s = scaled(inner, false);
      if (inner && s) found = { x: s.x, used: [...s.used, inner] };
    }
    if (!found || found.used.some((n) => removed.has(n.proto) || replaced.has(n.proto))) continue;
    for (const n of found.used) removed.add(n.proto);
    replaced.set(end.proto, makeNode('HardSwish', [found.x], [y], end.name || `${y}_hardswish`));
  }
  if (replaced.size === 0) return 0;
  graph.setNodes(nodes.filter((n) => !removed.has(n.proto)).map((n) => replaced.get(n.proto) ?? n.proto));
  return replaced.size;
}
