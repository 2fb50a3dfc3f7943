// A MobileNetV2-sized Keras model built with TF.js (224x224x3, width 1.0, 1000 classes) and
// image-like inputs for it: the model the keras and keras3 bench sections import.
import { Tensor } from 'onnxruntime-node';
import { prng } from '../../lib/convert/random';
import { tfl } from '../../test/helpers/tfjs';

type T = tfl.SymbolicTensor;

function convBnRelu6(x: T, filters: number, kernel: number, strides: number): T {
  const c = tfl.layers.conv2d({ filters, kernelSize: kernel, strides, padding: 'same', useBias: false }).apply(x) as T;
  const b = tfl.layers.batchNormalization().apply(c) as T;
  return tfl.layers.reLU({ maxValue: 6 }).apply(b) as T;
}

/** MobileNetV2's layout (inverted residual blocks, expansion 6), as Keras builds it. */
export function mobileNetV2(): tfl.LayersModel {
  const input = tfl.input({ shape: [224, 224, 3], name: 'image' });
  let x = convBnRelu6(input, 32, 3, 2);
  let channels = 32;
  const blocks: [number, number, number, number][] = [
    [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
  ];
  for (const [t, c, n, s] of blocks) {
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      let y = t === 1 ? x : convBnRelu6(x, channels * t, 1, 1);
      y = tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: stride, padding: 'same', useBias: false }).apply(y) as T;
      y = tfl.layers.reLU({ maxValue: 6 }).apply(tfl.layers.batchNormalization().apply(y)) as T;
      y = tfl.layers.batchNormalization().apply(tfl.layers.conv2d({ filters: c, kernelSize: 1, useBias: false }).apply(y)) as T;
      x = stride === 1 && channels === c ? (tfl.layers.add().apply([x, y]) as T) : y;
      channels = c;
    }
  }
  x = convBnRelu6(x, 1280, 1, 1);
  x = tfl.layers.globalAveragePooling2d({}).apply(x) as T;
  const out = tfl.layers.dense({ units: 1000, activation: 'softmax', name: 'probs' }).apply(x) as T;
  return tfl.model({ inputs: input, outputs: out });
}

/** Smooth seeded pictures with noise, in [-1, 1] (or [0, 1] when `unit`), fed as `input`. */
export function images(count: number, seed: number, input = 'image', unit = false): Record<string, Tensor>[] {
  const rand = prng(seed);
  return Array.from({ length: count }, () => {
    const data = new Float32Array(224 * 224 * 3);
    const [a, b] = [rand(), rand()];
    for (let i = 0; i < data.length; i++) {
      const p = Math.floor(i / 3);
      const v = Math.min(1, Math.max(-1, a * ((p % 224) / 112 - 1) + b * (Math.floor(p / 224) / 112 - 1) + 0.3 * (rand() - 0.5)));
      data[i] = unit ? (v + 1) / 2 : v;
    }
    return { [input]: new Tensor('float32', data, [1, 224, 224, 3]) };
  });
}
