import { ATTRIBUTE, DATA_TYPE, makeNode, makeTensor, MODEL, NODE, type NodeView, type OnnxModel, OPSET } from '../onnx/model';
import { ProtoField, type ProtoMessage } from '../onnx/proto-tree';

/** What an opset upgrade did: from and to, and which nodes it rewrote, by op type. */
export interface OpsetUpgrade {
  from: number;
  to: number;
  rewritten: Record<string, number>;
}

/** An upload whose default-domain opset cannot be raised here, and why. */
export class OpsetUpgradeError extends Error {
  override readonly name = 'OpsetUpgradeError';
}

/**
 * Ops whose meaning for inference is the same from opset 7 to 14: their later versions only
 * add types, optional inputs or attributes whose defaults keep the old behaviour.
 */
const UNCHANGED = new Set([
  'Abs', 'Acos', 'Add', 'And', 'ArgMax', 'ArgMin', 'Asin', 'Atan', 'AveragePool', 'Cast', 'Ceil', 'Concat', 'Constant', 'ConstantOfShape', 'Conv',
  'ConvTranspose', 'Cos', 'DepthToSpace', 'Div', 'Elu', 'Equal', 'Erf', 'Exp', 'Expand', 'Flatten', 'Floor', 'Gather', 'Gemm', 'GlobalAveragePool',
  'GlobalMaxPool', 'Greater', 'HardSigmoid', 'Identity', 'InstanceNormalization', 'LeakyRelu', 'Less', 'Log', 'LRN', 'MatMul', 'Max', 'MaxPool',
  'Mean', 'Min', 'Mul', 'Neg', 'Not', 'Or', 'Pow', 'PRelu', 'Reciprocal', 'ReduceL2', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'Relu',
  'Reshape', 'Selu', 'Shape', 'Sigmoid', 'Sign', 'Sin', 'Size', 'Softplus', 'Softsign', 'SpaceToDepth', 'Sqrt', 'Sub', 'Sum', 'Tan', 'Tanh', 'Tile',
  'Transpose', 'Where', 'Xor', 'NonZero', 'Range', 'Einsum', 'GatherND', 'ScatterND', 'Mod', 'BitShift', 'Round', 'Det', 'CumSum',
]);

const FLOAT_MAX = 3.4028234663852886e38;

function attributes(node: NodeView, drop: readonly string[] = []): ProtoField[] {
  return node.proto.all(NODE.attribute).filter((a) => !drop.includes(a.message().string(ATTRIBUTE.name) ?? ''));
}

function withAttributes(node: ProtoMessage, fields: readonly ProtoField[]): ProtoMessage {
  for (const f of fields) node.fields.push(f);
  return node;
}

function stringAttribute(node: NodeView, name: string): string | undefined {
  const a = node.attribute(name)?.first(ATTRIBUTE.s);
  return a ? Buffer.from(a.payload()).toString('utf8') : undefined;
}

function floatsAttribute(node: NodeView, name: string): number[] | undefined {
  const a = node.attribute(name);
  if (!a) return undefined;
  const out: number[] = [];
  for (const f of a.all(ATTRIBUTE.floats)) {
    if (f.wireType === 2) {
      const p = f.payload();
      const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
      for (let i = 0; i + 4 <= p.byteLength; i += 4) out.push(view.getFloat32(i, true));
    } else out.push(f.asFloat());
  }
  return out;
}

/**
 * Raises a model's default-domain opset to `target` (at most 14), rewriting the ops whose
 * signature changed on the way: Clip, Pad and Slice attributes become inputs, Upsample and
 * Resize-10 become Resize (asymmetric coordinates, floor rounding for nearest, as they
 * computed), the `axes`/`split` attributes of Squeeze, Unsqueeze, ReduceSum and Split become
 * inputs, TopK's `k` an input, Softmax/LogSoftmax/Hardmax keep their old 2-D meaning (Flatten
 * at the axis, then Reshape back), Dropout becomes Identity, BatchNormalization loses
 * `spatial`/`is_test`. An op not known to be unchanged and without a rewrite, a subgraph, or
 * an opset below 7 cannot be upgraded: {@link OpsetUpgradeError} says which. Main graph only.
 */
export function upgradeOpset(model: OnnxModel, target: number): OpsetUpgrade {
  const entry = model.proto.messages(MODEL.opsetImport).find((o) => (o.string(OPSET.domain) ?? '') === '' || o.string(OPSET.domain) === 'ai.onnx');
  const from = entry?.int(OPSET.version) ?? 0;
  const report: OpsetUpgrade = { from, to: target, rewritten: {} };
  if (!entry || from >= target) return report;
  if (from < 7) throw new OpsetUpgradeError(`opset ${from} is older than this upgrade handles (7)`);
  const graph = model.graph();
  const initializers: ProtoMessage[] = [];
  const out: ProtoMessage[] = [];
  let counter = 0;
  const constant = (base: string, dataType: number, dims: number[], bytes: Uint8Array): string => {
    const name = `${base}__opset${target}_${counter++}`;
    initializers.push(makeTensor(name, dataType, dims, bytes));
    return name;
  };
  const int64s = (base: string, values: readonly number[]) => constant(base, DATA_TYPE.INT64, [values.length], new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer));
  const float = (base: string, value: number) => constant(base, DATA_TYPE.FLOAT, [], new Uint8Array(Float32Array.of(value).buffer));
  const floats = (base: string, values: readonly number[]) => constant(base, DATA_TYPE.FLOAT, [values.length], new Uint8Array(Float32Array.from(values).buffer));
  const count = (op: string) => (report.rewritten[op] = (report.rewritten[op] ?? 0) + 1);
  const readers = new Set<string>();
  for (const n of graph.nodes()) for (const i of n.inputs) readers.add(i);
  for (const o of graph.outputNames()) readers.add(o);

  for (const node of graph.nodes()) {
    const op = node.opType;
    const name = node.name || `${node.outputs[0] ?? op}_${op}`;
    if (node.domain && node.domain !== 'ai.onnx') {
      out.push(node.proto);
      continue;
    }
    if (node.subgraphs().length > 0) throw new OpsetUpgradeError(`node "${name}" (${op}) holds a subgraph, which this upgrade does not rewrite`);
    if (UNCHANGED.has(op)) {
      out.push(node.proto);
      continue;
    }
    const [x = '', ...rest] = node.inputs;
    const y = node.outputs[0] ?? '';
    switch (op) {
      case 'Clip': {
        if (from >= 11) {
          out.push(node.proto);
          break;
        }
        const min = float(name, node.floatAttribute('min', -FLOAT_MAX));
        const max = float(name, node.floatAttribute('max', FLOAT_MAX));
        out.push(makeNode('Clip', [x, min, max], [y], name));
        count(op);
        break;
      }
      case 'Slice': {
        if (from >= 10) {
          out.push(node.proto);
          break;
        }
        const starts = node.intsAttribute('starts') ?? [];
        const ends = node.intsAttribute('ends') ?? [];
        const axes = node.intsAttribute('axes') ?? starts.map((_, i) => i);
        out.push(makeNode('Slice', [x, int64s(name, starts), int64s(name, ends), int64s(name, axes)], [y], name));
        count(op);
        break;
      }
      case 'Pad': {
        if (from >= 11) {
          out.push(node.proto);
          break;
        }
        const pads = node.intsAttribute('pads') ?? node.intsAttribute('paddings') ?? [];
        const mode = stringAttribute(node, 'mode') ?? 'constant';
        out.push(makeNode('Pad', [x, int64s(name, pads), float(name, node.floatAttribute('value', 0))], [y], name, { mode: { s: mode } }));
        count(op);
        break;
      }
      case 'Upsample':
      case 'Resize': {
        if (op === 'Resize' && from >= 11) {
          out.push(node.proto);
          break;
        }
        const mode = stringAttribute(node, 'mode') ?? 'nearest';
        if (mode !== 'nearest' && mode !== 'linear' && mode !== 'bilinear') throw new OpsetUpgradeError(`node "${name}" (${op}) uses mode "${mode}", which has no Resize equivalent here`);
        const scales = rest[0] ?? floats(name, floatsAttribute(node, 'scales') ?? []);
        out.push(
          // Resize-11 requires its roi input (unused in these modes); from 13 it may be left out.
          makeNode('Resize', [x, target >= 13 ? '' : floats(name, []), scales], [y], name, {
            mode: { s: mode === 'nearest' ? 'nearest' : 'linear' },
            coordinate_transformation_mode: { s: 'asymmetric' },
            nearest_mode: { s: 'floor' },
          }),
        );
        count(op);
        break;
      }
      case 'Squeeze':
      case 'Unsqueeze':
      case 'ReduceSum': {
        // The attribute became an input at opset 13.
        if (from >= 13 || target < 13) {
          out.push(node.proto);
          break;
        }
        const axes = node.intsAttribute('axes');
        const inputs = axes ? [x, int64s(name, axes)] : [x];
        out.push(withAttributes(makeNode(op, inputs, node.outputs, name), attributes(node, ['axes'])));
        count(op);
        break;
      }
      case 'Split': {
        // The attribute became an input at opset 13.
        if (from >= 13 || target < 13) {
          out.push(node.proto);
          break;
        }
        const split = node.intsAttribute('split');
        out.push(withAttributes(makeNode('Split', split ? [x, int64s(name, split)] : [x], node.outputs, name), attributes(node, ['split'])));
        count(op);
        break;
      }
      case 'TopK': {
        if (from >= 10) {
          out.push(node.proto);
          break;
        }
        out.push(withAttributes(makeNode('TopK', [x, int64s(name, [node.intAttribute('k', 1)])], node.outputs, name), attributes(node, ['k'])));
        count(op);
        break;
      }
      case 'Softmax':
      case 'LogSoftmax':
      case 'Hardmax': {
        const axis = node.intAttribute('axis', 1);
        // The meaning changed at opset 13.
        if (from >= 13 || target < 13 || axis === -1) {
          out.push(node.proto);
          break;
        }
        // The old meaning: the input seen as 2-D at `axis`, normalized along the second dim.
        const flat = `${name}__flat`;
        const shape = `${name}__shape`;
        const normalized = `${name}__2d`;
        out.push(makeNode('Flatten', [x], [flat], `${name}_flatten`, { axis: { i: axis } }));
        out.push(makeNode(op, [flat], [normalized], name, { axis: { i: 1 } }));
        out.push(makeNode('Shape', [x], [shape], `${name}_shape`));
        out.push(makeNode('Reshape', [normalized, shape], [y], `${name}_reshape`));
        count(op);
        break;
      }
      case 'Dropout': {
        if (from >= 12) {
          out.push(node.proto);
          break;
        }
        if (node.outputs.slice(1).some((o) => o && readers.has(o))) throw new OpsetUpgradeError(`node "${name}" (Dropout) has its mask read`);
        out.push(makeNode('Identity', [x], [y], name));
        count(op);
        break;
      }
      case 'BatchNormalization': {
        if (node.intAttribute('spatial', 1) !== 1) throw new OpsetUpgradeError(`node "${name}" (BatchNormalization) uses spatial=0, which later opsets do not have`);
        if (node.outputs.slice(1).some((o) => o && readers.has(o))) throw new OpsetUpgradeError(`node "${name}" (BatchNormalization) has its training outputs read`);
        out.push(withAttributes(makeNode('BatchNormalization', node.inputs.slice(0, 5), [y], name), attributes(node, ['spatial', 'is_test', 'consumed_inputs', 'momentum'])));
        count(op);
        break;
      }
      default:
        throw new OpsetUpgradeError(`node "${name}" (${op}) has no known upgrade from opset ${from} to ${target}`);
    }
  }
  graph.setNodes(out);
  if (initializers.length > 0) graph.setInitializers([...graph.initializers().map((t) => t.proto), ...initializers]);
  entry.set(OPSET.version, [ProtoField.varint(OPSET.version, target)]);
  return report;
}
